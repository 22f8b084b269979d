"""vm resize/rebuild/snapshot/set-state: the pure plans as tables, validation through the CLI
(refusals touch nothing: no operation is even opened), and the recovery handlers' decisions
with a recording runner double (real workflows against libvirt: tests/integration)."""

import pytest
from sqlalchemy import func, select
from stackcore.errors import Conflict, InvalidInput

from stackctl.journal import current_owner, recover
from stackctl.models import VM, Flavor, Image, Operation
from stackctl.scheduler import HostState, Policy, Usage
from stackctl.workflows.vm_admin import (
    ADMIN_FAULT,
    ResizePlan,
    Size,
    check_fits,
    check_rebuild_image,
    plan_resize,
    plan_set_state,
    recorded_size,
    state_from_host,
)

from .conftest import add_host, insert_vm
from .test_journal import RecordingRunner, orphan

NANO, MICRO, SMALL = Size(1, 128, 1), Size(1, 256, 2), Size(1, 512, 5)


# --- plans -----------------------------------------------------------------------------------


@pytest.mark.parametrize("state,old,new,flavor,powers,restart", [
    ("running", NANO, MICRO, "m1.micro", ("stopped", "running"), True),
    ("stopped", NANO, MICRO, "m1.micro", ("stopped",), False),
    ("running", Size(1, 128, 1), Size(1, 128, 3), "big-disk", ("running",), False),
    ("running", Size(1, 128, 1), Size(2, 128, 1), "two-cpu", ("stopped", "running"), True),
])
def test_resize_plan_restarts_only_a_running_vm_whose_cpu_or_ram_changes(
        state, old, new, flavor, powers, restart):
    plan = plan_resize("web", state, old, "m1.nano", new, flavor)
    assert plan.powers() == powers
    assert plan.restart is restart


def test_shrinking_the_disk_is_refused():
    with pytest.raises(InvalidInput, match="refusing to shrink the disk of VM 'web' from 2 GiB "
                                           "to 1 GiB"):
        plan_resize("web", "running", MICRO, "m1.micro", NANO, "m1.nano")


@pytest.mark.parametrize("state", ["building", "deleting", "error"])
def test_only_running_or_stopped_vms_are_resized(state):
    with pytest.raises(Conflict, match=f"is {state}"):
        plan_resize("web", state, NANO, "m1.nano", MICRO, "m1.micro")


def test_resizing_to_the_same_flavor_is_refused():
    with pytest.raises(Conflict, match="already has flavor"):
        plan_resize("web", "running", NANO, "m1.nano", NANO, "m1.nano")


HOST = HostState("aio", vcpus=2, ram_mb=1000, disk_gb=10)
RATIO1 = Policy(cpu_allocation_ratio=1.0, ram_allocation_ratio=1.0, disk_allocation_ratio=1.0)


@pytest.mark.parametrize("usage,old,new,error", [
    (Usage(1, 128, 1, 1), NANO, MICRO, None),
    (Usage(1, 900, 1, 2), NANO, Size(1, 300, 1), "has 228 MiB RAM free"),
    (Usage(2, 128, 1, 1), Size(2, 128, 1), Size(3, 128, 1), "has 2 vCPU free"),
    (Usage(1, 128, 9, 2), NANO, Size(1, 128, 3), "has 2 GiB disk free"),
    # over its RAM ratio already, but this resize only grows the disk
    (Usage(1, 2000, 1, 2), NANO, Size(1, 128, 5), None),
])
def test_a_resize_must_fit_beside_the_hosts_other_vms(usage, old, new, error):
    plan = ResizePlan(old, new, "f", "running")
    if error is None:
        check_fits(HOST, usage, plan, RATIO1)
    else:
        with pytest.raises(Conflict, match=error):
            check_fits(HOST, usage, plan, RATIO1)


@pytest.mark.parametrize("fault,wanted,expected", [
    ("create failed: boom", "running", ("running", None)),
    ("create failed: boom", "stopped", ("stopped", None)),
    ("create failed: boom", "error", ("error", "create failed: boom")),
    (None, "error", ("error", ADMIN_FAULT)),
])
def test_set_state_clears_the_fault_unless_it_records_an_error(fault, wanted, expected):
    assert plan_set_state(fault, wanted) == expected


def test_set_state_refuses_other_states():
    with pytest.raises(InvalidInput):
        plan_set_state(None, "building")


@pytest.mark.parametrize("domains,expected", [
    ([{"name": "stk-x", "state": "running"}], ("running", None)),
    ([{"name": "stk-x", "state": "shut off"}], ("stopped", None)),
    ([{"name": "stk-y", "state": "running"}], ("error", "domain stk-x is missing on aio")),
])
def test_state_from_host(domains, expected):
    assert state_from_host(domains, "stk-x", "aio") == expected


@pytest.mark.parametrize("actual,which", [
    ({"vcpus": 1, "memory_mb": 256, "disk_gb": 2}, "new"),
    ({"vcpus": 1, "memory_mb": 128, "disk_gb": 1}, "old"),
    ({"vcpus": 1, "memory_mb": 128, "disk_gb": 2}, "mixed"),  # grown, not yet redefined
])
def test_an_interrupted_resize_records_what_is_there(actual, which):
    size, label = recorded_size(actual, NANO, MICRO)
    assert label == which
    assert size == Size(actual["vcpus"], actual["memory_mb"], actual["disk_gb"])


@pytest.mark.parametrize("fmt,status,virtual,error", [
    ("qcow2", "active", 1 << 30, None),
    ("aki", "active", None, "not a bootable disk image"),
    ("qcow2", "saving", None, "is saving, not active"),
    ("qcow2", "active", 3 << 30, "too small"),
])
def test_rebuild_needs_an_active_disk_image_that_fits(fmt, status, virtual, error):
    image = Image(name="i", disk_format=fmt, status=status, virtual_size=virtual)
    if error is None:
        check_rebuild_image(image, 1)
    else:
        with pytest.raises((InvalidInput, Conflict), match=error):
            check_rebuild_image(image, 2)


# --- validation through the CLI: refusals touch nothing ---------------------------------------


def operations(db):
    with db.read() as session:
        return session.scalar(select(func.count()).select_from(Operation))


def vm_row(db, uuid):
    with db.read() as session:
        return session.get(VM, uuid).to_dict()


def test_cli_refuses_a_shrink_with_one_line_and_opens_nothing(tenant_with_vm, cli, db):
    uuid = insert_vm(db, "a", "big", flavor="m1.small")
    before = vm_row(db, uuid)
    result = cli("vm", "resize", "big", "m1.nano", tenant="a")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "stackctl: error: refusing to shrink the disk of VM 'big' from 5 GiB to 1 GiB "
        "(flavor 'm1.nano'): data would be lost; nothing was changed"]
    assert operations(db) == 0
    assert vm_row(db, uuid) == before


def test_cli_names_the_known_flavors_for_an_unknown_one(tenant_with_vm, cli, db):
    result = cli("vm", "resize", "web-1", "m9.huge", tenant="a")
    assert result.exit_code == 3
    assert "known: m1.micro, m1.nano, m1.small" in result.stderr
    assert operations(db) == 0


def test_cli_refuses_a_resize_the_host_has_no_room_for(cli, db, keyfile, qcow2):
    add_host(db, ram_mb=200)  # 300 MiB at the default 1.5 RAM ratio
    assert cli("tenant", "create", "a").exit_code == 0
    assert cli("image", "import", "img", str(qcow2), tenant="a").exit_code == 0
    insert_vm(db, "a", "web-1")
    insert_vm(db, "a", "web-2")
    result = cli("vm", "resize", "web-1", "m1.micro", tenant="a")
    assert result.exit_code == 4
    assert "does not fit on aio" in result.stderr and "172 MiB RAM free" in result.stderr
    assert operations(db) == 0


def test_cli_snapshot_refuses_a_taken_name_and_a_vm_in_error(tenant_with_vm, cli, db):
    result = cli("vm", "snapshot", "web-1", "img", tenant="a")
    assert result.exit_code == 4 and "already exists" in result.stderr
    insert_vm(db, "a", "broken", state="error")
    result = cli("vm", "snapshot", "broken", "snap", tenant="a")
    assert result.exit_code == 4 and "is error" in result.stderr
    assert operations(db) == 0


def test_cli_rebuild_refuses_a_kernel_image(tenant_with_vm, cli, db, tmp_path):
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"\0" * 4096)
    assert cli("image", "import", "k", str(kernel), "--disk-format", "aki",
               tenant="a").exit_code == 0
    result = cli("vm", "rebuild", "web-1", "--image", "k", tenant="a")
    assert result.exit_code == 2 and "not a bootable disk image" in result.stderr
    assert operations(db) == 0


def test_set_state_writes_the_state_and_keeps_or_clears_the_fault(tenant_with_vm, cli, db):
    uuid = insert_vm(db, "a", "stuck", state="building")
    with db.write() as session:
        session.get(VM, uuid).fault = "create failed: host gone"
    out = cli("vm", "set-state", "stuck", "--state", "error", "-o", "json", tenant="a").json()
    assert (out["state"], out["fault"]) == ("error", "create failed: host gone")
    out = cli("vm", "set-state", "stuck", "--state", "stopped", "-o", "json", tenant="a").json()
    assert (out["state"], out["fault"]) == ("stopped", None)
    with db.read() as session:
        kinds = session.scalars(select(Operation.status).where(Operation.kind == "vm.set-state"))
        assert list(kinds) == ["done", "done"]


def test_set_state_needs_exactly_one_of_state_and_from_host(tenant_with_vm, cli, db):
    for args in ([], ["--state", "running", "--from-host"]):
        result = cli("vm", "set-state", "web-1", *args, tenant="a")
        assert result.exit_code == 2 and "give --state or --from-host" in result.stderr
    assert operations(db) == 0


def test_set_state_is_refused_while_another_operation_works_on_the_vm(tenant_with_vm, cli, db):
    orphan(db, "vm.stop", tenant_with_vm, owner=current_owner())  # alive: not recoverable
    result = cli("vm", "set-state", "web-1", "--state", "error", tenant="a")
    assert result.exit_code == 4 and "the VM is busy: vm.stop" in result.stderr
    assert vm_row(db, tenant_with_vm)["state"] == "running"


# --- recovery --------------------------------------------------------------------------------


def resize_orphan(db, vm_uuid, was="running"):
    with db.read() as session:
        ids = {f.name: f.id for f in session.scalars(select(Flavor))}
    op_id = orphan(db, "vm.resize", vm_uuid)
    with db.write() as session:
        session.get(Operation, op_id).params = {
            "name": "web-1", "flavor_id": ids["m1.micro"], "old_flavor_id": ids["m1.nano"],
            "old": vars(NANO), "new": vars(MICRO), "was": was}
    return op_id


def test_interrupted_resize_starts_the_vm_again_and_records_the_new_sizes(tenant_with_vm, db):
    resize_orphan(db, tenant_with_vm)
    after = {"state": "stopped", "vcpus": 1, "memory_mb": 256, "disk_gb": 2}
    runner = RecordingRunner({"stack_vm": {"diff": {"after": after},
                                           "vm": {"address": "192.168.150.77"}}})
    with db.write() as session:
        [done] = recover(session, runner)
    assert done.status == "done" and "started it again" in done.action
    states = [call[1][0][1]["state"] for call in runner.calls]
    assert states == ["present", "running"]
    vm = vm_row(db, tenant_with_vm)
    assert (vm["flavor"], vm["ram_mb"], vm["disk_gb"], vm["state"]) == (
        "m1.micro", 256, 2, "running")


def test_interrupted_resize_before_the_host_changed_keeps_the_old_flavor(tenant_with_vm, db):
    resize_orphan(db, tenant_with_vm, was="stopped")
    after = {"state": "stopped", "vcpus": 1, "memory_mb": 128, "disk_gb": 1}
    runner = RecordingRunner({"stack_vm": {"diff": {"after": after}}})
    with db.write() as session:
        recover(session, runner)
    assert len(runner.calls) == 1  # only the read: a stopped VM stays stopped
    vm = vm_row(db, tenant_with_vm)
    assert (vm["flavor"], vm["ram_mb"], vm["state"]) == ("m1.nano", 128, "stopped")


def test_interrupted_resize_of_a_vanished_domain_marks_the_vm_error(tenant_with_vm, db):
    resize_orphan(db, tenant_with_vm)
    runner = RecordingRunner(fail="present stk-x on aio: domain does not exist; give vcpus")
    with db.write() as session:
        [done] = recover(session, runner)
    assert done.status == "done"
    vm = vm_row(db, tenant_with_vm)
    assert vm["state"] == "error" and "missing on aio" in vm["fault"]


def test_interrupted_snapshot_removes_its_image_and_restarts_the_vm(tenant_with_vm, db, app):
    from stackctl.workflows.vm_snapshot import SnapshotJob

    tmp = app.config.images_dir / ".snapshot-x.qcow2"
    tmp.write_bytes(b"partial")
    job = SnapshotJob("web-1", f"stk-{tenant_with_vm}", "img-snap-id", "snap", "running",
                      "local", str(tmp), str(tmp))
    op_id = orphan(db, "vm.snapshot", tenant_with_vm, step="flatten")
    with db.write() as session:
        session.get(Operation, op_id).params = vars(job)
        owner = session.get(VM, tenant_with_vm).tenant_id
        session.add(Image(id="img-snap-id", name="snap", tenant_id=owner, sha256="",
                          disk_format="qcow2", size=0, path=str(tmp), status="saving"))
    runner = RecordingRunner()
    with db.write() as session:
        [done] = recover(session, runner)
    assert done.status == "rolled_back"
    calls = runner.calls[0][1]
    assert [(m, a["state"]) for m, a in calls] == [("stack_vm_snapshot", "absent"),
                                                   ("stack_vm", "running")]
    assert not tmp.exists()
    with db.read() as session:
        assert session.get(Image, "img-snap-id") is None


def test_interrupted_set_state_needs_no_host(tenant_with_vm, db):
    orphan(db, "vm.set-state", tenant_with_vm, step="finish")
    runner = RecordingRunner()
    with db.write() as session:
        [done] = recover(session, runner)
    assert done.status == "done" and runner.calls == []
