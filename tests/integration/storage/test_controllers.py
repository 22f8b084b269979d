"""Two controller homes on one cloud keep their keys apart (a file each on the proxy), and a
tenant with buckets cannot be deleted (a new tenant of that name would inherit them)."""

from pathlib import Path

from .conftest import Controller, provisioned_tenant, s3_accepts, unique, wait_until

AUTH_DIR = Path("/etc/swift/stackauth")


def _tenant_files():
    return {p.name for p in AUTH_DIR.glob("tenants-*.json")}


def test_revoking_in_one_controller_leaves_the_others_keys(tmp_path):
    before = _tenant_files()
    one, two = Controller(tmp_path / "one"), Controller(tmp_path / "two")
    with provisioned_tenant(one, "ctl1") as a, provisioned_tenant(two, "ctl2") as b:
        assert len(_tenant_files() - before) == 2       # one file per controller
        extra = a.new_credential()
        a.cli("credentials", "revoke", extra["access_key"])
        assert wait_until(lambda: not s3_accepts(extra)), "a revoked key still works"
        assert s3_accepts(a.credential) and s3_accepts(b.credential)
    assert _tenant_files() == before                    # no keys left: the files are gone


def test_a_tenant_with_buckets_cannot_be_deleted(tmp_path):
    ctl = Controller(tmp_path / "home")
    with provisioned_tenant(ctl, "keep") as tenant:
        bucket = unique("keep")
        tenant.cli("bucket", "create", bucket)
        proc = ctl.run("tenant", "delete", tenant.name, check=False)
        assert proc.returncode != 0
        assert f"still has 1 bucket(s) ({bucket})" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
        assert tenant.json("bucket", "show", bucket)["name"] == bucket
