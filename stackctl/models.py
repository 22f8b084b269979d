"""The controller's state: SQLAlchemy 2 typed declarative models.

Names are unique per tenant (VMs, keypairs, private images) or globally (tenants, flavors,
hosts). A VM keeps its own copy of the flavor's sizes, as Nova does, so that usage is computed
from VM rows alone. ``Operation``/``OperationStep`` are the journal (see ``stackctl.journal``).
"""

from __future__ import annotations

import datetime as dt
import uuid as uuidlib
from typing import ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

VM_STATES = ("building", "running", "stopped", "error", "deleting")
OP_STATUSES = ("running", "done", "failed", "rolled_back")
DISK_FORMATS = ("qcow2", "raw", "aki", "ari")
DEFAULT_FLAVORS = (("m1.nano", 1, 128, 1), ("m1.micro", 1, 256, 2), ("m1.small", 1, 512, 5))


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_uuid() -> str:
    return str(uuidlib.uuid4())


class Base(DeclarativeBase):
    type_annotation_map: ClassVar = {dt.datetime: DateTime(timezone=True), dict: JSON}


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    def to_dict(self) -> dict:
        return {"name": self.name, "created_at": self.created_at}


class Keypair(Base):
    __tablename__ = "keypairs"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(63))
    public_key: Mapped[str] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(String(80))
    key_type: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    tenant: Mapped[Tenant] = relationship()

    def to_dict(self) -> dict:
        return {"name": self.name, "type": self.key_type, "fingerprint": self.fingerprint,
                "tenant": self.tenant.name, "created_at": self.created_at}


class Flavor(Base):
    __tablename__ = "flavors"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    vcpus: Mapped[int]
    ram_mb: Mapped[int]
    disk_gb: Mapped[int]

    def to_dict(self) -> dict:
        return {"name": self.name, "vcpus": self.vcpus, "ram_mb": self.ram_mb,
                "disk_gb": self.disk_gb}


class Image(Base):
    """An image in the controller's store; public when ``tenant_id`` is NULL.

    Like Glance, a disk image may point at a kernel (``aki``) and a ramdisk (``ari``) image,
    which the VM then boots directly with ``cmdline``.
    """

    __tablename__ = "images"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    name: Mapped[str] = mapped_column(String(63), index=True)
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id"), index=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    disk_format: Mapped[str] = mapped_column(String(8))
    size: Mapped[int]
    virtual_size: Mapped[int | None]
    path: Mapped[str] = mapped_column(Text)
    kernel_id: Mapped[str | None] = mapped_column(ForeignKey("images.id"))
    ramdisk_id: Mapped[str | None] = mapped_column(ForeignKey("images.id"))
    cmdline: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    tenant: Mapped[Tenant | None] = relationship()
    kernel: Mapped[Image | None] = relationship(remote_side=[id], foreign_keys=[kernel_id])
    ramdisk: Mapped[Image | None] = relationship(remote_side=[id], foreign_keys=[ramdisk_id])

    @property
    def visibility(self) -> str:
        return "public" if self.tenant_id is None else "private"

    def to_dict(self) -> dict:
        return {
            "id": self.id, "name": self.name, "visibility": self.visibility,
            "tenant": self.tenant.name if self.tenant else None, "disk_format": self.disk_format,
            "size": self.size, "virtual_size": self.virtual_size, "sha256": self.sha256,
            "kernel": self.kernel.name if self.kernel else None,
            "ramdisk": self.ramdisk.name if self.ramdisk else None,
            "cmdline": self.cmdline, "status": self.status, "path": self.path,
            "created_at": self.created_at,
        }


class Host(Base):
    """A hypervisor, as last reported by ``stack_hypervisor_info`` (``stackctl host refresh``)."""

    __tablename__ = "hosts"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    address: Mapped[str | None] = mapped_column(String(255))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    vcpus: Mapped[int] = mapped_column(default=0)
    ram_mb: Mapped[int] = mapped_column(default=0)
    disk_gb: Mapped[int] = mapped_column(default=0)
    disk_free_gb: Mapped[float | None] = mapped_column(Float)
    kvm_usable: Mapped[bool] = mapped_column(Boolean, default=False)
    virt_type: Mapped[str | None] = mapped_column(String(16))
    libvirt_version: Mapped[str | None] = mapped_column(String(32))
    qemu_version: Mapped[str | None] = mapped_column(String(32))
    refreshed_at: Mapped[dt.datetime | None]
    # Why an operator disabled it (``host disable --reason``); NULL while enabled, and for a
    # host that ``refresh`` disabled because it left the inventory ("not in the inventory").
    disabled_reason: Mapped[str | None] = mapped_column(Text)

    def to_dict(self) -> dict:
        return {
            "name": self.name, "address": self.address, "enabled": self.enabled,
            "disabled_reason": self.disabled_reason,
            "vcpus": self.vcpus, "ram_mb": self.ram_mb, "disk_gb": self.disk_gb,
            "disk_free_gb": self.disk_free_gb, "kvm_usable": self.kvm_usable,
            "virt_type": self.virt_type, "libvirt_version": self.libvirt_version,
            "qemu_version": self.qemu_version, "refreshed_at": self.refreshed_at,
        }


class HostImage(Base):
    """An image a host is known to hold in its cache (recorded after ``stack_image_cache``
    succeeded there), so later creates skip that module run. If the host lost the file,
    ``stack_vm`` reports the base image missing and the create re-caches once."""

    __tablename__ = "host_images"
    __table_args__ = (UniqueConstraint("host_id", "sha256"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    host_id: Mapped[int] = mapped_column(ForeignKey("hosts.id", ondelete="CASCADE"))
    sha256: Mapped[str] = mapped_column(String(64))
    cached_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class VM(Base):
    __tablename__ = "vms"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    uuid: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_uuid)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    name: Mapped[str] = mapped_column(String(63))
    host_id: Mapped[int | None] = mapped_column(ForeignKey("hosts.id"), index=True)
    flavor_id: Mapped[int] = mapped_column(ForeignKey("flavors.id"))
    image_id: Mapped[str] = mapped_column(ForeignKey("images.id"))
    keypair_id: Mapped[int | None] = mapped_column(ForeignKey("keypairs.id", ondelete="SET NULL"))
    # The flavor's sizes at creation time: usage is summed from these.
    vcpus: Mapped[int]
    ram_mb: Mapped[int]
    disk_gb: Mapped[int]
    state: Mapped[str] = mapped_column(String(16), default="building")
    fault: Mapped[str | None] = mapped_column(Text)
    mac: Mapped[str | None] = mapped_column(String(17))
    address: Mapped[str | None] = mapped_column(String(64))
    ssh_public_key: Mapped[str | None] = mapped_column(Text)
    user_data: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    # The host a move (migrate, drain, evacuate) is taking the VM to: its sizes count there
    # too until the move ends, so nothing else is placed into the slot it needs.
    migration_host_id: Mapped[int | None] = mapped_column(ForeignKey("hosts.id"))

    tenant: Mapped[Tenant] = relationship()
    host: Mapped[Host | None] = relationship(foreign_keys=[host_id])
    migration_host: Mapped[Host | None] = relationship(foreign_keys=[migration_host_id])
    flavor: Mapped[Flavor] = relationship()
    image: Mapped[Image] = relationship()
    keypair: Mapped[Keypair | None] = relationship()
    # Read through the membership row; the row is written by ``claim`` and removed with the VM
    # by the foreign key's ON DELETE CASCADE, never through this relationship.
    server_group: Mapped[ServerGroup | None] = relationship(
        secondary="server_group_members", viewonly=True)

    @property
    def domain(self) -> str:
        return f"stk-{self.uuid}"

    def to_dict(self) -> dict:
        return {
            "name": self.name, "uuid": self.uuid, "tenant": self.tenant.name, "state": self.state,
            "host": self.host.name if self.host else None, "flavor": self.flavor.name,
            "image": self.image.name, "keypair": self.keypair.name if self.keypair else None,
            "server_group": self.server_group.name if self.server_group else None,
            "vcpus": self.vcpus, "ram_mb": self.ram_mb, "disk_gb": self.disk_gb,
            "mac": self.mac, "address": self.address, "domain": self.domain,
            "fault": self.fault,
            "moving_to": self.migration_host.name if self.migration_host else None,
            "created_at": self.created_at, "updated_at": self.updated_at,
        }


SERVER_GROUP_POLICIES = ("affinity", "anti-affinity")


class ServerGroup(Base):
    """A tenant's group of VMs placed together (``affinity``: one host) or apart
    (``anti-affinity``: every member on a different host), as Nova's server groups."""

    __tablename__ = "server_groups"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    name: Mapped[str] = mapped_column(String(63))
    policy: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    tenant: Mapped[Tenant] = relationship()
    members: Mapped[list[ServerGroupMember]] = relationship(back_populates="group")


class ServerGroupMember(Base):
    """A VM's membership (at most one group per VM); removed with the VM row."""

    __tablename__ = "server_group_members"

    vm_uuid: Mapped[str] = mapped_column(ForeignKey("vms.uuid", ondelete="CASCADE"),
                                         primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("server_groups.id"), index=True)

    group: Mapped[ServerGroup] = relationship(back_populates="members")
    vm: Mapped[VM] = relationship()


class FleetHost(Base):
    """Every inventory host and its groups (controllers, hypervisors, storage_nodes, proxies),
    as last seen by ``host refresh``/``deploy``: what the dynamic inventory plugin reports."""

    __tablename__ = "fleet_hosts"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    address: Mapped[str | None] = mapped_column(String(255))
    groups: Mapped[list] = mapped_column(JSON, default=list)
    seen_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Operation(Base):
    """One journaled workflow (``vm.create``, ``vm.delete``, ...), see ``stackctl.journal``."""

    __tablename__ = "operations"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    vm_uuid: Mapped[str | None] = mapped_column(String(36), index=True)  # no FK: outlives the VM
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(String(16), default="running", index=True)
    step: Mapped[str | None] = mapped_column(String(64))
    owner: Mapped[str] = mapped_column(String(255))
    params: Mapped[dict | None]
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    steps: Mapped[list[OperationStep]] = relationship(
        back_populates="operation", order_by="OperationStep.id", cascade="all, delete-orphan"
    )

    def to_dict(self) -> dict:
        return {"id": self.id, "kind": self.kind, "vm_uuid": self.vm_uuid, "status": self.status,
                "step": self.step, "owner": self.owner, "error": self.error,
                "started_at": self.started_at, "updated_at": self.updated_at}


class OperationStep(Base):
    __tablename__ = "operation_steps"

    id: Mapped[int] = mapped_column(primary_key=True)
    operation_id: Mapped[int] = mapped_column(
        ForeignKey("operations.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(64))
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    done_at: Mapped[dt.datetime | None]

    operation: Mapped[Operation] = relationship(back_populates="steps")


class Credential(Base):
    """A tenant's S3/Swift key pair. The secret is kept because S3 signatures need it on the
    proxy (HMAC); the database is the controller's private file, the proxies get a copy."""

    __tablename__ = "credentials"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    access_key: Mapped[str] = mapped_column(String(20), unique=True)
    secret: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    rotated_at: Mapped[dt.datetime | None]

    tenant: Mapped[Tenant] = relationship()

    def to_dict(self) -> dict:
        return {"access_key": self.access_key, "tenant": self.tenant.name,
                "created_at": self.created_at, "rotated_at": self.rotated_at}


class Setting(Base):
    """Controller-wide values kept with the state, e.g. ``controller_id`` (a random id that
    names this controller's files on shared hosts, and survives a backup and restore)."""

    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class SchemaInfo(Base):
    """One row: the schema version this database was created with (Alembic's job later)."""

    __tablename__ = "schema_info"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int]
