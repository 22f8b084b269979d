"""What the lab tests share: running `stackctl lab`, and finding anything a lab left behind
(``lab_leftovers``), for tests/integration/test_lab.py and test_multinode.py."""

import ipaddress
import json
import os
import subprocess
from pathlib import Path

import pytest

from stackctl.lab import plan as lab_plan

from .conftest import PROJECT, STACKCTL

LAB_ROOT = Path("/var/lib/stackctl-lab")  # `stackctl lab`'s default (no STACKCTL_LAB_DIR)
INVENTORY_DIR = PROJECT / "inventories" / "lab"
LAB_NETWORK = ipaddress.ip_network(lab_plan.DEFAULT_CIDR)


def lab(*args, timeout=300):
    env = dict(os.environ)
    env.pop("STACKCTL_LAB_DIR", None)
    return subprocess.run([STACKCTL, "lab", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, check=False)


def _listdir(path):
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []


def _read(path):
    try:
        return Path(path).read_text(errors="replace")
    except OSError:  # the process exited meanwhile
        return ""


def _pids():
    return [int(p) for p in _listdir("/proc") if p.isdigit()]


def _netns_inode(pid):
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return None


def _has_lab_address(pid):
    """Whether the process's network namespace holds an address of the lab's network."""
    for line in _read(f"/proc/{pid}/net/fib_trie").splitlines():
        word = line.strip().removeprefix("|--").strip()
        try:
            if ipaddress.ip_address(word) in LAB_NETWORK:
                return True
        except ValueError:
            continue
    return False


def lab_processes():
    """Processes of a lab host: in its mount namespace (the bind mounts from the lab's
    directory that every process a lab host starts inherits: sshd, libvirtd, QEMU, Swift), or
    in a network namespace of the lab's network other than the machine's own."""
    machine = _netns_inode("self")  # this test runs in the machine's own namespace
    checked = {}
    found = []
    for pid in _pids():
        netns = _netns_inode(pid)
        if netns not in (None, machine) and netns not in checked:
            checked[netns] = _has_lab_address(pid)
        if str(LAB_ROOT) in _read(f"/proc/{pid}/mountinfo") or checked.get(netns):
            found.append(pid)
    return found


def qemu_pids():
    return {pid for pid in _pids()
            if os.path.basename(_read(f"/proc/{pid}/cmdline").split("\0")[0])
            .startswith("qemu-system")}


def lab_loop_devices():
    """Loop devices on a file under the lab's directory, or on a file this machine does not
    see at the path the device names: a lab host's loop devices name the file as the host
    sees it (its private /var/lib/stackctl), which here is another file or none."""
    out = subprocess.run(["losetup", "--list", "--json", "-O", "NAME,BACK-FILE,BACK-INO"],
                         capture_output=True, text=True, check=True).stdout
    found = []
    for device in json.loads(out or "{}").get("loopdevices", []):
        file = device["back-file"] or ""
        try:
            same = os.stat(file).st_ino == int(device["back-ino"])
        except (OSError, TypeError, ValueError):
            same = False
        if file.startswith(f"{LAB_ROOT}/") or not same:
            found.append((device["name"], file))
    return found


def lab_leftovers():
    """What `stackctl lab down` should have removed, one description each (empty: nothing)."""
    left = [f"/run/netns/{n}" for n in _listdir("/run/netns") if n.startswith("stklab-")]
    left += [f"/sys/class/net/{n}" for n in _listdir("/sys/class/net") if n.startswith("stklab")]
    left += [str(p) for p in (LAB_ROOT, Path("/etc/stackctl/swift/lab"),
                              INVENTORY_DIR / "hosts.yml", INVENTORY_DIR / "known_hosts")
             if p.exists()]
    left += [f"{dev} (backing file {file})" for dev, file in lab_loop_devices()]
    guests = qemu_pids()
    for pid in lab_processes():
        kind = "QEMU guest" if pid in guests else "process"
        left.append(f"{kind} {pid}: {_read(f'/proc/{pid}/cmdline').replace(chr(0), ' ')[:120]}")
    return left


def require_no_lab():
    """The lab tests own the lab: refuse to start (rather than take down) somebody's lab."""
    left = lab_leftovers()
    if left:
        pytest.fail(f"a lab is up or left over ({', '.join(left[:3])}): "
                    "run 'stackctl lab down' first", pytrace=False)
