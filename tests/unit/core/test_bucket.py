"""stackcore.bucket: S3 name rules and the plan, by tables; reconcile over a fake session."""

import pytest
from stackcore.bucket import (
    CREATE,
    DELETE,
    NONE,
    PUBLIC_READ_ACL,
    UPDATE,
    bucket_name,
    plan_bucket,
    read_state,
    reconcile,
    resolve_desired,
)
from stackcore.errors import BackendError, Conflict, InvalidInput

# ---------------------------------------------------------------------------------------------
# Names


@pytest.mark.parametrize("name", [
    "abc", "my-bucket", "my.bucket.v2", "1bucket", "a" * 63, "a-b-c", "192.168.5.4x",
    "xn-x", "my-s3alias-x", "a--b",
])
def test_valid_bucket_names(name):
    assert bucket_name(name) == name


@pytest.mark.parametrize(("name", "rule"), [
    ("ab", "must be 3-63 characters long, not 2"),
    ("a" * 64, "must be 3-63 characters long, not 64"),
    ("My-Bucket", "may contain only lower-case letters, digits, '.' and '-'"),
    ("my_bucket", "may contain only lower-case letters, digits, '.' and '-'"),
    ("my bucket", "may contain only lower-case letters, digits, '.' and '-'"),
    ("-abc", "must start and end with a letter or digit"),
    ("abc-", "must start and end with a letter or digit"),
    (".abc", "must start and end with a letter or digit"),
    ("abc.", "must start and end with a letter or digit"),
    ("a..b", "must not contain '..'"),
    ("a.-b", "must not have '-' next to '.'"),
    ("a-.b", "must not have '-' next to '.'"),
    ("192.168.5.4", "must not be formatted as an IPv4 address"),
    ("10.0.0.255", "must not be formatted as an IPv4 address"),
    ("xn--bucket", "must not start with xn--"),
    ("sthree-bucket", "must not start with"),
    ("sthree-configurator", "must not start with"),
    ("amzn-s3-demo-bucket", "must not start with"),
    ("bucket-s3alias", "must not end with"),
    ("bucket--ol-s3", "must not end with"),
    ("bucket.mrap", "must not end with"),
    ("bucket--x-s3", "must not end with"),
    ("bucket--table-s3", "must not end with"),
    (123, "expected a string"),
    (None, "expected a string"),
])
def test_invalid_bucket_names_say_which_rule(name, rule):
    with pytest.raises(InvalidInput) as err:
        bucket_name(name)
    message = str(err.value)
    assert message.startswith(f"invalid bucket name {name!r}: ") and rule in message
    assert "\n" not in message


@pytest.mark.parametrize(("kw", "message"), [
    ({"account": "../x"}, "invalid account"),
    ({"account": ""}, "invalid account"),
    ({"state": "gone"}, "invalid state"),
    ({"acl": "public-read-write"}, "invalid acl"),
    ({"quota_bytes": -1}, "quota_bytes -1: must be between 0"),
    ({"quota_bytes": "lots"}, "invalid quota_bytes"),
    ({"versioning": "yes"}, "invalid versioning"),
    ({"force": 1}, "invalid force"),
])
def test_resolve_desired_rejects(kw, message):
    args = dict({"name": "photos", "account": "demo"}, **kw)
    with pytest.raises(InvalidInput, match=message):
        resolve_desired(**args)


def test_resolve_desired_defaults():
    desired = resolve_desired("photos", "demo", quota_bytes=None)
    assert (desired.state, desired.acl, desired.quota_bytes, desired.versioning,
            desired.force) == ("present", "private", 0, False, False)


# ---------------------------------------------------------------------------------------------
# Current state


def test_read_state_normalises_header_case_and_acl_order():
    state = read_state({"X-CONTAINER-READ": " .rlistings , .r:* ",
                        "x-container-meta-quota-bytes": "100", "X-Versions-Enabled": "False",
                        "X-Container-Object-Count": "3", "x-container-bytes-used": "42"})
    assert (state.acl, state.quota_bytes, state.versioning, state.objects, state.bytes) == (
        "public-read", 100, False, 3, 42)


@pytest.mark.parametrize(("headers", "acl", "quota", "versioning"), [
    ({}, "private", None, None),
    ({"X-Container-Read": ".r:*"}, ".r:*", None, None),
    ({"X-Container-Read": "AUTH_other"}, "AUTH_other", None, None),
    ({"X-Container-Meta-Quota-Bytes": "lots"}, "private", "lots", None),
    ({"X-Container-Meta-Quota-Bytes": ""}, "private", None, None),
    ({"X-Versions-Enabled": "true"}, "private", None, True),
    ({"X-Versions-Enabled": "1"}, "private", None, True),
])
def test_read_state_table(headers, acl, quota, versioning):
    state = read_state(headers)
    assert (state.acl, state.quota_bytes, state.versioning) == (acl, quota, versioning)


# ---------------------------------------------------------------------------------------------
# Plan


def desired(**kw):
    return resolve_desired(**dict({"name": "photos", "account": "demo"}, **kw))


PUBLIC = {"X-Container-Read": PUBLIC_READ_ACL}
EMPTY = {"X-Container-Object-Count": "0", "X-Container-Bytes-Used": "0"}

PLANS = [
    # (case, current headers, desired, action, request headers)
    ("create private", None, {}, CREATE, {}),
    ("create with everything", None,
     {"acl": "public-read", "quota_bytes": 1024, "versioning": True}, CREATE,
     {"X-Container-Read": PUBLIC_READ_ACL, "X-Container-Meta-Quota-Bytes": "1024",
      "X-Versions-Enabled": "true"}),
    ("private as desired", EMPTY, {}, NONE, {}),
    ("public as desired, other order and case", {"x-container-read": ".rlistings,.r:*"},
     {"acl": "public-read"}, NONE, {}),
    ("all as desired", dict(PUBLIC, **{"X-Container-Meta-Quota-Bytes": "5",
                                       "X-Versions-Enabled": "True"}),
     {"acl": "public-read", "quota_bytes": 5, "versioning": True}, NONE, {}),
    ("private -> public-read", EMPTY, {"acl": "public-read"}, UPDATE,
     {"X-Container-Read": PUBLIC_READ_ACL}),
    ("public-read -> private", PUBLIC, {}, UPDATE, {"X-Remove-Container-Read": "x"}),
    ("custom read ACL -> private", {"X-Container-Read": ".r:*"}, {}, UPDATE,
     {"X-Remove-Container-Read": "x"}),
    ("custom read ACL -> public-read", {"X-Container-Read": ".r:*"}, {"acl": "public-read"},
     UPDATE, {"X-Container-Read": PUBLIC_READ_ACL}),
    ("quota none -> 100", EMPTY, {"quota_bytes": 100}, UPDATE,
     {"X-Container-Meta-Quota-Bytes": "100"}),
    ("quota 100 -> 200", {"X-Container-Meta-Quota-Bytes": "100"}, {"quota_bytes": 200}, UPDATE,
     {"X-Container-Meta-Quota-Bytes": "200"}),
    ("quota 100 -> none", {"X-Container-Meta-Quota-Bytes": "100"}, {"quota_bytes": 0}, UPDATE,
     {"X-Remove-Container-Meta-Quota-Bytes": "x"}),
    ("quota '0' blocks writes -> none", {"X-Container-Meta-Quota-Bytes": "0"}, {}, UPDATE,
     {"X-Remove-Container-Meta-Quota-Bytes": "x"}),
    ("versioning never enabled, false", EMPTY, {"versioning": False}, NONE, {}),
    ("versioning never -> enabled", EMPTY, {"versioning": True}, UPDATE,
     {"X-Versions-Enabled": "true"}),
    ("versioning enabled -> suspended", {"X-Versions-Enabled": "true"}, {}, UPDATE,
     {"X-Versions-Enabled": "false"}),
    ("versioning suspended, false", {"X-Versions-Enabled": "false"}, {}, NONE, {}),
    ("versioning suspended -> enabled", {"X-Versions-Enabled": "false"}, {"versioning": True},
     UPDATE, {"X-Versions-Enabled": "true"}),
    ("two changes in one POST", {"X-Container-Meta-Quota-Bytes": "1"},
     {"acl": "public-read", "quota_bytes": 0}, UPDATE,
     {"X-Container-Read": PUBLIC_READ_ACL, "X-Remove-Container-Meta-Quota-Bytes": "x"}),
    ("absent when missing", None, {"state": "absent"}, NONE, {}),
    ("absent when present and empty", EMPTY, {"state": "absent"}, DELETE, {}),
    ("absent, non-empty, force", {"X-Container-Object-Count": "2"},
     {"state": "absent", "force": True}, DELETE, {}),
]


@pytest.mark.parametrize(("current", "want", "action", "headers"),
                         [case[1:] for case in PLANS], ids=[case[0] for case in PLANS])
def test_plan(current, want, action, headers):
    plan = plan_bucket(current, desired(**want))
    assert plan.action == action
    assert plan.headers() == headers
    assert plan.reasons and all("\n" not in reason for reason in plan.reasons)


@pytest.mark.parametrize(("current", "force", "purge"), [
    (EMPTY, False, False),
    (EMPTY, True, False),
    ({"X-Container-Object-Count": "2"}, True, True),
    # old versions only: no current objects, but bytes (object_versioning counts them)
    ({"X-Container-Object-Count": "0", "X-Container-Bytes-Used": "9"}, True, True),
    ({"X-Versions-Enabled": "false"}, True, True),
])
def test_delete_purges_only_with_force_and_content(current, force, purge):
    assert plan_bucket(current, desired(state="absent", force=force)).purge is purge


@pytest.mark.parametrize("current", [
    {"X-Container-Object-Count": "3", "X-Container-Bytes-Used": "30"},
    {"X-Container-Object-Count": "0", "X-Container-Bytes-Used": "30"},
])
def test_deleting_a_non_empty_bucket_needs_force(current):
    with pytest.raises(Conflict) as err:
        plan_bucket(current, desired(state="absent"))
    message = str(err.value)
    assert message.startswith("bucket photos in account demo is not empty")
    assert "force: true" in message and "\n" not in message


def test_diff_of_a_create():
    plan = plan_bucket(None, desired(acl="public-read", quota_bytes=7))
    assert plan.before == {"name": "photos", "account": "demo", "state": "absent"}
    assert plan.after == {"name": "photos", "account": "demo", "state": "present",
                          "acl": "public-read", "quota_bytes": 7, "versioning": False}


def test_diff_of_an_update_and_of_no_change():
    plan = plan_bucket({"X-Versions-Enabled": "true", "X-Container-Read": "AUTH_x"}, desired())
    assert plan.before["acl"] == "AUTH_x" and plan.before["versioning"] is True
    assert plan.after["acl"] == "private" and plan.after["versioning"] is False
    same = plan_bucket(EMPTY, desired())
    assert same.before == same.after


def test_diff_of_a_delete():
    plan = plan_bucket(EMPTY, desired(state="absent"))
    assert plan.before["state"] == "present" and plan.after["state"] == "absent"


# ---------------------------------------------------------------------------------------------
# Reconcile, over a fake session (it imitates the SwiftSession interface, not Swift)


class FakeSession:
    """Containers in a dict; applies X-Remove-* like Swift; ``drop`` lists headers it ignores
    (as a proxy without the matching middleware would)."""

    def __init__(self, containers=None, drop=()):
        self.containers = containers or {}
        self.drop = {h.lower() for h in drop}
        self.calls = []

    def _key(self, account, container):
        return (account, container)

    def head_container(self, account, container):
        self.calls.append(("HEAD", container))
        found = self.containers.get(self._key(account, container))
        if found is None:
            return None
        return dict(found["headers"], **{
            "X-Container-Object-Count": str(len(found["objects"])),
            "X-Container-Bytes-Used": str(sum(found["objects"].values()))})

    def _apply(self, found, headers):
        for name, value in headers.items():
            if name.lower() in self.drop:
                continue
            if name.startswith("X-Remove-"):
                found["headers"].pop("X-" + name[len("X-Remove-"):], None)
            else:
                found["headers"][name] = value

    def put_container(self, account, container, headers=None):
        self.calls.append(("PUT", container, dict(headers or {})))
        found = self.containers.setdefault(self._key(account, container),
                                           {"headers": {}, "objects": {}})
        self._apply(found, headers or {})

    def post_container(self, account, container, headers):
        self.calls.append(("POST", container, dict(headers)))
        self._apply(self.containers[self._key(account, container)], headers)

    def delete_container(self, account, container):
        self.calls.append(("DELETE", container))
        found = self.containers.get(self._key(account, container))
        if found and found["objects"]:
            raise Conflict(f"swift DELETE /v1/AUTH_{account}/{container}: 409 Conflict")
        return self.containers.pop(self._key(account, container), None) is not None

    def list_objects(self, account, container):
        return sorted(self.containers[self._key(account, container)]["objects"])

    def list_object_versions(self, account, container):
        return [(name, "null") for name in self.list_objects(account, container)]

    def delete_object(self, account, container, name, version_id=None):
        self.calls.append(("DELETE", f"{container}/{name}"))
        return self.containers[self._key(account, container)]["objects"].pop(name, None) is not None


def test_check_mode_creates_nothing_but_reports_the_change():
    fake = FakeSession()
    result = reconcile(fake, desired(acl="public-read"), check=True)
    assert result["changed"] and result["action"] == CREATE
    assert result["bucket"] == {"name": "photos", "account": "demo", "state": "present",
                                "acl": "public-read", "quota_bytes": 0, "versioning": False,
                                "objects": 0, "bytes": 0}
    assert fake.containers == {} and [c[0] for c in fake.calls] == ["HEAD"]


def test_apply_then_apply_again_reports_no_change():
    fake = FakeSession()
    want = desired(acl="public-read", quota_bytes=10, versioning=True)
    first = reconcile(fake, want)
    assert first["changed"] and first["bucket"]["acl"] == "public-read"
    assert fake.calls[1] == ("PUT", "photos", {"X-Container-Read": PUBLIC_READ_ACL,
                                               "X-Container-Meta-Quota-Bytes": "10",
                                               "X-Versions-Enabled": "true"})
    again = reconcile(fake, want)
    assert not again["changed"] and again["action"] == NONE
    assert again["diff"]["before"] == again["diff"]["after"] == first["diff"]["after"]
    assert reconcile(fake, want, check=True)["changed"] is False


def test_update_posts_only_the_difference():
    fake = FakeSession({("demo", "photos"): {"headers": {"X-Container-Read": PUBLIC_READ_ACL},
                                             "objects": {"a": 3}}})
    result = reconcile(fake, desired(quota_bytes=50, acl="public-read"))
    assert result["action"] == UPDATE and result["bucket"]["objects"] == 1
    assert ("POST", "photos", {"X-Container-Meta-Quota-Bytes": "50"}) in fake.calls


def test_a_setting_swift_drops_fails_with_a_hint():
    fake = FakeSession(drop=["X-Versions-Enabled"])
    with pytest.raises(BackendError, match=r"did not apply: versioning enabled .*"
                       r"allow_object_versioning"):
        reconcile(fake, desired(versioning=True))


def test_force_delete_empties_the_bucket_and_its_segments_first():
    fake = FakeSession({
        ("demo", "photos"): {"headers": {"X-Versions-Enabled": "true"},
                             "objects": {"a": 1, "b": 2}},
        ("demo", "photos+segments"): {"headers": {}, "objects": {"upload/1": 5}},
    })
    result = reconcile(fake, desired(state="absent", force=True))
    assert result["changed"] and result["purged"] == 3 and fake.containers == {}
    assert result["bucket"]["state"] == "absent"
    writes = [c for c in fake.calls if c[0] != "HEAD"]
    assert writes[0] == ("POST", "photos", {"X-Versions-Enabled": "false"})
    assert writes.index(("DELETE", "photos")) > writes.index(("DELETE", "photos/b"))


def test_unfinished_multipart_uploads_block_a_delete_without_force():
    fake = FakeSession({("demo", "photos"): {"headers": {}, "objects": {}},
                        ("demo", "photos+segments"): {"headers": {}, "objects": {"u/1": 5}}})
    with pytest.raises(Conflict, match="unfinished multipart uploads"):
        reconcile(fake, desired(state="absent"), check=True)
    assert len(fake.containers) == 2


def test_delete_of_a_missing_bucket_is_no_change():
    fake = FakeSession()
    result = reconcile(fake, desired(state="absent"))
    assert not result["changed"] and result["bucket"]["state"] == "absent"
