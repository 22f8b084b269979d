"""The journal side of ``stackctl storage decommission`` and ``device replace``
(stackctl.workflows.storage_ops): one storage operation at a time, a paused or interrupted one
is continued by the same command, others are refused with the command that finishes them, and
recovery leaves an interrupted one resumable (nothing rolled back). A real SQLite file; no
host is touched (the real operations run in tests/storage/test_day_two.py)."""

import socket
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
from stackcore.errors import BackendError, Conflict, NotFound

from stackctl.journal import Journal, handler_for, recover
from stackctl.models import Operation
from stackctl.workflows import storage_ops as ops

DECOM = {"host": "s4", "command": "stackctl storage decommission s4"}
REPLACE = {"host": "s2", "device": "d1", "command": "stackctl storage device replace s2 d1"}


def dead_owner():
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return f"{socket.gethostname()}:{proc.stdout.strip()}:12345"


def operation(db, kind, params, status="running", owner=None, steps=()):
    """An operation row with ``steps`` (name, done) as a workflow would have left it."""
    journal = Journal.open(db, kind, params=params)
    for name, done in steps:
        journal._open_step = journal._record(name)
        if done:
            journal._mark_done(journal._open_step)
    with db.write() as session:
        op = session.get(Operation, journal.op_id)
        op.status = status
        op.owner = owner or op.owner
    return journal.op_id


def status_of(db, op_id):
    with db.read() as session:
        op = session.get(Operation, op_id)
        return op.status, op.owner, op.error


def test_nothing_to_continue_opens_nothing(app):
    assert ops._claim(app, ops.DECOMMISSION, "s4", resume=False) == (None, {}, [])


def test_resume_without_an_operation_is_refused(app):
    with pytest.raises(NotFound, match=r"no paused or interrupted storage\.decommission of s4"):
        ops._claim(app, ops.DECOMMISSION, "s4", resume=True)


def test_a_paused_operation_is_continued_after_its_last_done_step(app, db):
    op_id = operation(db, ops.DECOMMISSION, DECOM, status=ops.PAUSED,
                      steps=[("weight-1", True), ("converge-1", True), ("weight-2", False)])

    journal, params, done = ops._claim(app, ops.DECOMMISSION, "s4", resume=False)

    assert journal.op_id == op_id
    assert params == DECOM
    assert done == ["weight-1", "converge-1"]
    assert status_of(db, op_id)[0] == "running"


def test_an_interrupted_operation_of_a_dead_process_is_taken_over(app, db):
    op_id = operation(db, ops.REPLACE, REPLACE, owner=dead_owner(), steps=[("remove", True)])

    journal, _, done = ops._claim(app, ops.REPLACE, "s2 d1", resume=True)

    assert (journal.op_id, done) == (op_id, ["remove"])
    assert status_of(db, op_id)[1] != dead_owner()


def test_a_running_storage_operation_refuses_any_other(app, db):
    operation(db, ops.DECOMMISSION, DECOM)  # owned by this (live) process

    with pytest.raises(Conflict, match=r"another storage operation is running: "
                                       r"storage.decommission s4 \(operation \d+\)"):
        ops._claim(app, ops.REPLACE, "s2 d1", resume=False)


@pytest.mark.parametrize(("status", "owner", "state"), [
    (ops.PAUSED, None, "paused"), ("running", "dead", "interrupted")])
def test_another_paused_or_interrupted_operation_is_refused_with_its_command(app, db, status,
                                                                             owner, state):
    operation(db, ops.DECOMMISSION, DECOM, status=status,
              owner=dead_owner() if owner else None, steps=[("weight-1", False)])

    with pytest.raises(Conflict) as err:
        ops._claim(app, ops.DECOMMISSION, "s3", resume=False)

    assert f"storage.decommission s4 (operation 1) is {state} at step weight-1" in str(err.value)
    assert "`stackctl storage decommission s4 --resume`" in str(err.value)
    assert "`stackctl storage decommission s4 --cancel`" in str(err.value)


def test_cancel_drops_a_paused_operation_and_then_others_may_run(app, db):
    op_id = operation(db, ops.DECOMMISSION, DECOM, status=ops.PAUSED)

    result = ops.cancel(app, ops.DECOMMISSION, "s4")

    assert result["operation"] == op_id and status_of(db, op_id)[0] == "cancelled"
    assert ops._claim(app, ops.DECOMMISSION, "s3", resume=False) == (None, {}, [])


def test_a_running_operation_cannot_be_cancelled(app, db):
    operation(db, ops.DECOMMISSION, DECOM)

    with pytest.raises(Conflict, match="cannot be cancelled while it runs"):
        ops.cancel(app, ops.DECOMMISSION, "s4")


@pytest.mark.parametrize(("kind", "params", "target"), [
    (ops.DECOMMISSION, DECOM, "s4"), (ops.REPLACE, REPLACE, "s2 d1")])
def test_recovery_leaves_an_interrupted_operation_resumable(app, db, kind, params, target):
    op_id = operation(db, kind, params, owner=dead_owner(),
                      steps=[("weight-1", True), ("converge-1", False)])

    assert handler_for(kind) is ops._leave_resumable
    with db.write() as session:
        (rec,) = recover(session, runner=None)

    assert (rec.op_id, rec.status, rec.vm) == (op_id, ops.PAUSED, target)
    status, _, error = status_of(db, op_id)
    assert status == ops.PAUSED
    assert f"`{params['command']} --resume` continues" in error
    _, _, done = ops._claim(app, kind, target, resume=True)
    assert done == ["weight-1"]


def paused_op(db):
    journal = Journal.open(db, ops.DECOMMISSION, params=DECOM)
    return ops._Op(run=SimpleNamespace(notes=["a note"], ui=None), journal=journal,
                   params=DECOM)


def test_min_part_hours_pauses_the_operation_with_the_time_to_continue(db):
    op = paused_op(db)
    when = time.time() + 3600

    def work():
        raise ops._Pause(when)

    result = ops._finish_or_pause(op, work)

    at = time.strftime("%Y-%m-%d %H:%M", time.localtime(when))
    assert result["status"] == ops.PAUSED and result["resume_after"] == at
    status, _, error = status_of(db, op.journal.op_id)
    assert status == ops.PAUSED
    assert error == (f"min_part_hours: the next rebalance may move partitions after {at}; "
                     "continue then with `stackctl storage decommission s4 --resume`")
    assert result["notes"] == ["a note", error]


def test_a_failure_pauses_the_operation_and_says_how_to_continue(db):
    op = paused_op(db)

    def work():
        raise BackendError("replication has not converged after 3600 s: s1: timed out")

    with pytest.raises(BackendError) as err:
        ops._finish_or_pause(op, work)

    assert str(err.value) == ("replication has not converged after 3600 s: s1: timed out "
                              f"(operation {op.journal.op_id} paused; "
                              "`stackctl storage decommission s4 --resume` continues)")
    assert status_of(db, op.journal.op_id)[0] == ops.PAUSED


class RingsDouble:
    """Stands in for _Op's ring calls (these tests only): scripted facts and min_part_hours
    seconds, records the changes and copies asked for."""

    def __init__(self, weight, seconds_left):
        self.facts = {"object": {"devices": [
            {"ip": "127.0.0.15", "port": 6200, "device": "d1", "zone": 4, "region": 1,
             "weight": weight, "parts": 10}]}}
        self.seconds_left = seconds_left
        self.changes = []
        self.pushes = 0

    def op(self):
        from stackctl.workflows.storage import Cluster, Node, _Run

        cluster = Cluster(nodes={"s4": Node(host="s4", ip="127.0.0.15")}, builder_dir="/b")
        op = ops._Op(run=_Run(app=None, cluster=cluster), journal=None, params={"host": "s4"})
        op.read = lambda: (self.facts, self.seconds_left)
        op.change = lambda args, verb: self.changes.append(args) or []
        op.push = lambda: setattr(self, "pushes", self.pushes + 1)
        return op


def test_a_weight_step_that_min_part_hours_would_block_pauses_before_changing_anything():
    rings = RingsDouble(weight=100.0, seconds_left=3600)
    plan = ops.drain_steps({"object/d1": 100.0})

    with pytest.raises(ops._Pause) as pause:
        ops._lower_weights(rings.op(), 1, plan)

    assert pause.value.when == pytest.approx(time.time() + 3600, abs=5)
    assert rings.changes == []


def test_a_weight_step_lowers_the_leaving_devices_when_partitions_may_move():
    rings = RingsDouble(weight=100.0, seconds_left=0)
    op = rings.op()

    ops._lower_weights(op, 1, ops.drain_steps({"object/d1": 100.0}))

    assert rings.changes == [{"object": {"devices": [
        {"region": 1, "zone": 4, "ip": "127.0.0.15", "port": 6200, "device": "d1",
         "weight": 50.0}], "purge": False, "keep_weights": False}}]
    assert op.steps == [{"step": "weight-1", "weights": "50", "parts_left": {"object": 10},
                         "parts_moved": 0}]


def test_a_resumed_weight_step_already_applied_only_copies_the_rings_again():
    rings = RingsDouble(weight=50.0, seconds_left=3600)  # done, then killed before the copy

    ops._lower_weights(rings.op(), 1, ops.drain_steps({"object/d1": 100.0}))

    assert (rings.changes, rings.pushes) == ([], 1)
