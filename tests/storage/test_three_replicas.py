"""A three-replica Swift on three loopback "nodes" (inventories/storage3), deployed by site.yml:
re-deploys change nothing, every node has the builder's rings, objects survive an object server
going down and get their third replica back, and a device added to a node takes partitions
without losing an object. The ``cluster`` fixture (conftest.py) deploys it and destroys it.

The tests run in file order and share the cluster and its objects.
"""

import hashlib
import random
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

RINGS = ("account", "container", "object")
OBJECT_COUNT = 100
MAX_SIZE = 256 * 1024


@dataclass
class Container:
    """A container of the service account and what its objects must hold."""

    account: str
    name: str
    objects: dict = field(repr=False)


@pytest.fixture(scope="module")
def container(cluster):
    """A fresh container with OBJECT_COUNT objects of random bytes (1 B to 256 KiB). Tests
    add the objects they write to ``objects``."""
    conn = cluster.connection()
    box = Container(account=conn.account(), name=f"replicas-{uuid.uuid4().hex[:8]}", objects={})
    conn.put_container(box.name)
    rng = random.Random()
    for i in range(OBJECT_COUNT):
        data = rng.randbytes(rng.randint(1, MAX_SIZE))
        box.objects[f"obj-{i:03d}"] = data
        conn.put_object(box.name, f"obj-{i:03d}", data)
    return box


def read_back(conn, box):
    """Names of the objects that do not read back byte for byte (or not at all)."""
    return [name for name, data in box.objects.items() if conn.get_object(box.name, name) != data]


def missing_replicas(cluster, box):
    """``name -> [replica paths without a .data file]`` for each object short of replicas,
    placed by swift1's object ring (Swift's Ring; the hash from /etc/swift/swift.conf)."""
    from swift.common.ring import Ring
    from swift.common.utils import hash_path

    ring = Ring(str(cluster.paths("swift1")["conf"]), ring_name="object")
    hosts = {ip: host for host, ip in cluster.nodes.items()}
    missing = {}
    for name in box.objects:
        part, nodes = ring.get_nodes(box.account, box.name, name)
        digest = hash_path(box.account, box.name, name)
        lacking = []
        for node in nodes:
            path = (cluster.paths(hosts[node["ip"]])["devices"] / node["device"] / "objects"
                    / str(part) / digest[-3:] / digest)
            if not any(path.glob("*.data")):
                lacking.append(str(path))
        if len(nodes) != 3 or lacking:
            missing[name] = lacking or [f"{len(nodes)} primary nodes"]
    return missing


def replicate_until_complete(cluster, box, timeout=180):
    """Run one object replication pass on every node until every object has its 3 replicas
    where the ring places them."""
    state = {}

    def complete():
        for host in cluster.nodes:
            cluster.replicate(host)
        state["missing"] = missing_replicas(cluster, box)
        return not state["missing"]

    def short():
        name, lacking = next(iter(state["missing"].items()))
        return (f"3 replicas of every object; {len(state['missing'])} short, "
                f"e.g. {name}: {lacking}")

    cluster.wait_for(complete, timeout, short, interval=1)


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_second_deploy_reports_no_change(cluster):
    run = cluster.deploy()

    assert run.changed, "no PLAY RECAP in the playbook's output"
    assert run.changed == dict.fromkeys(run.changed, 0)
    assert set(cluster.nodes) | {"controller"} <= set(run.recap)


def test_every_node_has_the_builders_rings(cluster):
    for ring in RINGS:
        builder = sha256(cluster.builder_dir / f"{ring}.ring.gz")
        on_nodes = {host: sha256(cluster.paths(host)["conf"] / f"{ring}.ring.gz")
                    for host in cluster.nodes}

        assert on_nodes == dict.fromkeys(cluster.nodes, builder), f"{ring} ring"


def test_every_device_is_mounted_with_one_fstab_line(cluster):
    mounted = {line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()}
    fstab = [line.split() for line in Path("/etc/fstab").read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    for host in cluster.nodes:
        point = str(cluster.paths(host)["devices"] / "d1")

        assert point in mounted
        assert [f[1] for f in fstab if len(f) > 1].count(point) == 1, f"fstab lines for {point}"


def test_objects_survive_a_stopped_object_server_and_get_their_replicas_back(cluster, container):
    conn = cluster.connection()
    cluster.stop_daemon("swift2", "object-server")
    cluster.wait_for(lambda: not cluster.listening("swift2", 6200), 30,
                     "swift2's object port to close")

    assert read_back(conn, container) == []
    written_meanwhile = random.randbytes(64 * 1024)
    conn.put_object(container.name, "written-while-swift2-is-down", written_meanwhile)
    container.objects["written-while-swift2-is-down"] = written_meanwhile

    assert cluster.start_daemon("swift2", "object-server", "object")
    cluster.wait_for(lambda: cluster.listening("swift2", 6200), 30, "swift2's object server")
    replicate_until_complete(cluster, container)
    assert read_back(conn, container) == []


def test_an_added_device_takes_partitions_and_every_object_stays(
        cluster, container, extra_device_inventory):
    from swift.common.ring import RingBuilder

    conn = cluster.connection()

    cluster.deploy(inventory=extra_device_inventory)

    builder = RingBuilder.load(str(cluster.builder_dir / "object.builder"))
    devices = {(d["ip"], d["device"]): d["parts"] for d in builder.devs if d is not None}
    assert len(devices) == 4
    assert devices[(cluster.nodes["swift3"], "d2")] > 0
    rings = {sha256(cluster.paths(host)["conf"] / "object.ring.gz") for host in cluster.nodes}
    assert rings == {sha256(cluster.builder_dir / "object.ring.gz")}
    replicate_until_complete(cluster, container)
    # The proxy reloads a changed ring within 15 s; until then it may look in the old places.
    state = {}

    def all_read_back():
        state["bad"] = read_back(conn, container)
        return not state["bad"]

    cluster.wait_for(all_read_back, 60, lambda: f"every object to read back; not: {state['bad']}",
                     interval=1)
