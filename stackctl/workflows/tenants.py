"""Tenants and their SSH keypairs."""

from __future__ import annotations

from sqlalchemy import func, select
from stackcore import validate
from stackcore.errors import Conflict, InvalidInput

from stackctl.app import App
from stackctl.models import VM, Credential, Image, Keypair, ServerGroup, Tenant
from stackctl.sshkeys import parse_public_key
from stackctl.workflows import lookup

# Tenants are Swift accounts AUTH_<name>: "stackctl" is the service account (the image
# service's objects), and a name starting with AUTH_ would read as an account id.
RESERVED_NAMES = ("stackctl",)


def create_tenant(app: App, name: str) -> dict:
    validate.resource_name(name, "tenant name")
    if name in RESERVED_NAMES or name.upper().startswith("AUTH_"):
        raise InvalidInput(f"tenant name {name!r} is reserved (the object storage's service "
                           "account, or a name starting with AUTH_)")
    with app.db.write() as session:
        if session.scalar(select(Tenant).where(Tenant.name == name)):
            raise Conflict(f"tenant {name!r} already exists")
        tenant = Tenant(name=name)
        session.add(tenant)
        session.flush()
        return tenant.to_dict()


def list_tenants(app: App) -> list[dict]:
    with app.db.read() as session:
        vms = dict(session.execute(select(VM.tenant_id, func.count()).group_by(VM.tenant_id)).all())
        return [dict(t.to_dict(), vms=vms.get(t.id, 0))
                for t in session.scalars(select(Tenant).order_by(Tenant.name))]


def show_tenant(app: App, name: str) -> dict:
    validate.resource_name(name, "tenant name")
    with app.db.read() as session:
        tenant = lookup.tenant(session, name)
        count = session.scalar(
            select(func.count()).select_from(VM).where(VM.tenant_id == tenant.id)
        )
        return dict(tenant.to_dict(), vms=count)


def delete_tenant(app: App, name: str) -> dict:
    """Delete a tenant with its keypairs and (empty) server groups; refused while it still has
    VMs, private images, buckets or storage credentials."""
    validate.resource_name(name, "tenant name")
    with app.db.read() as session:
        lookup.tenant(session, name)  # NotFound before asking the object storage
    buckets = _bucket_names(app, name)  # outside the write transaction: it is a network call
    if buckets:
        raise Conflict(f"tenant {name!r} still has {len(buckets)} bucket(s) "
                       f"({', '.join(buckets[:3])}{', ...' if len(buckets) > 3 else ''}): "
                       "delete them first; a new tenant of that name would own them")
    with app.db.write() as session:
        tenant = lookup.tenant(session, name)
        vms = session.scalar(select(func.count()).select_from(VM).where(VM.tenant_id == tenant.id))
        images = session.scalar(
            select(func.count()).select_from(Image).where(Image.tenant_id == tenant.id))
        if vms or images:
            raise Conflict(f"tenant {name!r} still has {vms} VM(s) and {images} private "
                           "image(s): delete them first")
        creds = session.scalar(select(func.count()).select_from(Credential)
                               .where(Credential.tenant_id == tenant.id))
        if creds:
            raise Conflict(f"tenant {name!r} still has {creds} storage credential(s): "
                           "revoke them first (and delete its buckets)")

        for keypair in session.scalars(select(Keypair).where(Keypair.tenant_id == tenant.id)):
            session.delete(keypair)
        # No VMs left, so its server groups are empty.
        for group in session.scalars(select(ServerGroup)
                                     .where(ServerGroup.tenant_id == tenant.id)):
            session.delete(group)
        session.delete(tenant)
        return {"name": name, "deleted": True}


def _bucket_names(app: App, tenant: str) -> list[str]:
    """The tenant's Swift containers (buckets and s3api's segment containers), or [] when no
    object storage is deployed."""
    from stackctl.workflows import storage_env

    if not storage_env.deployed(app):
        return []
    session = storage_env.load(app).session()
    return [c["name"] for c in session.list_containers(tenant)]


def add_keypair(app: App, tenant_name: str | None, name: str, public_key: str) -> dict:
    validate.resource_name(name, "keypair name")
    key = parse_public_key(public_key)
    with app.db.write() as session:
        tenant = lookup.tenant(session, tenant_name)
        if session.scalar(select(Keypair).where(Keypair.tenant_id == tenant.id,
                                                Keypair.name == name)):
            raise Conflict(f"keypair {name!r} already exists")
        keypair = Keypair(tenant=tenant, name=name, public_key=key.line,
                          fingerprint=key.fingerprint, key_type=key.key_type)
        session.add(keypair)
        session.flush()
        return keypair.to_dict()


def list_keypairs(app: App, tenant_name: str | None) -> list[dict]:
    with app.db.read() as session:
        tenant = lookup.tenant(session, tenant_name)
        rows = session.scalars(select(Keypair).where(Keypair.tenant_id == tenant.id)
                               .order_by(Keypair.name))
        return [k.to_dict() for k in rows]


def show_keypair(app: App, tenant_name: str | None, name: str) -> dict:
    validate.resource_name(name, "keypair name")
    with app.db.read() as session:
        keypair = lookup.keypair(session, lookup.tenant(session, tenant_name), name)
        return dict(keypair.to_dict(), public_key=keypair.public_key)


def delete_keypair(app: App, tenant_name: str | None, name: str) -> dict:
    """Delete a keypair. VMs booted with it keep their copy of the key (as in Nova)."""
    validate.resource_name(name, "keypair name")
    with app.db.write() as session:
        keypair = lookup.keypair(session, lookup.tenant(session, tenant_name), name)
        session.delete(keypair)
        return {"name": name, "deleted": True}
