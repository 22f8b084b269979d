"""stackcore.swift_client: temp URL signatures against Swift's documented vectors, and the
session's HTTP plumbing (v1 auth, re-auth on 401, pagination, errors without secrets).

The HTTP server here is a stub that imitates a few Swift answers; it only exercises the client's
plumbing. It is not Swift: behaviour against a real proxy is tested separately."""

import hashlib
import hmac
import http.server
import io
import json
import threading
import urllib.parse

import pytest
from stackcore.errors import BackendError, Conflict, InvalidInput, NotFound
from stackcore.swift_client import SwiftSession, temp_url

USER, KEY = "service:stackctl", "s3cr3t-key-value"

# ---------------------------------------------------------------------------------------------
# temp_url


def test_temp_url_sha256_matches_swift_documented_vector():
    # Swift's tempurl middleware docs: key "mykey", GET, expires 1512508563 gives this sig.
    url = temp_url("mykey", "GET", "/v1/AUTH_account/container/object", 1512508563)
    assert url == ("/v1/AUTH_account/container/object?temp_url_sig="
                   "732fcac368abb10c78a4cbe95c3fab7f311584532bf779abd5074e13cbe8b88b"
                   "&temp_url_expires=1512508563")


def test_temp_url_sha256_is_hmac_of_method_expires_path():
    path, expires = "/v1/AUTH_demo/photos/cat.jpg", 1700000000
    body = f"PUT\n{expires}\n{path}".encode()
    expected = hmac.new(b"other-key", body, hashlib.sha256).hexdigest()
    url = temp_url(b"other-key", "PUT", path, expires)
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    assert query == {"temp_url_sig": [expected], "temp_url_expires": [str(expires)]}


def test_temp_url_sha512_uses_prefixed_base64_as_documented():
    url = temp_url("mykey", "GET", "/v1/AUTH_account/container/object", 1516741234,
                   digest="sha512")
    sig = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["temp_url_sig"][0]
    assert sig == ("sha512:ZrSijn0GyDhsv1ltIj9hWUTrbAeE45NcKXyBaz7aPbSMvROQ4jtYH4nRAmm5ErY2X11Y"
                   "c1Yhy2OMCyN3yueeXg==")


def test_temp_url_signs_the_unquoted_path_and_quotes_the_url():
    path = "/v1/AUTH_demo/my photos/a b.txt"
    url = temp_url("k", "GET", path, 10)
    assert url.startswith("/v1/AUTH_demo/my%20photos/a%20b.txt?")
    sig = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["temp_url_sig"][0]
    assert sig == hmac.new(b"k", f"GET\n10\n{path}".encode(), hashlib.sha256).hexdigest()


@pytest.mark.parametrize(("args", "message"), [
    (("k", "get", "/v1/a/c/o", 1), "method"),
    (("k", "GET", "/v1/a/c", 1), "path"),
    (("k", "GET", "/v2/a/c/o", 1), "path"),
    (("k", "GET", "/v1/a//o", 1), "path"),
    (("k", "GET", "/v1/a/c/o", True), "expiry"),
    (("k", "GET", "/v1/a/c/o", -1), "expiry"),
    (("", "GET", "/v1/a/c/o", 1), "key"),
])
def test_temp_url_rejects_bad_input(args, message):
    with pytest.raises(InvalidInput, match=message):
        temp_url(*args)


def test_temp_url_rejects_sha1_and_unknown_digests():
    for digest in ("sha1", "md5"):
        with pytest.raises(InvalidInput, match="digest"):
            temp_url("k", "GET", "/v1/a/c/o", 1, digest=digest)


# ---------------------------------------------------------------------------------------------
# A stub Swift proxy (client plumbing only)


class StubSwift:
    """Answers v1 auth and a few account/container/object calls the way Swift does, keeps
    containers in memory, and records what it was asked."""

    PAGE = 2  # listing page size, small to make the client page

    def __init__(self):
        self.auths = 0
        self.tokens = set()
        self.requests = []  # (method, path with query, token)
        self.containers = {"photos": {"headers": {"X-Container-Read": ".r:*,.rlistings"},
                                      "objects": {}}}
        self.bad_etag = False
        self.reject_all = False  # refuse every token, fresh ones included
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _body(self):
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    data = b""
                    while size := int(self.rfile.readline().split(b";")[0], 16):
                        data += self.rfile.read(size)
                        self.rfile.readline()
                    self.rfile.readline()
                    return data
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _send(self, status, headers=None, body=b""):
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _handle(self):
                body = self._body()
                token = self.headers.get("X-Auth-Token")
                stub.requests.append((self.command, self.path, token))
                url = urllib.parse.urlsplit(self.path)
                if url.path == "/auth/v1.0":
                    return stub.auth(self)
                if token not in stub.tokens or stub.reject_all:
                    return self._send(401, body=b"<html><h1>Unauthorized</h1><p>This server "
                                      b"could not verify that you are authorized.</p></html>")
                return stub.storage(self, url, body)

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _handle

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def expire_tokens(self):
        self.tokens.clear()

    def auth(self, h):
        if h.headers.get("X-Auth-User") != USER or h.headers.get("X-Auth-Key") != KEY:
            return h._send(401, body=b"<html><h1>Unauthorized</h1></html>")
        self.auths += 1
        token = f"AUTH_tk{self.auths:032x}"
        self.tokens.add(token)
        h._send(200, {"X-Auth-Token": token, "X-Storage-Token": token,
                      "X-Storage-Url": f"{self.url}/v1/AUTH_service"})

    def storage(self, h, url, body):
        parts = urllib.parse.unquote(url.path).split("/", 4)[1:]  # v1, account, container, obj
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        if len(parts) < 3:
            return h._send(204, {"X-Account-Container-Count": str(len(self.containers))})
        name = parts[2]
        if name == "boom":  # a failing backend whose error page echoes the request's token
            return h._send(503, body=f"<h1>Service Unavailable</h1><p>token "
                           f"{h.headers.get('X-Auth-Token')} rejected</p>".encode())
        container = self.containers.get(name)
        if len(parts) == 4:
            return self.object(h, container, parts[3], body)
        if h.command == "PUT":
            self.containers.setdefault(name, {"headers": {}, "objects": {}})
            self.containers[name]["headers"].update(h.headers.items())
            return h._send(201 if container is None else 202)
        if container is None:
            return h._send(404, body=b"<html><h1>Not Found</h1><p>The resource could not be "
                           b"found.</p></html>")
        objects = container["objects"]
        if h.command == "HEAD":
            return h._send(204, dict(container["headers"], **{
                "X-Container-Object-Count": str(len(objects)),
                "x-container-bytes-used": str(sum(len(v) for v in objects.values()))}))
        if h.command == "POST":
            container["headers"].update(h.headers.items())
            return h._send(204)
        if h.command == "DELETE":
            if objects:
                return h._send(409, body=b"<html><h1>Conflict</h1><p>There was a conflict "
                               b"when trying to complete your request.</p></html>")
            del self.containers[name]
            return h._send(204)
        marker = query.get("marker", [""])[0]
        names = sorted(n for n in objects if n > marker)[:self.PAGE]
        return h._send(200, {"Content-Type": "application/json"},
                       json.dumps([{"name": n, "bytes": len(objects[n])} for n in names]).encode())

    def object(self, h, container, name, body):
        if container is None:
            return h._send(404)
        objects = container["objects"]
        if h.command == "PUT":
            objects[name] = body
            etag = "0" * 32 if self.bad_etag else hashlib.md5(body).hexdigest()
            return h._send(201, {"Etag": etag})
        if name not in objects:
            return h._send(404)
        if h.command == "DELETE":
            del objects[name]
            return h._send(204)
        data = objects[name]
        return h._send(200, {"Etag": hashlib.md5(data).hexdigest(),
                             "Content-Type": "application/octet-stream"}, data)


@pytest.fixture
def stub():
    server = StubSwift()
    yield server
    server.close()


@pytest.fixture
def session(stub):
    return SwiftSession(stub.url, USER, KEY, timeout=5)


def assert_secret_free(message):
    assert "\n" not in message and KEY not in message and "AUTH_tk" not in message


# ---------------------------------------------------------------------------------------------
# Session


def test_auth_once_then_reuse_the_token(stub, session):
    assert session.head_container("demo", "missing") is None
    assert session.head_container("demo", "photos")["x-container-read"] == ".r:*,.rlistings"
    assert stub.auths == 1
    assert session.storage_url == f"{stub.url}/v1/AUTH_service"
    assert [r[0] for r in stub.requests] == ["GET", "HEAD", "HEAD"]


def test_head_container_lower_cases_header_names(session):
    headers = session.head_container("demo", "photos")
    assert headers["x-container-object-count"] == "0"
    assert headers["x-container-bytes-used"] == "0"


def test_account_urls(stub, session):
    assert session.account_url("demo") == f"{stub.url}/v1/AUTH_demo"
    assert session.account_url() == f"{stub.url}/v1/AUTH_service"
    assert session.object_url("demo", "photos", "a b/c.txt") == (
        f"{stub.url}/v1/AUTH_demo/photos/a%20b/c.txt")


def test_expired_token_is_renewed_once(stub, session):
    session.head_container("demo", "photos")
    stub.expire_tokens()
    assert session.head_container("demo", "photos") is not None
    assert stub.auths == 2
    tokens = [r[2] for r in stub.requests if r[0] == "HEAD"]
    assert len(tokens) == 3 and tokens[0] == tokens[1] != tokens[2]


def test_401_after_a_fresh_auth_fails_without_secrets(stub, session):
    stub.reject_all = True
    with pytest.raises(BackendError) as err:
        session.head_container("demo", "photos")
    message = str(err.value)
    assert message.startswith("swift HEAD /v1/AUTH_demo/photos: 401 Unauthorized")
    assert "fresh auth" in message
    assert_secret_free(message)
    assert stub.auths == 2


def test_refused_credentials_name_the_user_not_the_key(stub):
    session = SwiftSession(stub.url, USER, "wrong-" + KEY)
    with pytest.raises(BackendError) as err:
        session.head_account("demo")
    message = str(err.value)
    assert f"swift auth at {stub.url}/auth/v1.0: 401" in message and USER in message
    assert "wrong-" not in message
    assert_secret_free(message)


def test_error_body_that_echoes_the_token_is_redacted(session):
    session.head_container("demo", "photos")  # authenticates
    with pytest.raises(BackendError) as err:
        session.post_container("demo", "boom", {"X-Container-Meta-A": "1"})
    message = str(err.value)
    assert message.startswith("swift POST /v1/AUTH_demo/boom: 503 Service Unavailable")
    assert "<redacted>" in message
    assert_secret_free(message)


def test_listing_follows_markers_across_pages(stub, session):
    names = ["a", "b", "c d", "e", "f"]
    for name in names:
        session.put_object("demo", "photos", name, name.encode())
    assert session.list_objects("demo", "photos") == names
    markers = [urllib.parse.parse_qs(urllib.parse.urlsplit(r[1]).query).get("marker")
               for r in stub.requests if r[0] == "GET" and "format=json" in r[1]]
    assert markers == [None, ["b"], ["e"], ["f"]]


def test_delete_non_empty_container_is_one_line_conflict(session):
    session.put_object("demo", "photos", "x", b"1")
    with pytest.raises(Conflict) as err:
        session.delete_container("demo", "photos")
    assert str(err.value) == ("swift DELETE /v1/AUTH_demo/photos: 409 Conflict: There was a "
                              "conflict when trying to complete your request.")


def test_create_post_delete_container(stub, session):
    session.put_container("demo", "new", {"X-Container-Meta-Quota-Bytes": "10"})
    session.post_container("demo", "new", {"X-Remove-Container-Read": "x"})
    headers = stub.containers["new"]["headers"]
    assert headers["X-Container-Meta-Quota-Bytes"] == "10"
    assert headers["X-Remove-Container-Read"] == "x"
    assert session.delete_container("demo", "new") is True
    assert session.delete_container("demo", "new") is False


def test_missing_container_listing_is_not_found(session):
    with pytest.raises(NotFound, match="404 Not Found: The resource could not be found"):
        session.list_objects("demo", "missing")


def test_put_then_get_object_with_hashes(session, tmp_path):
    data = b"hello swift" * 1000
    put = session.put_object("demo", "photos", "dir/hello.txt", data)
    assert put == {"etag": hashlib.md5(data).hexdigest(),
                   "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    dest = tmp_path / "hello.txt"
    got = session.get_object("demo", "photos", "dir/hello.txt", dest)
    assert dest.read_bytes() == data
    assert got["sha256"] == put["sha256"] and got["bytes"] == len(data)
    assert session.head_object("demo", "photos", "dir/hello.txt") is not None
    assert session.delete_object("demo", "photos", "dir/hello.txt") is True
    assert session.head_object("demo", "photos", "dir/hello.txt") is None


def test_get_object_with_wrong_sha256_leaves_no_file(session, tmp_path):
    session.put_object("demo", "photos", "o", b"data")
    with pytest.raises(BackendError, match="expected 0000"):
        session.get_object("demo", "photos", "o", tmp_path / "o", expected_sha256="0" * 64)
    assert list(tmp_path.iterdir()) == []


def test_put_object_from_a_file_is_resent_after_reauth(stub, session, tmp_path):
    source = tmp_path / "blob"
    source.write_bytes(b"x" * 100_000)
    session.head_account("demo")
    stub.expire_tokens()
    put = session.put_object("demo", "photos", "blob", source)
    assert put["bytes"] == 100_000 and stub.auths == 2
    assert stub.containers["photos"]["objects"]["blob"] == b"x" * 100_000


class Pipe:
    """A stream that cannot seek (like a process's stdout)."""

    def __init__(self, data):
        self._data = data

    def read(self, size=-1):
        size = len(self._data) if size < 0 else size
        chunk, self._data = self._data[:size], self._data[size:]
        return chunk


def test_put_object_from_a_pipe_is_sent_chunked(stub, session):
    data = bytes(range(256)) * 5000
    put = session.put_object("demo", "photos", "piped", Pipe(data))
    assert put["bytes"] == len(data) and put["sha256"] == hashlib.sha256(data).hexdigest()
    assert stub.containers["photos"]["objects"]["piped"] == data


def test_token_expiring_during_a_pipe_upload_fails_clearly(stub, session):
    session.head_account("demo")
    stub.expire_tokens()
    with pytest.raises(BackendError) as err:
        session.put_object("demo", "photos", "piped", Pipe(b"abc"))
    assert "401 Unauthorized" in str(err.value) and "cannot be replayed" in str(err.value)
    assert_secret_free(str(err.value))


def test_get_object_into_a_file_object(session):
    session.put_object("demo", "photos", "o", b"payload")
    out = io.BytesIO()
    got = session.get_object("demo", "photos", "o", out)
    assert out.getvalue() == b"payload" and got["bytes"] == 7
    assert got["etag"] == hashlib.md5(b"payload").hexdigest()


def test_put_object_etag_mismatch_is_a_backend_error(stub, session):
    stub.bad_etag = True
    with pytest.raises(BackendError, match=r"Swift stored ETag '0+', the bytes sent have md5"):
        session.put_object("demo", "photos", "o", b"data")


def test_unreachable_endpoint_is_one_line(stub):
    url = stub.url
    stub.close()
    with pytest.raises(BackendError, match=r"^swift GET /auth/v1\.0: cannot reach 127\.0\.0\.1"):
        SwiftSession(url, USER, KEY, timeout=2).head_account("demo")


@pytest.mark.parametrize("endpoint", ["ftp://x", "127.0.0.1:8080", "", None])
def test_invalid_endpoint(endpoint):
    with pytest.raises(InvalidInput, match="invalid Swift endpoint"):
        SwiftSession(endpoint, USER, KEY)
