"""Fixtures for the object storage tests that drive the deployed proxy from outside: the real
``stackctl`` CLI in a controller home of the test module's own, and boto3 / python-swiftclient
against the endpoint its credentials name. Nothing here imports Swift (or eventlet), so these
run in the shared pytest process, marked ``integration`` by tests/integration/conftest.py.

Each controller home writes its keys to the proxies in a file of its own
(``tenants-<controller id>.json``), so test homes never revoke each other's keys.
Teardown (``provisioned_tenant``) deletes the tenant's buckets, revokes its keys and deletes
it, then fails if anything was left.
"""

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import pytest
import swiftclient.client as swift
from botocore.config import Config
from botocore.exceptions import ClientError

PROJECT = Path(__file__).resolve().parents[3]
STACKCTL = str(PROJECT / ".venv" / "bin" / "stackctl")
PROXY_PID = Path("/run/swift/proxy-server.pid")
PROXY_LOG = Path("/var/log/swift/proxy-server.log")
REGION = "us-east-1"
# The database keeps the secrets by design (the proxies need them to check S3 signatures);
# nothing else in the home may.
DATABASE_FILES = ("stackctl.db", "stackctl.db-journal", "stackctl.db-wal", "stackctl.db-shm")


@dataclass
class Controller:
    """The installed ``stackctl`` in a private home; remembers every secret it printed."""

    home: Path
    secrets: set = field(default_factory=set)

    def env(self):
        env = dict(os.environ, STACKCTL_HOME=str(self.home))
        for name in ("STACKCTL_DB_URL", "STACKCTL_TENANT", "STACKCTL_KEEP_RUNS",
                     "STACKCTL_DEBUG"):
            env.pop(name, None)
        return env

    def run(self, *args, tenant=None, check=True, timeout=180):
        argv = [STACKCTL, *args] + (["--tenant", tenant] if tenant else [])
        proc = subprocess.run(argv, capture_output=True, text=True, env=self.env(),
                              timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"stackctl {' '.join(args)} exited {proc.returncode}: "
                                 f"{proc.stderr.strip()}")
        return proc

    def json(self, *args, tenant=None):
        data = json.loads(self.run(*args, "-o", "json", tenant=tenant).stdout)
        if isinstance(data, dict) and data.get("secret"):
            self.secrets.add(data["secret"])
        return data


@dataclass
class Tenant:
    """A tenant with one credential (``credential``: what ``credentials create`` printed)."""

    name: str
    controller: Controller
    credential: dict

    @property
    def access_key(self):
        return self.credential["access_key"]

    @property
    def secret(self):
        return self.credential["secret"]

    def cli(self, *args, check=True):
        return self.controller.run(*args, tenant=self.name, check=check)

    def json(self, *args):
        return self.controller.json(*args, tenant=self.name)

    def new_credential(self):
        """A new credential, once the proxy takes it (it re-reads its users within a second)."""
        cred = self.json("credentials", "create")
        assert wait_until(lambda: s3_accepts(cred)), "a new key is not accepted within 3 s"
        return cred

    def s3(self, credential=None):
        """A boto3 client (path-style, no retries) for ``credential`` or the tenant's own."""
        return s3_client(credential or self.credential)

    def swift(self, credential=None):
        """A python-swiftclient Connection, v1 auth as ``<tenant>:<access_key>``, no retries."""
        cred = credential or self.credential
        return swift.Connection(authurl=cred["swift_auth_url"], user=cred["swift_user"],
                                key=cred["secret"], auth_version="1", retries=0)


def s3_client(credential):
    return boto3.client(
        "s3", endpoint_url=credential["endpoint"], region_name=REGION,
        aws_access_key_id=credential["access_key"],
        aws_secret_access_key=credential["secret"],
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                      connect_timeout=5, read_timeout=60))


def s3_accepts(credential):
    """Whether S3 takes ``credential`` now (a new client, so a new connection and maybe another
    proxy worker)."""
    try:
        s3_client(credential).list_buckets()
    except ClientError as err:
        if err.response["ResponseMetadata"]["HTTPStatusCode"] == 403:
            return False
        raise
    return True


def s3_error(call, *args, **kwargs):
    """``(code, http status)`` of the S3 error ``call`` raises; AssertionError if it succeeds."""
    try:
        call(*args, **kwargs)
    except ClientError as err:
        return (err.response["Error"].get("Code"),
                err.response["ResponseMetadata"]["HTTPStatusCode"])
    raise AssertionError(f"{getattr(call, '__name__', call)} succeeded")


def swift_status(call, *args, **kwargs):
    """The HTTP status of the Swift error ``call`` raises; AssertionError if it succeeds."""
    try:
        call(*args, **kwargs)
    except swift.ClientException as err:
        return err.http_status
    raise AssertionError(f"{getattr(call, '__name__', call)} succeeded")


def anonymous_get(url):
    """``(status, body)`` of a GET without any credentials."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(urllib.request.Request(url), timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.read()


def wait_until(check, timeout=3.0, interval=0.1):
    """Call ``check`` until it returns something true or ``timeout`` seconds passed; its last
    result."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() >= deadline:
            return result
        time.sleep(interval)


def proxy_pid():
    return int(PROXY_PID.read_text().split()[0])


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@contextmanager
def provisioned_tenant(controller, prefix="s3t"):
    """A new tenant with a credential; at exit its buckets, keys and the tenant are deleted
    and the test fails if a bucket, a container or a key survived."""
    name = unique(prefix)
    controller.run("tenant", "create", name)
    tenant = Tenant(name, controller, {"access_key": None})
    try:
        tenant.credential = tenant.new_credential()
        yield tenant
    finally:
        _remove(tenant)


def _remove(tenant):
    for bucket in tenant.json("bucket", "list"):
        tenant.cli("bucket", "delete", bucket["name"], "--force", check=False)
    problems = [f"bucket {b['name']}" for b in tenant.json("bucket", "list")]
    keys = [c["access_key"] for c in tenant.json("credentials", "list")]
    if tenant.access_key in keys:
        # The bucket listing hides s3api's "+segments" containers; the account's does not.
        try:
            problems += [f"container {c['name']}" for c in tenant.swift().get_account()[1]]
        except swift.ClientException as err:
            problems.append(f"the tenant's key no longer works ({err.http_status})")
    for key in keys:
        tenant.cli("credentials", "revoke", key)
    problems += [f"key {c['access_key']}" for c in tenant.json("credentials", "list")]
    tenant.controller.run("tenant", "delete", tenant.name)
    assert not problems, f"tenant {tenant.name} kept: {', '.join(problems)}"


def files_holding(home, secrets):
    """Files under ``home`` (the database aside) that contain one of ``secrets``."""
    found = []
    for path in sorted(home.rglob("*")):
        if path.is_file() and path.name not in DATABASE_FILES:
            data = path.read_bytes()
            if any(s.encode() in data for s in secrets):
                found.append(str(path))
    return found


def proxy_log_after_marker(endpoint):
    """The proxy's log once it shows a request made now (syslog writes it asynchronously)."""
    marker = unique("log-marker")
    anonymous_get(f"{endpoint}/v1/AUTH_{marker}")

    def log_with_marker():
        text = PROXY_LOG.read_text(errors="replace")
        return text if marker in text else None

    text = wait_until(log_with_marker, timeout=10)
    assert text, f"{PROXY_LOG} did not show the request for {marker} within 10 s"
    return text


@pytest.fixture(scope="module")
def controller(tmp_path_factory):
    """The module's controller home."""
    return Controller(home=tmp_path_factory.mktemp("stackctl-home"))


@pytest.fixture(scope="module")
def tenant(controller):
    """The module's tenant and its credential; removed, and checked to be gone, at the end."""
    with provisioned_tenant(controller) as tenant:
        yield tenant
