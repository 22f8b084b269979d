"""stackcore.vm_plan.plan_rebuild: a rebuild as a table (current, desired, token -> actions),
and the token file read and written by vm_ops."""

import os
import subprocess

import pytest
from stackcore.domain import DomainSpec, mac_for
from stackcore.errors import InvalidInput
from stackcore.vm import VmRequest, ensure_vm
from stackcore.vm_ops import ACTIONS, read_rebuild_token
from stackcore.vm_plan import GIB, DiskInfo, VmDesired, VmPaths, VmState, plan_rebuild

VM_UUID = "6f1c2a4e-0d7a-4b7e-9a51-2f3c4d5e6f70"
NAME = f"stk-{VM_UUID}"
PATHS = VmPaths("/var/lib/stackctl/instances", NAME)
IMAGE = "/var/lib/stackctl/images/abc"
OTHER_IMAGE = "/var/lib/stackctl/images/def"
SPEC = DomainSpec(name=NAME, uuid=VM_UUID, vcpus=1, memory_mb=128, virt_type="qemu",
                  disk=PATHS.disk, network="stack-provider", mac=mac_for(VM_UUID),
                  seed=PATHS.seed, console_log=PATHS.console_log)
SEED = b"seed-v1"
BASE = DiskInfo(virtual_bytes=GIB // 2, format="qcow2")
DISK = DiskInfo(virtual_bytes=GIB, format="qcow2", backing=IMAGE)


def cur(power, disk=DISK):
    return VmState(power=power, spec=None if power == "absent" else SPEC,
                   live_spec=None if power == "absent" else SPEC, dir_exists=True, disk=disk,
                   seed_digest=VmDesired("running", seed=SEED).seed_digest, image=BASE)


NOTHING = VmState(image=BASE)


def want(state, image=IMAGE):
    return VmDesired(state=state, spec=SPEC, disk_bytes=GIB, image=image,
                     image_format="qcow2", seed=SEED)

REBUILDS = [
    ("running VM: forced off, disk recreated, token, booted", cur("running"), want("running"),
     "t1", None,
     ["destroy_force", "remove_disk", "create_disk", "write_rebuild_token", "start"]),
    ("stopped VM stays stopped", cur("stopped"), want("stopped"), "t1", None,
     ["remove_disk", "create_disk", "write_rebuild_token"]),
    ("another image: no conflict over the old backing file", cur("running"),
     want("running", image=OTHER_IMAGE), "t1", None,
     ["destroy_force", "remove_disk", "create_disk", "write_rebuild_token", "start"]),
    ("crashed VM", cur("crashed"), want("running"), "t1", None,
     ["destroy_force", "remove_disk", "create_disk", "write_rebuild_token", "start"]),
    ("disk already gone (a rebuild killed halfway)", cur("stopped", disk=None), want("running"),
     "t1", None, ["create_disk", "write_rebuild_token", "start"]),
    ("same token again (a recovery): plain reconcile, no second wipe", cur("running"),
     want("running"), "t1", "t1", []),
    ("same token, VM left stopped: only started", cur("stopped"), want("running"), "t1", "t1",
     ["start"]),
    ("a new token after an old one", cur("running"), want("running"), "t2", "t1",
     ["destroy_force", "remove_disk", "create_disk", "write_rebuild_token", "start"]),
    ("no token: plain reconcile", cur("running"), want("running"), None, None, []),
]


@pytest.mark.parametrize("current, desired, token, seen, kinds",
                         [pytest.param(c, d, t, s, k, id=i) for i, c, d, t, s, k in REBUILDS])
def test_plan_rebuild(current, desired, token, seen, kinds):
    assert [a.kind for a in plan_rebuild(current, desired, token, seen)] == kinds


def test_nothing_to_rebuild_when_the_vm_does_not_exist():
    with pytest.raises(InvalidInput, match="nothing to rebuild"):
        plan_rebuild(NOTHING, want("running"), "t1", None)


def test_the_token_is_written_beside_the_disk_and_read_back(tmp_path):
    paths = VmPaths(str(tmp_path), "stk-x")
    (tmp_path / "stk-x").mkdir()
    assert read_rebuild_token(paths) is None

    class Ctx:
        pass

    ctx = Ctx()
    ctx.paths = paths
    ACTIONS["write_rebuild_token"](ctx, {"token": "t1"})
    assert read_rebuild_token(paths) == "t1"
    disk = tmp_path / "stk-x" / "disk.qcow2"
    disk.write_bytes(b"old data")
    ACTIONS["remove_disk"](ctx, {})
    assert not disk.exists()


# --- the whole reconcile against libvirt's test driver (real qemu-img on tmp files) ----------

# ``conn``: libvirt's test driver with one network (conftest.py).


def qcow2(path):
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "64M"], check=True)
    return str(path)


def request(tmp_path, image, **overrides):
    params = dict(name=NAME, state="running", vcpus=1, memory_mb=128, disk_gb=1, image=image,
                  virt_type="qemu", network="testnet", instance_dir=str(tmp_path / "i"),
                  uri="test:///unused", wait_timeout=0, stop_timeout=5)
    params.update(overrides)
    return VmRequest(**params)


def test_rebuild_recreates_the_disk_once_per_token_and_keeps_the_identity(conn, tmp_path):
    first_image, second_image = qcow2(tmp_path / "a.qcow2"), qcow2(tmp_path / "b.qcow2")
    made = ensure_vm(request(tmp_path, first_image), conn=conn)
    disk = made.vm["disk"]
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0xcc 0 1M", disk], check=True,
                   capture_output=True)
    written = os.path.getsize(disk)

    rebuilt = ensure_vm(request(tmp_path, second_image, rebuild_token="t1"), conn=conn)
    assert [a.split(":")[0] for a in rebuilt.actions] == [
        "destroy_force", "remove_disk", "create_disk", "write_rebuild_token", "start"]
    assert (rebuilt.vm["uuid"], rebuilt.vm["mac"]) == (made.vm["uuid"], made.vm["mac"])
    assert rebuilt.vm["state"] == "running"
    assert os.path.getsize(disk) < written  # a fresh overlay: the written MiB is gone
    info = subprocess.run(["qemu-img", "info", "-U", disk], capture_output=True, text=True,
                          check=True).stdout
    assert second_image in info

    again = ensure_vm(request(tmp_path, second_image, rebuild_token="t1"), conn=conn)
    assert not again.changed  # the same rebuild again (a recovery) wipes nothing


def test_rebuild_token_without_a_spec_is_refused(conn, tmp_path):
    with pytest.raises(InvalidInput, match="missing vcpus"):
        ensure_vm(VmRequest(name=NAME, rebuild_token="t1", instance_dir=str(tmp_path)),
                  conn=conn)
