"""Harness for the multi-node Swift tests: a three-node cluster on this machine, deployed by the
project's playbooks from inventories/storage3 and destroyed again, whatever the tests did.

Every test here is marked ``integration`` (it deploys real daemons, loop devices and mounts)
and ``swift`` (it imports Swift's ring code and swiftclient, so it runs in the pytest process of
its own: ``pytest -m swift``). Swift is imported inside functions only.
"""

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parents[1]
VENV_BIN = PROJECT / ".venv" / "bin"
INVENTORY = PROJECT / "inventories" / "storage3"
CLUSTER = "storage3"
BUILDER_DIR = Path("/etc/stackctl/swift") / CLUSTER
SECRETS = Path("/etc/stackctl/secrets/swift.json")
# The node names and addresses of inventories/storage3/hosts.yml; the proxy runs on swift1.
NODES = {"swift1": "127.0.0.2", "swift2": "127.0.0.3", "swift3": "127.0.0.4"}
PROXY_URL = "http://127.0.0.2:8080"
RINGS = ("account", "container", "object")
_RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)",
                    re.MULTILINE)


@pytest.hookimpl(tryfirst=True)  # before tests/conftest.py sorts the swift tests last
def pytest_collection_modifyitems(items):
    """Mark every test in this folder (a ``pytestmark`` in a conftest would do nothing)."""
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.integration)
            item.add_marker(pytest.mark.swift)


# ---------------------------------------------------------------------------------------------
# Where a node keeps things (the paths of inventories/storage3/group_vars/all.yml)


def node_paths(host):
    """Every directory deploy makes for ``host``."""
    return {"conf": Path("/etc/swift") / host, "run": Path("/run/swift") / host,
            "log": Path("/var/log/swift") / host, "cache": Path("/var/cache/swift") / host,
            "devices": Path("/srv") / host, "loops": Path("/var/lib/stackctl/swift") / host}


def swift_bin_dir():
    """The Swift the roles run: swift_common's virtualenv (the storage3 inventory keeps it)."""
    defaults = yaml.safe_load((PROJECT / "roles/swift_common/defaults/main.yml").read_text())
    return Path(defaults["swift_venv"]) / "bin"


# ---------------------------------------------------------------------------------------------
# Playbooks


@dataclass
class PlaybookRun:
    """One ansible-playbook run: its PLAY RECAP per host and how long it took."""

    argv: list = field(repr=False)
    returncode: int
    output: str = field(repr=False)
    seconds: float
    recap: dict = field(default_factory=dict)

    @property
    def changed(self):
        return {host: counts["changed"] for host, counts in self.recap.items()}


def parse_recap(output):
    """``{host: {ok, changed, unreachable, failed}}`` from the PLAY RECAP lines."""
    recap_at = output.rfind("PLAY RECAP")
    return {m[1]: {"ok": int(m[2]), "changed": int(m[3]), "unreachable": int(m[4]),
                   "failed": int(m[5])}
            for m in _RECAP.finditer(output[recap_at:])} if recap_at >= 0 else {}


def run_playbook(playbook, inventory, *args, timeout=900):
    """Run a project playbook as a user would; fail the test with the output's tail if it fails.
    Tasks that handle secrets are no_log, so the output holds none."""
    env = dict(os.environ, PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
               ANSIBLE_CONFIG=str(PROJECT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    argv = [str(VENV_BIN / "ansible-playbook"), str(PROJECT / "playbooks" / playbook),
            "-i", str(inventory), *args]
    start = time.monotonic()
    proc = subprocess.run(argv, cwd=PROJECT, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)
    output = proc.stdout + proc.stderr
    run = PlaybookRun(argv=argv, returncode=proc.returncode, output=output,
                      seconds=time.monotonic() - start, recap=parse_recap(proc.stdout))
    if proc.returncode != 0:
        tail = "\n".join(output.splitlines()[-40:])
        raise AssertionError(f"{playbook} {' '.join(args)} exited {proc.returncode}:\n{tail}")
    return run


# ---------------------------------------------------------------------------------------------
# The cluster


def wait_for(condition, timeout, what, interval=0.2):
    """Poll ``condition`` until it is true; fail after ``timeout`` seconds, saying ``what`` (a
    string, or a function that describes what is still missing)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            detail = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout} s waiting for {detail}")
        time.sleep(interval)


def port_open(ip, port):
    with contextlib.suppress(OSError), socket.create_connection((ip, port), timeout=1):
        return True
    return False


def _alive(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@dataclass(frozen=True)
class Credentials:
    """The service (reseller admin) user, as the proxy role writes it."""

    user: str
    key: str = field(repr=False)


def service_credentials():
    secrets = json.loads(SECRETS.read_text())
    access = "STKS" + secrets["service_access"][:16].upper()
    return Credentials(user=f"stackctl:{access}", key=secrets["service_key"])


class ServiceClient:
    """swiftclient as the service user (v1 auth, no client-side retries). A failure is one
    line: a traceback through swiftclient would show the key or token it was called with."""

    def __init__(self):
        from swiftclient.client import Connection

        creds = service_credentials()
        self._conn = Connection(authurl=f"{PROXY_URL}/auth/v1.0", user=creds.user,
                                key=creds.key, auth_version="1", retries=0)

    def _call(self, method, *args):
        from swiftclient.exceptions import ClientException

        try:
            return getattr(self._conn, method)(*args)
        except (ClientException, OSError) as exc:  # requests' errors are OSErrors too
            raise AssertionError(f"swift {method} {'/'.join(map(str, args[:2]))}: "
                                 f"{type(exc).__name__}: {exc}") from None

    def account(self):
        """The service account's name (from the storage URL)."""
        storage_url, _ = self._call("get_auth")
        return storage_url.rstrip("/").rsplit("/", 1)[1]

    def put_container(self, container):
        self._call("put_container", container)

    def put_object(self, container, name, data):
        self._call("put_object", container, name, data)

    def get_object(self, container, name):
        """The object's bytes, or None when the proxy cannot serve it."""
        try:
            return self._call("get_object", container, name)[1]
        except AssertionError:
            return None


@dataclass
class Cluster:
    """The storage3 cluster as the tests see it: where things are, playbook runs, node daemons,
    replication. ``teardown_inventory`` lists every device a test may add (d2 on swift3), so
    one destroy removes them all."""

    inventory: Path
    teardown_inventory: Path
    nodes: dict = field(default_factory=lambda: dict(NODES))
    builder_dir: Path = BUILDER_DIR
    runs: list = field(default_factory=list, repr=False)

    paths = staticmethod(node_paths)
    wait_for = staticmethod(wait_for)

    def deploy(self, *args, inventory=None):
        """site.yml --tags storage (extra ``args``: --limit, ...)."""
        run = run_playbook("site.yml", inventory or self.inventory, "--tags", "storage", *args)
        self.runs.append(run)
        return run

    def listening(self, host, port):
        """Whether ``host``'s address accepts connections on ``port``."""
        return port_open(self.nodes[host], port)

    def destroy(self):
        run = run_playbook("destroy-storage.yml", self.teardown_inventory,
                           "-e", "confirm_destroy=yes")
        self.runs.append(run)
        return run

    def connection(self):
        """A Swift client logged in as the service user."""
        return ServiceClient()

    def stop_daemon(self, host, name, timeout=30):
        """Stop one daemon as stack_daemon does: SIGTERM the pid file's process and wait."""
        pidfile = node_paths(host)["run"] / f"{name}.pid"
        pid = int(pidfile.read_text().split()[0])
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not _alive(pid), timeout, f"{host} {name} (pid {pid}) to exit")

    def start_daemon(self, host, name, conf):
        """Start one daemon as the role's daemons.yml does: stack_daemon's core, with the same
        argv, pid file and match. Returns whether it had to start it."""
        from stackcore.daemon import DaemonSpec, ensure

        paths = node_paths(host)
        conf_file = f"{paths['conf']}/{conf}-server.conf"
        spec = DaemonSpec(name=f"swift-{name}",
                          argv=(str(swift_bin_dir() / f"swift-{name}"), conf_file, "--verbose"),
                          pidfile=str(paths["run"] / f"{name}.pid"),
                          match=f"swift-{name} {conf_file}", daemonize=True,
                          log_file=str(paths["log"] / f"{name}.log"))
        changed, _, _ = ensure(spec, "started")
        return changed

    def replicate(self, host, kind="object"):
        """One replication pass of ``host``, run as the role runs its replicators: as root with
        the node's configuration (the daemon drops to the swift user itself)."""
        conf = node_paths(host)["conf"] / f"{kind}-server.conf"
        subprocess.run([str(swift_bin_dir() / f"swift-{kind}-replicator"), str(conf), "--once"],
                       capture_output=True, check=True, timeout=300)


# ---------------------------------------------------------------------------------------------
# Leftovers


def cluster_processes():
    """``{pid: cmdline}`` of live processes that belong to the storage3 nodes (their daemons
    name a node's configuration directory; the proxy's memcached its address)."""
    marks = [f"{node_paths(host)['conf']}/" for host in NODES] + ["-l 127.0.0.2 "]
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if any(mark in cmdline for mark in marks) and _alive(int(entry.name)):
            found[int(entry.name)] = cmdline.strip()
    return found


def leftovers(recorded_pids=()):
    """What a destroy left of the cluster, as readable lines (empty when nothing)."""
    left = [f"process {pid}: {cmd}" for pid, cmd in cluster_processes().items()]
    left += [f"process {pid} from a pid file" for pid in recorded_pids if _alive(pid)]
    mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    loops = {}
    for backing in Path("/sys/block").glob("loop*/loop/backing_file"):
        loops[backing.parent.parent.name] = backing.read_text().strip()
    fstab = Path("/etc/fstab").read_text()
    for host in NODES:
        paths = node_paths(host)
        left += [f"mount {line.split()[4]}" for line in mounts
                 if line.split()[4].startswith(f"{paths['devices']}/")]
        left += [f"loop device {dev} on {file}" for dev, file in loops.items()
                 if file.startswith(f"{paths['loops']}/")]
        left += [f"fstab line for {paths['devices']}" for line in fstab.splitlines()
                 if f" {paths['devices']}/" in line]
        left += [f"directory {path}" for path in paths.values() if path.exists()]
    if BUILDER_DIR.exists():
        left.append(f"builder directory {BUILDER_DIR}")
    return left


def recorded_pids():
    """Pids the nodes' pid files name now."""
    pids = []
    for host in NODES:
        for pidfile in node_paths(host)["run"].glob("*.pid"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                pids.append(int(pidfile.read_text().split()[0]))
    return pids


# ---------------------------------------------------------------------------------------------
# Fixtures


def inventory_with_device(directory, host, device):
    """A copy of the storage3 inventory in ``directory`` where ``host`` has one more device."""
    copy = directory / "storage3"
    shutil.copytree(INVENTORY, copy)
    devices = yaml.safe_load((INVENTORY / "group_vars" / "storage_nodes.yml").read_text())
    host_vars = copy / "host_vars"
    host_vars.mkdir(exist_ok=True)
    (host_vars / f"{host}.yml").write_text(yaml.safe_dump(
        {"swift_devices": devices["swift_devices"] + [device]}, sort_keys=False))
    return copy / "hosts.yml"


@pytest.fixture(scope="module")
def extra_device_inventory(tmp_path_factory):
    """The storage3 inventory with a second 2 GiB loop device, d2, on swift3."""
    return inventory_with_device(tmp_path_factory.mktemp("inventory"), "swift3",
                                 {"name": "d2", "size_gb": 2})


@pytest.fixture(scope="module")
def cluster(extra_device_inventory):
    """storage3 deployed from nothing; destroyed at the end whatever happened, and then nothing
    of it may be left (daemons, mounts, loop devices, fstab lines, directories, builders)."""
    c = Cluster(inventory=INVENTORY / "hosts.yml", teardown_inventory=extra_device_inventory)
    if leftovers():  # an earlier run that never got to its teardown
        c.destroy()
    try:
        c.deploy()
        yield c
    finally:
        pids = recorded_pids()
        c.destroy()
        for run in c.runs:  # shown with -s, or -rA
            print(f"{run.seconds:6.1f} s  {' '.join(run.argv[1:])}  changed={run.changed}")
        left = leftovers(pids)
        assert not left, "destroy-storage.yml left:\n" + "\n".join(left)
        assert Path("/etc/swift/swift.conf").exists(), "destroy removed the shared swift.conf"
        assert SECRETS.exists(), "destroy removed the controller's secrets"
