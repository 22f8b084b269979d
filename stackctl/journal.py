"""The operation journal: every workflow that changes hosts records what it is about to do.

A workflow opens an ``Operation`` (kind, VM, owner = ``hostname:pid:process-start-time``) and
wraps each step in ``journal.step(name)``, which commits the step *before* the work starts and
marks it done after. If the process dies (SIGKILL, OOM, a lost terminal), the operation stays
``running`` with an owner that no longer exists; ``recover`` finds it and finishes or rolls it
back (``recover`` below).

Fault injection (tests only): ``STACKCTL_CRASH_AT=<step>`` makes the process SIGKILL itself
right after that step is recorded, before its work starts, exactly as an outside kill at that
point would. The journaled steps are listed in each workflow (``vm.create``: claim, image,
domain, finish).
"""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from stackcore.errors import Conflict, StackError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from stackctl.app import App
    from stackctl.db import Database
    from stackctl.models import Operation
    from stackctl.runner import Progress, Runner

CRASH_ENV = "STACKCTL_CRASH_AT"


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), None if it is gone.

    Together with the pid it names a process uniquely: pids are reused, start times are not.
    A zombie (killed, not yet reaped by its parent) counts as gone.
    """
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            stat = handle.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return "?"
    # Field 2 (comm) may contain spaces and parentheses: parse after the last ')'.
    fields = stat[stat.rfind(")") + 2:].split()
    if fields and fields[0] in ("Z", "X"):
        return None
    return fields[19] if len(fields) > 19 else "?"


def current_owner() -> str:
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{process_start_time(pid) or '?'}"


def owner_alive(owner: str) -> bool | None:
    """True/False for a process on this host; None when it ran on another host (unknowable)."""
    try:
        hostname, pid_text, started = owner.rsplit(":", 2)
        pid = int(pid_text)
    except ValueError:
        return False  # unparseable owner: nobody can be running it
    if hostname != socket.gethostname():
        return None
    now = process_start_time(pid)
    if now is None:
        return False
    return started == "?" or now == "?" or now == started


def crash_point(step: str) -> None:
    """Test-only: SIGKILL ourselves when ``STACKCTL_CRASH_AT`` names this step."""
    if os.environ.get(CRASH_ENV) == step:
        os.kill(os.getpid(), signal.SIGKILL)


class Journal:
    """One ``Operation`` row and its steps; every method commits its own short transaction."""

    def __init__(self, db: Database, op_id: int) -> None:
        self.db = db
        self.op_id = op_id

    @classmethod
    def open(cls, db: Database, kind: str, *, vm_uuid: str | None = None,
             tenant_id: int | None = None, params: dict | None = None,
             exclusive: bool = False) -> Journal:
        """Start an operation owned by this process.

        ``exclusive``: Conflict if another operation on the same VM is still running.
        """
        from sqlalchemy import select

        from stackctl.models import Operation

        with db.write() as session:
            if exclusive and vm_uuid:
                busy = session.scalar(select(Operation).where(
                    Operation.vm_uuid == vm_uuid, Operation.status == "running"))
                if busy is not None:
                    raise Conflict(f"the VM is busy: {busy.kind} (operation {busy.id}) is "
                                   "still running")
            op = Operation(kind=kind, vm_uuid=vm_uuid, tenant_id=tenant_id, params=params,
                           status="running", owner=current_owner())
            session.add(op)
            session.flush()
            return cls(db, op.id)

    @property
    def label(self) -> str:
        """Prefix for this operation's runner directories (``<home>/run/<op-id>-<n>``)."""
        return str(self.op_id)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Record ``name`` (committed), do the work in the block, then mark it done.

        Inside the block, ``advance`` may move on to later steps (for work that one host run
        does in several steps); the last step entered is the one marked done."""
        self._open_step = self._record(name)
        crash_point(name)
        yield
        self._mark_done(self._open_step)

    def advance(self, name: str) -> None:
        """Mark the open step done and record ``name`` before its work starts (used from a
        runner progress callback when a host run reaches the task that begins ``name``)."""
        self._mark_done(self._open_step)
        self._open_step = self._record(name)
        crash_point(name)

    def finish(self, status: str = "done", error: str | None = None) -> None:
        from stackctl.models import Operation

        with self.db.write() as session:
            op = session.get(Operation, self.op_id)
            op.status = status
            op.error = error

    def _record(self, name: str) -> int:
        from stackctl.models import Operation, OperationStep

        with self.db.write() as session:
            op = session.get(Operation, self.op_id)
            op.step = name
            step = OperationStep(operation_id=op.id, name=name)
            session.add(step)
            session.flush()
            return step.id

    def _mark_done(self, step_id: int) -> None:
        from stackctl.models import OperationStep, utcnow

        with self.db.write() as session:
            session.get(OperationStep, step_id).done_at = utcnow()


# --- recovery -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Recovery:
    """What ``recover`` did about one interrupted operation."""

    op_id: int
    kind: str
    vm: str | None
    step: str | None
    action: str
    status: str
    vm_uuid: str | None = None  # names the domain (stk-<uuid>) an operator may look for

    def to_dict(self) -> dict:
        return {"operation": self.op_id, "kind": self.kind, "vm": self.vm,
                "vm_uuid": self.vm_uuid, "step": self.step, "action": self.action,
                "status": self.status}


def pending(session: Session) -> list[int]:
    """Ids of operations still marked running (cheap: one indexed query)."""
    from sqlalchemy import select

    from stackctl.models import Operation

    return list(session.scalars(
        select(Operation.id).where(Operation.status == "running").order_by(Operation.id)))


def recover(session: Session, runner: Runner, progress: Progress | None = None,
            include_skipped: bool = False, app: App | None = None) -> list[Recovery]:
    """Finish or roll back every operation whose owner process is dead.

    ``session`` must come from ``Database.write()``: each operation is taken over (owner set
    to this process) in its own locked transaction, so two recovering processes never work on
    the same one, and no transaction stays open while a host works. Host work is idempotent,
    so a recovery that is itself killed is simply redone by the next one.

    - ``vm.create``: roll back: ``stack_vm state=absent`` on the VM's host (it takes the
      per-domain lock, so it waits for a module the dead process left running), delete the VM
      row (its claim is released with it), mark the operation ``rolled_back``. Only a create
      whose last step (``finish``) completed is kept and marked ``done``.
    - ``vm.delete``: finish the delete the same way, mark it ``done``.
    - ``vm.start``/``vm.stop``/``vm.reboot``: re-read the domain's real state on the host with
      ``stack_hypervisor_info`` and record it.
    """
    from stackctl.models import Operation

    session.commit()
    # Handlers that run whole workflow steps (moves) need the application (configuration,
    # database, runner); they find it here.
    session.info["app"] = app
    done = []
    for op_id in pending(session):
        op, skipped = _take_over(session, op_id)
        session.commit()
        if op is None:
            if skipped and include_skipped:
                done.append(skipped)
            continue
        vm_label = (op.params or {}).get("name") or op.vm_uuid
        handler = handler_for(op.kind)
        try:
            action, status, label = handler(session, runner, op, progress)
            vm_label = label or vm_label
        except StackError as exc:
            session.rollback()
            op = session.get(Operation, op_id)
            op.error = f"recovery failed (will retry): {exc}"
            session.commit()
            action, status = f"failed: {exc}", "running"
        done.append(Recovery(op_id, op.kind, vm_label, op.step, action, status, op.vm_uuid))
    return done


def _take_over(session: Session, op_id: int) -> tuple[Operation | None, Recovery | None]:
    from stackctl.models import Operation

    op = session.get(Operation, op_id, with_for_update=True)
    if op is None or op.status != "running":
        return None, None
    alive = owner_alive(op.owner)
    if alive is not False:
        why = "owner is still running" if alive else "owner ran on another host"
        return None, Recovery(op.id, op.kind, op.vm_uuid, op.step, f"skipped: {why}",
                              op.status, op.vm_uuid)
    op.owner = current_owner()
    return op, None


Handler = Callable[["Session", "Runner", "Operation", "Progress | None"], tuple[str, str, str]]


def _remove_vm(session: Session, runner: Runner, op: Operation, progress, final: str, verb: str):
    from stackctl import tasks
    from stackctl.models import VM

    vm = session.get(VM, op.vm_uuid) if op.vm_uuid else None
    if vm is None:
        op.status = final
        session.commit()
        return f"{verb}: nothing was created yet", final, None
    label, host = vm.name, vm.host.name if vm.host else None
    if host is not None:
        session.commit()  # no transaction stays open while the host works
        runner.run_tasks(host, [tasks.vm_absent(vm.domain, vm.uuid)], progress, label=str(op.id))
        vm = session.get(VM, op.vm_uuid)
    if vm is not None:
        session.delete(vm)
    op.status = final
    op.error = f"interrupted at step {op.step!r}; {verb} by recovery"
    session.commit()
    where = f" on {host}" if host else ""
    return f"{verb}: removed the domain{where} and the VM row", final, label


def _rollback_create(session, runner, op, progress):
    last = op.steps[-1] if op.steps else None
    if last is not None and last.name == "finish" and last.done_at is not None:
        # Died after recording the finished VM, before closing the operation: keep the VM.
        op.status = "done"
        session.commit()
        return "finished: the VM was already complete", "done", None
    return _remove_vm(session, runner, op, progress, "rolled_back", "rolled back")


def _finish_delete(session, runner, op, progress):
    return _remove_vm(session, runner, op, progress, "done", "finished")


def _record_power_state(session, runner, op, progress):
    from stackctl import tasks
    from stackctl.models import VM

    vm = session.get(VM, op.vm_uuid) if op.vm_uuid else None
    if vm is None or vm.host is None:
        op.status = "done"
        session.commit()
        return "finished: the VM no longer exists", "done", op.vm_uuid
    host, domain, label = vm.host.name, vm.domain, vm.name
    session.commit()
    results = runner.run_tasks(host, [tasks.hypervisor_info()], progress, label=str(op.id))
    domains = (results[0].get("hypervisor") or {}).get("domains") or [] if results else []
    found = next((d for d in domains if d.get("name") == domain), None)
    vm = session.get(VM, op.vm_uuid)
    if found is None:
        vm.state, vm.fault = "error", f"domain {domain} is missing on {host}"
    else:
        vm.state, vm.fault = power_state(str(found.get("state", ""))), None
    op.status = "done"
    op.error = f"interrupted at step {op.step!r}; state re-read by recovery"
    session.commit()
    return f"recorded the real state: {vm.state}", "done", label


def _unknown_kind(session, runner, op, progress):
    op.status = "failed"
    op.error = f"no recovery known for {op.kind!r}"
    session.commit()
    return op.error, "failed", op.vm_uuid


def power_state(libvirt_state: str) -> str:
    """Our VM state for a libvirt domain state name (``running``, ``shut off``, ...)."""
    text = libvirt_state.strip().lower().replace("_", " ")
    if text in ("running", "idle", "blocked", "paused", "pmsuspended", "in shutdown"):
        return "running"
    if text in ("shut off", "shutoff", "stopped"):
        return "stopped"
    return "error"


_HANDLERS: dict[str, Handler] = {
    "vm.create": _rollback_create,
    "vm.delete": _finish_delete,
    "vm.start": _record_power_state,
    "vm.stop": _record_power_state,
    "vm.reboot": _record_power_state,
}


# Workflows with their own recovery keep it next to their steps; each module listed here has a
# ``RECOVERY`` dict (kind -> handler), imported only when such an operation needs recovering.
_RECOVERY_MODULES = ("stackctl.workflows.vm_admin", "stackctl.workflows.migrate",
                     "stackctl.workflows.reconcile", "stackctl.workflows.storage_ops",
                     "stackctl.workflows.upgrade", "stackctl.workflows.vm_snapshot")


def handler_for(kind: str) -> Handler:
    import importlib

    if kind in _HANDLERS:
        return _HANDLERS[kind]
    for name in _RECOVERY_MODULES:
        handler = getattr(importlib.import_module(name), "RECOVERY", {}).get(kind)
        if handler is not None:
            return handler
    return _unknown_kind
