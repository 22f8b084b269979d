"""Hypervisor hosts: the inventory's ``hypervisors`` group, refreshed with
``stack_hypervisor_info``; disabling and enabling them for new VMs; and ``deploy``, which runs
``playbooks/site.yml``.

A disabled host keeps its VMs running; only new placements avoid it. ``disabled_reason`` says
who disabled it: ``refresh`` disables a host that left the inventory ("not in the inventory")
and enables it again when it is back; a host an operator disabled (any other reason) stays
disabled until ``enable``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import select
from stackcore.errors import Conflict, InvalidInput

from stackctl import tasks
from stackctl.app import App
from stackctl.models import Host, utcnow
from stackctl.runner import Progress
from stackctl.scheduler import usage_by_host
from stackctl.workflows import fleet, lookup

HYPERVISOR_GROUP = "hypervisors"
SITE_PLAYBOOK = "playbooks/site.yml"
NOT_IN_INVENTORY = "not in the inventory"
OPERATOR_REASON = "disabled by an operator"  # ``host disable`` without --reason
MAX_REASON = 255


@dataclass
class RefreshResult:
    hosts: list[dict] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # host -> why
    disabled: list[str] = field(default_factory=list)  # rows no longer in the inventory
    enabled: list[str] = field(default_factory=list)  # rows back in the inventory


def refresh(app: App, progress: Progress | None = None) -> RefreshResult:
    """Ask every hypervisor in the inventory for its capacity and versions; upsert the rows.

    Hosts are queried in one run (in parallel). A host that fails keeps its old row; a row
    whose host left the inventory is disabled so nothing new is scheduled there, and enabled
    again when it is back. A host an operator disabled stays disabled.
    """
    addresses = app.runner.inventory_hosts(HYPERVISOR_GROUP)
    outcomes = app.runner.run_each(sorted(addresses), [tasks.hypervisor_info()], progress,
                                   label="refresh")
    result = RefreshResult()
    with app.db.write() as session:
        rows = {h.name: h for h in session.scalars(select(Host))}
        for name, outcome in outcomes.items():
            if outcome.error:
                result.failed[name] = outcome.error
                continue
            info = (outcome.results[0].get("hypervisor") or {}) if outcome.results else {}
            row = rows.get(name) or Host(name=name, enabled=True)
            _apply_info(row, info, addresses[name])
            if not row.enabled and _disabled_by_refresh(row):
                row.enabled, row.disabled_reason = True, None
                result.enabled.append(name)
            session.add(row)
        for name, row in rows.items():
            if name not in addresses and row.enabled:
                row.enabled, row.disabled_reason = False, NOT_IN_INVENTORY
                result.disabled.append(name)
    fleet.record(app, fleet.hosts_from_inventory(app.runner))  # for the inventory plugin
    result.hosts = list_hosts(app)
    return result


def disable(app: App, name: str, reason: str | None = None) -> dict:
    """Keep new VMs off host ``name`` (its VMs keep running); ``refresh`` will not undo it."""
    reason = _reason(reason)
    with app.db.write() as session:
        row = lookup.host(session, name)
        row.enabled, row.disabled_reason = False, reason
    return show_host(app, name)


def enable(app: App, name: str) -> dict:
    """Let the scheduler place new VMs on host ``name`` again."""
    with app.db.write() as session:
        row = lookup.host(session, name)
        if not row.enabled and row.disabled_reason == NOT_IN_INVENTORY:
            raise Conflict(f"host {name!r} is not in the inventory: add it to the "
                           f"'{HYPERVISOR_GROUP}' group and run 'stackctl host refresh'")
        row.enabled, row.disabled_reason = True, None
    return show_host(app, name)


def list_hosts(app: App) -> list[dict]:
    """Hosts with what is allocated on them (sums of their VMs' flavors)."""
    with app.db.read() as session:
        usage = usage_by_host(session)
        return [_with_usage(h, usage) for h in session.scalars(select(Host).order_by(Host.name))]


def show_host(app: App, name: str) -> dict:
    with app.db.read() as session:
        return _with_usage(lookup.host(session, name), usage_by_host(session))


def deploy(app: App, on_event: Callable[[dict], None], *, check: bool = False,
           diff: bool = False, limit: str | None = None,
           tags: str | None = None) -> tuple[str, dict[str, dict[str, int]]]:
    """Run the site playbook; returns ansible-runner's status and the recap per host."""
    for flag, value in (("--limit", limit), ("--tags", tags)):
        if value is not None and (not value.strip() or value.startswith("-")):
            raise InvalidInput(f"invalid {flag} {value!r}")
    playbook = app.config.project / SITE_PLAYBOOK
    if not playbook.is_file():
        raise InvalidInput(f"playbook {playbook} does not exist")
    return app.runner.run_playbook(playbook, on_event, check=check, diff=diff, limit=limit,
                                   tags=tags)


def _disabled_by_refresh(row: Host) -> bool:
    # No reason: disabled by a refresh before reasons were recorded (schema 2).
    return row.disabled_reason in (None, NOT_IN_INVENTORY)


def _reason(text: str | None) -> str:
    reason = " ".join((text or "").split())  # one line in tables
    if len(reason) > MAX_REASON:
        raise InvalidInput(f"the reason is longer than {MAX_REASON} characters")
    if reason == NOT_IN_INVENTORY:
        raise InvalidInput(f"the reason {reason!r} is reserved for hosts that left the "
                           "inventory")
    return reason or OPERATOR_REASON


def _apply_info(row: Host, info: dict, address: str) -> None:
    """Capacity and versions as reported (``refresh`` alone decides ``enabled``)."""
    row.address = address
    row.vcpus = int(info.get("vcpus") or 0)
    row.ram_mb = int(info.get("memory_mb") or 0)
    row.disk_gb = int(info.get("disk_gb") or 0)
    row.disk_free_gb = info.get("disk_free_gb")
    row.kvm_usable = bool(info.get("kvm_usable"))
    row.virt_type = info.get("virt_type")
    row.libvirt_version = _text(info.get("libvirt_version"))
    row.qemu_version = _text(info.get("qemu_version"))
    row.refreshed_at = utcnow()


def _text(value) -> str | None:
    return None if value is None else str(value)


def _with_usage(host: Host, usage) -> dict:
    used = usage.get(host.name)
    return dict(host.to_dict(), vms=used.instances if used else 0,
                vcpus_used=used.vcpus if used else 0, ram_used_mb=used.ram_mb if used else 0,
                disk_used_gb=used.disk_gb if used else 0)
