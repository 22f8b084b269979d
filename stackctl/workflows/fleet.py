"""The fleet as the controller knows it, for users' own playbooks.

``record`` keeps one ``FleetHost`` row per inventory host with its groups (``host refresh`` and
``deploy`` call it); ``export`` turns those rows, the hypervisor rows and the VMs into the JSON
that ``ansible-inventory --list`` prints, which the ``stackctl`` inventory plugin
(``plugins/inventory/stackctl.py``) hands to Ansible. ``build`` is the pure part, on plain
dicts, so that it is tested by tables.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from sqlalchemy import select
from stackcore.errors import BackendError, InvalidInput, NotFound

from stackctl import config
from stackctl.models import VM, FleetHost, Host, Tenant, utcnow
from stackctl.workflows import lookup

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from stackctl.app import App
    from stackctl.db import Database

FLEET_GROUPS = ("controllers", "hypervisors", "storage_nodes", "proxies")
VM_USER = "root"  # the guests' SSH user (the test image serves root, keys only)
_UNSAFE_GROUP_CHARS = re.compile(r"[^A-Za-z0-9_]")


class _Inventory(Protocol):
    def inventory_hosts(self, group: str) -> dict[str, str]: ...


def hosts_from_inventory(runner: _Inventory) -> dict[str, dict]:
    """``{host: {"address", "groups"}}`` for every host of the fleet groups of the inventory,
    what ``record`` takes (``runner`` is ``app.runner``; its inventory is read once)."""
    hosts: dict[str, dict] = {}
    for group in FLEET_GROUPS:
        for name, address in runner.inventory_hosts(group).items():
            hosts.setdefault(name, {"address": address, "groups": []})["groups"].append(group)
    return hosts


def record(app: App, hosts: Mapping[str, Mapping]) -> None:
    """Make the ``FleetHost`` rows match ``hosts`` (name -> {"address", "groups"}): upsert
    each one and delete the rows of hosts that are no longer there."""
    wanted = {name: _fleet_entry(name, entry) for name, entry in hosts.items()}
    now = utcnow()
    with app.db.write() as session:
        rows = {row.name: row for row in session.scalars(select(FleetHost))}
        for name, row in rows.items():
            if name not in wanted:
                session.delete(row)
        for name, (address, groups) in wanted.items():
            row = rows.get(name) or FleetHost(name=name)
            row.address, row.groups, row.seen_at = address, groups, now
            session.add(row)


def _fleet_entry(name: object, entry: Mapping) -> tuple[str | None, list[str]]:
    groups = entry.get("groups") or []
    if not isinstance(name, str) or not name or isinstance(groups, str) \
            or not all(isinstance(g, str) and g for g in groups):
        raise InvalidInput(f"invalid fleet host {name!r}: {dict(entry)!r}")
    address = entry.get("address")
    return (str(address) if address else None), sorted(set(groups))


def export(session: Session, tenant: str | None = None) -> dict:
    """The ``ansible-inventory --list`` JSON of the fleet, the hypervisors and the VMs (only
    ``tenant``'s VMs when given; an unknown tenant is NotFound)."""
    fleet = [{"name": r.name, "address": r.address, "groups": list(r.groups or [])}
             for r in session.scalars(select(FleetHost))]
    hypervisors = [{"name": r.name, "address": r.address, "enabled": r.enabled,
                    "disabled_reason": r.disabled_reason} for r in session.scalars(select(Host))]
    query = (select(VM.uuid, VM.name, Tenant.name.label("tenant"), Host.name.label("host"),
                    VM.state, VM.address, VM.mac)
             .join(Tenant, VM.tenant_id == Tenant.id).outerjoin(Host, VM.host_id == Host.id))
    if tenant:
        query = query.where(VM.tenant_id == lookup.tenant(session, tenant).id)
    vms = [dict(row._mapping) for row in session.execute(query)]
    return build(fleet, hypervisors, vms)


def build(fleet: Iterable[Mapping], hypervisors: Iterable[Mapping],
          vms: Iterable[Mapping]) -> dict:
    """The inventory JSON from plain rows (keys as the model columns; a VM's ``tenant`` and
    ``host`` are names). Only groups that have hosts are listed; lists are sorted."""
    groups: dict[str, set[str]] = {}
    vms = list(vms)
    hostvars: dict[str, dict] = {}

    def add(host: str, group: str, **variables: object) -> None:
        groups.setdefault(group_name(group), set()).add(host)
        hostvars.setdefault(host, {}).update(variables)

    for entry in fleet:
        name = entry["name"]
        for group in entry.get("groups") or ("ungrouped",):
            add(name, group)
        hostvars.setdefault(name, {})["stackctl_groups"] = sorted(entry.get("groups") or ())
        if entry.get("address"):
            hostvars[name]["ansible_host"] = entry["address"]
    for hv in hypervisors:
        name = hv["name"]
        add(name, "hypervisors", stackctl_enabled=bool(hv["enabled"]),
            stackctl_disabled_reason=hv.get("disabled_reason"))
        add(name, "hypervisors_enabled" if hv["enabled"] else "hypervisors_disabled")
        known = hostvars[name]
        known["stackctl_groups"] = sorted({*known.get("stackctl_groups", ()), "hypervisors"})
        if hv.get("address") and "ansible_host" not in known:
            known["ansible_host"] = hv["address"]
    for vm in vms:
        name = vm_host_name(vm["tenant"], vm["name"])
        add(name, "vms", ansible_user=VM_USER, stackctl_uuid=vm["uuid"],
            stackctl_name=vm["name"], stackctl_tenant=vm["tenant"], stackctl_host=vm.get("host"),
            stackctl_state=vm["state"], stackctl_mac=vm.get("mac"))
        add(name, f"tenant_{vm['tenant']}")
        add(name, f"vms_{vm['state']}")
        if vm.get("host"):
            add(name, f"vms_on_{vm['host']}")
        if vm.get("address"):
            hostvars[name]["ansible_host"] = vm["address"]
    # A guest is reached through its hypervisor (its NAT network lives there): the address to
    # jump through, e.g. ansible_ssh_common_args: -o ProxyJump=root@{{ stackctl_host_address }}
    for vm in vms:
        host = vm.get("host")
        address = hostvars.get(host, {}).get("ansible_host") if host else None
        if address:
            hostvars[vm_host_name(vm["tenant"], vm["name"])]["stackctl_host_address"] = address
    inventory: dict = {"_meta": {"hostvars": {h: hostvars[h] for h in sorted(hostvars)}},
                       "all": {"children": sorted(groups)}}
    inventory.update({g: {"hosts": sorted(groups[g])} for g in sorted(groups)})
    return inventory


def vm_host_name(tenant: str, name: str) -> str:
    """A VM's inventory name: names are unique per tenant, and a VM name has no '.'."""
    return f"{tenant}.{name}"


def group_name(text: str) -> str:
    """A valid Ansible group name: every character but letters, digits and '_' becomes '_'."""
    return _UNSAFE_GROUP_CHARS.sub("_", text)


def read_inventory(home: str | None = None, db_url: str | None = None,
                   tenant: str | None = None) -> dict:
    """``export`` of an existing controller database (what the inventory plugin calls)."""
    db = open_existing(home, db_url)
    try:
        with db.read() as session:
            return export(session, tenant)
    finally:
        db.dispose()


def open_existing(home: str | None = None, db_url: str | None = None) -> Database:
    """The controller's database, given its home or URL, as ``stackctl`` would find it, but
    never created: a wrong path must fail, not list an empty inventory."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from stackctl.db import Database

    # Same default as stackctl.config; config.load would create a missing home.
    home_dir = Path(home or config._DEFAULT_HOME).expanduser().absolute()
    if home_dir.is_dir():
        environ = {"STACKCTL_HOME": str(home_dir), "STACKCTL_DB_URL": db_url or ""}
        try:
            db_url = config.load(environ).db_url  # the home's stackctl.toml may name it
        except OSError as exc:
            raise BackendError(f"cannot use the stackctl home {home_dir}: {exc.strerror}") from exc
    elif not db_url:
        raise NotFound(f"no stackctl home at {home_dir}: set STACKCTL_HOME or db_url")
    try:
        url = make_url(db_url)
    except ArgumentError:
        raise InvalidInput("invalid database URL (db_url or STACKCTL_DB_URL)") from None
    if url.get_backend_name() == "sqlite":
        path = url.database or ":memory:"
        if path == ":memory:":
            raise InvalidInput("an in-memory SQLite database holds no controller state")
        if not path.startswith("file:") and not Path(path).is_file():
            raise NotFound(f"database {path} does not exist (set STACKCTL_HOME or "
                           "STACKCTL_DB_URL to the controller's)")
    return Database(db_url)
