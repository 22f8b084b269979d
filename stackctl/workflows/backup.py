"""Back up and restore what a controller cannot rebuild, in one tar file.

The archive holds the database (SQLite through the online backup API, a consistent snapshot
while other stackctl processes write; PostgreSQL through ``pg_dump --format=custom``), the
storage secrets (``swift.json``: the hash prefix/suffix every Swift host must keep, the service
keys), every other file of the secrets directory, the ring builders of every cluster, and the
local image store. Tenants' S3/Swift credentials and the controller id are rows of the database
(the proxies' ``tenants-<controller id>.json`` is rebuilt from them), so they come with it.
Images kept in Swift stay in Swift; the manifest counts them.

``manifest.json`` (the archive's last member) lists every other member with its kind, its
path under that kind's root, mode, size and sha256. Restore reads targets from *this*
controller's configuration, verifies every member before it changes anything, refuses to
replace a database with rows or files with other contents unless forced, and writes each file
atomically with its original mode (secrets never wider than 0600).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import posixpath
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from stackcore.errors import BackendError, Conflict, InvalidInput, NotFound
from stackcore.fileio import atomic_path

from stackctl import __version__
from stackctl.config import Config, ensure_private_dir

if TYPE_CHECKING:
    from stackctl.app import App
    from stackctl.progress import StepProgress

FORMAT = 1
MANIFEST = "manifest.json"
# Member kind -> its folder in the archive.
KIND_DIRS = {"database": "database", "swift_secrets": "swift-secrets", "secrets": "secrets",
             "builders": "swift", "images": "images"}
PRIVATE_KINDS = ("database", "swift_secrets")  # always 0600, whatever the source had
CHUNK = 1 << 20
PG_TIMEOUT = 3600
NEXT_STEP = ("check with `stackctl vm list` and `stackctl storage status`; run `stackctl "
             "deploy` if the hosts were rebuilt or changed since the backup (it pushes "
             "swift.conf, the rings and the tenants' credentials)")


@dataclass(frozen=True)
class Member:
    """One file of the archive: ``path`` is relative to its kind's root on a controller."""

    kind: str
    path: str
    mode: int
    size: int
    sha256: str

    @property
    def name(self) -> str:
        return f"{KIND_DIRS[self.kind]}/{self.path}"


@dataclass(frozen=True)
class DatabaseDump:
    kind: str  # sqlite | postgresql
    file: Path
    schema_version: int | None
    controller_id: str | None
    rows: dict[str, int]
    swift_images: int


# ---------------------------------------------------------------------------------------------
# Where things are


def target_of(config: Config, kind: str, path: str) -> Path:
    """Where a member of ``kind`` goes on (or comes from) the controller ``config`` describes."""
    if kind == "database":
        return sqlite_path(config.db_url) or Path(path)
    if kind == "swift_secrets":
        return config.swift_secrets.absolute()
    roots = {"secrets": config.secrets_dir, "builders": config.swift_builders,
             "images": config.images_dir}
    return roots[kind].absolute() / path


def sqlite_path(url: str) -> Path | None:
    """The SQLite file of ``url``; None for PostgreSQL. InvalidInput for what cannot be saved."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        return None
    if backend != "sqlite":
        raise InvalidInput(f"cannot back up a {backend} database: SQLite or PostgreSQL only")
    if not parsed.database or parsed.database == ":memory:" or parsed.database.startswith("file:"):
        raise InvalidInput("cannot back up an in-memory or URI-named SQLite database")
    return Path(parsed.database).absolute()


def source_files(config: Config) -> list[tuple[str, str, Path]]:
    """(kind, relative path, file) of every file to save besides the database."""
    found = []
    swift_secrets = config.swift_secrets.absolute()
    if swift_secrets.is_file():
        found.append(("swift_secrets", swift_secrets.name, swift_secrets))
    for kind, root in (("secrets", config.secrets_dir), ("builders", config.swift_builders),
                       ("images", config.images_dir)):
        found += [(kind, rel, file) for rel, file in _walk(root.absolute())
                  if file != swift_secrets]
    return found


def _walk(root: Path) -> Iterator[tuple[str, Path]]:
    """Regular files under ``root``, sorted; dot files (atomic writers' temp files) left out."""
    if not root.is_dir():
        return
    for directory, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(directory) / name
            if not name.startswith(".") and path.is_file() and not path.is_symlink():
                yield path.relative_to(root).as_posix(), path


# ---------------------------------------------------------------------------------------------
# Backup


def backup(app: App, archive: Path, ui: StepProgress | None = None) -> dict:
    """Write the archive (0600, atomically; never over an existing file); its summary."""
    archive = archive.absolute()
    if archive.exists():
        raise Conflict(f"{archive} exists: choose another name (a backup never replaces a file)")
    if not archive.parent.is_dir():
        raise NotFound(f"directory {archive.parent} does not exist")
    config = app.config
    with tempfile.TemporaryDirectory(prefix="stackctl-backup-") as tmp:  # 0700
        _step(ui, "database snapshot")
        dump = dump_database(config.db_url, Path(tmp))
        files = [("database", dump.file.name, dump.file), *source_files(config)]
        _step(ui, f"writing {archive.name} ({len(files)} files)")
        manifest = write_archive(archive, files, lambda m: build_manifest(config, dump, m))
    return {"archive": str(archive), "bytes": archive.stat().st_size,
            "manifest": {k: v for k, v in manifest.items() if k != "members"},
            "items": summary_rows(manifest, config)}


def build_manifest(config: Config, dump: DatabaseDump, members: list[Member]) -> dict:
    local = sum(1 for m in members if m.kind == "images")
    return {
        "format": FORMAT, "stackctl_version": __version__,
        "schema_version": dump.schema_version,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "database": {"kind": dump.kind, "rows": dump.rows},
        "controller_id": dump.controller_id,
        "images": {"local": local, "in_swift": dump.swift_images,
                   "note": "images kept in Swift are not in the archive: Swift keeps them"},
        "source": {"home": str(config.home), "images_dir": str(config.images_dir),
                   "secrets_dir": str(config.secrets_dir),
                   "swift_secrets": str(config.swift_secrets),
                   "swift_builders": str(config.swift_builders)},
        "members": [asdict(m) | {"name": m.name} for m in members],
    }


def write_archive(archive: Path, files: list[tuple[str, str, Path]], manifest_of) -> dict:
    """Tar ``files`` (kind, path, source) into a 0600 temp file beside ``archive``, hashing
    what is written; ``manifest_of(members)`` goes last; then rename. Returns the manifest."""
    members: list[Member] = []
    mode = "w" if archive.name.endswith(".tar") else "w:gz"
    with atomic_path(str(archive), 0o600) as tmp, open(tmp, "wb") as raw, \
            tarfile.open(fileobj=raw, mode=mode, format=tarfile.PAX_FORMAT) as tar:
        for kind, rel, source in files:
            members.append(_add_file(tar, kind, rel, source))
        manifest = manifest_of(members)
        data = json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n"
        tar.addfile(_tarinfo(MANIFEST, len(data), 0o600), io.BytesIO(data))
    return manifest


def _add_file(tar: tarfile.TarFile, kind: str, rel: str, source: Path) -> Member:
    with open(source, "rb") as handle:
        stat = os.fstat(handle.fileno())
        mode = 0o600 if kind in PRIVATE_KINDS else stat.st_mode & 0o777
        reader = _HashingReader(handle)
        tar.addfile(_tarinfo(f"{KIND_DIRS[kind]}/{rel}", stat.st_size, mode), reader)
    return Member(kind, rel, mode, stat.st_size, reader.hexdigest())


def _tarinfo(name: str, size: int, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, mode, int(dt.datetime.now(dt.UTC).timestamp())
    return info


class _HashingReader:
    """A file object for tarfile that hashes what it reads."""

    def __init__(self, handle: IO[bytes]) -> None:
        self._handle = handle
        self._hash = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self._handle.read(size)
        self._hash.update(data)
        return data

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


# ---------------------------------------------------------------------------------------------
# The database


def dump_database(url: str, tmp: Path) -> DatabaseDump:
    """A consistent copy of the database in ``tmp`` (a 0700 directory), file 0600."""
    path = sqlite_path(url)
    if path is None:
        dest = _private_file(tmp / "stackctl.pgdump")
        _run_pg(["pg_dump", "--format=custom", "--no-owner", "--no-privileges",
                 f"--file={dest}"], url, "pg_dump")
        return _describe("postgresql", dest, url)
    if not path.is_file():
        raise NotFound(f"no database at {path}: nothing to back up")
    dest = _private_file(tmp / "stackctl.sqlite")
    _sqlite_snapshot(path, dest)
    return _describe("sqlite", dest, f"sqlite:///{dest}")


def _sqlite_snapshot(path: Path, dest: Path) -> None:
    import sqlite3

    from stackctl.db import BUSY_TIMEOUT_MS

    src = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000)
    dst = sqlite3.connect(str(dest))
    try:
        src.backup(dst)  # all pages in one step: one read transaction, a consistent snapshot
        dst.execute("PRAGMA journal_mode = DELETE")  # one self-contained file, no -wal
        _check_sqlite(dst, "the snapshot")
    except sqlite3.Error as exc:
        raise BackendError(f"cannot copy the database {path}: {exc}") from exc
    finally:
        dst.close()
        src.close()


def _check_sqlite(conn, what: str) -> None:
    result = conn.execute("PRAGMA integrity_check").fetchone()[0]
    if result != "ok":
        raise BackendError(f"{what} fails SQLite's integrity check: {result}")


def _describe(kind: str, file: Path, url: str) -> DatabaseDump:
    """Schema version, controller id, row counts and Swift-held images of the database."""
    from sqlalchemy import text

    rows = table_rows(url)
    queries = {"schema_info": "SELECT version FROM schema_info",
               "settings": "SELECT value FROM settings WHERE key = :id",
               "images": "SELECT count(*) FROM images WHERE path LIKE :swift"}
    with _engine(url) as engine, engine.connect() as conn:
        found = {table: conn.execute(text(sql), {"id": "controller_id", "swift": "swift:%"})
                 .scalar() for table, sql in queries.items() if table in rows}
    return DatabaseDump(kind, file, found.get("schema_info"), found.get("settings"), rows,
                        int(found.get("images") or 0))


def table_rows(url: str) -> dict[str, int]:
    """Rows per table; {} for a SQLite file that does not exist (nothing is created)."""
    path = sqlite_path(url)
    if path is not None and (not path.is_file() or path.stat().st_size == 0):
        return {}
    from sqlalchemy import inspect

    with _engine(url) as engine, engine.connect() as conn:
        names = inspect(conn).get_table_names()
        return {name: int(conn.exec_driver_sql(f'SELECT count(*) FROM "{name}"').scalar())
                for name in sorted(names)}


def state_rows(url: str) -> dict[str, int]:
    """Rows that are someone's state: not the schema marker, not the default flavors."""
    from sqlalchemy import bindparam, text

    from stackctl.models import DEFAULT_FLAVORS

    rows = {k: v for k, v in table_rows(url).items() if v and k != "schema_info"}
    if "flavors" in rows:
        query = text("SELECT count(*) FROM flavors WHERE name NOT IN :defaults").bindparams(
            bindparam("defaults", expanding=True))
        with _engine(url) as engine, engine.connect() as conn:
            rows["flavors"] = int(conn.execute(
                query, {"defaults": [name for name, *_ in DEFAULT_FLAVORS]}).scalar())
    return {k: v for k, v in rows.items() if v}


@contextmanager
def _engine(url: str):
    """A plain engine (no WAL switch, no schema creation) for reading a database as it is;
    its errors become one-line BackendErrors."""
    from sqlalchemy import create_engine
    from sqlalchemy.exc import SQLAlchemyError

    try:
        engine = create_engine(url)
    except ImportError as exc:
        raise BackendError(f"database driver missing: {exc}") from exc
    try:
        yield engine
    except SQLAlchemyError as exc:
        detail = str(getattr(exc, "orig", None) or exc).strip().splitlines() or ["?"]
        raise BackendError(f"database error: {detail[0]}") from exc
    finally:
        engine.dispose()


def pg_connection(url: str) -> tuple[str, dict[str, str]]:
    """A libpq URI for ``url`` without its password, and an environment carrying it
    (PGPASSWORD), so the password never shows in a process listing."""
    from sqlalchemy.engine import URL, make_url

    parsed = make_url(url)
    plain = URL.create("postgresql", username=parsed.username, host=parsed.host,
                       port=parsed.port, database=parsed.database, query=parsed.query)
    env = dict(os.environ)
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    return plain.render_as_string(hide_password=False), env


def _run_pg(argv: list[str], url: str, tool: str) -> None:
    uri, env = pg_connection(url)
    if shutil.which(argv[0]) is None:
        raise BackendError(f"{tool} not found: install the PostgreSQL client (postgresql-client)")
    try:
        proc = subprocess.run([argv[0], f"--dbname={uri}", *argv[1:]], capture_output=True,
                              text=True, env=env, timeout=PG_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise BackendError(f"{tool} did not finish within {PG_TIMEOUT} s") from None
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        raise BackendError(f"{tool} failed (exit {proc.returncode}): "
                           f"{lines[-1] if lines else 'no message'}")


def _private_file(path: Path) -> Path:
    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    return path


def _step(ui: StepProgress | None, text: str) -> None:
    if ui is not None:
        ui.step(text)


# ---------------------------------------------------------------------------------------------
# Summaries (shared by backup and restore)


def summary_rows(manifest: dict, config: Config) -> list[dict]:
    """One row per kind of thing: what, how many, bytes, where (on ``config``'s controller)."""
    members = [Member(**{k: m[k] for k in ("kind", "path", "mode", "size", "sha256")})
               for m in manifest["members"]]
    db = manifest["database"]
    counts = db.get("rows") or {}
    shown = ", ".join(f"{counts.get(t, 0)} {t}" for t in ("tenants", "vms", "credentials",
                                                          "images", "hosts"))
    rows = [{"what": f"database ({db['kind']}, schema {manifest.get('schema_version')})",
             "items": shown, "bytes": _bytes(members, "database"),
             "where": _db_where(config.db_url)}]
    for kind, what, where in (
            ("swift_secrets", "storage secrets (hash prefix/suffix, service keys)",
             config.swift_secrets),
            ("secrets", "other secret files", config.secrets_dir),
            ("images", "local image store", config.images_dir)):
        found = [m for m in members if m.kind == kind]
        if found or kind == "swift_secrets":
            rows.append({"what": what, "items": _count(len(found), "file"),
                         "bytes": _bytes(members, kind), "where": str(where)})
    for cluster in sorted({m.path.split("/")[0] for m in members if m.kind == "builders"}):
        found = [m for m in members if m.kind == "builders" and m.path.startswith(cluster + "/")]
        builders = sum(1 for m in found if m.path.endswith(".builder"))
        rings = sum(1 for m in found if m.path.endswith(".ring.gz"))
        rows.append({"what": f"ring builders, cluster {cluster}",
                     "items": f"{_count(builders, 'builder')}, {_count(rings, 'ring')}",
                     "bytes": sum(m.size for m in found),
                     "where": str(config.swift_builders / cluster)})
    in_swift = (manifest.get("images") or {}).get("in_swift")
    if in_swift:
        rows.append({"what": "images in Swift", "items": f"{in_swift} (not in the archive)",
                     "bytes": None, "where": "Swift, account AUTH_stackctl"})
    return rows


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _bytes(members: list[Member], kind: str) -> int:
    return sum(m.size for m in members if m.kind == kind)


def _db_where(url: str) -> str:
    path = sqlite_path(url)
    if path is not None:
        return str(path)
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


# ---------------------------------------------------------------------------------------------
# Restore


def restore(app: App, archive: Path, force: bool = False, check: bool = False,
            ui: StepProgress | None = None) -> dict:
    """Verify the archive, then put its database and files in place on this controller.

    Nothing is changed when a checksum fails, or when this controller already has state (a
    database with rows, files with other contents) and ``force`` is not given; ``check``
    stops after those checks."""
    config = app.config
    archive = archive.absolute()
    if not archive.is_file():
        raise NotFound(f"backup {archive} does not exist")
    with _reading(archive) as tar, tempfile.TemporaryDirectory(prefix="stackctl-restore-") as tmp:
        manifest, members = read_manifest(tar)
        _step(ui, f"verifying {len(members)} files")
        verify(tar, members)
        check_database_kind(manifest, config)
        _step(ui, "looking at this controller's state")
        problems = conflicts(config, members)
        result = {"archive": str(archive), "created_at": manifest.get("created_at"),
                  "controller_id": manifest.get("controller_id"), "restored": False,
                  "items": summary_rows(manifest, config), "conflicts": problems}
        if check:
            return result
        if problems and not force:
            raise Conflict(refusal(problems))
        _step(ui, "database")
        restore_database(tar, _one(members, "database"), config, Path(tmp))
        _step(ui, "files")
        unchanged = sum(not restore_file(tar, m, target_of(config, m.kind, m.path))
                        for m in members if m.kind != "database")
    _step(ui, "schema")
    moved = finish(app, manifest)
    return result | {"restored": True, "unchanged_files": unchanged, "image_paths_moved": moved,
                     "next_step": NEXT_STEP}


@contextmanager
def _reading(archive: Path) -> Iterator[tarfile.TarFile]:
    """The archive open for reading; a damaged one is InvalidInput, never a traceback."""
    import zlib

    try:
        with tarfile.open(archive, "r:*") as tar:
            yield tar
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise InvalidInput(f"{archive} is not a readable stackctl backup ({exc}); nothing "
                           "was restored") from exc


def read_manifest(tar: tarfile.TarFile) -> tuple[dict, list[Member]]:
    """The manifest and its members, checked: format, schema version, safe paths."""
    from stackctl.db import SCHEMA_VERSION

    try:
        handle = tar.extractfile(tar.getmember(MANIFEST))
        manifest = json.loads(handle.read()) if handle else None
    except (KeyError, ValueError):
        manifest = None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("members"), list):
        raise InvalidInput(f"not a stackctl backup: no valid {MANIFEST}")
    database = manifest.get("database")
    if not isinstance(database, dict) or database.get("kind") not in ("sqlite", "postgresql"):
        raise InvalidInput(f"{MANIFEST} does not say which database the backup holds")
    if manifest.get("format") != FORMAT:
        raise InvalidInput(f"backup format {manifest.get('format')!r} is not {FORMAT}: "
                           "use the stackctl version that wrote it")
    schema = manifest.get("schema_version")
    if isinstance(schema, int) and schema > SCHEMA_VERSION:
        raise InvalidInput(f"the backup's schema version {schema} is newer than this "
                           f"stackctl's ({SCHEMA_VERSION}): upgrade stackctl first")
    members = [_member(raw) for raw in manifest["members"]]
    names = [m.name for m in members]
    if len(set(names)) != len(names) or MANIFEST in names:
        raise InvalidInput(f"{MANIFEST} lists a file twice")
    _one(members, "database")
    return manifest, members


def _member(raw: object) -> Member:
    try:
        member = Member(**{k: raw[k] for k in ("kind", "path", "mode", "size", "sha256")})
    except (TypeError, KeyError):
        raise InvalidInput(f"{MANIFEST} has a malformed entry") from None
    path = member.path
    safe = (isinstance(path, str) and path and not path.startswith("/")
            and posixpath.normpath(path) == path and ".." not in path.split("/"))
    if (member.kind not in KIND_DIRS or not safe or not isinstance(member.mode, int)
            or not 0 <= member.mode <= 0o777 or not isinstance(member.size, int)
            or member.size < 0 or not isinstance(member.sha256, str)
            or len(member.sha256) != 64):
        raise InvalidInput(f"{MANIFEST} has an invalid entry for {str(path)[:80]!r}")
    return member


def _one(members: list[Member], kind: str) -> Member:
    found = [m for m in members if m.kind == kind]
    if len(found) != 1:
        raise InvalidInput(f"a backup holds exactly one database, this one {len(found)}")
    return found[0]


def verify(tar: tarfile.TarFile, members: list[Member]) -> None:
    """Every member is a regular file of the listed size and sha256, and nothing else is
    in the archive. Reads the whole archive once."""
    entries = tar.getmembers()
    listed = {m.name: m for m in members}
    names = [e.name for e in entries]
    extra = sorted(set(names) - set(listed) - {MANIFEST})
    missing = sorted(set(listed) - set(names))
    if extra or missing or len(set(names)) != len(names):
        what = (f"unlisted {extra[0]}" if extra else f"missing {missing[0]}" if missing
                else "a file twice")
        raise InvalidInput(f"the archive does not match its manifest ({what}); nothing was "
                           "restored")
    for entry in entries:
        member = listed.get(entry.name)
        if member is None:
            continue
        if not entry.isreg() or entry.size != member.size \
                or _sha256(tar.extractfile(entry)) != member.sha256:
            raise InvalidInput(f"checksum mismatch for {entry.name}: the archive is damaged or "
                               "was altered; nothing was restored")


def _sha256(handle: IO[bytes], out: IO[bytes] | None = None) -> str:
    """sha256 of what ``handle`` holds, copied to ``out`` on the way when given."""
    digest = hashlib.sha256()
    while chunk := handle.read(CHUNK):
        digest.update(chunk)
        if out is not None:
            out.write(chunk)
    return digest.hexdigest()


def check_database_kind(manifest: dict, config: Config) -> None:
    have = "sqlite" if sqlite_path(config.db_url) is not None else "postgresql"
    kind = manifest["database"].get("kind")
    if kind != have:
        raise InvalidInput(f"the backup holds a {kind} database and this controller uses "
                           f"{have}: restore it on a controller with the same database kind")


def conflicts(config: Config, members: list[Member]) -> list[str]:
    """What a restore would replace: a database with rows, files with other contents."""
    problems = []
    rows = state_rows(config.db_url)
    if rows:
        tables = ", ".join(f"{n} {t}" for t, n in sorted(rows.items(), key=lambda i: -i[1])[:3])
        problems.append(f"the database {_db_where(config.db_url)} has rows ({tables})")
    for member in members:
        if member.kind == "database":
            continue
        target = target_of(config, member.kind, member.path)
        if target.exists() and (not target.is_file() or _file_sha256(target) != member.sha256):
            problems.append(f"{target} differs")
    return problems


def refusal(problems: list[str]) -> str:
    more = f" and {len(problems) - 2} more" if len(problems) > 2 else ""
    return (f"this controller has state a restore would replace: {'; '.join(problems[:2])}"
            f"{more}; nothing was changed (--force replaces them)")


def _file_sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return _sha256(handle)


def restore_database(tar: tarfile.TarFile, member: Member, config: Config, tmp: Path) -> None:
    path = sqlite_path(config.db_url)
    if path is None:
        dump = _private_file(tmp / "stackctl.pgdump")
        with open(dump, "wb") as out:
            _copy_checked(tar, member, out)
        _run_pg(["pg_restore", "--clean", "--if-exists", "--no-owner", "--no-privileges",
                 "--single-transaction", "--exit-on-error", str(dump)], config.db_url,
                "pg_restore")
        return
    import sqlite3

    _make_dirs(path.parent)
    with atomic_path(str(path), 0o600) as new:
        with open(new, "wb") as out:
            _copy_checked(tar, member, out)
        conn = sqlite3.connect(new)
        try:
            _check_sqlite(conn, "the backup's database")
        finally:
            conn.close()
        # The old database's WAL must not be replayed into the new file.
        for suffix in ("-wal", "-shm", "-journal"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


def restore_file(tar: tarfile.TarFile, member: Member, target: Path) -> bool:
    """Write one member atomically with its mode; False when the target already held it."""
    mode = 0o600 if member.kind in PRIVATE_KINDS else member.mode
    if target.is_file() and _file_sha256(target) == member.sha256:
        if target.stat().st_mode & 0o777 != mode:
            target.chmod(mode)
        return False
    _make_dirs(target.parent)
    with atomic_path(str(target), mode) as new, open(new, "wb") as out:
        _copy_checked(tar, member, out)
    return True


def _copy_checked(tar: tarfile.TarFile, member: Member, out: IO[bytes]) -> None:
    """Copy a member, checking its sha256 again (the file may have changed since verify)."""
    digest = _sha256(tar.extractfile(member.name), out)
    out.flush()
    if digest != member.sha256:
        raise InvalidInput(f"checksum mismatch for {member.name} while restoring: the archive "
                           "changed; restore again with --force")


def _make_dirs(directory: Path) -> None:
    """Create the missing directories 0700 (they hold secrets); existing ones stay as they are."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for path in reversed(missing):
        ensure_private_dir(path)


def finish(app: App, manifest: dict) -> int:
    """Bring an older schema up to date, and point local images' rows at this controller's
    image store when it is elsewhere than the backed-up one's. Returns rows moved."""
    from sqlalchemy import select

    from stackctl.models import Image

    db = app.db
    db.ensure_schema()
    old = str(manifest.get("source", {}).get("images_dir") or "").rstrip("/")
    new = str(app.config.images_dir)
    if not old or old == new:
        return 0
    with db.write() as session:
        rows = list(session.scalars(select(Image).where(Image.path.startswith(old + "/"))))
        for image in rows:
            image.path = new + image.path[len(old):]
    return len(rows)
