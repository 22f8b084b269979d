"""Flavors: named VM sizes (the defaults m1.nano/micro/small are created with the schema)."""

from __future__ import annotations

from sqlalchemy import select
from stackcore import validate
from stackcore.errors import Conflict

from stackctl.app import App
from stackctl.models import Flavor


def create_flavor(app: App, name: str, vcpus: int, ram_mb: int, disk_gb: int) -> dict:
    flavor = Flavor(name=validate.resource_name(name, "flavor name"), vcpus=validate.vcpus(vcpus),
                    ram_mb=validate.ram_mb(ram_mb), disk_gb=validate.disk_gb(disk_gb))
    with app.db.write() as session:
        if session.scalar(select(Flavor).where(Flavor.name == name)):
            raise Conflict(f"flavor {name!r} already exists")
        session.add(flavor)
        session.flush()
        return flavor.to_dict()


def list_flavors(app: App) -> list[dict]:
    with app.db.read() as session:
        rows = session.scalars(select(Flavor).order_by(Flavor.ram_mb, Flavor.name))
        return [f.to_dict() for f in rows]
