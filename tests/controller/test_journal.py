"""The journal and recovery.

Recovery's decisions are unit-tested here with ``RecordingRunner``, a runner double that
records the module calls it is asked to make and answers from a script. A double is used
ONLY for these unit tests of the recovery logic; killing real workflows against libvirt and
checking the host afterwards is done end to end in tests/integration/test_create_interrupted.py.
The crash-point tests below do kill a real ``stackctl`` process.
"""

import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from sqlalchemy import select
from stackcore.errors import BackendError, Conflict

from stackctl.journal import (
    Journal,
    current_owner,
    owner_alive,
    process_start_time,
    recover,
)
from stackctl.models import VM, Operation

from .conftest import add_host, insert_vm


class RecordingRunner:
    """Test double (recovery unit tests only): records calls, returns scripted results."""

    def __init__(self, answers=None, fail=None):
        self.calls = []
        self.answers = answers or {}
        self.fail = fail

    def run_tasks(self, host, tasks, progress=None, label="adhoc"):
        self.calls.append((host, [(t.module, dict(t.args)) for t in tasks], label))
        if self.fail:
            raise BackendError(self.fail)
        return [self.answers.get(t.module, {}) for t in tasks]


def dead_owner() -> str:
    """The owner string of a process that has exited."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return f"{socket.gethostname()}:{proc.stdout.strip()}:12345"


def orphan(db, kind, vm_uuid=None, step="domain", owner=None):
    """An operation left 'running' by a process that died."""
    with db.write() as session:
        op = Operation(kind=kind, vm_uuid=vm_uuid, status="running", step=step,
                       owner=owner or dead_owner())
        session.add(op)
        session.flush()
        return op.id


def op_row(db, op_id):
    with db.read() as session:
        return session.get(Operation, op_id)


# --- owners ------------------------------------------------------------------------------


def test_owner_names_host_pid_and_start_time():
    host, pid, started = current_owner().rsplit(":", 2)
    assert host == socket.gethostname() and int(pid) == os.getpid() and started.isdigit()


def test_owner_alive_distinguishes_live_dead_reused_and_remote():
    assert owner_alive(current_owner()) is True
    assert owner_alive(dead_owner()) is False
    host, pid, started = current_owner().rsplit(":", 2)
    assert owner_alive(f"{host}:{pid}:{int(started) + 1}") is False  # pid reused later
    assert owner_alive(f"elsewhere.example:{pid}:{started}") is None
    assert owner_alive("garbage") is False


def test_a_killed_but_unreaped_process_is_dead():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    owner = f"{socket.gethostname()}:{proc.pid}:{process_start_time(proc.pid)}"
    assert owner_alive(owner) is True
    proc.kill()
    deadline = time.monotonic() + 10
    while owner_alive(owner) and time.monotonic() < deadline:
        time.sleep(0.01)  # the zombie stays until wait(); it must already count as dead
    assert owner_alive(owner) is False
    proc.wait()


# --- the journal -------------------------------------------------------------------------


def test_steps_are_recorded_before_the_work_and_marked_done_after(db):
    journal = Journal.open(db, "vm.create", vm_uuid="u1")
    with journal.step("claim"), db.read() as session:
        op = session.get(Operation, journal.op_id)
        assert op.step == "claim"
        assert [(s.name, s.done_at) for s in op.steps] == [("claim", None)]
    journal.finish()
    with db.read() as session:
        op = session.get(Operation, journal.op_id)
        assert op.status == "done" and op.owner == current_owner()
        assert op.steps[0].done_at is not None


def test_a_failing_step_stays_not_done(db):
    journal = Journal.open(db, "vm.stop", vm_uuid="u1")
    with pytest.raises(BackendError), journal.step("domain"):
        raise BackendError("host down")
    journal.finish("failed", "host down")
    with db.read() as session:
        op = session.get(Operation, journal.op_id)
        assert op.status == "failed" and op.steps[0].done_at is None


def test_exclusive_open_refuses_a_vm_with_running_work(db):
    Journal.open(db, "vm.stop", vm_uuid="u1")
    with pytest.raises(Conflict, match="busy"):
        Journal.open(db, "vm.delete", vm_uuid="u1", exclusive=True)


CRASH_SCRIPT = """
import sys
from stackctl.db import Database
from stackctl.journal import Journal
db = Database(sys.argv[1])
journal = Journal.open(db, "vm.create", vm_uuid="u1")
for step in ("claim", "image", "domain", "finish"):
    with journal.step(step):
        pass
journal.finish()
"""


@pytest.mark.parametrize("step", ["claim", "domain", "finish"])
def test_crash_at_kills_the_process_right_after_recording_the_step(app, db, step):
    db.ensure_schema()
    proc = subprocess.run([sys.executable, "-c", CRASH_SCRIPT, app.config.db_url],
                          env=dict(os.environ, STACKCTL_CRASH_AT=step), check=False)
    assert proc.returncode == -signal.SIGKILL
    with db.read() as session:
        op = session.scalar(select(Operation))
        assert (op.status, op.step) == ("running", step)
        assert op.steps[-1].name == step and op.steps[-1].done_at is None
        assert owner_alive(op.owner) is False


# --- recovery ------------------------------------------------------------------------------


def test_nothing_pending_means_no_runner_call(db):
    runner = RecordingRunner()
    with db.write() as session:
        assert recover(session, runner) == []
    assert runner.calls == []


def test_interrupted_create_is_rolled_back_on_its_host(tenant_with_vm, db):
    vm_uuid = tenant_with_vm
    op_id = orphan(db, "vm.create", vm_uuid, step="domain")
    runner = RecordingRunner()
    with db.write() as session:
        [done] = recover(session, runner)
    assert runner.calls == [("aio", [("stack_vm", {"name": f"stk-{vm_uuid}", "state": "absent",
                                                   "uuid": vm_uuid})], str(op_id))]
    assert (done.status, done.vm, done.step) == ("rolled_back", "web-1", "domain")
    assert op_row(db, op_id).status == "rolled_back"
    with db.read() as session:
        assert session.get(VM, vm_uuid) is None  # the claim is released with the row


def test_create_that_died_after_finishing_keeps_its_vm(tenant_with_vm, db):
    from stackctl.models import OperationStep, utcnow

    op_id = orphan(db, "vm.create", tenant_with_vm, step="finish")
    with db.write() as session:
        session.add(OperationStep(operation_id=op_id, name="finish", done_at=utcnow()))
    runner = RecordingRunner()
    with db.write() as session:
        [done] = recover(session, runner)
    assert runner.calls == [] and done.status == "done"
    with db.read() as session:
        assert session.get(VM, tenant_with_vm) is not None


def test_create_interrupted_before_its_claim_needs_no_host(db):
    op_id = orphan(db, "vm.create", "never-claimed", step="claim")
    runner = RecordingRunner()
    with db.write() as session:
        [done] = recover(session, runner)
    assert runner.calls == [] and done.status == "rolled_back"
    assert op_row(db, op_id).status == "rolled_back"


def test_interrupted_delete_is_finished(tenant_with_vm, db):
    op_id = orphan(db, "vm.delete", tenant_with_vm, step="domain")
    runner = RecordingRunner()
    with db.write() as session:
        [done] = recover(session, runner)
    assert runner.calls[0][1][0][1]["state"] == "absent"
    assert done.status == "done" and op_row(db, op_id).status == "done"
    with db.read() as session:
        assert session.get(VM, tenant_with_vm) is None


@pytest.mark.parametrize("kind,libvirt_state,expected", [
    ("vm.stop", "stopped", "stopped"),
    ("vm.start", "running", "running"),
    ("vm.reboot", "shut off", "stopped"),
    ("vm.stop", "crashed", "error"),
])
def test_interrupted_power_change_records_the_real_state(tenant_with_vm, db, kind,
                                                          libvirt_state, expected):
    vm_uuid = tenant_with_vm
    orphan(db, kind, vm_uuid)
    domains = [{"name": "stk-other", "state": "running"},
               {"name": f"stk-{vm_uuid}", "state": libvirt_state}]
    runner = RecordingRunner({"stack_hypervisor_info": {"hypervisor": {"domains": domains}}})
    with db.write() as session:
        [done] = recover(session, runner)
    assert [module for module, _ in runner.calls[0][1]] == ["stack_hypervisor_info"]
    assert done.status == "done"
    with db.read() as session:
        assert session.get(VM, vm_uuid).state == expected


def test_power_change_on_a_vanished_domain_marks_the_vm_error(tenant_with_vm, db):
    orphan(db, "vm.start", tenant_with_vm)
    runner = RecordingRunner({"stack_hypervisor_info": {"hypervisor": {"domains": []}}})
    with db.write() as session:
        recover(session, runner)
    with db.read() as session:
        vm = session.get(VM, tenant_with_vm)
        assert vm.state == "error" and "missing" in vm.fault


def test_live_and_remote_owners_are_left_alone(tenant_with_vm, db):
    live = orphan(db, "vm.create", tenant_with_vm, owner=current_owner())
    remote = orphan(db, "vm.stop", tenant_with_vm, owner="elsewhere:1:1")
    runner = RecordingRunner()
    with db.write() as session:
        done = recover(session, runner, include_skipped=True)
    assert runner.calls == []
    assert [(d.op_id, d.action) for d in done] == [
        (live, "skipped: owner is still running"), (remote, "skipped: owner ran on another host")]
    assert op_row(db, live).status == op_row(db, remote).status == "running"


def test_failed_recovery_is_retried_by_the_next_run(tenant_with_vm, db):
    op_id = orphan(db, "vm.create", tenant_with_vm)
    with db.write() as session:
        [done] = recover(session, RecordingRunner(fail="aio unreachable"))
    assert done.action == "failed: aio unreachable" and done.status == "running"
    op = op_row(db, op_id)
    assert op.status == "running" and "will retry" in op.error
    # The recovering process (this one) now owns it; once it is gone, the next run retries.
    with db.write() as session:
        session.get(Operation, op_id).owner = dead_owner()
    with db.write() as session:
        [done] = recover(session, RecordingRunner())
    assert done.status == "rolled_back"


def test_unknown_kinds_are_marked_failed(db):
    op_id = orphan(db, "vm.teleport")
    with db.write() as session:
        [done] = recover(session, RecordingRunner())
    assert done.status == "failed" and op_row(db, op_id).status == "failed"


def test_recovery_runs_each_operation_once(tenant_with_vm, db):
    orphan(db, "vm.create", tenant_with_vm)
    first, second = RecordingRunner(), RecordingRunner()
    with db.write() as session:
        recover(session, first)
    with db.write() as session:
        assert recover(session, second) == []
    assert len(first.calls) == 1 and second.calls == []


def test_vm_on_a_second_host_is_removed_there(tenant_with_vm, db):
    add_host(db, "hv2")
    other = insert_vm(db, "a", "web-2", host="hv2")
    orphan(db, "vm.create", other)
    runner = RecordingRunner()
    with db.write() as session:
        recover(session, runner)
    assert runner.calls[0][0] == "hv2"
