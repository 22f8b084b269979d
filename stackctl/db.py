"""Engine, sessions and schema for the controller's database (SQLite by default, or PostgreSQL).

SQLite is set up for a CLI that many processes run at once: WAL, a busy timeout, foreign keys,
and write transactions opened with ``BEGIN IMMEDIATE`` (SQLAlchemy's documented pysqlite recipe:
the driver's own transaction handling is switched off and we emit BEGIN ourselves), so a
transaction that reads capacity and then claims it holds the write lock from its first
statement: two concurrent ``vm create`` can never both take the last slot. On PostgreSQL the
same guarantee comes from ``SELECT ... FOR UPDATE`` on the host rows (``lock_hosts``).

The database file is created 0600: it holds users' user_data.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from stackcore.errors import BackendError, Conflict, StackError

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Session

# 2: credentials; 3: server groups, fleet hosts, hosts.disabled_reason; 4: vms.migration_host_id
SCHEMA_VERSION = 4
# Columns added to existing tables since version 1: (table, column, SQL type).
ADDED_COLUMNS = (("hosts", "disabled_reason", "TEXT"),
                 ("vms", "migration_host_id", "INTEGER REFERENCES hosts(id)"))
BUSY_TIMEOUT_MS = 30_000


class Database:
    """One engine plus two session flavours: ``write()`` (locked, exact) and ``read()``."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        from sqlalchemy import create_engine, event
        from sqlalchemy.engine import make_url
        from sqlalchemy.orm import sessionmaker

        parsed = make_url(url)
        self.url = url
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        kwargs: dict = {"echo": echo}
        if self.is_sqlite:
            path = parsed.database
            if path and path != ":memory:" and not path.startswith("file:"):
                _create_private_file(Path(path))
            kwargs["connect_args"] = {"timeout": BUSY_TIMEOUT_MS / 1000}
        try:
            self.engine: Engine = create_engine(url, **kwargs)
        except ImportError as exc:  # e.g. postgresql without the optional psycopg extra
            raise BackendError(f"database driver missing for {parsed.drivername}: {exc}") from exc
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_on_connect)
            event.listen(self.engine, "begin", _sqlite_on_begin)
        self._read_engine = self.engine.execution_options(stackctl_begin="DEFERRED")
        self._writer = sessionmaker(self.engine, expire_on_commit=False)
        self._reader = sessionmaker(self._read_engine, expire_on_commit=False)
        self._schema_ready = False

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session whose transactions hold the write lock from their first statement.

        Commits at the end of the block; database failures become ``BackendError`` (or
        ``Conflict`` for a violated unique constraint).
        """
        self.ensure_schema()
        with _translated_errors(), self._writer() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for queries only (a deferred transaction: WAL readers never wait)."""
        self.ensure_schema()
        with _translated_errors(), self._reader() as session:
            yield session

    def ensure_schema(self) -> None:
        """Create the tables and default flavors on first use.

        This is where Alembic migrations would run once the schema changes after release:
        ``SchemaInfo.version`` records what was created.
        """
        if self._schema_ready:
            return
        from sqlalchemy import inspect, select

        from stackctl import models

        with _translated_errors():
            if not inspect(self._read_engine).has_table("schema_info"):
                with self.engine.begin() as conn:  # BEGIN IMMEDIATE: one creator at a time
                    if not inspect(conn).has_table("schema_info"):
                        models.Base.metadata.create_all(conn)
                        conn.execute(models.SchemaInfo.__table__.insert(),
                                     {"id": 1, "version": SCHEMA_VERSION})
                        existing = conn.execute(select(models.Flavor.name)).scalars().all()
                        conn.execute(models.Flavor.__table__.insert(), [
                            {"name": n, "vcpus": c, "ram_mb": r, "disk_gb": d}
                            for n, c, r, d in models.DEFAULT_FLAVORS if n not in existing
                        ])
            self._add_new_tables(models)
        self._schema_ready = True

    def _add_new_tables(self, models) -> None:
        """An older database gets the tables and nullable columns added since (anything
        more will need Alembic)."""
        from sqlalchemy import inspect, select, update

        with self._read_engine.connect() as conn:
            version = conn.scalar(select(models.SchemaInfo.version))
        if version is not None and version >= SCHEMA_VERSION:
            return
        with self.engine.begin() as conn:
            models.Base.metadata.create_all(conn)  # checkfirst: existing tables stay as they are
            for table, column, sql_type in ADDED_COLUMNS:
                if column not in {c["name"] for c in inspect(conn).get_columns(table)}:
                    conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {column} {sql_type}")
            conn.execute(update(models.SchemaInfo.__table__).values(version=SCHEMA_VERSION))

    def dispose(self) -> None:
        self.engine.dispose()


def lock_hosts(session: Session, enabled_only: bool = False) -> list:
    """Read the host rows for a claim, locked (``FOR UPDATE``) on PostgreSQL.

    On SQLite ``with_for_update`` renders nothing; the ``BEGIN IMMEDIATE`` of the write
    session already serialises every writer.
    """
    from sqlalchemy import select

    from stackctl.models import Host

    query = select(Host).order_by(Host.name).with_for_update()
    if enabled_only:
        query = query.where(Host.enabled.is_(True))
    return list(session.scalars(query))


def _create_private_file(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    except OSError as exc:
        raise BackendError(f"cannot create the database file {path}: {exc.strerror}") from exc
    try:
        if os.fstat(fd).st_mode & 0o777 != 0o600:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def _sqlite_on_connect(dbapi_connection, _record) -> None:
    # Take transaction control away from pysqlite; _sqlite_on_begin emits BEGIN itself.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


def _sqlite_on_begin(conn) -> None:
    mode = conn.get_execution_options().get("stackctl_begin", "IMMEDIATE")
    conn.exec_driver_sql("BEGIN IMMEDIATE" if mode == "IMMEDIATE" else "BEGIN")


@contextmanager
def _translated_errors() -> Iterator[None]:
    from sqlalchemy.exc import IntegrityError, SQLAlchemyError

    try:
        yield
    except StackError:
        raise
    except IntegrityError as exc:
        raise Conflict(f"conflicting change: {_one_line(exc.orig or exc)}") from exc
    except SQLAlchemyError as exc:
        detail = _one_line(getattr(exc, "orig", None) or exc)
        raise BackendError(f"database error: {detail}") from exc


def _one_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
