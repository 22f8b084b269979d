"""Finding rows by name as a tenant sees them.

A tenant never learns that another tenant's VM, keypair, server group or private image
exists: what it cannot see is simply NotFound, with the same message as something that does
not exist.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import or_, select
from stackcore import validate
from stackcore.errors import InvalidInput, NotFound

from stackctl.models import VM, Flavor, Host, Image, Keypair, ServerGroup, Tenant

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


def require_tenant_name(name: str | None) -> str:
    if not name:
        raise InvalidInput("no tenant given: pass --tenant or set STACKCTL_TENANT")
    return validate.resource_name(name, "tenant name")


def tenant(session: Session, name: str | None) -> Tenant:
    name = require_tenant_name(name)
    row = session.scalar(select(Tenant).where(Tenant.name == name))
    if row is None:
        raise NotFound(f"tenant {name!r} does not exist")
    return row


def flavor(session: Session, name: str) -> Flavor:
    validate.resource_name(name, "flavor name")
    row = session.scalar(select(Flavor).where(Flavor.name == name))
    if row is None:
        known = ", ".join(session.scalars(select(Flavor.name).order_by(Flavor.name)))
        raise NotFound(f"flavor {name!r} does not exist (known: {known or 'none'})")
    return row


def keypair(session: Session, owner: Tenant, name: str) -> Keypair:
    validate.resource_name(name, "keypair name")
    row = session.scalar(select(Keypair).where(Keypair.tenant_id == owner.id,
                                               Keypair.name == name))
    if row is None:
        raise NotFound(f"keypair {name!r} does not exist")
    return row


def visible_images(owner: Tenant | None):
    """A query of the images ``owner`` may use: its own and the public ones."""
    query = select(Image)
    if owner is None:
        return query.where(Image.tenant_id.is_(None))
    return query.where(or_(Image.tenant_id == owner.id, Image.tenant_id.is_(None)))


def image(session: Session, owner: Tenant | None, name: str) -> Image:
    """The image called ``name`` visible to ``owner``; a private one shadows a public one."""
    validate.resource_name(name, "image name")
    rows = list(session.scalars(visible_images(owner).where(Image.name == name)))
    if not rows:
        raise NotFound(f"image {name!r} does not exist")
    rows.sort(key=lambda r: r.tenant_id is None)  # private first
    return rows[0]


def vm(session: Session, owner: Tenant, name: str) -> VM:
    """The tenant's VM ``name``. Names are validated first so a malformed one never reaches SQL
    or a host."""
    validate.vm_name(name)
    row = session.scalar(select(VM).where(VM.tenant_id == owner.id, VM.name == name))
    if row is None:
        raise NotFound(f"VM {name!r} does not exist")
    return row


def server_group_name(name: str) -> str:
    """Server group names follow the VM name rules (lower-case hostname labels)."""
    try:
        return validate.vm_name(name)
    except InvalidInput:
        raise InvalidInput(
            f"invalid server group name {name!r}: use 1-63 lower-case letters, digits and "
            "'-', starting and ending with a letter or digit") from None


def server_group(session: Session, owner: Tenant, name: str) -> ServerGroup:
    server_group_name(name)
    row = session.scalar(select(ServerGroup).where(ServerGroup.tenant_id == owner.id,
                                                   ServerGroup.name == name))
    if row is None:
        raise NotFound(f"server group {name!r} does not exist")
    return row


def host(session: Session, name: str) -> Host:
    row = session.scalar(select(Host).where(Host.name == name))
    if row is None:
        raise NotFound(f"host {name!r} is not known (run 'stackctl host refresh')")
    return row
