"""The host's image cache: ``<cache_dir>/<sha256>``, each file verified before it gets its name.

A file appears under its final name only by an atomic rename, after its sha256 was checked
while streaming it in and ``qemu-img info`` agreed with the declared format. So a file that
has the name is trusted by default; ``verify=True`` re-hashes it anyway. Writers of one sha256
serialise on ``<cache_dir>/.<sha256>.lock`` (flock) and re-check after taking it, so parallel
runs fetch once. On failure nothing is left behind: no temp file, no lock file, no half image.
"""

import fcntl
import glob
import hashlib
import json
import os
import shutil
import stat
import subprocess
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass

from .errors import BackendError, InvalidInput, NotFound
from .fileio import fsync_dir
from .validate import sha256 as valid_sha256

DEFAULT_CACHE_DIR = "/var/lib/stackctl/images"
# Declared format -> what ``qemu-img info`` calls it. Kernels and ramdisks are plain files.
FORMATS = {"qcow2": "qcow2", "raw": "raw", "aki": "raw", "ari": "raw"}
URL_SCHEMES = ("http", "https", "file")
CHUNK = 1 << 20
FETCH_TIMEOUT = 60  # seconds without progress on a URL before giving up
# qemu-img parses untrusted headers: cap it (as OpenStack does) so a crafted image cannot eat
# the host.
QEMU_IMG_LIMITS = ["--as=1073741824", "--cpu=30"]


@dataclass(frozen=True)
class CacheResult:
    """Where the image is and what ensuring it did (``action``: none, fetch, copy, remove)."""

    path: str
    sha256: str
    format: str | None
    size: int | None
    changed: bool
    action: str

    def as_dict(self):
        return {
            "path": self.path,
            "sha256": self.sha256,
            "format": self.format,
            "size": self.size,
            "changed": self.changed,
            "action": self.action,
        }


def cache_path(cache_dir, sha256):
    """The cached file for a sha256 (validated: the name is the only thing we trust)."""
    return os.path.join(cache_dir, valid_sha256(sha256))


def source_of(src=None, url=None):
    """("copy", path) or ("fetch", url): exactly one of them, a URL with a supported scheme."""
    if (src is None) == (url is None):
        raise InvalidInput("give exactly one of src (a path on the host) or url")
    if src is not None:
        if not os.path.isabs(src):
            raise InvalidInput(f"invalid src {src!r}: expected an absolute path")
        return "copy", src
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in URL_SCHEMES:
        raise InvalidInput(f"invalid url {url!r}: scheme must be one of {', '.join(URL_SCHEMES)}")
    return "fetch", url


SECTOR = 512


def check_format(info, fmt, size=None):
    """Refuse an image whose real format differs from ``fmt``, or that points at other files.

    ``info`` is ``qemu-img info --output=json``. A backing file or an external data file would
    let an uploaded image make QEMU read any file on the host. qemu-img calls any bytes "raw",
    so a raw disk must also be whole 512-byte sectors (``size`` in bytes, when known): that
    refuses a text file or a truncated download given by mistake.
    """
    if fmt not in FORMATS:
        raise InvalidInput(f"invalid format {fmt!r}: expected one of {', '.join(FORMATS)}")
    actual = info.get("format")
    if actual != FORMATS[fmt]:
        raise InvalidInput(
            f"image format mismatch: declared {fmt}, but qemu-img sees {actual or 'nothing'}"
        )
    backing = info.get("full-backing-filename") or info.get("backing-filename")
    if backing:
        raise InvalidInput(f"refusing a {actual} image with a backing file ({backing!r})")
    data = (info.get("format-specific") or {}).get("data") or {}
    if data.get("data-file"):
        raise InvalidInput(f"refusing a {actual} image with an external data file")
    if fmt == "raw" and size is not None and (size == 0 or size % SECTOR):
        raise InvalidInput(f"not a raw disk image: {size} bytes is not a whole number of "
                           f"{SECTOR}-byte sectors")


def qemu_img_info(path):
    """``qemu-img info --output=json`` of one file (its backing chain is not opened)."""
    argv = ["qemu-img", "info", "--output=json", path]
    if shutil.which("prlimit"):
        argv = ["prlimit", *QEMU_IMG_LIMITS, *argv]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise BackendError(f"cannot run qemu-img info: {exc}") from exc
    if proc.returncode != 0:
        raise InvalidInput(f"qemu-img cannot read the image: {proc.stderr.strip()}")
    try:
        return json.loads(proc.stdout)
    except ValueError as exc:
        raise BackendError(f"qemu-img info printed no JSON: {exc}") from exc


def file_sha256(path):
    """sha256 of a file, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def ensure_cached(cache_dir, sha256, fmt, src=None, url=None, check=False, verify=False):
    """Make sure ``<cache_dir>/<sha256>`` holds the verified image; fetch or copy it if not.

    ``check`` only reports whether it would fetch. ``verify`` re-hashes a cached file instead
    of trusting its name; a file that fails is replaced.
    """
    path = cache_path(cache_dir, sha256)
    if fmt not in FORMATS:
        raise InvalidInput(f"invalid format {fmt!r}: expected one of {', '.join(FORMATS)}")
    action, where = source_of(src, url)
    if _trusted(path, sha256, src, verify):
        return _cached(path, sha256, fmt)
    if check:
        if action == "copy" and not os.path.exists(where):
            raise NotFound(f"image source {where} does not exist")
        return CacheResult(path, sha256, fmt, None, True, action)
    try:
        _make_dirs(cache_dir)
        with sha_lock(cache_dir, sha256):
            if _trusted(path, sha256, src, verify):  # another run put it there while we waited
                return _cached(path, sha256, fmt)
            size = _store(cache_dir, path, sha256, fmt, action, where)
    except OSError as exc:  # reading the source is mapped in _open_source/_copy_hashing
        raise BackendError(f"image cache {cache_dir}: {_reason(exc)}") from exc
    return CacheResult(path, sha256, fmt, size, True, action)


def remove_cached(cache_dir, sha256, check=False):
    """Remove a cached image. Overlays that use it as their backing file will break."""
    path = cache_path(cache_dir, sha256)
    if not os.path.lexists(path):
        return CacheResult(path, sha256, None, None, False, "none")
    if check:
        return CacheResult(path, sha256, None, None, True, "remove")
    try:
        with sha_lock(cache_dir, sha256):
            try:
                os.unlink(path)
            except FileNotFoundError:  # removed by a concurrent run
                return CacheResult(path, sha256, None, None, False, "none")
            fsync_dir(cache_dir)
    except OSError as exc:
        raise BackendError(f"image cache {cache_dir}: {_reason(exc)}") from exc
    return CacheResult(path, sha256, None, None, True, "remove")


def _cached(path, sha256, fmt):
    """A trusted cached file must still be of the declared format (cheap: headers only)."""
    size = os.path.getsize(path)
    check_format(qemu_img_info(path), fmt, size)
    return CacheResult(path, sha256, fmt, size, False, "none")


def _trusted(path, sha256, src, verify):
    """Is the cached file one we wrote? Name (rename only after verification), regular file,
    non-empty, same size as ``src`` when known; re-hashed when ``verify``."""
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    if not stat.S_ISREG(st.st_mode) or st.st_size == 0:
        return False
    if src is not None:
        try:
            if os.stat(src).st_size != st.st_size:
                return False
        except OSError:
            pass  # an unreadable src does not make a verified cached file wrong
    return not verify or file_sha256(path) == sha256


def _store(cache_dir, path, sha256, fmt, action, where):
    """Stream the source into a temp file, verify it, and rename it into place."""
    fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=f".{sha256}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, _open_source(action, where) as source:
            digest, size = _copy_hashing(source, where, out)
            out.flush()
            os.fsync(out.fileno())
        if digest != sha256:
            raise InvalidInput(f"checksum mismatch for {where}: expected {sha256}, got {digest}")
        check_format(qemu_img_info(tmp), fmt, size)
        os.chmod(tmp, 0o644)
        os.rename(tmp, path)
        fsync_dir(cache_dir)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return size


def _copy_hashing(source, where, out):
    """Copy source to out in chunks; return (sha256 hex, size)."""
    digest = hashlib.sha256()
    size = 0
    while True:
        try:
            chunk = source.read(CHUNK)
        except OSError as exc:
            raise BackendError(f"cannot read image from {where}: {_reason(exc)}") from exc
        if not chunk:
            return digest.hexdigest(), size
        digest.update(chunk)
        out.write(chunk)
        size += len(chunk)


def _open_source(action, where):
    try:
        if action == "copy":
            return open(where, "rb")
        return urllib.request.urlopen(where, timeout=FETCH_TIMEOUT)
    except FileNotFoundError as exc:
        raise NotFound(f"image source {where} does not exist") from exc
    except urllib.error.HTTPError as exc:
        error = NotFound if exc.code == 404 else BackendError
        raise error(f"cannot fetch image from {where}: {_reason(exc)}") from exc
    except OSError as exc:  # URLError is an OSError
        raise BackendError(f"cannot open image source {where}: {_reason(exc)}") from exc


def _reason(exc):
    """A short reason for an OSError (HTTP status, URL error reason, or strerror and path)."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    if exc.strerror and exc.filename:
        return f"{exc.strerror}: {exc.filename}"
    return exc.strerror or str(exc)


@contextmanager
def sha_lock(cache_dir, sha256):
    """Hold ``<cache_dir>/.<sha256>.lock`` exclusively; the lock file is removed on release.

    Removing a lock file is safe only if waiters notice: after flock we check that the path
    still names the inode we locked, and retry if it does not. Stale temp files of this sha256
    (left by a killed run) are removed while we hold the lock.
    """
    lock_path = os.path.join(cache_dir, f".{sha256}.lock")
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.path.samestat(os.fstat(fd), os.stat(lock_path)):
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        for stale in glob.glob(os.path.join(glob.escape(cache_dir), f".{sha256}.*.part")):
            os.unlink(stale)
        yield
    finally:
        os.unlink(lock_path)
        os.close(fd)


def _make_dirs(cache_dir):
    """Create the cache dir (and parents) 0755: QEMU runs as libvirt-qemu and must traverse."""
    missing = []
    head = os.path.abspath(cache_dir)
    while not os.path.isdir(head):
        missing.append(head)
        head = os.path.dirname(head)
    for directory in reversed(missing):
        try:
            os.mkdir(directory, 0o755)
        except FileExistsError:
            continue
        os.chmod(directory, 0o755)  # mkdir's mode is filtered by the umask
