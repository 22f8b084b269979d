"""Hypervisor hosts: the inventory's ``hypervisors`` group, refreshed with
``stack_hypervisor_info``; and ``deploy``, which runs ``playbooks/site.yml``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import select
from stackcore.errors import InvalidInput

from stackctl import tasks
from stackctl.app import App
from stackctl.models import Host, utcnow
from stackctl.runner import Progress
from stackctl.scheduler import usage_by_host
from stackctl.workflows import lookup

HYPERVISOR_GROUP = "hypervisors"
SITE_PLAYBOOK = "playbooks/site.yml"


@dataclass
class RefreshResult:
    hosts: list[dict] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # host -> why
    disabled: list[str] = field(default_factory=list)  # rows no longer in the inventory


def refresh(app: App, progress: Progress | None = None) -> RefreshResult:
    """Ask every hypervisor in the inventory for its capacity and versions; upsert the rows.

    Hosts are queried in one run (in parallel). A host that fails keeps its old row; a row
    whose host left the inventory is disabled so nothing new is scheduled there.
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
            row = rows.get(name) or Host(name=name)
            _apply_info(row, info, addresses[name])
            session.add(row)
        for name, row in rows.items():
            if name not in addresses and row.enabled:
                row.enabled = False
                result.disabled.append(name)
    result.hosts = list_hosts(app)
    return result


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


def _apply_info(row: Host, info: dict, address: str) -> None:
    row.address = address
    row.enabled = True
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
