"""stackauth: Swift's TempAuth with its users read from JSON files that the controller writes.

Swift v1 tokens, S3 signature checks (through s3api's check_signature) and authorize() are
TempAuth's own. What changes:

- users come from every ``*.json`` file in ``auth_dir``, not from ``user_*`` config keys, and
  are reloaded (at most every ``reload_interval`` seconds, only when a file's stat changed)
  without restarting the proxy;
- the S3 access key is the bare ``access_key``; v1 auth takes ``<account>:<access_key>``;
- a token carries its user's generation (a hash of the secret, groups and account), so
  deleting a user or rotating its secret also refuses the tokens it already holds;
- nothing logs a secret (TempAuth prints the request environment, X-Auth-Key included, when
  an auth request fails).

File format (see docs/object-storage-auth.md)::

    {"version": 1, "users": [{"access_key": "STK...", "secret": "...", "account": "acme",
                              "groups": [".admin"]}]}
"""

import hashlib
import json
import os
import re
import time
import traceback

from swift.common.concurrency import Timeout
from swift.common.middleware.tempauth import TempAuth
from swift.common.registry import register_swift_info
from swift.common.swob import Request, str_to_wsgi
from swift.common.utils import get_logger, quote

ACCESS_KEY = re.compile(r"^STK[A-Z0-9]{17}$")
SECRET = re.compile(r"^[\x21-\x7e]{16,128}$")  # printable ASCII, no spaces: it travels in headers
ACCOUNT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")  # the controller's tenant names
REQUIRED = {"access_key", "secret", "account", "groups"}
GROUPS = {".admin", ".reseller_admin", ".reseller_reader"}
GENERATION = ".stackauth-gen-"  # marks the generation group; never reaches REMOTE_USER
# A file rewritten twice within the file system's timestamp granularity can keep its mtime,
# size and even its inode number; files younger than this are re-read at every check.
RACY_SECONDS = 2.0


class AuthFileError(ValueError):
    """An auth file that cannot be used; the message never holds a secret."""


def stat_auth_files(auth_dir):
    """(name, mtime_ns, size, inode) of each ``*.json`` file, sorted; () without the directory.

    Dot files are skipped: they are how a writer names its temporary file before renaming it.
    """
    try:
        names = sorted(n for n in os.listdir(auth_dir)
                       if n.endswith(".json") and not n.startswith("."))
    except FileNotFoundError:
        return ()
    snapshot = []
    for name in names:
        try:
            st = os.stat(os.path.join(auth_dir, name))
        except FileNotFoundError:
            continue
        snapshot.append((name, st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(snapshot)


def _validate(entry, where, reseller_prefixes):
    # Other keys are ignored, so that the controller can add fields (a comment, a date).
    if not isinstance(entry, dict) or REQUIRED - set(entry):
        raise AuthFileError(f"{where}: needs access_key, secret, account and groups")
    if not isinstance(entry["access_key"], str) or not ACCESS_KEY.match(entry["access_key"]):
        raise AuthFileError(f"{where}: access_key is not STK + 17 of [A-Z0-9]")
    if not isinstance(entry["secret"], str) or not SECRET.match(entry["secret"]):
        raise AuthFileError(f"{where}: secret is not 16-128 printable ASCII characters")
    account = entry["account"]
    # An account named like an account id (AUTH_other) would get the group "AUTH_other",
    # which TempAuth's authorize() reads as ownership of that other account.
    if (not isinstance(account, str) or not ACCOUNT.match(account) or ".." in account
            or any(p and account.startswith(p) for p in reseller_prefixes)):
        raise AuthFileError(f"{where}: account is not a valid tenant name")
    groups = entry["groups"]
    if not isinstance(groups, list) or not set(groups) <= GROUPS:
        raise AuthFileError(f"{where}: groups must be a list drawn from {sorted(GROUPS)}")


def load_users(auth_dir, names, reseller_prefix, reseller_prefixes=()):
    """Read the named files into TempAuth's ``users`` dict, keyed ``<account>:<access_key>``.

    Raises AuthFileError (or OSError) for any bad file or an access key found twice: a reload
    is all or nothing.
    """
    users, seen = {}, {}
    for name in names:
        with open(os.path.join(auth_dir, name), encoding="utf-8") as f:
            try:
                data = json.load(f)
            except ValueError as err:  # JSONDecodeError's message quotes no content
                raise AuthFileError(f"{name}: not JSON: {err}") from None
        if not isinstance(data, dict) or data.get("version") != 1 \
                or not isinstance(data.get("users"), list):
            raise AuthFileError(f"{name}: expected {{'version': 1, 'users': [...]}}")
        for i, entry in enumerate(data["users"]):
            _validate(entry, f"{name}: users[{i}]", reseller_prefixes)
            key = entry["access_key"]
            if key in seen:
                raise AuthFileError(f"access key {key} is in {seen[key]} and again in {name}")
            seen[key] = name
            account, groups = entry["account"], sorted(set(entry["groups"]))
            generation = hashlib.sha256("\0".join(
                ["stackauth", key, entry["secret"], account, *groups]).encode()).hexdigest()[:16]
            account_id = reseller_prefix + account
            users[f"{account}:{key}"] = {  # key, url and groups are what TempAuth reads
                "key": entry["secret"], "url": f"$HOST/v1/{quote(account_id)}", "groups": groups,
                "account": account, "account_id": account_id, "access_key": key,
                "generation": generation}
    return users


def _without_generation(groups):
    return ",".join(g for g in groups.split(",") if not g.startswith(GENERATION))


class StackAuth(TempAuth):
    """TempAuth whose users live in ``auth_dir/*.json`` and are hot-reloaded."""

    def __init__(self, app, conf):
        super().__init__(app, conf)
        self.logger = get_logger(conf, log_route="stackauth")
        self.auth_dir = conf.get("auth_dir", "/etc/swift/stackauth")
        self.reload_interval = float(conf.get("reload_interval", 1))
        self.users, self.by_access_key = {}, {}
        self._snapshot, self._next_check, self._last_error = None, 0.0, None
        self.reload_if_changed()

    def reload_if_changed(self):
        """Re-read the auth files if the check is due and their stat changed."""
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + self.reload_interval
        try:
            snapshot = stat_auth_files(self.auth_dir)
            if snapshot == self._snapshot:
                return
            # Remembered before loading, so that a bad file is reported once, not per request.
            fresh = any(time.time() - mtime / 1e9 < RACY_SECONDS for _, mtime, _, _ in snapshot)
            self._snapshot = None if fresh else snapshot
            users = load_users(self.auth_dir, [s[0] for s in snapshot],
                               self.reseller_prefix, self.reseller_prefixes)
        except (OSError, ValueError) as err:
            if str(err) != self._last_error:
                self.logger.error("keeping the %d users loaded before: %s", len(self.users), err)
            self._last_error = str(err)
            return
        self._last_error = None
        if users != self.users:
            self.users = users
            self.by_access_key = {u["access_key"]: name for name, u in users.items()}
            self.logger.info("loaded %d users from %d files in %s",
                             len(users), len(snapshot), self.auth_dir)

    def __call__(self, env, start_response):
        self.reload_if_changed()
        return super().__call__(env, start_response)

    def _get_user_groups(self, account, account_user, account_id):
        # Tokens (memcache or fernet) store these groups; TempAuth reuses a cached token only
        # while its groups equal these, so a new generation also means a new token.
        groups = super()._get_user_groups(account, account_user, account_id)
        return f"{groups},{GENERATION}{self.users[account_user]['generation']}"

    def _current_groups(self, groups):
        """A token's groups without the generation; None if its user is gone or changed."""
        names = groups.split(",") if groups else []
        user = self.users.get(names[1]) if len(names) > 1 else None
        if user is None:
            return None
        if set(names) != set(self._user_groups(names[1]).split(",")):
            return None
        return _without_generation(groups)

    def _user_groups(self, account_user):
        user = self.users[account_user]
        return self._get_user_groups(user["account"], account_user, user["account_id"])

    def get_groups(self, env, token):
        """Groups for an S3 request (by its bare access key) or a token still valid now."""
        s3 = env.get("s3api.auth_details")
        if not s3:
            return self._current_groups(super().get_groups(env, token))
        account_user = self.by_access_key.get(s3.get("access_key"))
        if account_user is None or "check_signature" not in s3:
            return None
        user = self.users[account_user]
        if not s3["check_signature"](user["key"]):
            return None
        # s3api puts the access key where the account goes: /v1/<access_key>/bucket/object.
        # Replace that path segment only (TempAuth replaces the first match anywhere).
        parts = env["PATH_INFO"].split("/", 3)
        if len(parts) > 2 and parts[2] == str_to_wsgi(user["access_key"]):
            parts[2] = user["account_id"]
            env["PATH_INFO"] = "/".join(parts)
        return _without_generation(self._user_groups(account_user))

    def handle(self, env, start_response):
        """TempAuth's handle(), minus printing the environment (with X-Auth-Key) on an error."""
        try:
            req = Request(env)
            req.path_info_pop()
            if "x-storage-token" in req.headers and "x-auth-token" not in req.headers:
                req.headers["x-auth-token"] = req.headers["x-storage-token"]
            return self.handle_request(req)(env, start_response)
        except (Exception, Timeout) as err:
            # The frames and the exception's type only: a message could quote a header.
            self.logger.error("auth request failed: %s\n%s", type(err).__name__,
                              "".join(traceback.format_tb(err.__traceback__)))
            self.logger.increment("errors")
            start_response("500 Server Error", [("Content-Type", "text/plain")])
            return [b"Internal server error.\n"]


def filter_factory(global_conf, **local_conf):
    """paste.deploy entry point: ``paste.filter_factory = stackauth:filter_factory``."""
    conf = {"token_life": "3600", **global_conf, **local_conf}
    register_swift_info("stackauth", account_acls=True)

    def auth_filter(app):
        return StackAuth(app, conf)
    return auth_filter
