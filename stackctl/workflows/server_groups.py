"""A tenant's server groups: VMs kept on one host (``affinity``) or on different hosts
(``anti-affinity``). Membership is decided at ``vm create --group`` (``scheduler.claim``) and
ends when the VM is deleted."""

from __future__ import annotations

from sqlalchemy import select
from stackcore.errors import Conflict, InvalidInput

from stackctl.app import App
from stackctl.models import SERVER_GROUP_POLICIES, VM, ServerGroup, ServerGroupMember
from stackctl.workflows import lookup


def create(app: App, tenant: str | None, name: str, policy: str) -> dict:
    lookup.server_group_name(name)
    if policy not in SERVER_GROUP_POLICIES:
        raise InvalidInput(f"invalid server group policy {policy!r}: use "
                           + " or ".join(SERVER_GROUP_POLICIES))
    with app.db.write() as session:
        owner = lookup.tenant(session, tenant)
        if session.scalar(select(ServerGroup.id).where(ServerGroup.tenant_id == owner.id,
                                                       ServerGroup.name == name)):
            raise Conflict(f"server group {name!r} already exists")
        group = ServerGroup(tenant=owner, name=name, policy=policy)
        session.add(group)
        session.flush()
        return _to_dict(group, [])


def list_groups(app: App, tenant: str | None) -> list[dict]:
    with app.db.read() as session:
        owner = lookup.tenant(session, tenant)
        groups = session.scalars(select(ServerGroup).where(ServerGroup.tenant_id == owner.id)
                                 .order_by(ServerGroup.name))
        return [_to_dict(g, _members(session, g)) for g in groups]


def show(app: App, tenant: str | None, name: str) -> dict:
    with app.db.read() as session:
        group = lookup.server_group(session, lookup.tenant(session, tenant), name)
        return _to_dict(group, _members(session, group))


def delete(app: App, tenant: str | None, name: str) -> dict:
    """Delete an empty group; refused while it has members (delete the VMs first)."""
    with app.db.write() as session:
        group = lookup.server_group(session, lookup.tenant(session, tenant), name)
        members = _members(session, group)
        if members:
            names = ", ".join(m["name"] for m in members)
            raise Conflict(f"server group {name!r} still has {len(members)} member(s) "
                           f"({names}): delete those VMs first")
        session.delete(group)
        return {"name": name, "deleted": True}


def _members(session, group: ServerGroup) -> list[dict]:
    vms = session.scalars(select(VM).join(ServerGroupMember, ServerGroupMember.vm_uuid == VM.uuid)
                          .where(ServerGroupMember.group_id == group.id).order_by(VM.name))
    return [{"name": vm.name, "host": vm.host.name if vm.host else None, "state": vm.state}
            for vm in vms]


def _to_dict(group: ServerGroup, members: list[dict]) -> dict:
    return {"name": group.name, "policy": group.policy, "tenant": group.tenant.name,
            "members": members, "hosts": sorted({m["host"] for m in members if m["host"]}),
            "created_at": group.created_at}
