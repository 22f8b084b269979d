"""stack_bucket run by Ansible against the deployed Swift proxy (the all-in-one's), as the
service user a playbook would use: check -> apply -> check -> apply, then changes and removal."""

import json
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SECRETS = Path("/etc/stackctl/secrets/swift.json")
ENDPOINT = "http://127.0.0.1:8080"


class Secret(str):
    """The service key: its value goes to the module, its repr never into a test report."""

    def __repr__(self):
        return "'<secret>'"


@pytest.fixture
def bucket_args():
    if not SECRETS.exists():
        pytest.fail(f"object storage is not deployed ({SECRETS} missing): run `make deploy`")
    secrets = json.loads(SECRETS.read_text())
    return {"endpoint": ENDPOINT,
            "auth_user": "stackctl:STKS" + secrets["service_access"][:16].upper(),
            "auth_key": Secret(secrets["service_key"]),
            "account": f"mod-{uuid.uuid4().hex[:8]}", "name": "pics"}


def _anonymous_status(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_bucket_lifecycle_is_idempotent_and_real(run_module, bucket_args):
    args = dict(bucket_args, acl="public-read", quota_bytes=1024, versioning=True)
    url = f"{ENDPOINT}/v1/AUTH_{args['account']}/{args['name']}"
    try:
        results = [run_module("stack_bucket", args, check=True, diff=True),
                   run_module("stack_bucket", args, diff=True),
                   run_module("stack_bucket", args, check=True),
                   run_module("stack_bucket", args)]
        assert [r["changed"] for r in results] == [True, True, False, False]
        assert all(r["_status"] == "ok" for r in results), [r.get("msg") for r in results]
        assert results[1]["bucket"] == {**results[1]["bucket"], "acl": "public-read",
                                        "quota_bytes": 1024, "versioning": True}
        assert _anonymous_status(url) in (200, 204)          # public-read lists anonymously
        assert args["auth_key"] not in json.dumps(results) + "".join(r["_stdout"] for r in results)

        private = dict(args, acl="private")
        changed = run_module("stack_bucket", private, diff=True)
        assert changed["changed"] and changed["diff"]["after"]["acl"] == "private"
        assert _anonymous_status(url) == 401
        assert not run_module("stack_bucket", private)["changed"]
    finally:
        gone = run_module("stack_bucket", dict(bucket_args, state="absent", force=True))
    assert gone["_status"] == "ok", gone.get("msg")
    assert not run_module("stack_bucket", dict(bucket_args, state="absent"))["changed"]


def test_bad_input_and_wrong_key_fail_in_one_line(run_module, bucket_args):
    bad = run_module("stack_bucket", dict(bucket_args, name="Bad_Name"))
    assert bad["_status"] == "failed" and "invalid bucket name" in bad["msg"]
    wrong = run_module("stack_bucket", dict(bucket_args, auth_key="x" * 32))
    assert wrong["_status"] == "failed" and "\n" not in wrong["msg"]
    assert "x" * 32 not in wrong["msg"]
