"""stackcore.image_cache: verified, atomic, locked, and clean on failure."""

import hashlib
import http.server
import json
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from stackcore.errors import BackendError, InvalidInput, NotFound
from stackcore.image_cache import (
    check_format,
    ensure_cached,
    qemu_img_info,
    remove_cached,
    source_of,
)

PROJECT = Path(__file__).resolve().parents[3]


def sha(data):
    return hashlib.sha256(data).hexdigest()


def leftovers(cache_dir):
    """Everything in the cache that is not a final ``<sha256>`` file."""
    if not cache_dir.exists():
        return []
    return sorted(p.name for p in cache_dir.iterdir() if len(p.name) != 64 or p.name[0] == ".")


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache" / "images"


@pytest.fixture
def qcow2(tmp_path):
    path = tmp_path / "src.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "16M"], check=True)
    return path


@pytest.fixture
def raw(tmp_path):
    path = tmp_path / "kernel.bin"
    head = b"\x7fELF-not-really"
    path.write_bytes(head + os.urandom(8 * 512 - len(head)))  # whole sectors, like a raw disk
    return path


@pytest.fixture
def backed_qcow2(tmp_path, raw):
    path = tmp_path / "evil.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", "/etc/shadow", "-F", "raw",
                    str(path), "16M"], check=True)
    return path


# --- pure checks ------------------------------------------------------------------------------

QCOW2_INFO = {"format": "qcow2", "virtual-size": 1 << 24,
              "format-specific": {"type": "qcow2", "data": {"compat": "1.1"}}}


@pytest.mark.parametrize(
    "info, fmt, error",
    [
        (QCOW2_INFO, "qcow2", None),
        ({"format": "raw"}, "raw", None),
        ({"format": "raw"}, "aki", None),
        ({"format": "raw"}, "ari", None),
        (QCOW2_INFO, "raw", "format mismatch: declared raw, but qemu-img sees qcow2"),
        ({"format": "raw"}, "qcow2", "format mismatch: declared qcow2, but qemu-img sees raw"),
        ({"format": "vmdk"}, "qcow2", "format mismatch"),
        ({}, "raw", "qemu-img sees nothing"),
        (dict(QCOW2_INFO, **{"backing-filename": "/etc/shadow"}), "qcow2", "backing file"),
        (dict(QCOW2_INFO, **{"full-backing-filename": "/etc/shadow"}), "qcow2", "backing file"),
        ({"format": "qcow2", "format-specific": {"type": "qcow2",
                                                 "data": {"data-file": "/dev/sda"}}},
         "qcow2", "external data file"),
        ({"format": "raw"}, "iso", "invalid format"),
    ],
)
def test_check_format(info, fmt, error):
    if error is None:
        check_format(info, fmt)
    else:
        with pytest.raises(InvalidInput, match=error):
            check_format(info, fmt)


@pytest.mark.parametrize("fmt, size, error", [
    ("raw", 1024 * 1024, None),
    ("raw", 1417, "not a raw disk image: 1417 bytes"),
    ("raw", 0, "not a raw disk image"),
    ("aki", 1417, None),  # kernels and ramdisks are not sector images
    ("raw", None, None),  # size unknown: format checks only
])
def test_raw_disks_are_whole_sectors(fmt, size, error):
    if error is None:
        check_format({"format": "raw"}, fmt, size)
    else:
        with pytest.raises(InvalidInput, match=error):
            check_format({"format": "raw"}, fmt, size)


@pytest.mark.parametrize(
    "src, url, expected",
    [
        ("/srv/img", None, ("copy", "/srv/img")),
        (None, "http://127.0.0.1/x", ("fetch", "http://127.0.0.1/x")),
        (None, "https://example.invalid/x", ("fetch", "https://example.invalid/x")),
        (None, "file:///srv/img", ("fetch", "file:///srv/img")),
        (None, None, "exactly one"),
        ("/srv/img", "http://127.0.0.1/x", "exactly one"),
        ("relative/img", None, "absolute path"),
        (None, "ftp://host/x", "scheme"),
        (None, "/srv/img", "scheme"),
    ],
)
def test_source_of(src, url, expected):
    if isinstance(expected, tuple):
        assert source_of(src, url) == expected
    else:
        with pytest.raises(InvalidInput, match=expected):
            source_of(src, url)


def test_qemu_img_info_sees_the_backing_file(backed_qcow2):
    info = qemu_img_info(str(backed_qcow2))
    assert info["format"] == "qcow2" and info["backing-filename"] == "/etc/shadow"


# --- ensure_cached ----------------------------------------------------------------------------


def test_copy_caches_the_image_with_modes_qemu_can_read(cache, qcow2):
    digest = sha(qcow2.read_bytes())
    result = ensure_cached(str(cache), digest, "qcow2", src=str(qcow2))
    path = cache / digest
    assert result.changed and result.action == "copy" and result.path == str(path)
    assert result.size == qcow2.stat().st_size
    assert path.read_bytes() == qcow2.read_bytes()
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert stat.S_IMODE(cache.stat().st_mode) == 0o755
    assert stat.S_IMODE(cache.parent.stat().st_mode) == 0o755
    assert leftovers(cache) == []


def test_second_run_reports_no_change(cache, qcow2):
    digest = sha(qcow2.read_bytes())
    ensure_cached(str(cache), digest, "qcow2", src=str(qcow2))
    again = ensure_cached(str(cache), digest, "qcow2", src=str(qcow2))
    assert not again.changed and again.action == "none" and again.size == qcow2.stat().st_size


def test_check_mode_says_it_would_fetch_and_touches_nothing(cache, raw):
    digest = sha(raw.read_bytes())
    result = ensure_cached(str(cache), digest, "aki", url=raw.as_uri(), check=True)
    assert result.changed and result.action == "fetch"
    assert not cache.exists()


def test_check_mode_with_a_missing_src_fails(cache, tmp_path):
    with pytest.raises(NotFound):
        ensure_cached(str(cache), "a" * 64, "raw", src=str(tmp_path / "nope"), check=True)


def test_file_url_is_fetched(cache, raw):
    digest = sha(raw.read_bytes())
    result = ensure_cached(str(cache), digest, "ari", url=raw.as_uri())
    assert result.changed and result.action == "fetch"
    assert (cache / digest).read_bytes() == raw.read_bytes()


def test_checksum_mismatch_leaves_nothing(cache, raw):
    with pytest.raises(InvalidInput, match="checksum mismatch"):
        ensure_cached(str(cache), "0" * 64, "raw", src=str(raw))
    assert list(cache.iterdir()) == []


def test_format_mismatch_leaves_nothing(cache, qcow2):
    digest = sha(qcow2.read_bytes())
    with pytest.raises(InvalidInput, match="format mismatch: declared raw"):
        ensure_cached(str(cache), digest, "raw", src=str(qcow2))
    assert list(cache.iterdir()) == []


def test_qcow2_with_a_backing_file_is_refused(cache, backed_qcow2):
    digest = sha(backed_qcow2.read_bytes())
    with pytest.raises(InvalidInput, match="backing file"):
        ensure_cached(str(cache), digest, "qcow2", src=str(backed_qcow2))
    assert list(cache.iterdir()) == []


def test_missing_source_is_not_found(cache, tmp_path):
    with pytest.raises(NotFound):
        ensure_cached(str(cache), "a" * 64, "raw", src=str(tmp_path / "nope"))
    assert list(cache.iterdir()) == []


def test_invalid_sha_is_refused_before_anything(cache, raw):
    with pytest.raises(InvalidInput, match="sha256"):
        ensure_cached(str(cache), "../../etc/passwd", "raw", src=str(raw))
    assert not cache.exists()


def test_cached_file_of_another_format_is_refused_and_kept(cache, qcow2):
    digest = sha(qcow2.read_bytes())
    ensure_cached(str(cache), digest, "qcow2", src=str(qcow2))
    with pytest.raises(InvalidInput, match="format mismatch"):
        ensure_cached(str(cache), digest, "raw", src=str(qcow2))
    assert (cache / digest).exists()


def test_verify_replaces_a_corrupted_cached_file(cache, raw):
    data = raw.read_bytes()
    digest = sha(data)
    ensure_cached(str(cache), digest, "raw", src=str(raw))
    (cache / digest).write_bytes(b"X" * len(data))  # same size: only a re-hash can tell
    trusted = ensure_cached(str(cache), digest, "raw", src=str(raw))
    assert not trusted.changed  # by default the name is trusted
    fixed = ensure_cached(str(cache), digest, "raw", src=str(raw), verify=True)
    assert fixed.changed and (cache / digest).read_bytes() == data
    assert not ensure_cached(str(cache), digest, "raw", src=str(raw), verify=True).changed


def test_size_differing_from_src_is_recopied(cache, raw):
    data = raw.read_bytes()
    digest = sha(data)
    ensure_cached(str(cache), digest, "raw", src=str(raw))
    (cache / digest).write_bytes(data[:-1])
    assert ensure_cached(str(cache), digest, "raw", src=str(raw)).changed
    assert (cache / digest).read_bytes() == data


def test_stale_temp_file_of_a_killed_run_is_cleaned(cache, raw):
    digest = sha(raw.read_bytes())
    cache.mkdir(parents=True)
    (cache / f".{digest}.abc123.part").write_bytes(b"half")
    (cache / f".{digest}.lock").write_bytes(b"")
    ensure_cached(str(cache), digest, "raw", src=str(raw))
    assert leftovers(cache) == []


# --- remove -----------------------------------------------------------------------------------


def test_remove(cache, raw):
    digest = sha(raw.read_bytes())
    ensure_cached(str(cache), digest, "raw", src=str(raw))
    checked = remove_cached(str(cache), digest, check=True)
    assert checked.changed and (cache / digest).exists()
    assert remove_cached(str(cache), digest).changed
    assert list(cache.iterdir()) == []
    assert not remove_cached(str(cache), digest).changed


# --- HTTP and concurrency ---------------------------------------------------------------------


class SlowServer:
    """Serves one blob on 127.0.0.1, slowly, and counts GETs."""

    def __init__(self, blob, delay=0.02, chunk=64 * 1024):
        self.gets = 0
        self.finished_at = None
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.gets += 1
                if self.path != "/image":
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(blob)))
                self.end_headers()
                for start in range(0, len(blob), chunk):
                    self.wfile.write(blob[start:start + chunk])
                    time.sleep(delay)
                server.finished_at = time.time()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def blob():
    return os.urandom(2 * 1024 * 1024)


@pytest.fixture
def server(blob):
    srv = SlowServer(blob)
    yield srv
    srv.close()


def test_http_fetch(cache, server, blob):
    digest = sha(blob)
    result = ensure_cached(str(cache), digest, "raw", url=f"{server.url}/image")
    assert result.changed and (cache / digest).read_bytes() == blob


def test_http_404_is_not_found_and_leaves_nothing(cache, server):
    with pytest.raises(NotFound, match="404"):
        ensure_cached(str(cache), "b" * 64, "raw", url=f"{server.url}/missing")
    assert list(cache.iterdir()) == []


def test_two_processes_at_once_fetch_once_and_leave_a_valid_file(cache, server, blob):
    digest = sha(blob)
    code = (
        "import json, sys, time\n"
        "from stackcore.image_cache import ensure_cached\n"
        "started = time.time()\n"
        "r = ensure_cached(sys.argv[1], sys.argv[2], 'raw', url=sys.argv[3])\n"
        "print(json.dumps(dict(r.as_dict(), started=started)))\n"
    )
    argv = [sys.executable, "-c", code, str(cache), digest, f"{server.url}/image"]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd=PROJECT)
             for _ in range(2)]
    results = [json.loads(p.communicate(timeout=60)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sorted(r["changed"] for r in results) == [False, True]
    assert max(r["started"] for r in results) < server.finished_at, "the runs did not overlap"
    assert server.gets == 1
    assert (cache / digest).read_bytes() == blob
    assert leftovers(cache) == []


def test_unusable_cache_dir_is_a_backend_error(tmp_path, raw):
    (tmp_path / "a-file").write_text("")
    with pytest.raises(BackendError, match="image cache"):
        ensure_cached(str(tmp_path / "a-file" / "images"), sha(raw.read_bytes()), "raw",
                      src=str(raw))
