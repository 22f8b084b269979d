"""Emptying a hypervisor: ``host drain`` (move every VM off, live where possible), ``host
evacuate`` (rebuild a dead host's VMs elsewhere) and ``host decommission`` (drain, take its
Swift devices out of the rings, forget it).

A drain plans every move before it starts (``move_plan.plan_drain``: capacity and server-group
rules, each planned move counted for the next) and refuses, moving nothing, when a VM cannot
go anywhere. Each VM then moves in its own journaled ``vm.migrate`` (``workflows.migrate``);
the drain itself is journaled as ``host.drain`` and stops at the first move that fails, with a
report of what moved. Running it again carries on: the host stays disabled and only the VMs
still on it are planned.
"""

from __future__ import annotations

import time

from sqlalchemy import select
from stackcore.errors import BackendError, Conflict, HostUnreachable, StackError

from stackctl import move_plan, tasks
from stackctl.app import App
from stackctl.journal import Journal
from stackctl.models import VM, Host
from stackctl.progress import StepProgress
from stackctl.scheduler import HostState, group_state, usage_by_host
from stackctl.workflows import lookup

DRAIN_REASON = "draining"
EVACUATE_REASON = "evacuated: host down"


def plan(app: App, host: str, live: bool = True) -> list[move_plan.Move]:
    """Where each VM of ``host`` would go (nothing changes)."""
    with app.db.read() as session:
        source = lookup.host(session, host)
        vms = _vms_on(session, source.id)
        groups = {}
        for vm in vms:
            key = _group_key(vm)
            if key is not None and key not in groups:
                groups[key] = _labelled(group_state(session, vm.server_group.id, vm.tenant_id),
                                        vm.tenant.name)
        movers = [move_plan.Mover(_label(vm), vm.vcpus, vm.ram_mb, vm.disk_gb, vm.state,
                                  _group_key(vm)) for vm in vms]
        hosts = [HostState(h.name, h.vcpus, h.ram_mb, h.disk_gb, h.enabled)
                 for h in session.scalars(select(Host).order_by(Host.name))]
        usage = usage_by_host(session)
    return move_plan.plan_drain(source.name, movers, hosts, usage, groups, app.policy, live)


def drain(app: App, host: str, ui: StepProgress | None = None, live: bool = True) -> dict:
    """Disable ``host`` and move every VM off it. Returns the report (one row per VM)."""
    ui = ui or StepProgress("", enabled=False)
    ui.step(f"planning where the VMs of {host} go")
    moves = plan(app, host, live)
    stuck = [m for m in moves if m.target is None]
    if stuck:
        lines = "; ".join(f"{m.vm}: {m.reason}" for m in stuck)
        raise Conflict(f"cannot drain {host}: {len(stuck)} of {len(moves)} VMs cannot move "
                       f"({lines}); nothing was moved")
    _disable(app, host, DRAIN_REASON)
    journal = Journal.open(app.db, "host.drain", params={"host": host, "live": live,
                                                         "planned": len(moves)})
    rows = []
    try:
        for number, planned in enumerate(moves, start=1):
            ui.step(f"[{number}/{len(moves)}] {planned.vm} -> {planned.target} ({planned.mode})")
            rows.append(_move_one(app, journal, planned, ui))
    except (StackError, KeyboardInterrupt) as exc:
        rows += [{"vm": m.vm, "to": m.target, "mode": m.mode, "result": "not moved",
                  "seconds": None} for m in moves[len(rows) + 1:]]
        journal.finish("failed", f"stopped: {exc}")
        raise Conflict(f"drain of {host} stopped: {exc}; {_summary(rows)}; {host} stays "
                       f"disabled, run 'stackctl host drain {host}' again to carry on") from exc
    journal.finish("done")
    return {"host": host, "moved": len(rows), "vms": rows}


def _move_one(app: App, journal: Journal, planned: move_plan.Move, ui: StepProgress) -> dict:
    from stackctl.workflows import migrate

    tenant, name = planned.vm.split("/", 1)
    with journal.step(f"move {planned.vm}"):
        with app.db.read() as session:
            vm = lookup.vm(session, lookup.tenant(session, tenant), name)
            uuid, tenant_id = vm.uuid, vm.tenant_id
        started = time.monotonic()
        migrate.move(app, uuid, tenant_id, to=planned.target, live=planned.mode == "live",
                     ui=ui)
    return {"vm": planned.vm, "to": planned.target, "mode": planned.mode, "result": "moved",
            "seconds": round(time.monotonic() - started, 1)}


def _summary(rows: list[dict]) -> str:
    moved = sum(1 for r in rows if r["result"] == "moved")
    return f"{moved} of {len(rows)} VMs moved"


def evacuate(app: App, host: str, ui: StepProgress | None = None) -> dict:
    """Rebuild every VM of a host that is down on other hosts, from its image and seed.

    Without shared storage the disks stay on the dead host: each VM boots from a fresh
    overlay of its image with its original seed (same uuid, MAC, name, key, user data);
    whatever the guest wrote to its disk since it was created is lost."""
    ui = ui or StepProgress("", enabled=False)
    ui.step(f"checking that {host} is down")
    _require_down(app, host)
    moves = plan(app, host, live=False)
    stuck = [m for m in moves if m.target is None]
    if stuck:
        lines = "; ".join(f"{m.vm}: {m.reason}" for m in stuck)
        raise Conflict(f"cannot evacuate {host}: {lines}; nothing was rebuilt")
    _disable(app, host, EVACUATE_REASON)
    journal = Journal.open(app.db, "host.evacuate", params={"host": host})
    rows = []
    try:
        for number, planned in enumerate(moves, start=1):
            ui.step(f"[{number}/{len(moves)}] rebuilding {planned.vm} on {planned.target}")
            with journal.step(f"rebuild {planned.vm}"):
                rows.append(_rebuild_elsewhere(app, planned, ui, journal))
    except (StackError, KeyboardInterrupt) as exc:
        journal.finish("failed", f"stopped: {exc}")
        raise Conflict(f"evacuation of {host} stopped: {exc}; {len(rows)} of {len(moves)} VMs "
                       f"rebuilt; run 'stackctl host evacuate {host}' again to carry on") from exc
    journal.finish("done")
    return {"host": host, "rebuilt": len(rows), "vms": rows,
            "lost": "each VM's disk changes since it was created (the disks stay on "
                    f"{host}; no shared storage)"}


def _rebuild_elsewhere(app: App, planned: move_plan.Move, ui: StepProgress, journal) -> dict:
    from stackctl.workflows.vm import _cache_task, _image_parts, _record, _remember_cached

    tenant, name = planned.vm.split("/", 1)
    started = time.monotonic()
    with app.db.write() as session:
        vm = lookup.vm(session, lookup.tenant(session, tenant), name)
        target = lookup.host(session, planned.target)
        was_running = vm.state == "running"
        vm.host_id, vm.state, vm.fault = target.id, "building", None
        parts = _image_parts(vm.image)
        work = [*(_cache_task(app, p) for p in parts),
                tasks.vm_state(vm, "running" if was_running else "present",
                               wait_timeout=tasks.DEFAULT_WAIT_TIMEOUT if was_running else 0)]
        uuid, target_id = vm.uuid, target.id
    results = app.runner.run_tasks(planned.target, work, ui.task, label=journal.label)
    _remember_cached(app, target_id, [p.sha256 for p in parts])
    _record(app, uuid, "running" if was_running else "stopped", results[-1])
    return {"vm": planned.vm, "to": planned.target, "mode": "rebuild", "result": "rebuilt",
            "seconds": round(time.monotonic() - started, 1)}


def decommission(app: App, host: str, ui: StepProgress | None = None,
                 resume: bool = False) -> dict:
    """Drain ``host``, take its Swift devices out of the rings step by step (when it is a
    storage node), then forget it. A storage step that must wait for ``min_part_hours``
    pauses the whole decommission (``resume``). The inventory is the user's: the report says
    what to remove there."""
    ui = ui or StepProgress("", enabled=False)
    report: dict = {"host": host}
    with app.db.read() as session:
        known = session.scalar(select(Host).where(Host.name == host)) is not None
    if known:
        report["drain"] = drain(app, host, ui)
    if _is_storage_node(app, host):
        from stackctl.workflows import storage_ops

        report["storage"] = storage_ops.decommission_storage(app, host, ui, resume=resume)
        if report["storage"].get("status") != "done":
            report["next"] = (f"continue after {report['storage'].get('resume_after')} with "
                              f"'stackctl host decommission {host} --resume'")
            return report
    if known:
        _forget(app, host)
    report["next"] = f"remove {host} from the inventory ({app.config.inventory})"
    return report


def _is_storage_node(app: App, host: str) -> bool:
    return host in app.runner.inventory_hosts("storage_nodes")


def _forget(app: App, host: str) -> None:
    with app.db.write() as session:
        row = session.scalar(select(Host).where(Host.name == host))
        if session.scalar(select(VM.uuid).where(VM.host_id == row.id)):
            raise Conflict(f"{host} still has VMs")
        session.delete(row)


def _require_down(app: App, host: str) -> None:
    with app.db.read() as session:
        lookup.host(session, host)
    try:
        app.runner.run_tasks(host, [tasks.hypervisor_info()], label="evacuate-check")
    except HostUnreachable:
        return
    except BackendError as exc:
        raise Conflict(f"{host} answers but its check failed ({exc}); evacuate only a host "
                       "that is down") from exc
    raise Conflict(f"{host} is up and answers: drain it instead ('stackctl host drain "
                   f"{host}'); evacuate rebuilds VMs from their images and loses their disks")


def _disable(app: App, host: str, reason: str) -> None:
    with app.db.write() as session:
        row = lookup.host(session, host)
        row.enabled = False
        row.disabled_reason = row.disabled_reason or reason


def _vms_on(session, host_id: int) -> list[VM]:
    return list(session.scalars(select(VM).where(VM.host_id == host_id).order_by(
        VM.tenant_id, VM.name)))


def _label(vm: VM) -> str:
    return f"{vm.tenant.name}/{vm.name}"


def _group_key(vm: VM) -> str | None:
    """Server groups are per tenant: keyed ``tenant/group`` as VMs are ``tenant/vm``."""
    return f"{vm.tenant.name}/{vm.server_group.name}" if vm.server_group else None


def _labelled(group, tenant: str):
    """The group with its members named as the movers are (``tenant/vm``)."""
    from dataclasses import replace

    members = {h: tuple(f"{tenant}/{n}" for n in names) for h, names in group.members.items()}
    return replace(group, members=members)
