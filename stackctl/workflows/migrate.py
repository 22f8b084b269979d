"""Moving a VM to another hypervisor: ``vm migrate`` cold or ``--live`` (journaled).

Journaled steps (``STACKCTL_CRASH_AT`` accepts these names):

- live (``vm.migrate``, params ``live: true``): ``claim`` (target chosen under the scheduler's
  lock; ``VM.migration_host_id`` holds the slot there), ``prepare`` (target: base image cached,
  domain defined with an empty overlay and the seed), ``move`` (source: ``stack_vm_migrate
  live``), ``cleanup`` (source: instance files removed), ``finish`` (the row points at the
  target).
- cold: ``claim``, ``stop`` (source: ACPI shutdown), ``prepare``, ``copy`` (source: rsync of the
  overlay), ``start`` (target: booted, or left defined if the VM was stopped), ``cleanup``,
  ``finish``.

A failure, a Ctrl-C or a kill at any point is settled the same way, by ``settle``: it waits for
anything still working on the domain on both hosts (``stack_vm_migrate settle``), reads where
the domain really is and goes forward or back by ``move_plan.resolve``, so the VM ends with
exactly one copy, in its original power state.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from stackcore import validate
from stackcore.errors import Conflict, HostUnreachable, InvalidInput, StackError

from stackctl import move_plan, tasks
from stackctl.app import App
from stackctl.journal import Journal
from stackctl.models import VM, Host
from stackctl.progress import StepProgress
from stackctl.scheduler import HostState, Request, group_state, select_host, usage_by_host
from stackctl.workflows import lookup


@dataclass(frozen=True)
class MoveContext:
    """What every step needs, read once (no session stays open while hosts work)."""

    uuid: str
    name: str
    source: str
    target: str
    target_address: str
    live: bool
    was_running: bool


def migrate(app: App, tenant: str | None, name: str, to: str | None = None,
            live: bool = False, ui: StepProgress | None = None) -> dict:
    """Move VM ``name`` to host ``to`` (or the scheduler's choice); returns the VM row and
    the move's figures."""
    ui = ui or StepProgress("", enabled=False)
    validate.vm_name(name)
    with app.db.read() as session:
        vm = lookup.vm(session, lookup.tenant(session, tenant), name)
        uuid, tenant_id = vm.uuid, vm.tenant_id
        _check_movable(vm, live)
        if to is not None:
            lookup.host(session, to)
    return move(app, uuid, tenant_id, to=to, live=live, ui=ui)


def move(app: App, uuid: str, tenant_id: int, *, to: str | None, live: bool,
         ui: StepProgress) -> dict:
    """The journaled move of one VM (also used by ``host drain``)."""
    journal = Journal.open(app.db, "vm.migrate", vm_uuid=uuid, tenant_id=tenant_id,
                           params={"live": live, "to": to}, exclusive=True)
    started = time.monotonic()
    ctx = None
    try:
        with journal.step("claim"):
            ui.step("choosing the target host" if to is None else f"checking {to}")
            ctx = _claim(app, journal, uuid, to, live)
        _record_context(app, journal, ctx)
        started_there = (_live_steps if live else _cold_steps)(app, journal, ctx, ui)
        with journal.step("finish"):
            result = _finish(app, ctx, "running" if ctx.was_running else "stopped",
                             started_there)
        journal.finish("done")
    except (StackError, KeyboardInterrupt) as exc:
        if ctx is None:
            journal.finish("failed", str(exc))
            raise
        ui.step(f"the move failed ({exc}); settling where the VM is")
        settle(app, journal.op_id, ui)
        raise
    result.update(moved_from=ctx.source, mode="live" if live else "cold",
                  seconds=round(time.monotonic() - started, 1))
    return result


def _check_movable(vm: VM, live: bool) -> None:
    if vm.host is None:
        raise Conflict(f"VM {vm.name!r} has no host")
    if vm.migration_host_id is not None:
        raise Conflict(f"VM {vm.name!r} is already moving")
    if live and vm.state != "running":
        raise Conflict(f"VM {vm.name!r} is {vm.state}: a live migration needs a running VM "
                       "(move it without --live)")
    if vm.state not in ("running", "stopped"):
        raise Conflict(f"VM {vm.name!r} is {vm.state}: only running or stopped VMs can move "
                       "('vm set-state' fixes a stuck one)")


def _claim(app: App, journal: Journal, uuid: str, to: str | None, live: bool) -> MoveContext:
    """Pick the target inside the scheduler's lock and hold the VM's slot there."""
    from stackctl.db import lock_hosts

    with app.db.write() as session:
        hosts = lock_hosts(session)
        vm = session.get(VM, uuid)
        _check_movable(vm, live)
        group = None
        if vm.server_group is not None:
            group = move_plan.without(
                group_state(session, vm.server_group.id, vm.tenant_id), vm.name)
        states = [HostState(h.name, h.vcpus, h.ram_mb, h.disk_gb, h.enabled) for h in hosts
                  if h.id != vm.host_id and (to is None or h.name == to)]
        if to is not None and not states:
            raise InvalidInput(f"VM {vm.name!r} is already on {to}")
        if not states:
            raise Conflict(f"VM {vm.name!r} is on {vm.host.name}, the only hypervisor: there "
                           "is no other host to move it to")
        chosen = select_host(states, usage_by_host(session),
                             Request(vm.vcpus, vm.ram_mb, vm.disk_gb, group), app.policy)
        target = next(h for h in hosts if h.name == chosen.name)
        if not target.address:
            raise Conflict(f"host {target.name} has no address: run 'stackctl host refresh'")
        vm.migration_host_id = target.id
        return MoveContext(uuid=vm.uuid, name=vm.name, source=vm.host.name, target=target.name,
                           target_address=target.address, live=live,
                           was_running=vm.state == "running")


def _record_context(app: App, journal: Journal, ctx: MoveContext) -> None:
    from stackctl.models import Operation

    with app.db.write() as session:
        op = session.get(Operation, journal.op_id)
        op.params = {**(op.params or {}), "name": ctx.name, "source": ctx.source,
                     "target": ctx.target, "was_running": ctx.was_running}


def _live_steps(app: App, journal: Journal, ctx: MoveContext, ui: StepProgress) -> None:
    """The guest keeps running, and its address: nothing new to record."""
    with journal.step("prepare"):
        ui.step(f"preparing {ctx.target}: base image and an empty overlay")
        _prepare_target(app, ctx, ui, journal)
    with journal.step("move"):
        ui.step(f"live-migrating from {ctx.source} to {ctx.target} (memory and disk)")
        vm = _vm(app, ctx.uuid)
        app.runner.run_tasks(ctx.source, [tasks.vm_migrate(vm, "live", ctx.target_address)],
                             ui.task, label=journal.label)
    with journal.step("cleanup"):
        ui.step(f"removing the old copy's files from {ctx.source}")
        _remove_copy(app, ctx.source, ctx.uuid, ui, journal)


def _cold_steps(app: App, journal: Journal, ctx: MoveContext, ui: StepProgress) -> dict:
    """Returns the target's stack_vm result: the guest booted there takes a lease from the
    target's dnsmasq, usually but not always the address it had."""
    with journal.step("stop"):
        if ctx.was_running:
            ui.step(f"stopping it on {ctx.source}")
        app.runner.run_tasks(ctx.source, [tasks.vm_state(_vm(app, ctx.uuid), "stopped")],
                             ui.task, label=journal.label)
    with journal.step("prepare"):
        ui.step(f"preparing {ctx.target}: base image")
        _prepare_target(app, ctx, ui, journal)
    with journal.step("copy"):
        ui.step(f"copying its disk from {ctx.source} to {ctx.target}")
        app.runner.run_tasks(ctx.source,
                             [tasks.vm_migrate(_vm(app, ctx.uuid), "copy", ctx.target_address)],
                             ui.task, label=journal.label)
    with journal.step("start"):
        started = _start_on_target(app, ctx, ui, journal)
    with journal.step("cleanup"):
        ui.step(f"removing the old copy from {ctx.source}")
        _remove_copy(app, ctx.source, ctx.uuid, ui, journal)
    return started


def _prepare_target(app: App, ctx: MoveContext, ui: StepProgress, journal) -> None:
    """Cache the image parts on the target and define the domain there, not started (an
    empty overlay for a live move's storage copy; a cold move's copy replaces it). A live
    move also reserves the guest's address in the target's DHCP."""
    from stackctl.workflows.vm import _cache_task, _image_parts, _remember_cached

    with app.db.read() as session:
        vm = session.get(VM, ctx.uuid)
        parts = _image_parts(vm.image)
        work = [_cache_task(app, p) for p in parts]
        define = [tasks.vm_state(vm, "present", wait_timeout=0)]
        if ctx.live and vm.address:  # the guest keeps its address: the target must too
            define.append(tasks.vm_reserve_address(vm))
        target_id = vm.migration_host_id
    app.runner.run_tasks(ctx.target, [*work, *define], ui.task, label=journal.label)
    _remember_cached(app, target_id, [p.sha256 for p in parts])


def _start_on_target(app: App, ctx: MoveContext, ui: StepProgress, journal) -> dict:
    vm = _vm(app, ctx.uuid)
    if ctx.was_running:
        ui.step(f"booting it on {ctx.target} and waiting for its address")
        return app.runner.run_tasks(ctx.target, [tasks.vm_state(vm, "running")], ui.task,
                                    label=journal.label)[-1]
    return app.runner.run_tasks(ctx.target, [tasks.vm_state(vm, "present", wait_timeout=0)],
                                ui.task, label=journal.label)[-1]


def _remove_copy(app: App, host: str, uuid: str, ui: StepProgress, journal) -> None:
    vm = _vm(app, uuid)
    app.runner.run_tasks(host, [tasks.vm_absent(vm.domain, vm.uuid)], ui.task,
                         label=journal.label)


def _vm(app: App, uuid: str) -> VM:
    """The VM row with what building module calls needs loaded (detached afterwards)."""
    with app.db.read() as session:
        vm = session.get(VM, uuid)
        for part in (vm.image, vm.image.kernel, vm.image.ramdisk, vm.tenant, vm.flavor):
            _ = part
        session.expunge_all()
        return vm


def _finish(app: App, ctx: MoveContext, state: str, result: dict | None = None) -> dict:
    info = (result or {}).get("vm") or {}
    with app.db.write() as session:
        vm = session.get(VM, ctx.uuid)
        vm.host_id = session.query(Host.id).filter(Host.name == ctx.target).scalar()
        vm.migration_host_id = None
        vm.state, vm.fault = state, None
        if info.get("address"):
            vm.address = info["address"]
        session.flush()
        return vm.to_dict()


# --- settling an interrupted or failed move -------------------------------------------------


def settle(app: App, op_id: int, ui: StepProgress | None = None) -> tuple[str, str, str]:
    """Finish or undo the move of operation ``op_id`` from where the domain really is.
    Returns (action, status, vm name) as recovery handlers do."""
    from stackctl.models import Operation

    ui = ui or StepProgress("", enabled=False)
    with app.db.read() as session:
        op = session.get(Operation, op_id)
        params = dict(op.params or {})
        copied = any(s.name == "copy" and s.done_at is not None for s in op.steps)
        vm = session.get(VM, op.vm_uuid) if op.vm_uuid else None
        if vm is None or "target" not in params:
            if vm is not None:
                _release(app, op.vm_uuid)
            _close(app, op_id, "rolled_back", "nothing had moved yet")
            return "rolled back: nothing had moved yet", "rolled_back", params.get("name")
        ctx = MoveContext(uuid=vm.uuid, name=vm.name, source=params["source"],
                          target=params["target"], target_address="",
                          live=bool(params.get("live")),
                          was_running=bool(params.get("was_running")))
    source_state = _settled_state(app, ctx.source, ctx.uuid, op_id, tolerate_down=True)
    target_state = _settled_state(app, ctx.target, ctx.uuid, op_id, tolerate_down=False)
    way = move_plan.resolve(source_state, target_state, live=ctx.live, copied=copied)
    journal = Journal(app.db, op_id)
    if way == "forward":
        ui.step(f"finishing the move to {ctx.target}")
        result = None
        if ctx.was_running and target_state not in move_plan.ON:
            result = _start_on_target(app, ctx, ui, journal)
        left = ""
        if source_state is None:
            left = f"; {ctx.source} is unreachable, its old files are left there"
        else:
            _remove_copy(app, ctx.source, ctx.uuid, ui, journal)
        _finish(app, ctx, "running" if ctx.was_running else "stopped", result)
        _close(app, op_id, "done", f"interrupted; finished on the target{left}")
        return f"finished: the VM is on {ctx.target}{left}", "done", ctx.name
    ui.step(f"undoing: removing the copy on {ctx.target}, keeping the VM on {ctx.source}")
    _remove_copy(app, ctx.target, ctx.uuid, ui, journal)
    if ctx.was_running and source_state not in move_plan.ON:
        vm = _vm(app, ctx.uuid)
        app.runner.run_tasks(ctx.source, [tasks.vm_state(vm, "running")], ui.task,
                             label=journal.label)
    _release(app, ctx.uuid, "running" if ctx.was_running else "stopped")
    _close(app, op_id, "rolled_back", f"interrupted; rolled back to {ctx.source}")
    return f"rolled back: the VM stays on {ctx.source}", "rolled_back", ctx.name


def _settled_state(app: App, host: str, uuid: str, op_id: int, tolerate_down: bool) -> str | None:
    try:
        results = app.runner.run_tasks(host, [tasks.vm_settle(f"stk-{uuid}")],
                                       label=str(op_id))
    except HostUnreachable:
        if tolerate_down:
            return None
        raise
    return (results[-1] if results else {}).get("here", "absent")


def _release(app: App, uuid: str, state: str | None = None) -> None:
    with app.db.write() as session:
        vm = session.get(VM, uuid)
        if vm is not None:
            vm.migration_host_id = None
            if state:
                vm.state = state


def _close(app: App, op_id: int, status: str, note: str) -> None:
    from stackctl.models import Operation

    with app.db.write() as session:
        op = session.get(Operation, op_id)
        op.status, op.error = status, note


def _recover_move(session, runner, op, progress):
    """``stackctl recover``: settle a move whose process died (see ``settle``)."""
    app = session.info.get("app")
    if app is None:
        raise Conflict("recovering a move needs the application (stackctl recover)")
    session.commit()
    return settle(app, op.id)


RECOVERY = {"vm.migrate": _recover_move}
