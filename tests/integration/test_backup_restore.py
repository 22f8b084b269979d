"""Backup, wipe, restore on the deployed all-in-one: a controller with a tenant, a running VM,
S3 credentials and a bucket with an object is backed up, replaced by an empty controller and
restored from the archive; the restored controller lists and restarts the VM, which answers
over SSH, and the object reads back byte-identical with the credential made before the backup.

The shared cloud's /etc/stackctl files are never touched: the test controller's secrets
directory and ring builders (STACKCTL_SECRETS_DIR, STACKCTL_SWIFT_SECRETS,
STACKCTL_SWIFT_BUILDERS) are copies, and the test checks the real ones are unchanged after.
"""

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import time
import uuid
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from .conftest import Cli, domain_names, import_guest, ssh

pytestmark = pytest.mark.slow

REAL_SECRETS = Path("/etc/stackctl/secrets")
REAL_BUILDERS = Path("/etc/stackctl/swift")
STACKAUTH = Path("/etc/swift/stackauth")


def digests(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def point_at(monkeypatch, root):
    """The test controller's secrets and builders live under ``root``."""
    monkeypatch.setenv("STACKCTL_SECRETS_DIR", str(root / "secrets"))
    monkeypatch.setenv("STACKCTL_SWIFT_SECRETS", str(root / "secrets" / "swift.json"))
    monkeypatch.setenv("STACKCTL_SWIFT_BUILDERS", str(root / "swift"))


@pytest.fixture
def copied_etc(tmp_path, monkeypatch):
    """Copies of the controller's /etc/stackctl files for the test's controller. Other tests
    may rebalance rings meanwhile, so only the real hash secret is checked to be unchanged
    after (nothing here writes to /etc/stackctl)."""
    if not (REAL_SECRETS / "swift.json").is_file():
        pytest.skip("object storage is not deployed (no /etc/stackctl/secrets/swift.json)")
    before = (REAL_SECRETS / "swift.json").read_bytes()
    root = tmp_path / "etc-src"
    shutil.copytree(REAL_SECRETS, root / "secrets")
    shutil.copytree(REAL_BUILDERS, root / "swift")
    point_at(monkeypatch, root)
    yield root
    assert (REAL_SECRETS / "swift.json").read_bytes() == before


@pytest.fixture
def controller(copied_etc, guest_image, tmp_path):
    """A controller (private home, copied /etc files) with a tenant, its key ``k1`` and the
    test guest imported; at the end the VM, bucket, keys, images and tenant are deleted
    through whichever controller the test ended with, and nothing may be left."""
    cli = Cli(home=tmp_path / "home", tenant=f"t{uuid.uuid4().hex[:8]}")
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    cli.run("tenant", "create", cli.tenant)
    cli.run("host", "refresh")
    cli.run("keypair", "add", "k1", "--public-key", f"{key}.pub")
    import_guest(cli, guest_image)
    cli.key = key
    yield cli
    left = clean_up(cli)
    assert not left, f"left behind: {', '.join(left)}"


def s3_client(cred):
    return boto3.client(
        "s3", endpoint_url=cred["endpoint"], region_name="us-east-1",
        aws_access_key_id=cred["access_key"], aws_secret_access_key=cred["secret"],
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                      connect_timeout=5, read_timeout=60))


def s3_accepts(cred, timeout=5.0):
    """Whether the proxy takes the key within ``timeout`` s (it re-reads keys every second)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            s3_client(cred).list_buckets()
            return True
        except ClientError as err:
            if err.response["ResponseMetadata"]["HTTPStatusCode"] != 403 \
                    or time.monotonic() > deadline:
                return False
        time.sleep(0.2)


def test_backup_wipe_restore_brings_back_a_working_cloud(controller, copied_etc, tmp_path,
                                                         monkeypatch):
    cli = controller
    cli.bucket, body = f"bk-{uuid.uuid4().hex[:8]}", os.urandom(1 << 20)
    archive = tmp_path / "controller.tar.gz"
    original_home, wiped_home = cli.home, tmp_path / "home-wiped"
    restored = False
    try:
        cli.run("vm", "create", "bk-1", "--image", "tg", "--flavor", "m1.nano", "--key", "k1")
        cli.vm_uuid = cli.json("vm", "show", "bk-1")["uuid"]
        cred = cli.json("credentials", "create")
        assert s3_accepts(cred), "the new key is not accepted"
        cli.run("bucket", "create", cli.bucket)
        s3_client(cred).put_object(Bucket=cli.bucket, Key="data.bin", Body=body)
        saved = digests(copied_etc)

        cli.run("backup", str(archive))
        assert archive.stat().st_mode & 0o777 == 0o600
        with tarfile.open(archive) as tar:
            manifest = json.load(tar.extractfile("manifest.json"))
        assert manifest["images"]["in_swift"] >= 3 and manifest["controller_id"]
        cli.controller_id = manifest["controller_id"]

        # Wipe: the home goes away (kept aside for cleanup should the restore fail) and the
        # controller's secrets and builders are now an empty directory.
        shutil.move(original_home, wiped_home)
        fresh = tmp_path / "etc-dst"
        point_at(monkeypatch, fresh)
        cli.home = tmp_path / "home-restored"
        cli.run("flavor", "list")  # the fresh controller makes its (empty) database
        assert cli.run("vm", "list", check=False).returncode == 3  # no such tenant here

        out = cli.run("restore", str(archive)).stdout
        restored = True
        assert "next: " in out
        assert digests(fresh) == saved  # secrets dir and every cluster's builders
        assert (fresh / "secrets" / "swift.json").stat().st_mode & 0o777 == 0o600

        assert [vm["name"] for vm in cli.json("vm", "list")] == ["bk-1"]
        cli.run("vm", "stop", "bk-1")
        assert cli.json("vm", "show", "bk-1")["state"] == "stopped"
        cli.run("vm", "start", "bk-1")
        vm = cli.json("vm", "show", "bk-1")
        answer = ssh(vm["address"], cli.key, "hostname")
        assert answer.returncode == 0, answer.stderr
        assert answer.stdout.strip() == "bk-1"

        got = s3_client(cred).get_object(Bucket=cli.bucket, Key="data.bin")["Body"].read()
        assert got == body
        assert cli.bucket in [b["name"] for b in cli.json("bucket", "list")]  # service key
    finally:
        if not restored and wiped_home.exists():  # clean up through the original controller
            shutil.rmtree(cli.home, ignore_errors=True)
            shutil.move(wiped_home, original_home)
            cli.home = original_home
            point_at(monkeypatch, copied_etc)


def clean_up(cli):
    """Delete what the test made through the controller it ended with; what survived."""
    cli.run("vm", "delete", "bk-1", check=False)
    if getattr(cli, "bucket", None):
        cli.run("bucket", "delete", cli.bucket, "--force", check=False)
    for cred in cli.json("credentials", "list"):
        cli.run("credentials", "revoke", cred["access_key"], check=False)
    for image in sorted(cli.json("image", "list"),
                        key=lambda i: i["disk_format"] in ("aki", "ari")):
        cli.run("image", "delete", image["name"], check=False)
    cli.run("tenant", "delete", cli.tenant, check=False)
    left = [f"tenant {cli.tenant}" for t in cli.json("tenant", "list") if t["name"] == cli.tenant]
    if getattr(cli, "vm_uuid", None) and f"stk-{cli.vm_uuid}" in domain_names():
        left.append(f"domain stk-{cli.vm_uuid}")
    keys = STACKAUTH / f"tenants-{getattr(cli, 'controller_id', 'none')}.json"
    if keys.exists():  # the restored controller must own (and so remove) its keys' file
        left.append(str(keys))
    return left
