"""The database on a real SQLite file: schema on first use, pragmas, permissions, constraints."""

import stat
import threading
import time

import pytest
from sqlalchemy import select, text
from stackcore.errors import Conflict

from stackctl.db import Database
from stackctl.models import VM, Flavor, Keypair, Operation, OperationStep, Tenant


def test_first_use_creates_schema_and_default_flavors(db):
    with db.read() as session:
        flavors = {f.name: (f.vcpus, f.ram_mb, f.disk_gb) for f in session.scalars(select(Flavor))}
    assert flavors == {"m1.nano": (1, 128, 1), "m1.micro": (1, 256, 2), "m1.small": (1, 512, 5)}


def test_database_file_is_private(db, home):
    db.ensure_schema()
    path = home / "stackctl.db"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_existing_file_with_loose_mode_is_tightened(tmp_path):
    path = tmp_path / "x.db"
    path.touch(mode=0o644)
    Database(f"sqlite:///{path}").ensure_schema()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_sqlite_runs_in_wal_with_foreign_keys_and_busy_timeout(db):
    with db.read() as session:
        assert session.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert session.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert session.execute(text("PRAGMA busy_timeout")).scalar() >= 10_000


def test_second_database_object_reuses_the_schema(db, app):
    with db.write() as session:
        session.add(Tenant(name="t1"))
    again = Database(app.config.db_url)
    with again.read() as session:
        assert session.scalar(select(Tenant.name)) == "t1"
        assert len(session.scalars(select(Flavor)).all()) == 3


def test_write_sessions_hold_the_lock_from_the_first_statement(db, app):
    """BEGIN IMMEDIATE: a second writer waits until the first commits, even if the first has
    only read so far (this is what makes claims exact)."""
    db.ensure_schema()
    order = []

    def second_writer():
        other = Database(app.config.db_url)
        with other.write() as session:
            session.scalar(select(Tenant.id))
            order.append("second")

    with db.write() as session:
        session.scalar(select(Tenant.id))  # only a read so far
        thread = threading.Thread(target=second_writer)
        thread.start()
        time.sleep(0.3)
        order.append("first")
    thread.join(10)
    assert order == ["first", "second"]


def test_read_sessions_do_not_wait_for_a_writer(db, app):
    db.ensure_schema()
    with db.write() as session:
        session.add(Tenant(name="t1"))
        session.flush()
        other = Database(app.config.db_url)
        started = time.monotonic()
        with other.read() as reader:
            assert reader.scalar(select(Tenant.name)) is None  # not committed yet
        assert time.monotonic() - started < 1


def test_duplicate_tenant_name_is_a_conflict(db):
    with db.write() as session:
        session.add(Tenant(name="t1"))
    with pytest.raises(Conflict), db.write() as session:
        session.add(Tenant(name="t1"))


def test_keypair_names_are_unique_per_tenant_only(db):
    with db.write() as session:
        a, b = Tenant(name="a"), Tenant(name="b")
        session.add_all([a, b])
        session.flush()
        for owner in (a, b):
            session.add(Keypair(tenant_id=owner.id, name="k", public_key="x", fingerprint="f",
                                key_type="ssh-ed25519"))
    with pytest.raises(Conflict), db.write() as session:
        owner = session.scalar(select(Tenant).where(Tenant.name == "a"))
        session.add(Keypair(tenant_id=owner.id, name="k", public_key="x", fingerprint="f",
                            key_type="ssh-ed25519"))


def test_foreign_keys_are_enforced(db):
    with pytest.raises(Conflict), db.write() as session:
        session.add(VM(tenant_id=999, name="x", flavor_id=999, image_id="nope", vcpus=1,
                       ram_mb=1, disk_gb=1))


def test_operation_steps_are_ordered_and_cascade(db):
    with db.write() as session:
        op = Operation(kind="vm.create", owner="h:1:1")
        session.add(op)
        session.flush()
        for name in ("claim", "image"):
            session.add(OperationStep(operation_id=op.id, name=name))
    with db.write() as session:
        op = session.scalar(select(Operation))
        assert [s.name for s in op.steps] == ["claim", "image"]
        session.delete(op)
    with db.read() as session:
        assert session.scalar(select(OperationStep)) is None


def test_vm_domain_name_follows_the_contract():
    assert VM(uuid="0c6e1c52-5b8e-4a43-9d8a-0b7a6f1f7c11").domain == (
        "stk-0c6e1c52-5b8e-4a43-9d8a-0b7a6f1f7c11")
