"""Making a lab real and taking it down: namespaces, the bridge, sshd per host, the inventory.

Every command is an argv list. ``up`` is idempotent (a running host is left alone, a dead one
is started again) and only grows a lab; ``down`` removes what ``up`` recorded and whatever runs
inside the hosts' namespaces (libvirtd, QEMU guests, Swift), and can run twice.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from stackcore.errors import BackendError, Conflict, InvalidInput
from stackcore.fileio import write_atomic

from stackctl.lab import plan as lab_plan
from stackctl.lab.plan import Lab, LabHost

SSHD = "/usr/sbin/sshd"
Say = Callable[[str], None]


@dataclass
class HostStatus:
    name: str
    address: str
    sshd_pid: int | None
    ssh: bool  # something answers on port 22
    libvirtd: bool
    guests: int  # QEMU processes
    swift: int  # Swift server processes
    processes: int  # everything in the host's network namespace


def run(argv: list[str], *, check: bool = True, input_text: str | None = None) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, input=input_text, check=False)
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise BackendError(f"{' '.join(argv)}: {detail[-1] if detail else proc.returncode}")
    return proc.stdout


# --- state ---------------------------------------------------------------------------------


def load_state(root: Path) -> dict | None:
    path = root / "lab.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise BackendError(f"cannot read the lab's state {path}: {exc}") from exc


def save_state(lab: Lab, state: dict) -> None:
    write_atomic(lab.state_file, json.dumps(state, indent=2, sort_keys=True).encode(), mode=0o600)


# --- up ------------------------------------------------------------------------------------


def up(root: Path, count: int, cidr: str | None, python: str, inventory_dir: Path,
       say: Say) -> Lab:
    """Bring ``count`` lab hosts up (adding to a smaller lab), write the inventory."""
    _require_root()
    state = load_state(root) or {}
    cidr = cidr or state.get("cidr") or lab_plan.DEFAULT_CIDR
    if state and state["cidr"] != lab_plan.plan(1, root, cidr).cidr:
        raise Conflict(f"the lab runs on {state['cidr']}: run 'stackctl lab down' to change it")
    if state and len(state["hosts"]) > count:
        raise Conflict(f"the lab has {len(state['hosts'])} hosts: run 'stackctl lab down' "
                       f"first to make it smaller")
    lab = lab_plan.plan(count, root, cidr)
    _check_sshd()
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)
    state.setdefault("cidr", lab.cidr)
    state.setdefault("created_dirs", [])
    state.setdefault("hosts", {})
    _client_key(lab)
    (root / "empty.bashrc").touch(mode=0o644)
    _bridge(lab, say)
    starting = [h for h in lab.hosts if not _running(state, h)]
    if starting:
        _install_image(root, say)
    for host in starting:
        say(f"starting {host.name} ({host.address})")
        state["created_dirs"] = sorted(set(state["created_dirs"]) | _prepare_dirs(host))
        _host_key(host)
        write_atomic(host.sshd_config, lab_plan.sshd_config(lab, host).encode(), mode=0o600)
        _netns(lab, host)
        state["hosts"][host.name] = {"address": host.address, "netns": host.netns,
                                     "sshd_pid": _start(lab, host)}
        save_state(lab, state)
    for host in lab.hosts:
        _wait_ssh(host)
    write_inventory(lab, python, inventory_dir)
    save_state(lab, state)
    return lab


def _running(state: dict, host: LabHost) -> bool:
    pid = state["hosts"].get(host.name, {}).get("sshd_pid")
    return bool(pid) and _alive(pid) and _in_netns(pid, host.netns)


def _install_image(root: Path, say: Say) -> None:
    """Run playbooks/lab-image.yml here: the software lab hosts share with this machine."""
    from stackctl.config import project_root
    from stackctl.runner import ansible_bin

    project = project_root()
    say("installing the lab hosts' software on this machine (playbooks/lab-image.yml)")
    log = root / "image.log"
    env = dict(os.environ, ANSIBLE_CONFIG=str(project / "ansible.cfg"))
    with open(log, "wb") as out:
        proc = subprocess.run([ansible_bin("ansible-playbook"), "-i", "localhost,",
                               str(project / "playbooks" / "lab-image.yml")],
                              stdout=out, stderr=subprocess.STDOUT, env=env, cwd=project,
                              check=False)
    if proc.returncode != 0:
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
        raise BackendError(f"playbooks/lab-image.yml failed ({log}): "
                           f"{lines[-1] if lines else proc.returncode}")


def write_inventory(lab: Lab, python: str, inventory_dir: Path) -> Path:
    import yaml

    inventory_dir.mkdir(parents=True, exist_ok=True)
    known = inventory_dir / "known_hosts"
    keys = {h.name: Path(f"{h.host_key}.pub").read_text() for h in lab.hosts}
    write_atomic(known, ("\n".join(lab_plan.known_hosts_lines(lab, keys)) + "\n").encode(),
                 mode=0o644)
    hosts = inventory_dir / "hosts.yml"
    text = ("# Written by 'stackctl lab up'; removed by 'stackctl lab down'.\n---\n"
            + yaml.safe_dump(lab_plan.inventory(lab, python, known), sort_keys=False))
    write_atomic(hosts, text.encode(), mode=0o644)
    return hosts


def _require_root() -> None:
    if os.geteuid() != 0:
        raise InvalidInput("lab hosts need root (network and mount namespaces)")


def _check_sshd() -> None:
    if not os.access(SSHD, os.X_OK):
        raise InvalidInput(f"{SSHD} is missing: install openssh-server "
                           "(the lab runs one sshd per host; none on this machine's own ports)")


def _client_key(lab: Lab) -> None:
    if not lab.client_key.exists():
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "stackctl-lab",
             "-f", str(lab.client_key)])
    public = Path(f"{lab.client_key}.pub").read_text()
    write_atomic(lab.authorized_keys, public.encode(), mode=0o644)


def _host_key(host: LabHost) -> None:
    host.root.mkdir(parents=True, exist_ok=True)
    if not host.host_key.exists():
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{host.name}",
             "-f", str(host.host_key)])


def _bridge(lab: Lab, say: Say) -> None:
    if Path(f"/sys/class/net/{lab.bridge}").exists():
        return
    say(f"creating bridge {lab.bridge} ({lab.gateway}/{lab.prefix})")
    run(["ip", "link", "add", lab.bridge, "type", "bridge"])
    run(["ip", "addr", "add", f"{lab.gateway}/{lab.prefix}", "dev", lab.bridge])
    run(["ip", "link", "set", lab.bridge, "up"])


def _prepare_dirs(host: LabHost) -> set[str]:
    """The host's private directories (seeded from the machine's where that matters) and the
    mount points they cover; returns the mount points this created on the machine."""
    created = set()
    for path in lab_plan.PRIVATE_DIRS:
        source = host.private_source(path)
        if not source.exists():
            source.mkdir(parents=True, mode=0o755)
            if path in lab_plan.SEEDED_DIRS and Path(path).is_dir():
                shutil.copytree(path, source, symlinks=True, dirs_exist_ok=True)
        if not Path(path).exists():
            Path(path).mkdir(parents=True, mode=0o755)
            created.add(path)
    return created


def _netns(lab: Lab, host: LabHost) -> None:
    if not Path(f"/run/netns/{host.netns}").exists():
        run(["ip", "netns", "add", host.netns])
    if not Path(f"/sys/class/net/{host.veth}").exists():
        run(["ip", "link", "add", host.veth, "type", "veth", "peer", "name", "eth0",
             "netns", host.netns])
    run(["ip", "link", "set", host.veth, "master", lab.bridge, "up"])
    inside = ["ip", "-n", host.netns]
    addrs = run([*inside, "-o", "addr", "show", "dev", "eth0"])
    if f" {host.address}/" not in addrs:
        run([*inside, "addr", "add", f"{host.address}/{lab.prefix}", "dev", "eth0"])
    run([*inside, "link", "set", "lo", "up"])
    run([*inside, "link", "set", "eth0", "up"])


def _start(lab: Lab, host: LabHost) -> int:
    """Start the host: a new mount + UTS namespace inside its network namespace, whose first
    process mounts the private directories and becomes its sshd (pid recorded)."""
    script = lab_plan.boot_script(lab, host)
    argv = ["ip", "netns", "exec", host.netns, "unshare", "--mount", "--uts",
            "--propagation", "private", "/bin/sh", "-c", script]
    with open(host.root / "boot.log", "ab") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True)
    time.sleep(0.2)
    if proc.poll() is not None:
        tail = (host.root / "boot.log").read_text(errors="replace").strip().splitlines()
        raise BackendError(f"{host.name} did not start: {tail[-1] if tail else proc.returncode}")
    return proc.pid  # ip, unshare and sh exec: this pid is the host's sshd


def _wait_ssh(host: LabHost, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _port_open(host.address, 22):
            return
        time.sleep(0.1)
    raise BackendError(f"{host.name}: sshd does not answer on {host.address}:22 "
                       f"(see {host.sshd_log})")


def _port_open(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _in_netns(pid: int, netns: str) -> bool:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(f"/run/netns/{netns}").st_ino
    except OSError:
        return False


# --- status --------------------------------------------------------------------------------


def status(root: Path) -> list[HostStatus]:
    state = load_state(root)
    if not state:
        return []
    lab = lab_plan.plan(len(state["hosts"]), root, state["cidr"])
    rows = []
    for host in lab.hosts:
        recorded = state["hosts"].get(host.name, {})
        pid = recorded.get("sshd_pid")
        pid = pid if pid and _alive(pid) and _in_netns(pid, host.netns) else None
        names = [_cmdline(p) for p in netns_pids(host.netns)]
        rows.append(HostStatus(
            name=host.name, address=host.address, sshd_pid=pid,
            ssh=_port_open(host.address, 22) if pid else False,
            libvirtd=any(n.startswith("libvirtd") for n in names),
            guests=sum(n.startswith("qemu-system") for n in names),
            swift=sum("swift-" in n for n in names), processes=len(names)))
    return rows


def status_rows(root: Path) -> list[dict]:
    return [asdict(s) for s in status(root)]


def netns_pids(netns: str) -> list[int]:
    if not Path(f"/run/netns/{netns}").exists():
        return []
    out = run(["ip", "netns", "pids", netns], check=False)
    return [int(p) for p in out.split() if p.isdigit()]


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    parts = [os.path.basename(p) if i == 0 else p
             for i, p in enumerate(raw.decode(errors="replace").split("\0")) if p]
    # Python daemons: show the script (swift-object-server), not the interpreter.
    if parts and parts[0].startswith("python") and len(parts) > 1:
        parts = [os.path.basename(parts[1]), *parts[2:]]
    return " ".join(parts)


# --- down ----------------------------------------------------------------------------------


def down(root: Path, inventory_dir: Path, say: Say) -> dict:
    """Remove the lab: every process in its namespaces (guests included), loop devices on its
    files, namespaces, interfaces, the bridge, its directories and the inventory it wrote."""
    _require_root()
    state = load_state(root) or {}
    names = sorted(state.get("hosts", {}))
    removed = {"hosts": names, "processes": 0, "loop_devices": 0}
    netnses = {state["hosts"][n]["netns"] for n in names} | _stray_netns()
    for netns in sorted(netnses):
        pids = netns_pids(netns)
        if pids:
            say(f"stopping {len(pids)} processes in {netns}")
        removed["processes"] += _kill_all(netns, pids)
    removed["loop_devices"] = _detach_loops(root)
    for netns in sorted(netnses):
        run(["ip", "netns", "del", netns], check=False)
    for name in _stray_links():
        run(["ip", "link", "del", name], check=False)
    if Path(f"/sys/class/net/{lab_plan.BRIDGE}").exists():
        say(f"removing bridge {lab_plan.BRIDGE}")
        run(["ip", "link", "del", lab_plan.BRIDGE], check=False)
    for path in sorted(state.get("created_dirs", []), reverse=True):
        with contextlib.suppress(OSError):
            os.rmdir(path)  # only if still empty
    for name in ("hosts.yml", "known_hosts"):
        (inventory_dir / name).unlink(missing_ok=True)
    builders = _cluster_builders(inventory_dir)
    if builders is not None and builders.is_dir():
        say(f"removing the lab cluster's ring builders {builders}")
        shutil.rmtree(builders)
        removed["ring_builders"] = str(builders)
    if root.exists():
        shutil.rmtree(root)
    return removed


def _cluster_builders(inventory_dir: Path) -> Path | None:
    """The controller's ring builder directory of the lab's Swift cluster (the deploy makes
    it; with the lab's storage gone, its rings describe nothing)."""
    import yaml

    try:
        data = yaml.safe_load((inventory_dir / "group_vars" / "all.yml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return None
    name = data.get("swift_cluster_name")
    if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
        return None
    return Path("/etc/stackctl/swift") / name


def _stray_netns() -> set[str]:
    try:
        return {n for n in os.listdir("/run/netns") if n.startswith("stklab-")}
    except FileNotFoundError:
        return set()


def _stray_links() -> list[str]:
    try:
        names = os.listdir("/sys/class/net")
    except FileNotFoundError:
        return []
    return [n for n in names if n.startswith("stklab") and n != lab_plan.BRIDGE]


def _kill_all(netns: str, pids: list[int], grace: float = 5.0) -> int:
    """TERM everything in the namespace, KILL what is left after ``grace`` seconds."""
    count = 0
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        for pid in pids:
            try:
                os.kill(pid, sig)
                count += sig == signal.SIGTERM
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            pids = netns_pids(netns)
            if not pids:
                return count
            time.sleep(0.1)
    left = netns_pids(netns)
    if left:
        raise BackendError(f"processes {left} in {netns} did not exit")
    return count


def _detach_loops(root: Path) -> int:
    """Loop devices on files under the lab's directory. A lab host names its file by the path
    it sees (``/var/lib/stackctl/swift/d1.img``, like the machine's own), so files are matched
    by device and inode, never by path."""
    from stackcore.storage_device import read_loop_devices

    ours = set()
    for path in root.rglob("*.img") if root.exists() else ():
        with contextlib.suppress(OSError):
            st = path.stat()
            ours.add((st.st_dev, st.st_ino))
    count = 0
    for loop in read_loop_devices():
        if loop.backing_id in ours:
            run(["losetup", "-d", loop.path], check=False)
            count += 1
    return count
