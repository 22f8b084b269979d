"""A small client for the Swift API over urllib (standard library only: this ships to hosts, and
Swift's own client code would bring eventlet with it).

``SwiftSession`` authenticates with Swift's v1 auth (tempauth), keeps the token, and authenticates
again once when a request comes back 401 (the token expired). The service user is a reseller
admin, so one session acts on any tenant's account: ``account`` arguments are tenant names,
mapped to ``AUTH_<tenant>``; ``None`` means the service user's own storage URL.

Failures raise ``stackcore.errors`` classes with one line naming the request and Swift's answer:
404 NotFound, 409 and 413 Conflict, other 4xx InvalidInput, the rest (5xx, auth, network,
checksums) BackendError. Neither the token nor the key ever appears in a message.

``temp_url`` signs a temporary URL the way Swift's tempurl middleware checks it.
"""

import base64
import hashlib
import hmac
import http.client
import io
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request

from .errors import BackendError, Conflict, InvalidInput, NotFound
from .fileio import atomic_path

RESELLER_PREFIX = "AUTH_"
CHUNK = 1024 * 1024
TEMP_URL_METHODS = ("GET", "HEAD", "PUT", "POST", "DELETE")
_MD5_HEX = re.compile(r"^[0-9a-f]{32}$")
_TAG = re.compile(r"<[^>]*>")


# ---------------------------------------------------------------------------------------------
# Temporary URLs (pure)


def temp_url(key, method, path, expires, digest="sha256"):
    """``path`` (``/v1/AUTH_a/c/o``) with the ``temp_url_sig`` and ``temp_url_expires`` query
    that Swift's tempurl middleware accepts until ``expires`` (a Unix time).

    The signature is HMAC(key, "<method>\\n<expires>\\n<path>") over the unquoted path. sha256 is
    sent as hex; sha512 as ``sha512:<urlsafe base64>`` (Swift requires that form for it). Swift
    2.38 accepts sha256 and sha512 by default; sha1 is deprecated and not offered here.
    """
    if method not in TEMP_URL_METHODS:
        raise InvalidInput(f"invalid temp URL method {method!r}: expected one of "
                           f"{', '.join(TEMP_URL_METHODS)}")
    if isinstance(expires, bool) or not isinstance(expires, int) or expires < 0:
        raise InvalidInput(f"invalid temp URL expiry {expires!r}: expected a Unix time in seconds")
    parts = path.split("/", 4) if isinstance(path, str) else []
    if len(parts) != 5 or parts[:2] != ["", "v1"] or not all(parts[2:]):
        raise InvalidInput(f"invalid temp URL path {path!r}: expected /v1/<account>/<container>/"
                           "<object>")
    if isinstance(key, str):
        key = key.encode("utf-8")
    if not key:
        raise InvalidInput("temp URL key is empty")
    body = f"{method}\n{expires}\n{path}".encode()
    if digest == "sha256":
        sig = hmac.new(key, body, hashlib.sha256).hexdigest()
    elif digest == "sha512":
        raw = hmac.new(key, body, hashlib.sha512).digest()
        sig = "sha512:" + base64.urlsafe_b64encode(raw).decode("ascii")
    else:
        raise InvalidInput(f"invalid temp URL digest {digest!r}: expected sha256 or sha512")
    query = urllib.parse.urlencode({"temp_url_sig": sig, "temp_url_expires": expires},
                                   safe=":")
    return f"{urllib.parse.quote(path)}?{query}"


# ---------------------------------------------------------------------------------------------
# Session


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Swift's API does not redirect; following one would send the token to another place."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


class _Upload:
    """A file object for http.client that hashes (md5 for Swift's ETag, sha256 for us) and
    counts what it sends, and can start again for a retry."""

    def __init__(self, fileobj):
        self._file = fileobj
        self._start = self.length = None
        try:
            if fileobj.seekable():
                self._start = fileobj.tell()
                self.length = max(fileobj.seek(0, os.SEEK_END) - self._start, 0)
                fileobj.seek(self._start)
        except (AttributeError, OSError, ValueError):
            self._start = self.length = None  # a pipe or a socket: sent chunked, no retry
        self._reset()

    def _reset(self):
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.sha256 = hashlib.sha256()
        self.bytes = 0

    def read(self, size=-1):
        if 0 < size < CHUNK:  # http.client asks for 8 KiB at a time; bigger blocks go faster
            size = CHUNK
        data = self._file.read(size)
        self.md5.update(data)
        self.sha256.update(data)
        self.bytes += len(data)
        return data

    def rewind(self):
        """Back to where the upload started; False when the stream cannot seek."""
        if self._start is None:
            return False
        self._file.seek(self._start)
        self._reset()
        return True


class SwiftSession:
    """One authenticated conversation with a Swift proxy (v1 auth; http or https)."""

    def __init__(self, endpoint, user, key, timeout=30):
        split = urllib.parse.urlsplit(endpoint) if isinstance(endpoint, str) else None
        if split is None or split.scheme not in ("http", "https") or not split.netloc:
            raise InvalidInput(f"invalid Swift endpoint {endpoint!r}: expected "
                               "http(s)://host[:port]")
        if not user or not key:
            raise InvalidInput("Swift auth user and key must not be empty")
        self.endpoint = endpoint.rstrip("/")
        self.user = user
        self.timeout = timeout
        self.storage_url = None
        self._key = key
        self._token = None
        # No environment proxies: the endpoint is the cloud's own, and a proxy would see tokens.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect)

    # -- URLs ----------------------------------------------------------------------------------

    def account_url(self, account=None):
        """URL of tenant ``account`` (``AUTH_<account>``), or of the service user's own account."""
        if account is None:
            if self.storage_url is None:
                self.authenticate()
            return self.storage_url
        if not isinstance(account, str) or not account or "/" in account:
            raise InvalidInput(f"invalid Swift account {account!r}")
        return f"{self.endpoint}/v1/{RESELLER_PREFIX}{urllib.parse.quote(account, safe='')}"

    def container_url(self, account, container):
        if not isinstance(container, str) or not container or "/" in container:
            raise InvalidInput(f"invalid container name {container!r}")
        return f"{self.account_url(account)}/{urllib.parse.quote(container, safe='')}"

    def object_url(self, account, container, name):
        if not isinstance(name, str) or not name:
            raise InvalidInput(f"invalid object name {name!r}")
        return f"{self.container_url(account, container)}/{urllib.parse.quote(name, safe='/')}"

    # -- auth and requests ---------------------------------------------------------------------

    def authenticate(self):
        """Get a token and the storage URL (``GET <endpoint>/auth/v1.0``)."""
        url = f"{self.endpoint}/auth/v1.0"
        req = urllib.request.Request(url, method="GET", headers={
            "X-Auth-User": self.user, "X-Auth-Key": self._key})
        try:
            with self._opener.open(req, timeout=self.timeout) as resp:
                token = resp.headers.get("X-Auth-Token")
                storage_url = resp.headers.get("X-Storage-Url")
        except urllib.error.HTTPError as err:
            with err:
                body = err.read(4096)
            if err.code in (401, 403):
                raise BackendError(self._redact(
                    f"swift auth at {url}: {err.code} {err.reason}: user {self.user!r} and its "
                    "key were refused")) from None
            raise self._error("GET", url, err.code, err.reason, body) from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            raise self._unreachable("GET", url, exc) from None
        if not token or not storage_url:
            raise BackendError(f"swift auth at {url}: the answer has no X-Auth-Token or "
                               "X-Storage-Url")
        self._token, self.storage_url = token, storage_url.rstrip("/")

    def _open(self, method, url, headers=None, body=None, missing_ok=False):
        """The response of one request (the caller reads and closes it), or None for a 404 when
        ``missing_ok``. Authenticates first when needed and once more on a 401."""
        for attempt in (1, 2):
            if self._token is None:
                self.authenticate()
            req = urllib.request.Request(url, data=body, method=method,
                                         headers=dict(headers or {}, **{
                                             "X-Auth-Token": self._token}))
            try:
                return self._opener.open(req, timeout=self.timeout)
            except urllib.error.HTTPError as err:
                with err:
                    detail = err.read(4096) if method != "HEAD" else b""
                if err.code == 404 and missing_ok:
                    return None
                retry = attempt == 1 and err.code == 401 and (
                    not isinstance(body, _Upload) or body.rewind())
                if retry:
                    self._token = None
                    continue
                note = ""
                if err.code == 401:
                    note = (" (refused again after a fresh auth)" if attempt == 2 else
                            " (the token expired during an upload that cannot be replayed)")
                raise self._error(method, url, err.code, err.reason, detail, note) from None
            except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
                raise self._unreachable(method, url, exc) from None
        raise AssertionError("unreachable")  # the loop returns or raises

    def _call(self, method, url, headers=None, body=None, missing_ok=False):
        """Headers (lower-cased keys) and body of a request, or None for a tolerated 404."""
        resp = self._open(method, url, headers, body, missing_ok)
        if resp is None:
            return None
        with resp:
            try:
                data = resp.read()
            except (http.client.HTTPException, OSError) as exc:
                raise self._unreachable(method, url, exc) from None
            return _lower(resp.headers), data

    def _error(self, method, url, status, reason, body, note=""):
        path = urllib.parse.unquote(urllib.parse.urlsplit(url).path)
        line = f"swift {method} {path}: {status} {reason}"
        detail = _brief(body)
        if detail.lower().startswith(str(reason).lower()):  # Swift's pages repeat the reason
            detail = detail[len(str(reason)):].lstrip(" :.-")
        if detail:
            line += f": {detail}"
        line += note
        if status == 403:
            line += f" (may user {self.user!r} act on this account? it must be a reseller admin)"
        line = self._redact(line)
        if status == 404:
            return NotFound(line)
        if status in (409, 413):
            return Conflict(line)
        if 400 <= status < 500 and status not in (401, 403, 408, 422, 429):
            return InvalidInput(line)
        return BackendError(line)

    def _unreachable(self, method, url, exc):
        reason = getattr(exc, "reason", None) or exc
        path = urllib.parse.unquote(urllib.parse.urlsplit(url).path)
        host = urllib.parse.urlsplit(url).netloc
        return BackendError(self._redact(f"swift {method} {path}: cannot reach {host}: {reason}"))

    def _redact(self, text):
        for secret in (self._token, self._key):
            if secret:
                text = text.replace(secret, "<redacted>")
        return text

    # -- accounts and containers ---------------------------------------------------------------

    def head_account(self, account=None):
        """The account's headers (lower-cased keys), or None when Swift answers 404."""
        found = self._call("HEAD", self.account_url(account), missing_ok=True)
        return None if found is None else found[0]

    def post_account(self, account, headers):
        """Set or remove account metadata (``X-Account-Meta-*``, ``X-Remove-Account-Meta-*``)."""
        self._call("POST", self.account_url(account), headers)

    def head_container(self, account, container):
        """The container's headers (lower-cased keys), or None when it does not exist."""
        found = self._call("HEAD", self.container_url(account, container), missing_ok=True)
        return None if found is None else found[0]

    def put_container(self, account, container, headers=None):
        """Create the container (Swift answers 201, or 202 when it already existed)."""
        try:
            self._call("PUT", self.container_url(account, container), headers)
        except NotFound as err:
            raise NotFound(f"{err} (does account {RESELLER_PREFIX}{account} exist? the proxy "
                           "creates accounts only with account_autocreate = true)") from None

    def post_container(self, account, container, headers):
        """Set or remove container metadata and ACLs."""
        self._call("POST", self.container_url(account, container), headers)

    def delete_container(self, account, container):
        """Delete an empty container: True, or False when it was already gone (409 when it is
        not empty raises Conflict)."""
        return self._call("DELETE", self.container_url(account, container),
                          missing_ok=True) is not None

    def list_objects(self, account, container, prefix=None):
        """Names of all objects in the container, page by page (marker) until Swift has no more."""
        return [item["name"] for item in self._listing(account, container, prefix=prefix)]

    def list_object_versions(self, account, container):
        """(name, version_id) of every object version and delete marker (Swift's object
        versioning; an object written without versioning has version_id ``null``)."""
        return [(item["name"], item["version_id"])
                for item in self._listing(account, container, versions=True)]

    def list_containers(self, account):
        """``[{name, count, bytes, last_modified}]`` of the account's containers (all pages)."""
        return self._listing(account, None)

    def _listing(self, account, container, prefix=None, versions=False):
        url = (self.container_url(account, container) if container is not None
               else self.account_url(account))
        items, marker, version_marker = [], None, None
        while True:
            query = {"format": "json"}
            if versions:
                query["versions"] = ""
            if prefix:
                query["prefix"] = prefix
            if marker is not None:
                query["marker"] = marker
                if version_marker is not None:
                    query["version_marker"] = version_marker
            _, body = self._call("GET", f"{url}?{urllib.parse.urlencode(query)}")
            try:
                page = json.loads(body) if body.strip() else []
            except ValueError:
                raise BackendError(f"swift GET {urllib.parse.unquote(url)}: the listing is "
                                   "not JSON") from None
            page = [item for item in page if "name" in item]
            if not page:
                return items
            items += page
            marker = page[-1]["name"]
            version_marker = page[-1].get("version_id") if versions else None

    # -- objects -------------------------------------------------------------------------------

    def head_object(self, account, container, name):
        """The object's headers (lower-cased keys), or None when it does not exist."""
        found = self._call("HEAD", self.object_url(account, container, name), missing_ok=True)
        return None if found is None else found[0]

    def delete_object(self, account, container, name, version_id=None):
        """Delete an object (one version of it with ``version_id``): True, or False when it was
        already gone."""
        url = self.object_url(account, container, name)
        if version_id is not None:
            url += "?" + urllib.parse.urlencode({"version-id": version_id})
        return self._call("DELETE", url, missing_ok=True) is not None

    def put_object(self, account, container, name, source, etag=None, headers=None):
        """Upload ``source`` (a path, bytes or a binary file object), streamed.

        ``etag`` (md5 hex) makes Swift refuse a body that does not match; either way the md5
        computed while sending must equal the ETag Swift answers. Returns ``{"etag", "sha256",
        "bytes"}``.
        """
        if isinstance(source, bytes | bytearray):
            return self._put(account, container, name, io.BytesIO(source), etag, headers)
        if isinstance(source, str | os.PathLike):
            try:
                with open(source, "rb") as f:
                    return self._put(account, container, name, f, etag, headers)
            except OSError as exc:
                raise BackendError(f"cannot read {os.fspath(source)}: {exc.strerror}") from None
        return self._put(account, container, name, source, etag, headers)

    def _put(self, account, container, name, fileobj, etag, headers):
        upload = _Upload(fileobj)
        sent = dict(headers or {})
        if etag:
            sent["ETag"] = etag
        if upload.length is not None:
            sent["Content-Length"] = str(upload.length)
        if not any(k.lower() == "content-type" for k in sent):
            sent["Content-Type"] = "application/octet-stream"
        url = self.object_url(account, container, name)
        answer, _ = self._call("PUT", url, sent, body=upload)
        md5 = upload.md5.hexdigest()
        if answer.get("etag", "").strip('"') != md5:
            raise BackendError(f"swift PUT {urllib.parse.unquote(url)}: Swift stored ETag "
                               f"{answer.get('etag')!r}, the bytes sent have md5 {md5}")
        return {"etag": md5, "sha256": upload.sha256.hexdigest(), "bytes": upload.bytes}

    def get_object(self, account, container, name, dest, expected_sha256=None):
        """Download to ``dest`` (a path, written atomically, or a binary file object), hashing
        while streaming. Checks the md5 against Swift's ETag when the object is not a large
        object manifest, and the sha256 against ``expected_sha256`` when given.

        Returns ``{"sha256", "bytes", "etag", "headers"}``; a path is left untouched on failure.
        """
        url = self.object_url(account, container, name)
        with self._open("GET", url) as resp:
            headers = _lower(resp.headers)
            if hasattr(dest, "write"):
                digests = self._stream(resp, dest, url)
                self._verify(url, headers, digests, expected_sha256)
            else:
                digests = self._stream_to_path(resp, os.fspath(dest), url, headers,
                                               expected_sha256)
        sha256, _, size = digests
        return {"sha256": sha256, "bytes": size, "etag": headers.get("etag"),
                "headers": headers}

    def _stream(self, resp, out, url):
        md5, sha256, size = hashlib.md5(usedforsecurity=False), hashlib.sha256(), 0
        try:
            while chunk := resp.read(CHUNK):
                md5.update(chunk)
                sha256.update(chunk)
                out.write(chunk)
                size += len(chunk)
        except (http.client.HTTPException, ConnectionError, TimeoutError) as exc:
            raise self._unreachable("GET", url, exc) from None
        return sha256.hexdigest(), md5.hexdigest(), size

    def _stream_to_path(self, resp, dest, url, headers, expected_sha256):
        try:
            with atomic_path(dest) as tmp, open(tmp, "wb") as out:
                digests = self._stream(resp, out, url)
                self._verify(url, headers, digests, expected_sha256)
        except OSError as exc:
            raise BackendError(f"cannot write {dest}: {exc.strerror or exc}") from None
        return digests

    @staticmethod
    def _verify(url, headers, digests, expected_sha256):
        sha256, md5, size = digests
        where = f"swift GET {urllib.parse.unquote(url)}"
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) != size:
            raise BackendError(f"{where}: got {size} bytes of {length}")
        etag = headers.get("etag", "")
        plain = not headers.get("x-static-large-object") and not headers.get("x-object-manifest")
        if plain and _MD5_HEX.match(etag) and etag != md5:
            raise BackendError(f"{where}: md5 {md5} does not match Swift's ETag {etag}")
        if expected_sha256 and sha256 != expected_sha256:
            raise BackendError(f"{where}: sha256 {sha256}, expected {expected_sha256}")


def _lower(headers):
    return {key.lower(): value for key, value in headers.items()}


def _brief(body):
    """Swift's error body (a line of HTML) as plain text, at most 200 characters."""
    if not body:
        return ""
    text = _TAG.sub(" ", body.decode("utf-8", "replace"))
    text = " ".join(text.split())
    return text if len(text) <= 200 else text[:197] + "..."
