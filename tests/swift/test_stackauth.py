"""stackauth (roles/storage_proxy/files/stackauth.py) behind a real s3api, in front of a fake
proxy server: users from files, S3 and v1 auth, hot reload, revocation, tenant isolation."""

import os
import time

import pytest


def user(access_key, secret, account, *groups):
    return {"access_key": access_key, "secret": secret, "account": account,
            "groups": list(groups)}

ACME_KEY, ACME_SECRET = "STK3J9Q0ZK1M4XW2P7RA", "acmeSecret/0123456789+abcdefghijklmnopqr"
OTHER_KEY, OTHER_SECRET = "STKOTHER000000000001", "otherSecret0123456789abcdefghijklmnopqrs"
SERVICE_KEY, SERVICE_SECRET = "STKSERVICE0000000001", "serviceSecret0123456789abcdefghijklmnopq"
NEW_SECRET = "rotatedSecret0123456789abcdefghijklmnopq"
ALL_SECRETS = (ACME_SECRET, OTHER_SECRET, SERVICE_SECRET, NEW_SECRET)

ACME = user(ACME_KEY, ACME_SECRET, "acme", ".admin")
OTHER = user(OTHER_KEY, OTHER_SECRET, "other", ".admin")
SERVICE = user(SERVICE_KEY, SERVICE_SECRET, "stackctl", ".admin", ".reseller_admin")


@pytest.fixture
def proxy(make_proxy, write_users):
    write_users("service.json", [SERVICE])
    write_users("tenants.json", [ACME, OTHER])
    return make_proxy()


def test_secrets_are_forty_characters():
    assert {len(s) for s in ALL_SECRETS} == {40}


def test_users_come_from_every_json_file(proxy):
    assert set(proxy.mw.users) == {f"stackctl:{SERVICE_KEY}", f"acme:{ACME_KEY}",
                                   f"other:{OTHER_KEY}"}
    assert proxy.mw.users[f"acme:{ACME_KEY}"]["url"] == "$HOST/v1/AUTH_acme"


def test_dot_files_and_unknown_fields_are_ignored(proxy, auth_dir, write_users):
    # Ansible's copy writes ".ansible_tmp<random>tenants.json", then renames it.
    (auth_dir / ".ansible_tmpk2x9tenants.json").write_text('{"version": 1, "users": [')
    write_users("tenants.json", [{**ACME, "comment": "acme's first key"}])
    assert proxy.s3_v2(ACME_KEY, ACME_SECRET).status_int == 200
    assert set(proxy.mw.users) == {f"stackctl:{SERVICE_KEY}", f"acme:{ACME_KEY}"}


def test_missing_or_empty_directory_means_no_users(make_proxy, auth_dir):
    auth_dir.rmdir()
    proxy = make_proxy()
    assert proxy.mw.users == {}
    assert proxy.v1_auth(f"acme:{ACME_KEY}", ACME_SECRET).status_int == 401
    auth_dir.mkdir()
    assert proxy.s3_v2(ACME_KEY, ACME_SECRET).status_int == 403


def test_duplicate_access_key_across_files_keeps_the_previous_users(proxy, write_users):
    before = dict(proxy.mw.users)
    write_users("tenants.json", [ACME, OTHER, user(SERVICE_KEY, NEW_SECRET, "evil")])
    assert proxy.s3_v2(ACME_KEY, ACME_SECRET).status_int == 200
    assert proxy.mw.users == before
    assert any("STKSERVICE0000000001 is in service.json and again in tenants.json" in line
               for line in proxy.log.lines)


def test_malformed_file_keeps_the_previous_users_and_is_reported_once(proxy, auth_dir):
    (auth_dir / "tenants.json").write_text('{"version": 1, "users": [')
    for _ in range(3):
        assert proxy.s3_v2(ACME_KEY, ACME_SECRET).status_int == 200
    errors = [line for line in proxy.log.lines if "keeping the 3 users loaded before" in line]
    assert len(errors) == 1 and "tenants.json: not JSON" in errors[0]
    assert not any("Traceback" in line for line in proxy.log.lines)


@pytest.mark.parametrize("bad", [
    user(ACME_KEY, ACME_SECRET, "AUTH_other", ".admin"),  # would own AUTH_other
    user(ACME_KEY, ACME_SECRET, "acme", "AUTH_other"),
    user("AKIAIOSFODNN7EXAMPLE", ACME_SECRET, "acme"),
    user(ACME_KEY, "has a space in it 0123456789abcdefghijk", "acme"),
    {k: v for k, v in ACME.items() if k != "groups"},
    user(ACME_KEY, "tooShort", "acme"),
    "acme",
], ids=["account-like-an-account-id", "account-id-as-group", "foreign-key", "space-in-secret",
        "no-groups", "short-secret", "not-an-object"])
def test_a_bad_entry_refuses_the_whole_reload(proxy, write_users, bad):
    before = dict(proxy.mw.users)
    write_users("tenants.json", [OTHER, bad])
    proxy.request("/info")
    assert proxy.mw.users == before
    assert any("keeping the 3 users" in line for line in proxy.log.lines)


@pytest.mark.parametrize("sign", ["s3_v2", "s3_v4"])
def test_s3_signature_maps_the_access_key_to_the_tenant_account(proxy, sign):
    resp = getattr(proxy, sign)(ACME_KEY, ACME_SECRET)
    assert resp.status_int == 200, resp.body
    assert b"<ListAllMyBucketsResult" in resp.body
    method, path, remote_user = proxy.app.calls[-1]
    assert (method, path) == ("GET", "/v1/AUTH_acme")
    assert remote_user.split(",") == ["acme", f"acme:{ACME_KEY}", "AUTH_acme"]


@pytest.mark.parametrize("key, secret", [(ACME_KEY, OTHER_SECRET), ("STKUNKNOWN0000000001",
                                                                     ACME_SECRET)])
def test_s3_wrong_secret_or_unknown_key_is_refused(proxy, key, secret):
    assert proxy.s3_v2(key, secret).status_int == 403
    assert proxy.s3_v4(key, secret).status_int == 403
    assert not any(path.startswith("/v1/AUTH_") for _, path, _ in proxy.app.calls)


def test_s3_object_named_like_the_access_key_keeps_its_name(proxy):
    # An S3 DELETE is two Swift requests (HEAD, DELETE), both authenticated; in the second
    # the account is already AUTH_acme and only the object is named like the access key.
    resp = proxy.s3_v2(ACME_KEY, ACME_SECRET, path=f"/bucket/{ACME_KEY}", method="DELETE")
    assert resp.status_int == 204, resp.body
    path = f"/v1/AUTH_acme/bucket/{ACME_KEY}"
    assert [call[:2] for call in proxy.app.calls] == [("HEAD", path), ("DELETE", path)]


def test_v1_token_is_issued_reused_and_accepted(proxy):
    resp = proxy.v1_auth(f"acme:{ACME_KEY}", ACME_SECRET)
    assert resp.status_int == 200
    assert resp.headers["X-Storage-Url"] == "http://localhost/v1/AUTH_acme"
    token = resp.headers["X-Auth-Token"]
    assert token.startswith("AUTH_tk")
    assert proxy.token(f"acme:{ACME_KEY}", ACME_SECRET) == token
    assert proxy.swift("PUT", "/v1/AUTH_acme/c/o", token).status_int == 201
    assert proxy.swift("GET", "/v1/AUTH_acme/c", token).status_int == 200
    assert ".stackauth-gen-" not in proxy.app.calls[-1][2]


@pytest.mark.parametrize("account_user, key", [
    (f"acme:{ACME_KEY}", OTHER_SECRET), (f"other:{ACME_KEY}", ACME_SECRET),
    (ACME_KEY, ACME_SECRET), (f"acme:{ACME_KEY}", ""),
])
def test_v1_auth_with_wrong_credentials_is_refused(proxy, account_user, key):
    assert proxy.v1_auth(account_user, key).status_int == 401


def test_rotation_takes_effect_without_a_restart(proxy, write_users):
    old_token = proxy.token(f"acme:{ACME_KEY}", ACME_SECRET)
    write_users("tenants.json", [{**ACME, "secret": NEW_SECRET}, OTHER])
    assert proxy.swift("GET", "/v1/AUTH_acme/c", old_token).status_int == 401
    assert proxy.s3_v2(ACME_KEY, ACME_SECRET).status_int == 403
    assert proxy.s3_v4(ACME_KEY, NEW_SECRET).status_int == 200
    assert proxy.v1_auth(f"acme:{ACME_KEY}", ACME_SECRET).status_int == 401
    new_token = proxy.token(f"acme:{ACME_KEY}", NEW_SECRET)
    assert new_token != old_token
    assert proxy.swift("GET", "/v1/AUTH_acme/c", new_token).status_int == 200


def test_revocation_refuses_s3_and_tokens_already_issued(proxy, write_users):
    token = proxy.token(f"acme:{ACME_KEY}", ACME_SECRET)
    write_users("tenants.json", [OTHER])
    assert proxy.swift("GET", "/v1/AUTH_acme/c", token).status_int == 401
    assert proxy.s3_v2(ACME_KEY, ACME_SECRET).status_int == 403
    assert proxy.s3_v2(OTHER_KEY, OTHER_SECRET).status_int == 200


def test_losing_a_group_refuses_tokens_issued_with_it(proxy, write_users):
    token = proxy.token(f"stackctl:{SERVICE_KEY}", SERVICE_SECRET)
    assert proxy.swift("PUT", "/v1/AUTH_acme/c", token).status_int == 201
    write_users("service.json", [{**SERVICE, "groups": [".admin"]}])
    assert proxy.swift("PUT", "/v1/AUTH_acme/c", token).status_int == 401
    token = proxy.token(f"stackctl:{SERVICE_KEY}", SERVICE_SECRET)
    assert proxy.swift("PUT", "/v1/AUTH_acme/c", token).status_int == 403


@pytest.mark.parametrize("method, path", [
    ("GET", "/v1/AUTH_other"), ("GET", "/v1/AUTH_other/c"), ("PUT", "/v1/AUTH_other/c"),
    ("GET", "/v1/AUTH_other/c/o"), ("PUT", "/v1/AUTH_other/c/o"),
    ("DELETE", "/v1/AUTH_other/c/o"), ("DELETE", "/v1/AUTH_other/c"),
    ("PUT", "/v1/AUTH_acme"), ("DELETE", "/v1/AUTH_acme"),  # its own account itself
])
def test_a_tenant_cannot_touch_other_accounts(proxy, method, path):
    token = proxy.token(f"acme:{ACME_KEY}", ACME_SECRET)
    assert proxy.swift(method, path, token).status_int == 403


@pytest.mark.parametrize("method, path", [
    ("PUT", "/v1/AUTH_acme"), ("PUT", "/v1/AUTH_acme/bucket"), ("PUT", "/v1/AUTH_acme/b/o"),
    ("GET", "/v1/AUTH_other/c"), ("DELETE", "/v1/AUTH_other/c/o"),
])
def test_the_reseller_admin_acts_on_any_tenant_account(proxy, method, path):
    token = proxy.token(f"stackctl:{SERVICE_KEY}", SERVICE_SECRET)
    assert proxy.swift(method, path, token).status_int in (200, 201, 204)


def test_reload_waits_for_the_interval_and_skips_unchanged_files(
        stackauth, make_proxy, auth_dir, write_users, monkeypatch):
    write_users("tenants.json", [ACME])
    old = time.time() - 60  # older than the racy window: the stat alone decides
    os.utime(auth_dir / "tenants.json", (old, old))
    proxy = make_proxy(reload_interval="3600")
    loads, load_users = [], stackauth.load_users
    monkeypatch.setattr(stackauth, "load_users", lambda *a: loads.append(a) or load_users(*a))
    write_users("tenants.json", [OTHER])
    assert proxy.s3_v2(OTHER_KEY, OTHER_SECRET).status_int == 403  # not yet due
    proxy.mw._next_check = 0
    assert proxy.s3_v2(OTHER_KEY, OTHER_SECRET).status_int == 200
    assert len(loads) == 1
    os.utime(auth_dir / "tenants.json", (old, old))
    proxy.mw._next_check = 0
    proxy.s3_v2(OTHER_KEY, OTHER_SECRET)  # stat changed (mtime): one more load
    proxy.mw._next_check = 0
    proxy.s3_v2(OTHER_KEY, OTHER_SECRET)  # unchanged and not fresh: no load
    assert len(loads) == 2


def test_no_secret_reaches_a_log_line_or_the_console(make_proxy, auth_dir, write_users,
                                                     capsys):
    from swift.common.swob import Request

    write_users("tenants.json", [ACME])
    proxy = make_proxy()
    proxy.v1_auth(f"acme:{ACME_KEY}", OTHER_SECRET)
    proxy.s3_v2(ACME_KEY, OTHER_SECRET)
    proxy.swift("GET", "/v1/AUTH_acme/c", proxy.token(f"acme:{ACME_KEY}", ACME_SECRET))
    # No memcache: TempAuth raises inside handle() and would print the environ.
    resp = Request.blank("/auth/v1.0", headers={"X-Auth-User": f"acme:{ACME_KEY}",
                                                "X-Auth-Key": ACME_SECRET}).get_response(proxy.mw)
    assert resp.status_int == 500
    assert any("auth request failed: Exception" in line for line in proxy.log.lines)
    # Bad files that hold secrets: their errors name the file and field, never the value.
    write_users("tenants.json", [{**ACME, "secret": f"{NEW_SECRET} x"}])
    proxy.request("/info")
    (auth_dir / "tenants.json").write_text(f'{{"version": 1, "users": [{{"secret": "{NEW_SECRET}"')
    proxy.request("/info")
    write_users("tenants.json", [user(ACME_KEY, OTHER_SECRET, "acme"),
                                           user(ACME_KEY, SERVICE_SECRET, "acme")])
    proxy.request("/info")
    assert len([line for line in proxy.log.lines if "keeping the" in line]) == 3
    console = capsys.readouterr()
    for secret in ALL_SECRETS:
        assert all(secret not in line for line in proxy.log.lines)
        assert secret not in console.out and secret not in console.err
