"""stackcore.vm: the plan as a table (current, desired -> actions), then the whole reconcile
against libvirt's test driver (private state per test, real qemu-img on tmp files)."""

import dataclasses
import os
import subprocess
import threading
import time

import pytest
from stackcore.domain import DomainSpec, mac_for
from stackcore.errors import Conflict, InvalidInput, NotFound
from stackcore.vm import VmRequest, ensure_vm
from stackcore.vm_lock import acquire, lock_path
from stackcore.vm_plan import (
    GIB,
    DiskInfo,
    VmDesired,
    VmPaths,
    VmState,
    expected_view,
    plan_vm,
    state_view,
)

VM_UUID = "6f1c2a4e-0d7a-4b7e-9a51-2f3c4d5e6f70"
NAME = f"stk-{VM_UUID}"
PATHS = VmPaths("/var/lib/stackctl/instances", NAME)
IMAGE = "/var/lib/stackctl/images/abc"
SPEC = DomainSpec(name=NAME, uuid=VM_UUID, vcpus=1, memory_mb=128, virt_type="qemu",
                  disk=PATHS.disk, network="stack-provider", mac=mac_for(VM_UUID),
                  seed=PATHS.seed, console_log=PATHS.console_log)
BIGGER = dataclasses.replace(SPEC, memory_mb=256)
SEED = b"seed-v1"
SEED_DIGEST = VmDesired("running", seed=SEED).seed_digest
BASE = DiskInfo(virtual_bytes=GIB // 2, format="qcow2")
DISK_1G = DiskInfo(virtual_bytes=GIB, format="qcow2", backing=IMAGE)
DISK_2G = DiskInfo(virtual_bytes=2 * GIB, format="qcow2", backing=IMAGE)


def cur(power="absent", spec=SPEC, disk=DISK_1G, seed=SEED_DIGEST, dir_exists=True,
        image=BASE, persistent=True):
    """A VmState; an absent domain has no spec."""
    return VmState(power=power, spec=None if power == "absent" else spec,
                   live_spec=None if power == "absent" else spec, persistent=persistent,
                   dir_exists=dir_exists, disk=disk, seed_digest=seed, image=image)


NOTHING = cur(disk=None, seed=None, dir_exists=False)


def want(state, spec=SPEC, disk_gb=1, seed=SEED, image=IMAGE, image_format="qcow2"):
    return VmDesired(state=state, spec=spec, disk_bytes=disk_gb * GIB, image=image,
                     image_format=image_format, seed=seed)


def power_only(state):
    return VmDesired(state=state)


PLANS = [
    # --- creating
    ("new, running", NOTHING, want("running"),
     ["make_dir", "create_disk", "write_seed", "define", "start"]),
    ("new, present: defined but left off", NOTHING, want("present"),
     ["make_dir", "create_disk", "write_seed", "define"]),
    ("new, stopped", NOTHING, want("stopped"),
     ["make_dir", "create_disk", "write_seed", "define"]),
    ("files of a killed create are reused", cur("absent"), want("running"), ["define", "start"]),
    ("disk of a killed create, seed missing", cur("absent", seed=None), want("running"),
     ["write_seed", "define", "start"]),
    # --- nothing to do
    ("running as wanted", cur("running"), want("running"), []),
    ("stopped as wanted", cur("stopped"), want("stopped"), []),
    ("present leaves running alone", cur("running"), want("present"), []),
    ("present leaves stopped alone", cur("stopped"), want("present"), []),
    # --- power
    ("start a stopped VM", cur("stopped"), want("running"), ["start"]),
    ("stop a running VM", cur("running"), want("stopped"), ["shutdown"]),
    ("resume a paused VM", cur("paused"), want("running"), ["resume"]),
    ("a paused VM cannot hear ACPI", cur("paused"), want("stopped"), ["destroy_force"]),
    ("restart a crashed VM", cur("crashed"), want("running"), ["destroy_force", "start"]),
    # --- changes
    ("memory change on a running VM: persistent only", cur("running"), want("running", BIGGER),
     ["define"]),
    ("memory change while stopping: stop first", cur("running"), want("stopped", BIGGER),
     ["shutdown", "define"]),
    ("memory change on a stopped VM, then start", cur("stopped"), want("running", BIGGER),
     ["define", "start"]),
    ("seed content changed", cur("running"), want("running", seed=b"seed-v2"), ["write_seed"]),
    ("transient domain becomes persistent", cur("running", persistent=False), want("running"),
     ["define"]),
    ("grow while running", cur("running"), want("running", disk_gb=2), ["grow_disk"]),
    ("grow while stopping: offline", cur("running"), want("stopped", disk_gb=2),
     ["shutdown", "grow_disk"]),
    ("instance dir lost", cur("stopped", dir_exists=False, disk=None, seed=None),
     want("stopped"), ["make_dir", "create_disk", "write_seed"]),
    # --- power only (no spec given)
    ("power only: start", cur("stopped"), power_only("running"), ["start"]),
    ("power only: stop", cur("running"), power_only("stopped"), ["shutdown"]),
    ("power only: present", cur("running"), power_only("present"), []),
    # --- absent
    ("absent: running VM", cur("running"), want("absent"),
     ["destroy_force", "undefine", "remove_files"]),
    ("absent: stopped VM", cur("stopped"), want("absent"), ["undefine", "remove_files"]),
    ("absent: paused VM", cur("paused"), want("absent"),
     ["destroy_force", "undefine", "remove_files"]),
    ("absent: transient running VM", cur("running", persistent=False), want("absent"),
     ["destroy_force", "remove_files"]),
    ("absent: only files left", cur("absent"), want("absent"), ["remove_files"]),
    ("absent: nothing there", NOTHING, want("absent"), []),
    ("absent, power only", cur("stopped"), power_only("absent"), ["undefine", "remove_files"]),
]


@pytest.mark.parametrize("current, desired, kinds",
                         [pytest.param(c, d, k, id=i) for i, c, d, k in PLANS])
def test_plan(current, desired, kinds):
    assert [a.kind for a in plan_vm(current, desired)] == kinds


def test_every_action_says_why():
    for action in plan_vm(NOTHING, want("running")):
        assert action.reason
        assert str(action).startswith(action.kind + ": ")


def test_define_reason_names_the_changed_field():
    (action,) = plan_vm(cur("running"), want("running", BIGGER))
    assert action.reason == "spec changed: memory_mb 128 -> 256"


@pytest.mark.parametrize("current, online", [(cur("running"), True), (cur("stopped"), False)])
def test_grow_is_online_only_while_the_domain_runs(current, online):
    (action,) = plan_vm(current, want("present", disk_gb=3))
    assert action.args == {"size_bytes": 3 * GIB, "online": online}


def test_create_disk_gets_the_size():
    action = plan_vm(NOTHING, want("present", disk_gb=4))[1]
    assert action.kind == "create_disk"
    assert action.args == {"size_bytes": 4 * GIB}


ERRORS = [
    ("shrinking a disk", cur("stopped", disk=DISK_2G), want("stopped", disk_gb=1), InvalidInput,
     "refusing to shrink"),
    ("power only without a domain", NOTHING, power_only("running"), NotFound,
     "give vcpus, memory_mb, disk_gb and image"),
    ("name taken by another uuid", cur("stopped"),
     want("running", dataclasses.replace(SPEC, uuid="00000000-0000-0000-0000-000000000001")),
     Conflict, "exists with uuid"),
    ("disk based on another image", cur("stopped"), want("running", image="/other/img"),
     Conflict, "is based on"),
    ("base image missing", cur("absent", disk=None, image=None), want("running"), NotFound,
     "does not exist"),
    ("no image to create the disk from", NOTHING, want("running", image=None), InvalidInput,
     "image is required"),
    ("image larger than the disk", cur("absent", disk=None, image=DiskInfo(3 * GIB, "qcow2")),
     want("running", disk_gb=2), InvalidInput, "smaller than the image"),
    ("image of another format", NOTHING, want("running", image_format="raw"), InvalidInput,
     "is qcow2, not raw"),
    ("unknown state", NOTHING, want("rebooted"), InvalidInput, "invalid state"),
]


@pytest.mark.parametrize("current, desired, error, message",
                         [pytest.param(c, d, e, m, id=i) for i, c, d, e, m in ERRORS])
def test_plan_refuses(current, desired, error, message):
    with pytest.raises(error, match=message):
        plan_vm(current, desired)


def test_views_for_the_diff():
    before = state_view(cur("running"))
    assert before["state"] == "running" and before["memory_mb"] == 128
    assert before["disk_gb"] == 1 and before["seed_sha256"] == SEED_DIGEST
    desired = want("stopped", BIGGER, disk_gb=2)
    after = expected_view(cur("running"), desired, plan_vm(cur("running"), desired))
    assert after == {**before, "memory_mb": 256, "disk_gb": 2, "state": "stopped"}
    assert state_view(NOTHING) == {"state": "absent"}
    assert expected_view(cur("running"), want("absent"), []) == {"state": "absent"}
    assert expected_view(NOTHING, want("present"), [])["state"] == "stopped"
    assert expected_view(cur("paused"), power_only("present"), [])["state"] == "paused"


# ---------------------------------------------------------------- reconcile on the test driver

# ``conn``: libvirt's test driver with one network (conftest.py).


@pytest.fixture
def base_image(tmp_path):
    path = tmp_path / "base.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "64M"], check=True)
    return str(path)


@pytest.fixture
def request_for(tmp_path, base_image):
    def make(**overrides):
        params = dict(name=NAME, state="running", vcpus=1, memory_mb=128, disk_gb=1,
                      image=base_image, virt_type="qemu", network="testnet",
                      instance_dir=str(tmp_path / "instances"), uri="test:///unused",
                      wait_timeout=0, stop_timeout=5, ssh_authorized_keys=("ssh-ed25519 AAAA k",))
        params.update(overrides)
        return VmRequest(**params)
    return make


def test_check_mode_reports_the_plan_and_creates_nothing(conn, request_for):
    req = request_for()
    result = ensure_vm(req, check=True, conn=conn)
    assert result.changed
    assert [a.split(":")[0] for a in result.actions] == \
        ["make_dir", "create_disk", "write_seed", "define", "start"]
    assert result.diff["before"] == {"state": "absent"}
    assert result.diff["after"]["state"] == "running"
    assert result.vm["mac"] == mac_for(VM_UUID) and result.vm["uuid"] == VM_UUID
    assert conn.listAllDomains() == []
    assert not os.path.exists(req.instance_dir)


def test_create_then_second_apply_reports_no_change(conn, request_for):
    req = request_for()
    first = ensure_vm(req, conn=conn)
    assert first.changed and first.vm["state"] == "running"
    assert os.path.getsize(first.vm["disk"]) > 0 and os.path.exists(first.vm["seed"])
    assert oct(os.stat(os.path.dirname(first.vm["disk"])).st_mode & 0o777) == "0o755"
    assert first.diff["after"]["disk_gb"] == 1
    second = ensure_vm(req, conn=conn)
    assert not second.changed and second.actions == []
    assert second.diff["before"] == second.diff["after"]
    assert not ensure_vm(req, check=True, conn=conn).changed


def test_memory_change_on_a_running_vm_needs_a_restart(conn, request_for):
    ensure_vm(request_for(), conn=conn)
    result = ensure_vm(request_for(memory_mb=256), conn=conn)
    assert result.changed and result.restart_required
    assert result.diff["before"]["memory_mb"] == 128 and result.diff["after"]["memory_mb"] == 256
    again = ensure_vm(request_for(memory_mb=256), conn=conn)
    assert not again.changed and again.restart_required
    ensure_vm(request_for(memory_mb=256, state="stopped"), conn=conn)
    restarted = ensure_vm(request_for(memory_mb=256), conn=conn)
    assert restarted.changed and not restarted.restart_required


def test_stop_start_and_power_only_requests(conn, request_for):
    ensure_vm(request_for(), conn=conn)
    power = dict(name=NAME, instance_dir=request_for().instance_dir, stop_timeout=5,
                 wait_timeout=0)
    stopped = ensure_vm(VmRequest(state="stopped", **power), conn=conn)
    assert stopped.changed and stopped.vm["state"] == "stopped" and not stopped.forced
    assert not ensure_vm(VmRequest(state="stopped", **power), conn=conn).changed
    started = ensure_vm(VmRequest(state="running", **power), conn=conn)
    assert started.changed and started.vm["state"] == "running"
    assert started.vm["mac"] == mac_for(VM_UUID)


def test_new_user_data_rewrites_only_the_seed(conn, request_for):
    ensure_vm(request_for(), conn=conn)
    result = ensure_vm(request_for(user_data="#!/bin/sh\ntrue\n"), conn=conn)
    assert [a.split(":")[0] for a in result.actions] == ["write_seed"]
    assert result.diff["before"]["seed_sha256"] != result.diff["after"]["seed_sha256"]


def test_grow_disk_offline(conn, request_for):
    first = ensure_vm(request_for(state="stopped"), conn=conn)
    result = ensure_vm(request_for(state="stopped", disk_gb=2), conn=conn)
    assert result.changed and result.diff["after"]["disk_gb"] == 2
    out = subprocess.run(["qemu-img", "info", first.vm["disk"]], capture_output=True,
                         text=True, check=True).stdout
    assert "2 GiB" in out


def test_shrink_is_refused_and_nothing_changes(conn, request_for):
    ensure_vm(request_for(state="stopped", disk_gb=2), conn=conn)
    with pytest.raises(InvalidInput, match="shrink"):
        ensure_vm(request_for(state="stopped", disk_gb=1), conn=conn)
    assert not ensure_vm(request_for(state="stopped", disk_gb=2), conn=conn).changed


def test_absent_removes_everything_and_is_idempotent(conn, request_for):
    req = request_for()
    ensure_vm(req, conn=conn)
    gone = ensure_vm(dataclasses.replace(req, state="absent"), conn=conn)
    assert gone.changed and gone.vm["state"] == "absent"
    assert conn.listAllDomains() == []
    assert os.listdir(req.instance_dir) == []  # no instance dir, no lock file
    again = ensure_vm(dataclasses.replace(req, state="absent"), conn=conn)
    assert not again.changed
    assert os.listdir(req.instance_dir) == []


def test_absent_refuses_a_domain_with_another_uuid(conn, request_for):
    req = request_for(state="stopped")
    ensure_vm(req, conn=conn)
    other = "00000000-0000-0000-0000-000000000001"
    with pytest.raises(Conflict, match="not removing it"):
        ensure_vm(VmRequest(name=NAME, state="absent", uuid=other,
                            instance_dir=req.instance_dir), conn=conn)
    assert ensure_vm(VmRequest(name=NAME, state="absent", uuid=VM_UUID.upper(),
                               instance_dir=req.instance_dir), conn=conn).changed


def test_empty_strings_do_not_cause_a_redefine_every_run(conn, request_for):
    req = request_for(state="present", cmdline="", flavor="", tenant="")
    assert ensure_vm(req, conn=conn).changed
    assert not ensure_vm(req, conn=conn).changed


def test_missing_spec_parameters_are_named(conn, request_for):
    with pytest.raises(InvalidInput, match="missing disk_gb, image"):
        ensure_vm(request_for(disk_gb=None, image=None), conn=conn)


def test_uuid_comes_from_the_stk_name_and_hostname_from_vm_name(conn, request_for):
    result = ensure_vm(request_for(vm_name="web-1", state="present"), conn=conn)
    assert result.vm["uuid"] == VM_UUID
    from stackcore.seed import read_seed_files
    with open(result.vm["seed"], "rb") as fh:
        assert "local-hostname: web-1" in read_seed_files(fh.read())["meta-data"]


def test_missing_network_fails_before_anything_is_made(conn, request_for):
    req = request_for(network="nope")
    with pytest.raises(NotFound, match="network nope"):
        ensure_vm(req, conn=conn)
    assert conn.listAllDomains() == []
    assert not os.path.exists(os.path.join(req.instance_dir, NAME))


# ---------------------------------------------------------------- the per-domain lock


def test_a_held_lock_makes_others_wait_then_conflict(tmp_path):
    held = acquire(str(tmp_path), NAME, timeout=1)
    try:
        start = time.monotonic()
        with pytest.raises(Conflict, match="busy"):
            acquire(str(tmp_path), NAME, timeout=0.5)
        assert time.monotonic() - start >= 0.5
    finally:
        held.release()
    acquire(str(tmp_path), NAME, timeout=0).release()


def test_a_waiter_survives_the_holder_removing_the_lock_file(tmp_path):
    held = acquire(str(tmp_path), NAME, timeout=1)
    got = []
    waiter = threading.Thread(target=lambda: got.append(acquire(str(tmp_path), NAME, 5)))
    waiter.start()
    time.sleep(0.3)
    held.release(remove=True)  # what `absent` does
    waiter.join()
    lock = got[0]
    try:
        # the waiter holds the lock file that is on disk now, not the unlinked one
        assert os.path.exists(lock_path(str(tmp_path), NAME))
        with pytest.raises(Conflict):
            acquire(str(tmp_path), NAME, timeout=0.3)
    finally:
        lock.release()
