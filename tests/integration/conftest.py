"""Fixtures for end-to-end tests: the real `stackctl` CLI against the deployed all-in-one cloud.

Needs what `make test` prepares first: the aio deploy (libvirtd, the provider network) and the
test guest image in build/images/test-guest. Each test gets its own controller home, so its
database and image store are private; every VM a test creates is deleted at teardown and the
host is checked for leftovers.
"""

import json
import os
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]
STACKCTL = str(PROJECT / ".venv" / "bin" / "stackctl")
IMAGE_DIR = PROJECT / "build" / "images" / "test-guest"
INSTANCES = Path("/var/lib/stackctl/instances")


def pytest_collection_modifyitems(items):
    """Every test in this folder needs the deployed cloud: mark it ``integration`` (a
    ``pytestmark`` here would do nothing: pytest reads it from test modules only)."""
    for item in items:
        if "tests/integration/" in str(item.path):
            item.add_marker(pytest.mark.integration)


@dataclass
class Cli:
    """Runs the installed `stackctl` in a private controller home, as a user would."""

    home: Path
    tenant: str = ""
    created_vms: list = field(default_factory=list)

    def env(self, **extra):
        env = dict(os.environ, STACKCTL_HOME=str(self.home), STACKCTL_TENANT=self.tenant)
        env.pop("STACKCTL_DB_URL", None)
        env.update({k: v for k, v in extra.items() if v is not None})
        return env

    def run(self, *args, check=True, timeout=300, **env):
        proc = subprocess.run([STACKCTL, *args], capture_output=True, text=True,
                              env=self.env(**env), timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"stackctl {' '.join(args)} exited {proc.returncode}: "
                                 f"{proc.stderr.strip()}")
        return proc

    def json(self, *args, **env):
        return json.loads(self.run(*args, "-o", "json", **env).stdout)


def domain_names():
    """Names of the domains libvirt knows on this host (running or not)."""
    out = subprocess.run(["virsh", "-c", "qemu:///system", "list", "--all", "--name"],
                         capture_output=True, text=True, check=True).stdout
    return {line.strip() for line in out.splitlines() if line.strip()}


def assert_nothing_left(vm_uuid):
    """After a delete or a rollback: no domain, no instance directory (disk, seed, log)."""
    domain = f"stk-{vm_uuid}"
    assert domain not in domain_names(), f"domain {domain} is still defined"
    assert not (INSTANCES / domain).exists(), f"{INSTANCES / domain} is still on disk"


@pytest.fixture(scope="session")
def guest_image():
    """The test guest built by images/test-guest/build.py (built now if `make image` was not
    run)."""
    manifest = IMAGE_DIR / "manifest.json"
    if not manifest.exists():
        subprocess.run([str(PROJECT / ".venv/bin/python"),
                        str(PROJECT / "images/test-guest/build.py"),
                        "--out", str(IMAGE_DIR)], check=True)
    return json.loads(manifest.read_text())


@pytest.fixture
def cli(tmp_path):
    """A controller with its own home and a tenant of its own; VMs it made are removed after."""
    tenant = f"t{uuid.uuid4().hex[:8]}"
    c = Cli(home=tmp_path / "home", tenant=tenant)
    c.run("tenant", "create", tenant)
    c.run("host", "refresh")
    yield c
    for vm in c.json("vm", "list"):
        c.run("vm", "delete", vm["name"], check=False)
    c.run("recover", check=False)
    # Images last (VMs hold them); disk images before the kernels/ramdisks they boot with.
    # With object storage deployed this removes the test's objects from the image container.
    for image in sorted(c.json("image", "list"), key=lambda i: i["disk_format"] in ("aki", "ari")):
        c.run("image", "delete", image["name"], check=False)


@pytest.fixture
def tenant_key(cli, tmp_path):
    """An ed25519 key registered as the tenant's keypair `k1`; returns the private key path."""
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    cli.run("keypair", "add", "k1", "--public-key", f"{key}.pub")
    return key


def import_guest(cli, guest_image):
    """Import the test guest Glance-style as ``tg``: kernel (aki), ramdisk (ari), disk with
    both."""
    files = guest_image["files"]
    cli.run("image", "import", "tg-kernel", str(IMAGE_DIR / files["kernel"]["path"]),
            "--disk-format", "aki")
    cli.run("image", "import", "tg-initrd", str(IMAGE_DIR / files["initrd"]["path"]),
            "--disk-format", "ari")
    cli.run("image", "import", "tg", str(IMAGE_DIR / files["disk"]["path"]),
            "--sha256", files["disk"]["sha256"], "--kernel", "tg-kernel",
            "--ramdisk", "tg-initrd", "--cmdline", guest_image["cmdline"])
    return "tg"


@pytest.fixture
def imported_image(cli, guest_image):
    return import_guest(cli, guest_image)


def ssh(address, key, command, timeout=90):
    """Run ``command`` in the guest as root with ``key``, retrying until SSH answers."""
    argv = ["ssh", "-i", str(key), "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR", f"root@{address}", command]
    deadline = time.monotonic() + timeout
    while True:
        proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)
        if proc.returncode == 0 or time.monotonic() > deadline:
            return proc
        time.sleep(1)
