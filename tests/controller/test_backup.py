"""``stackctl backup`` and ``stackctl restore`` on temp dirs: a controller is a home (SQLite),
a secrets directory and a ring builder root, all under the test's tmp_path; a second one is the
"fresh controller" a backup is restored on. PostgreSQL is the real one of ``postgres_url``."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

SECRETS = {"hash_path_prefix": "prefix-7f3a9c", "hash_path_suffix": "suffix-51be02",
           "service_access": "a" * 32, "service_key": "servicekey-0c9d", "tempurl_key": "tk-88e1"}
SECRET_VALUES = list(SECRETS.values())


def use_controller(monkeypatch, root: Path) -> Path:
    """Point stackctl at the controller under ``root`` (home, secrets, builders)."""
    monkeypatch.setenv("STACKCTL_HOME", str(root / "home"))
    monkeypatch.setenv("STACKCTL_SECRETS_DIR", str(root / "secrets"))
    monkeypatch.setenv("STACKCTL_SWIFT_SECRETS", str(root / "secrets" / "swift.json"))
    monkeypatch.setenv("STACKCTL_SWIFT_BUILDERS", str(root / "swift"))
    monkeypatch.setenv("STACKCTL_IMAGE_STORE", "local")
    return root


def write(path: Path, data: bytes, mode: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.write_bytes(data)
    path.chmod(mode)
    return path


@pytest.fixture
def source(home, tmp_path, monkeypatch, cli) -> Path:
    """A controller with state: tenants, a keypair-less VM-less cloud, a local image, the
    storage secrets, another secret file and the builders of two clusters."""
    root = use_controller(monkeypatch, tmp_path / "src")
    write(root / "secrets" / "swift.json", json.dumps(SECRETS).encode(), 0o600)
    write(root / "secrets" / "extra.key", b"another secret\n", 0o600)
    write(root / "secrets" / "extra.pub", b"a public key\n", 0o644)
    for cluster in ("aio", "lab"):
        for ring in ("account", "container", "object"):
            write(root / "swift" / cluster / f"{ring}.builder", os.urandom(300), 0o644)
            write(root / "swift" / cluster / f"{ring}.ring.gz", os.urandom(80), 0o644)
    for name in ("alpha", "beta"):
        assert cli("tenant", "create", name).exit_code == 0
    return root


@pytest.fixture
def fresh(tmp_path, monkeypatch) -> Path:
    """Switch to an empty controller (call after the backup)."""
    def switch(name: str = "dst") -> Path:
        return use_controller(monkeypatch, tmp_path / name)

    return switch


def files_of(root: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mode & 0o777)
            for p in sorted(root.rglob("*")) if p.is_file()}


def tenants(root: Path) -> list[str]:
    conn = sqlite3.connect(root / "home" / "stackctl.db")
    try:
        return sorted(r[0] for r in conn.execute("SELECT name FROM tenants"))
    finally:
        conn.close()


def backup(cli, archive: Path, *args: str):
    result = cli("backup", str(archive), *args)
    assert result.exit_code == 0, result.stderr
    return result


def rewrite_member(archive: Path, name: str, data: bytes, out: Path) -> Path:
    """A copy of ``archive`` with member ``name``'s bytes replaced (the manifest kept)."""
    with tarfile.open(archive) as src, tarfile.open(out, "w:gz") as dst:
        for entry in src.getmembers():
            body = src.extractfile(entry).read()
            if entry.name == name:
                body = data
            entry.size = len(body)
            dst.addfile(entry, io.BytesIO(body))
    return out


# --- round trip ------------------------------------------------------------------------------


def test_round_trip_brings_back_database_secrets_and_builders(source, fresh, cli, tmp_path):
    archive = tmp_path / "b.tar.gz"
    backup(cli, archive)
    before = files_of(source / "secrets") | files_of(source / "swift")

    dst = fresh()
    result = cli("restore", str(archive))

    assert result.exit_code == 0, result.stderr
    assert tenants(dst) == ["alpha", "beta"]
    assert files_of(dst / "secrets") | files_of(dst / "swift") == before
    assert "next: " in result.stdout and "stackctl deploy" in result.stdout
    listed = cli("tenant", "list", "-o", "json")
    assert sorted(t["name"] for t in listed.json()) == ["alpha", "beta"]


def test_archive_is_private_and_lists_every_member_with_its_checksum(source, cli, tmp_path):
    archive = tmp_path / "out" / "b.tar"
    archive.parent.mkdir()
    backup(cli, archive)

    assert archive.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in archive.parent.iterdir()] == ["b.tar"]  # no temp file left
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
        for member in manifest["members"]:
            data = tar.extractfile(member["name"]).read()
            assert len(data) == member["size"]
            assert __import__("hashlib").sha256(data).hexdigest() == member["sha256"]
        modes = {e.name: e.mode for e in tar.getmembers()}
    assert manifest["format"] == 1
    assert manifest["database"]["kind"] == "sqlite"
    from stackctl import __version__
    from stackctl.db import SCHEMA_VERSION

    assert (manifest["stackctl_version"], manifest["schema_version"]) == (__version__,
                                                                          SCHEMA_VERSION)
    assert manifest["created_at"].endswith("+00:00")
    names = {m["name"] for m in manifest["members"]}
    assert {"database/stackctl.sqlite", "swift-secrets/swift.json", "secrets/extra.key",
            "swift/aio/object.builder", "swift/lab/account.ring.gz"} <= names
    assert modes["swift-secrets/swift.json"] == modes["database/stackctl.sqlite"] == 0o600
    assert modes["swift/aio/object.builder"] == 0o644


def test_backup_never_replaces_an_existing_file(source, cli, tmp_path):
    archive = write(tmp_path / "b.tar.gz", b"precious", 0o644)
    result = cli("backup", str(archive))
    assert result.exit_code == 4
    assert "exists" in result.stderr
    assert archive.read_bytes() == b"precious"


def test_snapshot_is_consistent_while_another_process_writes(source, fresh, cli, tmp_path):
    # A second process commits tenants as fast as it can for the whole backup.
    writer = subprocess.Popen([sys.executable, "-c", WRITER], env=dict(os.environ),
                              stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "started"
        time.sleep(0.3)
        backup(cli, tmp_path / "b.tar.gz")
        time.sleep(0.3)
    finally:
        writer.terminate()
        writer.wait(timeout=10)
    written = tenants(source)

    dst = fresh()
    assert cli("restore", str(tmp_path / "b.tar.gz")).exit_code == 0
    restored = tenants(dst)
    assert 2 < len(restored) < len(written)  # a moment in the middle of the writes
    made = [name for name in restored if name.startswith("w")]
    assert made == [f"w{i:06d}" for i in range(len(made))]  # every commit up to it, no gap
    conn = sqlite3.connect(dst / "home" / "stackctl.db")
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()


WRITER = """
import itertools
from stackctl import config
from stackctl.app import App
from stackctl.models import Tenant
db = App(config.load()).db
db.ensure_schema()
print("started", flush=True)
for i in itertools.count():
    with db.write() as session:
        session.add(Tenant(name=f"w{i:06d}"))
"""


# --- what restore refuses --------------------------------------------------------------------


def test_tampered_member_is_refused_before_anything_changes(source, fresh, cli, tmp_path):
    archive = tmp_path / "b.tar.gz"
    backup(cli, archive)
    bad = rewrite_member(archive, "swift/aio/object.ring.gz", b"not the ring", tmp_path / "x.tgz")

    dst = fresh()
    result = cli("restore", str(bad))

    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "stackctl: error: checksum mismatch for swift/aio/object.ring.gz: the archive is "
        "damaged or was altered; nothing was restored")
    assert not (dst / "secrets").exists() and not (dst / "swift").exists()
    assert not (dst / "home" / "stackctl.db").exists()


def test_unlisted_member_and_truncated_archive_are_refused(source, fresh, cli, tmp_path):
    archive = tmp_path / "b.tar"
    backup(cli, archive)
    with tarfile.open(archive, "a") as tar:
        tar.addfile(tarfile.TarInfo("secrets/smuggled"), io.BytesIO(b""))
    truncated = write(tmp_path / "t.tar.gz", (tmp_path / "b.tar").read_bytes()[:5000], 0o600)

    fresh()
    extra = cli("restore", str(archive))
    cut = cli("restore", str(truncated))

    assert extra.exit_code == 2 and "unlisted secrets/smuggled" in extra.stderr
    assert cut.exit_code == 2 and "Traceback" not in cut.stderr


def test_manifest_with_an_escaping_path_is_refused(tmp_path):
    from stackcore.errors import InvalidInput

    from stackctl.workflows import backup as wf

    entry = {"kind": "secrets", "path": "../../etc/passwd", "mode": 0o600, "size": 1,
             "sha256": "0" * 64}
    with pytest.raises(InvalidInput, match="invalid entry"):
        wf._member(entry)


@pytest.mark.parametrize("manifest", [
    {"format": 1, "members": []},
    {"format": 2, "database": {"kind": "sqlite"}, "members": []},
    {"format": 1, "database": {"kind": "sqlite"}, "schema_version": 999, "members": []},
    {"format": 1, "database": {"kind": "sqlite"}, "members": []},
])
def test_a_manifest_that_is_not_ours_is_refused_in_one_line(home, cli, tmp_path, manifest):
    archive = tmp_path / "odd.tar"
    data = json.dumps(manifest).encode()
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))

    result = cli("restore", str(archive))

    assert result.exit_code == 2
    errors = [ln for ln in result.stderr.splitlines() if not ln.startswith("stackctl: restore:")]
    assert len(errors) == 1 and errors[0].startswith("stackctl: error: ")


def test_restore_refuses_a_database_with_rows(source, cli, tmp_path):
    archive = tmp_path / "b.tar.gz"
    backup(cli, archive)
    assert cli("tenant", "create", "gamma").exit_code == 0
    db_before = (source / "home" / "stackctl.db").read_bytes()

    result = cli("restore", str(archive))

    assert result.exit_code == 4
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("stackctl: error: this controller has state a restore would "
                                "replace: the database ")
    assert "(3 tenants)" in lines[-1] and "--force" in lines[-1]
    assert tenants(source) == ["alpha", "beta", "gamma"]
    assert (source / "home" / "stackctl.db").read_bytes() == db_before


def test_restore_refuses_other_secrets_and_force_replaces_them(source, fresh, cli, tmp_path):
    archive = tmp_path / "b.tar.gz"
    backup(cli, archive)
    dst = fresh()
    other = json.dumps(dict(SECRETS, hash_path_suffix="another-cluster")).encode()
    write(dst / "secrets" / "swift.json", other, 0o600)

    refused = cli("restore", str(archive))
    assert refused.exit_code == 4
    assert f"{dst / 'secrets' / 'swift.json'} differs" in refused.stderr
    assert (dst / "secrets" / "swift.json").read_bytes() == other
    assert not (dst / "home" / "stackctl.db").exists()

    forced = cli("restore", "--force", str(archive))
    assert forced.exit_code == 0, forced.stderr
    assert json.loads((dst / "secrets" / "swift.json").read_text()) == SECRETS
    assert tenants(dst) == ["alpha", "beta"]


def test_force_replaces_a_database_with_rows_and_drops_its_wal(source, cli, tmp_path):
    archive = tmp_path / "b.tar.gz"
    backup(cli, archive)
    assert cli("tenant", "create", "gamma").exit_code == 0

    result = cli("restore", "--force", str(archive))

    assert result.exit_code == 0, result.stderr
    assert tenants(source) == ["alpha", "beta"]
    assert cli("tenant", "create", "delta").exit_code == 0  # the restored file works on
    assert tenants(source) == ["alpha", "beta", "delta"]


def test_same_secrets_on_target_are_no_conflict(source, fresh, cli, tmp_path):
    archive = tmp_path / "b.tar.gz"
    backup(cli, archive)
    dst = fresh()
    write(dst / "secrets" / "swift.json", (source / "secrets" / "swift.json").read_bytes(),
          0o600)
    cli("flavor", "list")  # a fresh controller's schema and default flavors are not state

    result = cli("restore", str(archive), "-o", "json")

    assert result.exit_code == 0, result.stderr
    assert result.json()["unchanged_files"] == 1


def test_check_verifies_and_changes_nothing(source, fresh, cli, tmp_path):
    archive = tmp_path / "b.tar.gz"
    backup(cli, archive)
    dst = fresh()

    result = cli("restore", "--check", str(archive), "-o", "json")

    assert result.exit_code == 0, result.stderr
    assert result.json()["restored"] is False and result.json()["conflicts"] == []
    assert not (dst / "home" / "stackctl.db").exists() and not (dst / "secrets").exists()


# --- modes, secrets, images ------------------------------------------------------------------


def test_restored_files_keep_their_modes_and_secrets_are_0600(source, fresh, cli, tmp_path):
    (source / "secrets" / "swift.json").chmod(0o644)  # too open: restored closed
    archive = tmp_path / "b.tar.gz"
    backup(cli, archive)
    dst = fresh()
    assert cli("restore", str(archive)).exit_code == 0

    assert (dst / "secrets" / "swift.json").stat().st_mode & 0o777 == 0o600
    assert (dst / "secrets" / "extra.key").stat().st_mode & 0o777 == 0o600
    assert (dst / "secrets" / "extra.pub").stat().st_mode & 0o777 == 0o644
    assert (dst / "home" / "stackctl.db").stat().st_mode & 0o777 == 0o600
    assert (dst / "swift" / "aio" / "object.builder").stat().st_mode & 0o777 == 0o644
    for directory in (dst / "secrets", dst / "swift", dst / "swift" / "aio"):
        assert directory.stat().st_mode & 0o777 == 0o700
    leftovers = [p for p in dst.rglob(".*")]
    assert leftovers == []


def test_secrets_never_appear_in_output(source, fresh, cli, tmp_path):
    outputs = []
    for fmt in ("table", "json", "yaml"):
        archive = tmp_path / f"b-{fmt}.tar.gz"
        result = backup(cli, archive, "-o", fmt)
        outputs += [result.stdout, result.stderr]
    fresh()
    for fmt in ("table", "json", "yaml"):
        result = cli("restore", "--force", str(tmp_path / "b-table.tar.gz"), "-o", fmt)
        assert result.exit_code == 0, result.stderr
        outputs += [result.stdout, result.stderr]
    text = "\n".join(outputs)
    assert not [value for value in SECRET_VALUES if value in text]


def test_local_images_come_back_and_their_rows_follow_the_new_home(source, fresh, cli,
                                                                    qcow2, tmp_path):
    assert cli("image", "import", "disk", str(qcow2), tenant="alpha").exit_code == 0
    archive = tmp_path / "b.tar.gz"
    backup(cli, archive)
    dst = fresh()

    result = cli("restore", str(archive), "-o", "json")

    assert result.exit_code == 0, result.stderr
    assert result.json()["image_paths_moved"] == 1
    shown = cli("image", "show", "disk", "-o", "json", tenant="alpha").json()
    assert shown["path"] == str(dst / "home" / "images" / shown["sha256"])
    assert Path(shown["path"]).read_bytes() == qcow2.read_bytes()


# --- PostgreSQL ------------------------------------------------------------------------------


@pytest.fixture
def pg(postgres_url, source, monkeypatch):
    """The source controller on a real, emptied PostgreSQL database (emptied again after)."""
    from stackctl.db import Database
    from stackctl.models import Base

    def empty():
        database = Database(postgres_url)
        Base.metadata.drop_all(database.engine)
        database.dispose()

    empty()
    monkeypatch.setenv("STACKCTL_DB_URL", postgres_url)
    yield postgres_url
    empty()


def test_postgresql_round_trip_with_pg_dump_and_pg_restore(pg, cli, tmp_path):
    from stackctl.workflows import backup as wf

    for name in ("pg-one", "pg-two"):
        assert cli("tenant", "create", name).exit_code == 0
    archive = tmp_path / "pg.tar.gz"
    backup(cli, archive)
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
    assert manifest["database"]["kind"] == "postgresql"
    assert "database/stackctl.pgdump" in {m["name"] for m in manifest["members"]}

    refused = cli("restore", str(archive))
    assert refused.exit_code == 4 and "(2 tenants)" in refused.stderr

    from stackctl.db import Database
    from stackctl.models import Base

    database = Database(pg)
    Base.metadata.drop_all(database.engine)  # a fresh PostgreSQL database...
    database.dispose()
    assert cli("flavor", "list").exit_code == 0  # ...that made its schema: pg_restore --clean
    assert wf.state_rows(pg) == {}

    result = cli("restore", str(archive))

    assert result.exit_code == 0, result.stderr
    names = sorted(t["name"] for t in cli("tenant", "list", "-o", "json").json())
    assert names == ["pg-one", "pg-two"]


def test_postgresql_password_is_passed_in_the_environment():
    from stackctl.workflows import backup as wf

    uri, env = wf.pg_connection("postgresql+psycopg://u:s%40cret@db.example:5433/stk")
    assert uri == "postgresql://u@db.example:5433/stk"
    assert env["PGPASSWORD"] == "s@cret"


def test_a_sqlite_backup_is_not_restored_into_postgresql(source, cli, tmp_path, monkeypatch):
    archive = tmp_path / "b.tar.gz"
    backup(cli, archive)
    monkeypatch.setenv("STACKCTL_DB_URL", "postgresql+psycopg://nobody@/nowhere")

    result = cli("restore", str(archive))

    assert result.exit_code == 2
    assert "holds a sqlite database and this controller uses postgresql" in result.stderr
