"""Fixtures for the controller's tests: a private STACKCTL_HOME with a real SQLite file per
test, the CLI through click's CliRunner and as a subprocess, and rows a refresh would write.

Nothing here touches libvirt; tests that run Ansible use a local-connection inventory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

PROJECT = Path(__file__).resolve().parents[2]
STACKCTL = str(Path(sys.executable).parent / "stackctl")
LOCAL_INVENTORY = """\
all:
  vars:
    ansible_connection: local
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
  children:
    hypervisors:
      hosts:
        hv1:
        hv2:
          ansible_host: 127.0.0.1
    others:
      hosts:
        ctl:
"""


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A fresh controller home; the environment points every stackctl call at it."""
    path = tmp_path / "home"
    for name in list(os.environ):
        if name.startswith("STACKCTL_") and not name.startswith("STACKCTL_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("STACKCTL_HOME", str(path))
    monkeypatch.setenv("STACKCTL_INVENTORY", str(tmp_path / "no-inventory.yml"))
    monkeypatch.setenv("STACKCTL_KEEP_RUNS", "1")  # any runner call would leave a dir behind
    # No object storage for these tests (this machine may have one deployed): local images.
    monkeypatch.setenv("STACKCTL_SWIFT_SECRETS", str(tmp_path / "no-swift-secrets.json"))
    return path


@pytest.fixture
def inventory(tmp_path, monkeypatch) -> Path:
    """A local-connection inventory (hypervisors hv1, hv2; ctl elsewhere)."""
    path = tmp_path / "hosts.yml"
    path.write_text(LOCAL_INVENTORY)
    monkeypatch.setenv("STACKCTL_INVENTORY", str(path))
    return path


@pytest.fixture
def app(home):
    from stackctl import config
    from stackctl.app import App

    return App(config.load())


@pytest.fixture
def db(app):
    return app.db


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str

    def json(self):
        return json.loads(self.stdout)


@pytest.fixture
def cli(home):
    """``cli("vm", "list", tenant="a")``: the CLI in-process (CliRunner), stdout/stderr apart."""
    from stackctl.cli import main

    def run(*args: str, tenant: str | None = None, input: str | None = None) -> Result:
        env = {"STACKCTL_TENANT": tenant} if tenant else {}
        runner = CliRunner()
        result = runner.invoke(_Main(main), list(args), env=env, input=input,
                               catch_exceptions=False)
        return Result(result.exit_code, result.stdout, result.stderr)

    return run


class _Main:
    """Adapts ``stackctl.cli.main`` (which exits) to what CliRunner.invoke expects."""

    def __init__(self, main):
        self.main_func = main
        self.name = "stackctl"

    def main(self, args=None, prog_name=None, **_kwargs):
        self.main_func(args)


@pytest.fixture
def run_stackctl(home):
    """The installed console script in a subprocess, as a user runs it."""

    def run(*args: str, tenant: str | None = None, **env: str) -> subprocess.CompletedProcess:
        full_env = dict(os.environ, **env)
        if tenant:
            full_env["STACKCTL_TENANT"] = tenant
        return subprocess.run([STACKCTL, *args], capture_output=True, text=True, env=full_env,
                              timeout=120, check=False)

    return run


@pytest.fixture
def keyfile(tmp_path) -> Path:
    """An ed25519 public key file made by ssh-keygen."""
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "t@test", "-f",
                    str(key)], check=True)
    return key.with_suffix(".pub")


@pytest.fixture
def qcow2(tmp_path) -> Path:
    path = tmp_path / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "64M"], check=True)
    return path


def add_host(db, name="aio", vcpus=4, ram_mb=4096, disk_gb=100, enabled=True):
    """Insert a host row as ``host refresh`` would."""
    from stackctl.models import Host, utcnow

    with db.write() as session:
        session.add(Host(name=name, address="127.0.0.1", enabled=enabled, vcpus=vcpus,
                         ram_mb=ram_mb, disk_gb=disk_gb, virt_type="qemu",
                         refreshed_at=utcnow()))


@pytest.fixture
def tenant_with_vm(cli, db, keyfile, qcow2):
    """Tenant ``a`` with keypair ``k1``, image ``img`` and a running VM ``web-1`` on host aio
    (the VM row is written directly: booting one is the integration tests' job)."""
    add_host(db)
    assert cli("tenant", "create", "a").exit_code == 0
    assert cli("tenant", "create", "b").exit_code == 0
    assert cli("keypair", "add", "k1", "--public-key", str(keyfile), tenant="a").exit_code == 0
    assert cli("image", "import", "img", str(qcow2), tenant="a").exit_code == 0
    return insert_vm(db, "a", "web-1")


def insert_vm(db, tenant: str, name: str, host: str = "aio", state: str = "running",
              flavor: str = "m1.nano", image: str = "img") -> str:
    from sqlalchemy import select

    from stackctl.models import VM, Flavor, Host, Image, Tenant, new_uuid

    with db.write() as session:
        owner = session.scalar(select(Tenant).where(Tenant.name == tenant))
        size = session.scalar(select(Flavor).where(Flavor.name == flavor))
        vm = VM(uuid=new_uuid(), tenant_id=owner.id, name=name,
                host_id=session.scalar(select(Host.id).where(Host.name == host)),
                flavor_id=size.id, image_id=session.scalar(select(Image.id).where(
                    Image.name == image)),
                vcpus=size.vcpus, ram_mb=size.ram_mb, disk_gb=size.disk_gb, state=state,
                mac="52:54:00:00:00:01", address="192.168.150.10")
        session.add(vm)
        return vm.uuid


@pytest.fixture(scope="session")
def postgres_url():
    """A real PostgreSQL for the tests that must prove a DSN works: STACKCTL_TEST_PG_URL when
    set, else a private cluster (unix socket only, no TCP) started for this run and removed
    after it. Skips only where PostgreSQL's server binaries are not installed."""
    url = os.environ.get("STACKCTL_TEST_PG_URL")
    if url:
        yield url
        return
    import glob
    import pwd
    import shutil

    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    if not bins or shutil.which("runuser") is None:
        pytest.skip("PostgreSQL server not installed (make test installs it; or set "
                    "STACKCTL_TEST_PG_URL)")
    pg_bin, owner = bins[-1], pwd.getpwnam("postgres")
    import tempfile  # pytest's tmp root is 0700 root: the postgres user could not enter it

    base = Path(tempfile.mkdtemp(prefix="stackctl-pg-"))
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    for path in (base, sock):
        os.chown(path, owner.pw_uid, owner.pw_gid)
    as_pg = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*as_pg, f"{pg_bin}/initdb", "-D", str(data), "-A", "trust", "-U", "stackctl"],
                   check=True, capture_output=True)
    subprocess.run([*as_pg, f"{pg_bin}/pg_ctl", "-D", str(data), "-w", "-l", str(base / "log"),
                    "-o", f"-k {sock} -c listen_addresses='' -p 55433", "start"],
                   check=True, capture_output=True)
    try:
        subprocess.run([*as_pg, f"{pg_bin}/createdb", "-h", str(sock), "-p", "55433",
                        "-U", "stackctl", "stackctl_test"], check=True, capture_output=True)
        yield f"postgresql+psycopg://stackctl@/stackctl_test?host={sock}&port=55433"
    finally:
        subprocess.run([*as_pg, f"{pg_bin}/pg_ctl", "-D", str(data), "-m", "fast", "-w", "stop"],
                       check=False, capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
