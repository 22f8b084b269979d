"""Day-two operations on a real four-node Swift (inventories/storage4, 3 replicas, one zone per
node, min_part_hours 0, replication every 2 s), driven through the `stackctl` CLI as an
operator would: a failed device replaced, then a node decommissioned (killed half-way and
resumed), while a background reader reads every object again and again. Nothing may fail to
read, and at the end every object has its three replicas where the ring places them.

The cluster is deployed by site.yml and destroyed by destroy-storage.yml for this inventory
only. The tests run in file order and share the cluster and its objects.
"""

import contextlib
import json
import os
import random
import shutil
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .conftest import PROJECT, VENV_BIN, Cluster, node_paths, service_credentials

INVENTORY = PROJECT / "inventories" / "storage4" / "hosts.yml"
CLUSTER = "storage4"
BUILDER_DIR = Path("/etc/stackctl/swift") / CLUSTER
NODES = {"s4node1": "127.0.0.12", "s4node2": "127.0.0.13", "s4node3": "127.0.0.14",
         "s4node4": "127.0.0.15"}
PROXY_URL = "http://127.0.0.12:8080"
OBJECT_COUNT = 200
DATA_SUFFIXES = (".data", ".ts", ".meta", ".db")


# ---------------------------------------------------------------------------------------------
# The cluster and the controller


def leftovers():
    """What is left of storage4 on this machine (daemons, mounts, loop files, directories)."""
    left = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            if entry.name.isdigit() and any(f"/etc/swift/{h}/" in cmd for h in NODES):
                left.append(f"process {entry.name}: {cmd.strip()}")
    mounts = Path("/proc/self/mountinfo").read_text()
    for host in NODES:
        paths = node_paths(host)
        left += [f"mount of {paths['devices']}" for line in mounts.splitlines()
                 if line.split()[4].startswith(f"{paths['devices']}/")]
        left += [f"directory {p}" for p in paths.values() if p.exists()]
    if BUILDER_DIR.exists():
        left.append(f"builder directory {BUILDER_DIR}")
    return left


@pytest.fixture(scope="module")
def cluster4():
    """storage4 deployed from nothing, destroyed at the end whatever happened."""
    c = Cluster(inventory=INVENTORY, teardown_inventory=INVENTORY, nodes=dict(NODES),
                builder_dir=BUILDER_DIR)
    if leftovers():
        c.destroy()
    try:
        c.deploy()
        yield c
    finally:
        c.destroy()
        left = leftovers()
        assert not left, "destroy-storage.yml left:\n" + "\n".join(left)


@pytest.fixture(scope="module")
def controller(cluster4, tmp_path_factory):
    """`stackctl` as a subprocess with its own home and the storage4 inventory."""
    home = tmp_path_factory.mktemp("controller")
    env = {k: v for k, v in os.environ.items() if not k.startswith("STACKCTL_")}
    env.update(STACKCTL_HOME=str(home), STACKCTL_INVENTORY=str(INVENTORY),
               PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}")

    def stackctl(*args, extra_env=None, timeout=900):
        return subprocess.run([str(VENV_BIN / "stackctl"), *args], env={**env, **(extra_env or {})},
                              capture_output=True, text=True, timeout=timeout, check=False)

    return stackctl


# ---------------------------------------------------------------------------------------------
# Objects, a reader that never stops, replica counts


def connection():
    from swiftclient.client import Connection

    creds = service_credentials()
    return Connection(authurl=f"{PROXY_URL}/auth/v1.0", user=creds.user, key=creds.key,
                      auth_version="1", retries=0)


@dataclass
class Objects:
    account: str
    container: str
    data: dict = field(repr=False)


@pytest.fixture(scope="module")
def objects(cluster4):
    conn = connection()
    storage_url, _ = conn.get_auth()
    box = Objects(account=storage_url.rstrip("/").rsplit("/", 1)[1],
                  container=f"day-two-{uuid.uuid4().hex[:8]}", data={})
    conn.put_container(box.container)
    rng = random.Random()
    for i in range(OBJECT_COUNT):
        box.data[f"obj-{i:03d}"] = rng.randbytes(rng.randint(1, 4096))
        conn.put_object(box.container, f"obj-{i:03d}", box.data[f"obj-{i:03d}"])
    return box


class Reader(threading.Thread):
    """Reads every object in a loop until stopped; records each failed or wrong read."""

    def __init__(self, box):
        super().__init__(daemon=True)
        self.box, self.failures, self.reads = box, [], 0
        self._stop_event = threading.Event()

    def run(self):
        from swiftclient.exceptions import ClientException

        conn = connection()
        while not self._stop_event.is_set():
            for name, data in self.box.data.items():
                try:
                    got = conn.get_object(self.box.container, name)[1]
                    if got != data:
                        self.failures.append((time.strftime("%T"), name, "wrong bytes"))
                except (ClientException, OSError) as exc:  # requests' errors are OSErrors
                    self.failures.append((time.strftime("%T"), name, f"{type(exc).__name__}: "
                                          f"{str(exc)[:120]}"))
                self.reads += 1
                if self._stop_event.is_set():
                    return

    def stop(self):
        self._stop_event.set()
        self.join(timeout=60)


@contextlib.contextmanager
def reading(box):
    reader = Reader(box)
    reader.start()
    try:
        yield reader
    finally:
        reader.stop()


def replica_report(box):
    """``{name: [primary paths lacking a .data file]}`` for objects short of 3 replicas,
    placed by the controller's object ring (what every node has)."""
    from swift.common.ring import Ring
    from swift.common.utils import hash_path

    ring = Ring(str(BUILDER_DIR), ring_name="object")
    hosts = {ip: host for host, ip in NODES.items()}
    short = {}
    for name in box.data:
        part, nodes = ring.get_nodes(box.account, box.container, name)
        digest = hash_path(box.account, box.container, name)
        lacking = [str(path) for node in nodes
                   if not any((path := node_paths(hosts[node["ip"]])["devices"] / node["device"]
                               / "objects" / str(part) / digest[-3:] / digest).glob("*.data"))]
        if len(nodes) != 3 or lacking:
            short[name] = lacking or [f"{len(nodes)} primaries"]
    return short


def swift_files(host):
    root = node_paths(host)["devices"]
    return [str(p) for p in root.rglob("*") if p.suffix in DATA_SUFFIXES and p.is_file()]


def ring_devices(ring_name):
    from swift.common.ring import RingBuilder

    builder = RingBuilder.load(str(BUILDER_DIR / f"{ring_name}.builder"))
    return {(d["ip"], d["device"]): d for d in builder.devs if d is not None}


def ok(proc):
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout)


# ---------------------------------------------------------------------------------------------
# Tests


def test_refuses_a_host_that_is_not_a_storage_node(controller):
    proc = controller("storage", "decommission", "controller")

    assert proc.returncode == 3
    assert "not a storage node" in proc.stderr


def test_a_failed_device_is_replaced_and_refilled_while_every_object_stays_readable(
        cluster4, controller, objects):
    mount = node_paths("s4node2")["devices"] / "d1"
    loop_file = node_paths("s4node2")["loops"] / "d1.img"
    old_inode = loop_file.stat().st_ino
    with reading(objects) as reader:
        # The disk "fails": its data is gone (replicators may be writing into it meanwhile).
        for sub in ("objects", "containers", "accounts"):
            shutil.rmtree(mount / sub, ignore_errors=True)
        result = ok(controller("storage", "device", "replace", "s4node2", "d1", "-o", "json"))

    assert result["status"] == "done"
    assert [s["step"] for s in result["steps"]] == ["remove", "converge-1", "prepare", "add",
                                                   "converge-2"]
    assert reader.failures == [], reader.failures[:5]
    assert reader.reads >= OBJECT_COUNT
    assert loop_file.stat().st_ino != old_inode, "the device was not replaced by a new file"
    devices = ring_devices("object")
    assert devices[(NODES["s4node2"], "d1")]["weight"] == 100
    assert devices[(NODES["s4node2"], "d1")]["parts"] > 0
    assert replica_report(objects) == {}


def test_a_node_is_decommissioned_killed_half_way_resumed_and_nothing_is_lost(
        cluster4, controller, objects):
    leaving = NODES["s4node4"]
    assert swift_files("s4node4"), "the leaving node held nothing to begin with"
    with reading(objects) as reader:
        killed = controller("storage", "decommission", "s4node4", "-o", "json",
                            extra_env={"STACKCTL_CRASH_AT": "converge-2"})
        busy = controller("storage", "device", "replace", "s4node1", "d1")
        result = ok(controller("storage", "decommission", "s4node4", "--resume", "-o", "json"))

    assert killed.returncode == -9
    assert busy.returncode == 4 and "storage.decommission s4node4" in busy.stderr, busy.stderr
    assert result["status"] == "done"
    assert [s["step"] for s in result["steps"]] == ["converge-2", "weight-3", "converge-3"]
    assert "weights of s4node4 -> 50" in killed.stderr and "-> 25" in killed.stderr
    assert "replication converged" in killed.stderr + result_notes(result)
    assert reader.failures == [], reader.failures[:5]
    assert reader.reads >= OBJECT_COUNT
    for ring in ("account", "container", "object"):
        assert not [key for key in ring_devices(ring) if key[0] == leaving], ring
    assert swift_files("s4node4") == []
    assert replica_report(objects) == {}
    assert result["inventory"]["remove_from_groups"] == ["storage_nodes"]


def result_notes(result):
    return "\n".join(result.get("notes") or [])


def test_decommission_refuses_to_leave_fewer_zones_than_replicas(controller):
    proc = controller("storage", "decommission", "s4node3")

    assert proc.returncode == 4
    assert "without s4node3 the" in proc.stderr and "fewer than its 3 replicas" in proc.stderr


def test_decommission_refuses_a_host_in_no_ring(controller):
    proc = controller("storage", "decommission", "s4node4")

    assert proc.returncode == 3
    assert "has no device in any ring" in proc.stderr


def test_every_node_ends_with_the_builders_rings(cluster4):
    for ring in ("account", "container", "object"):
        builder = (BUILDER_DIR / f"{ring}.ring.gz").read_bytes()
        for host in NODES:
            assert (node_paths(host)["conf"] / f"{ring}.ring.gz").read_bytes() == builder, host
