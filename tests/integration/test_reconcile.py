"""stackctl reconcile on the deployed all-in-one: drift injected with virsh is found, --fix
repairs it for real, and what must not be touched (a stray domain) is left alone.

Other engineers' domains come and go on this libvirtd: assertions look at this test's objects
only, and nothing here touches a domain, cached image or ring file the test did not make.
"""

import json
import shutil
import sqlite3
import subprocess
import uuid
from pathlib import Path

import pytest

from .conftest import INSTANCES, PROJECT, domain_names

pytestmark = pytest.mark.slow

VIRSH = ["virsh", "-c", "qemu:///system"]
BUILDER = Path("/etc/stackctl/swift/aio")
DRIFT_EXIT = 6


def virsh(*args, check=True):
    return subprocess.run([*VIRSH, *args], capture_output=True, text=True, check=check)


def domstate(name):
    return virsh("domstate", name).stdout.strip()


def reconcile(cli, *args, **env):
    proc = cli.run("reconcile", *args, "-o", "json", check=False, **env)
    assert proc.returncode in (0, DRIFT_EXIT), proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def mine(items, objects):
    return {item["object"]: item for item in items if item["object"] in objects}


def db_query(cli, sql, *params):
    with sqlite3.connect(cli.home / "stackctl.db") as conn:
        return conn.execute(sql, params).fetchall()


def fake_cached_image(cli):
    """A host_images row for an image the host's cache does not hold (the shared cache is
    never touched)."""
    sha = uuid.uuid4().hex * 2
    assert not (INSTANCES.parent / "images" / sha).exists()
    db_query(cli, "INSERT INTO host_images (host_id, sha256, cached_at) "
                  "SELECT id, ?, '2026-01-01 00:00:00.000000' FROM hosts WHERE name = 'aio'", sha)
    return sha


@pytest.fixture
def stray_domain(tmp_path):
    """A tiny domain defined outside stackctl (no disk, never started); undefined after."""
    name = f"reconcile-stray-{uuid.uuid4().hex[:8]}"
    xml = tmp_path / "stray.xml"
    xml.write_text(f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>32</memory>"
                   "<os><type arch='x86_64'>hvm</type></os></domain>")
    virsh("define", str(xml))
    yield name
    if name in domain_names():
        virsh("undefine", name)


def test_reconcile_finds_drift_injected_with_virsh_and_fixes_it(cli, tenant_key,
                                                                imported_image, stray_domain):
    for name in ("drift-off", "drift-gone"):
        cli.run("vm", "create", name, "--image", imported_image, "--flavor", "m1.nano",
                "--key", "k1", "--no-wait")
    off, gone = (cli.json("vm", "show", n) for n in ("drift-off", "drift-gone"))
    off_domain, gone_domain = f"stk-{off['uuid']}", f"stk-{gone['uuid']}"
    tenant = cli.tenant
    objects = {f"{tenant}/drift-off", f"{tenant}/drift-gone", stray_domain}

    _rc, items = reconcile(cli)
    assert set(mine(items, objects)) == {stray_domain}, "drift before any was injected"

    virsh("destroy", off_domain)                 # power-state: recorded running, shut off
    virsh("destroy", gone_domain)
    virsh("undefine", gone_domain)               # missing-domain: its disk stays
    assert (INSTANCES / gone_domain / "disk.qcow2").is_file()
    sha = fake_cached_image(cli)                 # image-cache: recorded, not in the cache
    objects.add(sha)

    rc, items = reconcile(cli)
    assert rc == DRIFT_EXIT
    found = {o: (i["host"], i["kind"], i["fix"]) for o, i in mine(items, objects).items()}
    assert found == {
        f"{tenant}/drift-off": ("aio", "power-state", "record-state"),
        f"{tenant}/drift-gone": ("aio", "missing-domain", "redefine"),
        stray_domain: ("aio", "unknown-domain", None),
        sha: ("aio", "image-cache", "forget-image"),
    }
    assert cli.json("vm", "show", "drift-off")["state"] == "running"  # a report changes nothing

    rc, items = reconcile(cli, "--fix")
    assert rc == DRIFT_EXIT  # the stray domain is never fixed
    fixed = {o: (i["fixed"], i["action"]) for o, i in mine(items, objects).items()}
    assert fixed[stray_domain] == (False, None)
    assert all(ok for o, (ok, _action) in fixed.items() if o != stray_domain), fixed

    # The fixes happened for real: the state recorded (the VM was not started) ...
    assert cli.json("vm", "show", "drift-off")["state"] == "stopped"
    assert domstate(off_domain) == "shut off"
    # ... the missing domain defined again on its disk, in the recorded power state ...
    info = virsh("dominfo", gone_domain).stdout
    assert "State:          running" in info and gone["uuid"] in info
    assert cli.json("vm", "show", "drift-gone")["state"] == "running"
    # ... the lost image forgotten, and the stray domain left alone.
    assert db_query(cli, "SELECT 1 FROM host_images WHERE sha256 = ?", sha) == []
    assert stray_domain in domain_names()
    recorded = cli.json("recover")
    assert recorded == [] or all(r["kind"] != "reconcile" for r in recorded)

    _rc, items = reconcile(cli)
    assert set(mine(items, objects)) == {stray_domain}

    virsh("undefine", stray_domain)
    rc, items = reconcile(cli)
    assert mine(items, objects) == {}
    others = [i for i in items if i["kind"] != "unknown-domain"]
    assert others == [], others  # only other engineers' domains may remain
    assert rc == (0 if not items else DRIFT_EXIT)


def private_inventory(tmp_path, swift_conf_dir):
    """The aio inventory with the Swift hosts' ring directory moved to ``swift_conf_dir``, so
    a ring mismatch can be made and fixed without touching the shared Swift's rings."""
    inventory = tmp_path / "inventory"
    shutil.copytree(PROJECT / "inventories" / "aio", inventory)
    with (inventory / "host_vars" / "aio.yml").open("a") as handle:
        handle.write(f"swift_conf_dir: {swift_conf_dir}\n")
    return inventory / "hosts.yml"


def test_reconcile_copies_a_differing_ring_from_the_builder(cli, tmp_path):
    builder = BUILDER  # swift_cluster_name aio (inventories/aio)
    if not (builder / "object.ring.gz").is_file():
        pytest.skip("object storage is not deployed on this machine")
    rings = tmp_path / "swift"
    rings.mkdir()
    shutil.copy(builder / "account.ring.gz", rings)             # same
    (rings / "object.ring.gz").write_bytes(b"not the builder's")  # differs; container: missing
    env = {"STACKCTL_INVENTORY": str(private_inventory(tmp_path, rings))}

    rc, items = reconcile(cli, **env)
    assert rc == DRIFT_EXIT
    drift = sorted((i["object"], i["detail"]) for i in items if i["kind"] == "ring-mismatch")
    assert drift == [("container ring", "missing (the controller's builder has it)"),
                     ("object ring", "differs from the controller's builder")]

    rc, items = reconcile(cli, "--fix", **env)
    assert all(i["fixed"] for i in items if i["kind"] == "ring-mismatch")
    for ring in ("account", "container", "object"):
        assert (rings / f"{ring}.ring.gz").read_bytes() == \
            (builder / f"{ring}.ring.gz").read_bytes()

    _rc, items = reconcile(cli, **env)
    assert [i for i in items if i["kind"] == "ring-mismatch"] == []
