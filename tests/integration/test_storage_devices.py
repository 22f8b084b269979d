"""`stackctl storage` end to end: status from the all-in-one's recon, and devices that come and
go through stack_storage_device and stack_ring, rings copied to the nodes.

The all-in-one keeps one replica of real data on d1, so the device added to it there has weight
0: it takes no partitions, nothing moves onto it, and wiping it cannot lose an object. Partitions
that really move, and min_part_hours holding them, are tested on a scratch cluster: this
machine again, with its own builders, configuration directory, devices root and loop files
under the test's directory (the all-in-one's servers never read them).
"""

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from .conftest import PROJECT, Cli

LOOP_DIR = Path("/var/lib/stackctl/swift")
DEVICES_ROOT = Path("/srv/node")


@pytest.fixture
def stackctl(tmp_path):
    """The CLI in a private home, on the default (all-in-one) inventory; no tenant needed."""
    return Cli(home=tmp_path / "home")


def mounted(path):
    with open("/proc/mounts") as handle:
        return any(line.split()[1] == str(path) for line in handle)


def devices(cli, **env):
    return sorted((d["host"], d["device"], d["weight"], d["parts"])
                  for d in cli.json("storage", "device", "list", **env))


def aio_row(cli):
    rows = {r["host"]: r for r in cli.json("storage", "status")}
    return rows["aio"]


def test_status_and_a_device_that_comes_and_goes_on_the_all_in_one(stackctl):
    row = aio_row(stackctl)
    assert (row["status"], row["rings"]) == ("ok", "ok"), row
    assert "d1" in row["mounted"] and row["devices_mounted"] == row["devices_total"]
    before = devices(stackctl)
    assert ("aio", "d1", 100.0, 1024) in before
    try:
        added = stackctl.json("storage", "device", "add", "aio", "d9", "--size-gb", "1",
                              "--weight", "0")
        assert [r["parts_moved"] for r in added["rings"]] == [0, 0, 0]
        assert added["mount_point"] == str(DEVICES_ROOT / "d9")
        assert ("aio", "d9", 0.0, 0) in devices(stackctl)
        row = aio_row(stackctl)
        assert (row["status"], row["rings"], row["devices"]) == ("ok", "ok", "2/2"), row
        assert {"d1", "d9"} <= set(row["mounted"])

        reweighted = stackctl.json("storage", "device", "set-weight", "aio", "d9", "0")
        assert [r["note"] for r in reweighted["rings"]] == ["no change"] * 3
        rebalanced = stackctl.json("storage", "rebalance")
        assert rebalanced["copied_to"] == ["aio"]

        removed = stackctl.json("storage", "device", "remove", "aio", "d9", "--wipe")
        assert [r["parts_moved"] for r in removed["rings"]] == [0, 0, 0]
        assert devices(stackctl) == before
        assert not mounted(DEVICES_ROOT / "d9")
        assert not (LOOP_DIR / "d9.img").exists()
        assert not (DEVICES_ROOT / "d9").exists()
        row = aio_row(stackctl)
        assert (row["status"], row["rings"], row["devices"]) == ("ok", "ok", "1/1"), row
    finally:
        if mounted(DEVICES_ROOT / "d9") or (LOOP_DIR / "d9.img").exists() \
                or "d9" in {d[1] for d in devices(stackctl)}:
            stackctl.run("storage", "device", "remove", "aio", "d9", "--wipe", "--force",
                         check=False)


def test_inventory_devices_are_left_to_the_inventory(stackctl):
    proc = stackctl.run("storage", "device", "remove", "aio", "d1", check=False)
    assert proc.returncode == 4
    assert proc.stderr.strip() == ("stackctl: error: device d1 of aio is listed in the "
                                   "inventory's swift_devices: remove it from the inventory first")


# --- a scratch cluster, where partitions may move ------------------------------------------------


@pytest.fixture
def scratch(tmp_path):
    """A one-node cluster on this machine whose files all live under tmp_path: rings of 256
    partitions with d1 (weight 100) and min_part_hours 0, built by stack_ring."""
    root = tmp_path / "scratch"
    paths = {name: root / name for name in ("builders", "etc", "node", "loop")}
    for path in paths.values():
        path.mkdir(parents=True)
    inventory = root / "hosts.yml"
    node = {"swift_ip": "127.0.0.1", "swift_devices": [{"name": "d1", "size_gb": 8}],
            "swift_builder_dir": str(paths["builders"]), "swift_conf_dir": str(paths["etc"]),
            "swift_devices_root": str(paths["node"]), "swift_loop_dir": str(paths["loop"])}
    inventory.write_text(yaml.safe_dump({"all": {
        "vars": {"ansible_connection": "local",
                 "ansible_python_interpreter": "{{ ansible_playbook_python }}"},
        "children": {"controllers": {"hosts": {"aio": None}},
                     "storage_nodes": {"hosts": {"aio": node}},
                     "proxies": {"hosts": {"aio": None}}}}}))
    d1 = {"zone": 1, "ip": "127.0.0.1", "device": "d1", "weight": 100}
    ring_play(inventory, root, [
        {"name": ring, "swift_dir": str(paths["builders"]), "part_power": 8, "replicas": 1,
         "min_part_hours": 0, "devices": [{**d1, "port": port}]}
        for ring, port in (("account", 6202), ("container", 6201), ("object", 6200))])
    cli = Cli(home=tmp_path / "home")
    env = {"STACKCTL_INVENTORY": str(inventory)}
    yield cli, env, inventory, paths
    if mounted(paths["node"] / "d9") or (paths["loop"] / "d9.img").exists():
        cli.run("storage", "device", "remove", "aio", "d9", "--wipe", "--force", check=False,
                **env)
    play(inventory, root, [{"stack_storage_device": {
        "name": "d9", "state": "absent", "mount_root": str(paths["node"]),
        "loop_file": str(paths["loop"] / "d9.img")}}])


def ring_play(inventory, root, calls):
    play(inventory, root, [{"stack_ring": args} for args in calls])


def play(inventory, root, tasks):
    """Run ``tasks`` on aio with ansible-playbook (Swift stays in that process, not this one)."""
    playbook = root / "play.yml"
    playbook.write_text(json.dumps([{"hosts": "aio", "gather_facts": False, "tasks": tasks}]))
    env = dict(os.environ, ANSIBLE_CONFIG=str(PROJECT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    proc = subprocess.run([str(PROJECT / ".venv/bin/ansible-playbook"), "-i", str(inventory),
                           str(playbook)], cwd=PROJECT, env=env, capture_output=True, text=True,
                          check=False, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]


def test_partitions_move_to_a_new_device_and_min_part_hours_holds_them(scratch):
    cli, env, inventory, paths = scratch
    added = cli.json("storage", "device", "add", "aio", "d9", "--size-gb", "1", "--weight", "1",
                     **env)
    moved = {r["ring"]: r["parts_moved"] for r in added["rings"]}
    assert all(n > 0 for n in moved.values()), moved
    assert mounted(paths["node"] / "d9")
    for ring in ("account", "container", "object"):
        assert (paths["etc"] / f"{ring}.ring.gz").read_bytes() == \
            (paths["builders"] / f"{ring}.ring.gz").read_bytes()
    held = dict((d[1], d[3]) for d in devices(cli, **env))
    assert held["d9"] == moved["object"] and held["d1"] == 256 - moved["object"]

    # From now on a partition that moved stays put for an hour: draining d9 cannot start yet.
    ring_play(inventory, paths["builders"].parent, [
        {"name": ring, "swift_dir": str(paths["builders"]), "min_part_hours": 1}
        for ring in ("account", "container", "object")])
    drained = cli.json("storage", "device", "set-weight", "aio", "d9", "0", **env)
    assert [(r["parts_moved"], r["min_part_hours_blocked"]) for r in drained["rings"]] == \
        [(0, True)] * 3
    assert all("rebalance again in" in r["note"] for r in drained["rings"])
    again = cli.json("storage", "rebalance", **env)
    assert [r["parts_moved"] for r in again["rings"]] == [0, 0, 0]
    assert all("may move again in" in r["note"] for r in again["rings"])
    assert ("aio", "d9", 0.0, moved["object"]) in devices(cli, **env)

    refused = cli.run("storage", "device", "remove", "aio", "d9", "--wipe", check=False, **env)
    assert refused.returncode == 4
    assert "still has partitions in its rings" in refused.stderr
    assert mounted(paths["node"] / "d9")

    # Removing ignores min_part_hours: the partitions go back to d1.
    removed = cli.json("storage", "device", "remove", "aio", "d9", "--wipe", "--force", **env)
    assert {r["ring"]: r["parts_moved"] for r in removed["rings"]} == moved
    assert devices(cli, **env) == [("aio", "d1", 100.0, 256)]
    assert not mounted(paths["node"] / "d9")
    assert not (paths["loop"] / "d9.img").exists()
    assert not (paths["node"] / "d9").exists()
