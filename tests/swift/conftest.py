"""Harness for the Swift proxy middleware tests: every test here is marked `swift`.

Swift (and so eventlet) is imported only inside fixtures and helpers, never at module level:
tests/conftest.py fails any unmarked test that loads eventlet into the shared process.

``proxy`` builds the middleware as the proxy would run it (s3api -> stackauth -> a fake proxy
server that runs ``swift.authorize`` as Swift's controllers do) over a temporary auth_dir and a
dict memcache, and captures every log record the middleware emits.
"""

import base64
import hashlib
import hmac
import json
import logging
import os
import sys
import time
from email.utils import formatdate
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
FILES = HERE.parents[1] / "roles" / "storage_proxy" / "files"
EMPTY_ETAG = hashlib.md5(b"").hexdigest()


@pytest.hookimpl(tryfirst=True)  # before tests/conftest.py sorts the swift tests last
def pytest_collection_modifyitems(items):
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.swift)


class FakeMemcache:
    """The part of swift.common.memcached.MemcacheRing that auth and get_account_info use."""

    def __init__(self):
        self.store = {}

    def get(self, key, **kwargs):
        return self.store.get(key)

    def set(self, key, value, **kwargs):
        self.store[key] = value
        return True

    def delete(self, key, **kwargs):
        self.store.pop(key, None)


class FakeSwift:
    """Stands in for the proxy server: authorizes like its controllers, then answers 2xx with
    the headers s3api reads (an empty JSON listing, or an empty object)."""

    def __init__(self):
        self.calls = []

    def __call__(self, env, start_response):
        from swift.common.swob import Request, Response

        req = Request(env)
        self.calls.append((req.method, req.path, env.get("REMOTE_USER")))
        denial = env.get("swift.authorize", lambda r: None)(req)
        if denial:
            return denial(env, start_response)
        status = {"GET": 200, "HEAD": 200, "PUT": 201}.get(req.method, 204)
        resp = Response(status=status, body=b"[]" if req.method == "GET" else b"",
                        content_type="application/json", headers={
                            "Etag": EMPTY_ETAG, "Last-Modified": "Thu, 01 Jan 2026 00:00:00 GMT",
                            "X-Timestamp": "1767225600.00000"})
        return resp(env, start_response)


class CaptureHandler(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.lines = []

    def emit(self, record):
        text = record.getMessage()
        if record.exc_info:
            text += logging.Formatter().formatException(record.exc_info)
        self.lines.append(text)


class Proxy:
    """The middleware under test plus helpers that speak Swift v1 and S3 to it."""

    def __init__(self, stackauth, auth_dir, **conf):
        from swift.common.middleware.s3api.s3api import filter_factory as s3api_factory

        self.app = FakeSwift()
        self.memcache = FakeMemcache()
        self.log = CaptureHandler()
        conf = {"auth_dir": str(auth_dir), "reseller_prefix": "AUTH", "reload_interval": "0",
                "log_level": "DEBUG", **conf}
        self.mw = stackauth.filter_factory({}, **conf)(self.app)
        self.mw.logger.logger.handlers = [self.log]  # not Swift's syslog handler
        self.s3 = s3api_factory({})(self.mw)

    def request(self, path, method="GET", headers=None, app=None):
        from swift.common.swob import Request

        req = Request.blank(path, environ={"REQUEST_METHOD": method,
                                           "swift.cache": self.memcache}, headers=headers or {})
        return req.get_response(app or self.mw)

    def v1_auth(self, account_user, key):
        return self.request("/auth/v1.0", headers={"X-Auth-User": account_user,
                                                   "X-Auth-Key": key})

    def token(self, account_user, key):
        resp = self.v1_auth(account_user, key)
        assert resp.status_int == 200, resp.status
        return resp.headers["X-Auth-Token"]

    def swift(self, method, path, token):
        return self.request(path, method, {"X-Auth-Token": token})

    def s3_v2(self, access_key, secret, path="/", method="GET"):
        """An S3 request with an AWS signature v2, computed here independently of s3api."""
        date = formatdate(usegmt=True)
        string_to_sign = f"{method}\n\n\n{date}\n{path}".encode()
        sig = base64.b64encode(hmac.new(secret.encode(), string_to_sign, "sha1").digest())
        return self.request(path, method, {"Date": date,
                                           "Authorization": f"AWS {access_key}:{sig.decode()}"},
                            app=self.s3)

    def s3_v4(self, access_key, secret, path="/", method="GET"):
        """An S3 request with an AWS signature v4 (region us-east-1, empty payload)."""
        amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        scope = f"{amz_date[:8]}/us-east-1/s3/aws4_request"
        payload = hashlib.sha256(b"").hexdigest()
        signed = "host;x-amz-content-sha256;x-amz-date"
        canonical = "\n".join([
            method, path, "",
            f"host:localhost\nx-amz-content-sha256:{payload}\nx-amz-date:{amz_date}\n",
            signed, payload])
        string_to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                                    hashlib.sha256(canonical.encode()).hexdigest()])
        key = ("AWS4" + secret).encode()
        for part in (amz_date[:8], "us-east-1", "s3", "aws4_request"):
            key = hmac.new(key, part.encode(), "sha256").digest()
        sig = hmac.new(key, string_to_sign.encode(), "sha256").hexdigest()
        return self.request(path, method, {
            "Host": "localhost", "X-Amz-Date": amz_date, "X-Amz-Content-SHA256": payload,
            "Authorization": f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
                             f"SignedHeaders={signed}, Signature={sig}"}, app=self.s3)


@pytest.fixture
def stackauth():
    """The middleware module, imported from the role's files directory."""
    sys.path.insert(0, str(FILES))
    try:
        import stackauth

        yield stackauth
    finally:
        sys.path.remove(str(FILES))


@pytest.fixture
def auth_dir(tmp_path):
    path = tmp_path / "stackauth"
    path.mkdir(mode=0o750)
    return path


@pytest.fixture
def write_users(auth_dir):
    """Write one auth file the way the controller does: a dot temp file, then rename."""
    def write(name, users):
        tmp = auth_dir / f".{name}.tmp"
        tmp.write_text(json.dumps({"version": 1, "users": users}))
        os.replace(tmp, auth_dir / name)
    return write


@pytest.fixture
def make_proxy(stackauth, auth_dir):
    return lambda **conf: Proxy(stackauth, auth_dir, **conf)
