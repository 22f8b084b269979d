"""``stackctl bucket`` and ``stackctl credentials`` as a user runs them: S3 naming rules, ACLs,
quotas and versioning that the proxy enforces, safe deletes, parseable output, and secrets
that are shown once and stored nowhere but the controller's database."""

import json

import pytest
import swiftclient.client as swift
import yaml

from .conftest import (
    PROXY_LOG,
    anonymous_get,
    files_holding,
    proxy_log_after_marker,
    s3_error,
    wait_until,
)


@pytest.fixture
def s3(tenant):
    return tenant.s3()


def object_url(tenant, bucket, key=""):
    return f"{tenant.credential['endpoint']}/v1/AUTH_{tenant.name}/{bucket}/{key}".rstrip("/")


def swift_authenticates(tenant):
    try:
        tenant.swift().get_auth()
    except swift.ClientException:
        return False
    return True


@pytest.mark.parametrize("name", ["Ab", "ab", "-abc", "a..b", "192.168.1.1", "a" * 64,
                                  "abc-", "my_bucket", "a.-b"])
def test_create_refuses_names_s3_refuses(tenant, name):
    # "--": a name starting with "-" would otherwise be read as an option.
    proc = tenant.controller.run("bucket", "create", "--tenant", tenant.name, "--", name,
                                 check=False)
    assert proc.returncode == 2  # InvalidInput
    assert proc.stderr.startswith(f"stackctl: error: invalid bucket name {name!r}: ")
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_public_read_bucket_serves_anonymous_reads_and_private_does_not(tenant, s3):
    tenant.cli("bucket", "create", "open-data", "--acl", "public-read")
    tenant.cli("bucket", "create", "closed-data")
    assert tenant.json("bucket", "show", "open-data")["acl"] == "public-read"
    assert tenant.json("bucket", "show", "closed-data")["acl"] == "private"
    s3.put_object(Bucket="open-data", Key="readme.txt", Body=b"for everyone")
    s3.put_object(Bucket="closed-data", Key="readme.txt", Body=b"for the tenant")

    assert anonymous_get(object_url(tenant, "open-data", "readme.txt")) == (200, b"for everyone")
    assert anonymous_get(object_url(tenant, "open-data")) == (200, b"readme.txt\n")  # listing
    status, body = anonymous_get(object_url(tenant, "closed-data", "readme.txt"))
    assert status in (401, 403)
    assert b"for the tenant" not in body


def test_quota_refuses_an_upload_that_would_exceed_it(tenant, s3):
    tenant.cli("bucket", "create", "capped", "--quota", "1K")
    assert tenant.json("bucket", "show", "capped")["quota_bytes"] == 1024

    code, status = s3_error(s3.put_object, Bucket="capped", Key="2k", Body=b"x" * 2048)
    assert (code, status) == ("EntityTooLarge", 400)  # s3api's answer to Swift's 413
    s3.put_object(Bucket="capped", Key="512", Body=b"x" * 512)
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="capped")["Contents"]] == ["512"]


def test_versioned_bucket_keeps_every_version(tenant, s3):
    tenant.cli("bucket", "create", "history", "--versioning")
    assert tenant.json("bucket", "show", "history")["versioning"]
    assert s3.get_bucket_versioning(Bucket="history")["Status"] == "Enabled"
    first = s3.put_object(Bucket="history", Key="doc", Body=b"v1")["VersionId"]
    s3.put_object(Bucket="history", Key="doc", Body=b"v2")

    versions = s3.list_object_versions(Bucket="history")["Versions"]
    assert [(v["Key"], v["IsLatest"]) for v in versions] == [("doc", True), ("doc", False)]
    assert s3.get_object(Bucket="history", Key="doc")["Body"].read() == b"v2"
    assert s3.get_object(Bucket="history", Key="doc", VersionId=first)["Body"].read() == b"v1"


def test_delete_refuses_a_non_empty_bucket_unless_forced(tenant, s3):
    tenant.cli("bucket", "create", "full-bucket")
    s3.put_object(Bucket="full-bucket", Key="keep.txt", Body=b"keep me")

    proc = tenant.cli("bucket", "delete", "full-bucket", check=False)
    assert proc.returncode == 4  # Conflict
    assert "not empty" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert tenant.json("bucket", "show", "full-bucket")["objects"] == 1
    assert s3.get_object(Bucket="full-bucket", Key="keep.txt")["Body"].read() == b"keep me"

    deleted = tenant.json("bucket", "delete", "full-bucket", "--force")
    assert deleted == {"name": "full-bucket", "deleted": True, "objects_deleted": 1}
    assert tenant.cli("bucket", "show", "full-bucket", check=False).returncode == 3
    assert s3_error(s3.head_bucket, Bucket="full-bucket") == ("404", 404)


def test_bucket_list_is_parseable_json_and_yaml(tenant, s3):
    tenant.cli("bucket", "create", "listed")
    s3.put_object(Bucket="listed", Key="one", Body=b"12345")

    as_json = json.loads(tenant.cli("bucket", "list", "-o", "json").stdout)
    as_yaml = yaml.safe_load(tenant.cli("bucket", "list", "-o", "yaml").stdout)
    # Names only: the counts may change between the two calls (see below).
    assert [b["name"] for b in as_json] == [b["name"] for b in as_yaml]
    listed = {b["name"]: b for b in as_json}
    assert "listed" in listed
    assert set(listed["listed"]) == {"name", "objects", "bytes", "last_modified"}
    # The account listing's counts catch up when the container updater runs; HEAD is exact.
    assert tenant.json("bucket", "show", "listed")["bytes"] == 5
    assert not any(name.endswith("+segments") for name in listed)


def test_secrets_are_shown_once_and_stored_nowhere_else(tenant):
    rotated = tenant.json("credentials", "rotate", tenant.access_key)
    tenant.credential = rotated  # so that teardown can still reach the account
    secrets = tenant.controller.secrets
    assert len(secrets) == 2 and rotated["secret"] in secrets
    # A v1 auth sends the secret in X-Auth-Key; the proxy takes the new one within a second.
    assert wait_until(lambda: swift_authenticates(tenant)), "the rotated secret is refused"

    for output in ("table", "json", "yaml"):
        proc = tenant.cli("credentials", "list", "-o", output)
        assert tenant.access_key in proc.stdout
        assert not any(s in proc.stdout + proc.stderr for s in secrets), output
    assert all("secret" not in c for c in json.loads(
        tenant.cli("credentials", "list", "-o", "json").stdout))

    assert files_holding(tenant.controller.home, secrets) == []
    log = proxy_log_after_marker(tenant.credential["endpoint"])
    assert not [s for s in secrets if s in log], f"a secret is in {PROXY_LOG}"
