"""Flattened snapshots of a VM's disk (the core of ``stack_vm_snapshot``).

``make_snapshot`` writes ``qemu-img convert -O qcow2`` of the VM's overlay disk - merged with
its base image, so the result stands alone - to a path of the caller's choosing, atomically
(``<path>.part``, fsync, rename). The VM must be off: a running QEMU holds the write lock on its
disk and qemu-img refuses to read it, which this module reports as a Conflict rather than copy
a disk that is changing underneath. ``upload_snapshot`` PUTs the file to a (Swift temp) URL,
hashing while it streams, and checks Swift's ETag against the md5 of what was sent.
``remove_snapshot`` deletes the file and any partial one. Every step is idempotent.
"""

import hashlib
import http.client
import os
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass

from .errors import BackendError, Conflict, InvalidInput, NotFound
from .fileio import fsync_dir
from .image_cache import check_format, qemu_img_info
from .validate import sha256 as valid_sha256
from .vm_lock import acquire
from .vm_plan import VmPaths

CHUNK = 1 << 20
CONVERT_TIMEOUT_S = 1800
UPLOAD_TIMEOUT_S = 120  # without progress
LOCK_TIMEOUT_S = 300
_LOCKED = ("write\" lock", "write' lock", "Is another process using the image")


@dataclass(frozen=True)
class SnapshotFile:
    """A finished snapshot file and what the controller verifies about it."""

    path: str
    sha256: str
    md5: str
    size: int
    virtual_size: int
    format: str = "qcow2"

    def as_dict(self):
        return {"path": self.path, "sha256": self.sha256, "md5": self.md5, "size": self.size,
                "virtual_size": self.virtual_size, "format": self.format}


def _check_path(path):
    if not path or not os.path.isabs(path):
        raise InvalidInput(f"path must be an absolute path, not {path!r}")
    return path


def digests(path):
    """(sha256, md5, size) of a file, streamed."""
    sha, md5, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            sha.update(chunk)
            md5.update(chunk)
            size += len(chunk)
    return sha.hexdigest(), md5.hexdigest(), size


def describe(path):
    """SnapshotFile for an existing flattened qcow2 (refused if it has a backing file)."""
    info = qemu_img_info(path)
    sha, md5, size = digests(path)
    check_format(info, "qcow2", size)
    return SnapshotFile(path, sha, md5, size, int(info.get("virtual-size") or 0))


def convert_argv(disk, dest):
    """The flattening copy: qemu-img reads the backing chain and writes one standalone qcow2."""
    return ["qemu-img", "convert", "-q", "-O", "qcow2", disk, dest]


def make_snapshot(instance_dir, name, path, check=False):
    """Flatten domain ``name``'s disk into ``path``; returns (SnapshotFile or None, changed).

    An existing ``path`` (only ever created by rename after a complete convert) is reused.
    """
    _check_path(path)
    disk = VmPaths(instance_dir, name).disk
    if os.path.isfile(path):
        return describe(path), False
    if not os.path.exists(disk):
        raise NotFound(f"disk {disk} of domain {name} does not exist")
    if check:
        return None, True
    lock = acquire(instance_dir, name, timeout=LOCK_TIMEOUT_S)
    try:
        _convert(disk, path)
    finally:
        lock.release()
    return describe(path), True


def _convert(disk, path):
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    part = f"{path}.part"
    try:
        if os.path.exists(part):
            os.unlink(part)  # left by a killed run
        _run(convert_argv(disk, part), disk)
        with open(part, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(part, 0o600)
        os.rename(part, path)
        fsync_dir(directory)
    finally:
        if os.path.exists(part):
            os.unlink(part)


def _run(argv, disk):
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=CONVERT_TIMEOUT_S,
                              check=False)
    except FileNotFoundError:
        raise BackendError("qemu-img is not installed") from None
    except subprocess.TimeoutExpired:
        raise BackendError(f"qemu-img convert of {disk} took longer than "
                           f"{CONVERT_TIMEOUT_S} s") from None
    if proc.returncode != 0:
        err = proc.stderr.strip() or proc.stdout.strip()
        if any(mark in err for mark in _LOCKED):
            raise Conflict(f"disk {disk} is in use (is the VM running? stop it first)")
        raise BackendError(f"cannot flatten {disk}: {err}")


def remove_snapshot(instance_dir, name, path, check=False):
    """Delete the snapshot file and a partial one; True when something was (or would be).

    Under the domain's lock, so a flattening still running for a killed controller finishes
    (or fails) first instead of renaming its file into place after the removal."""
    _check_path(path)
    if check:
        return any(os.path.lexists(p) for p in (path, f"{path}.part"))
    lock = acquire(instance_dir, name, timeout=LOCK_TIMEOUT_S)
    try:
        found = [p for p in (path, f"{path}.part") if os.path.lexists(p)]
        for p in found:
            os.unlink(p)
    finally:
        lock.release()
    return bool(found)


class _HashingReader:
    """A file object for urllib that hashes what it sends."""

    def __init__(self, fh):
        self._fh = fh
        self.sha256 = hashlib.sha256()
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.bytes = 0

    def read(self, size=-1):
        data = self._fh.read(CHUNK if 0 < size < CHUNK else size)
        self.sha256.update(data)
        self.md5.update(data)
        self.bytes += len(data)
        return data


def upload_headers(size, sha256, md5):
    """Headers of the PUT: Swift refuses a body whose md5 differs from ``ETag``."""
    return {"Content-Length": str(size), "Content-Type": "application/octet-stream",
            "ETag": md5, "X-Object-Meta-Sha256": sha256}


def upload_snapshot(snap, url, expected_sha256):
    """PUT ``snap`` to ``url``; the file must still have ``expected_sha256``. Returns the
    ETag Swift answered (checked against the md5 of the bytes sent)."""
    valid_sha256(expected_sha256)
    if snap.sha256 != expected_sha256:
        raise Conflict(f"{snap.path} has sha256 {snap.sha256}, expected {expected_sha256}")
    with open(snap.path, "rb") as fh:
        reader = _HashingReader(fh)
        req = urllib.request.Request(url, data=reader, method="PUT",
                                     headers=upload_headers(snap.size, snap.sha256, snap.md5))
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(req, timeout=UPLOAD_TIMEOUT_S) as resp:
                etag = (resp.headers.get("ETag") or "").strip('"')
        except urllib.error.HTTPError as exc:
            raise BackendError(f"upload of {snap.path} refused: HTTP {exc.code} "
                               f"{exc.reason}") from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise BackendError(f"upload of {snap.path} failed: {reason}") from None
    if reader.sha256.hexdigest() != expected_sha256 or reader.bytes != snap.size:
        raise BackendError(f"{snap.path} changed while it was uploaded")
    if etag != reader.md5.hexdigest():
        raise BackendError(f"upload of {snap.path}: the store answered ETag {etag!r}, the "
                           f"bytes sent have md5 {reader.md5.hexdigest()}")
    return etag
