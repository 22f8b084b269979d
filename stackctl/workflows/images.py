"""The controller's image store: ``<home>/images/<sha256>``, one file per distinct content.

Import streams a local file or a URL into a temporary file in the store while hashing it,
verifies an expected checksum, detects the format with ``qemu-img info`` (or takes
``aki``/``ari`` for kernels and ramdisks), refuses a qcow2 with a backing file (the checks
are ``stackcore.image_cache``'s, the same the hosts' cache applies), and only then renames
it into place and records the row. Any failure leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, or_, select
from stackcore import image_cache, validate
from stackcore.errors import BackendError, Conflict, InvalidInput, NotFound

from stackctl.app import App
from stackctl.config import ensure_private_dir
from stackctl.models import DISK_FORMATS, VM, Image
from stackctl.progress import StepProgress
from stackctl.workflows import image_store, lookup

CHUNK = 1024 * 1024
URL_TIMEOUT_S = 60
MAX_CMDLINE = 1024
_CMDLINE = re.compile(r"^[\x20-\x7e]*$")


@dataclass(frozen=True)
class ImportRequest:
    name: str
    source: str  # a local path, or an http(s):// or file:// URL
    tenant: str | None = None  # owner; None with public=True
    public: bool = False
    disk_format: str | None = None  # None: detect (qcow2 or raw)
    sha256: str | None = None  # expected checksum
    kernel: str | None = None
    ramdisk: str | None = None
    cmdline: str | None = None


def import_image(app: App, req: ImportRequest, ui: StepProgress | None = None) -> dict:
    """Import ``req.source`` into the store and register it; returns the image."""
    _validate(req)
    expected = req.sha256.lower() if req.sha256 else None
    with app.db.read() as session:  # fail on names before downloading anything
        _resolve_refs(session, req)
    if ui is not None:
        ui.step(f"reading {req.source}")
    store = ensure_private_dir(app.config.images_dir)
    tmp = store / f".import-{os.getpid()}-{os.urandom(4).hex()}"
    created = None
    try:
        digest, size = _fetch(req.source, tmp)
        if expected and digest != expected:
            raise InvalidInput(f"checksum mismatch for {req.source}: expected {expected}, "
                               f"got {digest}; nothing was imported")
        info = image_cache.qemu_img_info(str(tmp))
        fmt = _check_format(info, req.disk_format, size)
        if ui is not None:
            ui.step(f"storing the image ({image_store.backend(app)} store)")
        location, created = image_store.store(app, tmp, digest)
        with app.db.write() as session:
            owner, kernel_id, ramdisk_id = _resolve_refs(session, req)  # again, under the lock
            image = Image(name=req.name, tenant_id=owner.id if owner else None, sha256=digest,
                          disk_format=fmt, size=size, virtual_size=info.get("virtual-size"),
                          path=location, kernel_id=kernel_id, ramdisk_id=ramdisk_id,
                          cmdline=req.cmdline, status="active")
            session.add(image)
            session.flush()
            result = image.to_dict()
        created = None
        return result
    finally:
        tmp.unlink(missing_ok=True)
        if created is not None:
            created()


def list_images(app: App, tenant_name: str | None) -> list[dict]:
    """Public images plus, with a tenant, that tenant's private ones."""
    with app.db.read() as session:
        owner = lookup.tenant(session, tenant_name) if tenant_name else None
        rows = session.scalars(lookup.visible_images(owner).order_by(Image.name))
        return [i.to_dict() for i in rows]


def show_image(app: App, tenant_name: str | None, name: str) -> dict:
    validate.resource_name(name, "image name")
    with app.db.read() as session:
        owner = lookup.tenant(session, tenant_name) if tenant_name else None
        return lookup.image(session, owner, name).to_dict()


def delete_image(app: App, tenant_name: str | None, name: str) -> dict:
    """Delete an image; refused while a VM uses it or a disk image boots with it."""
    validate.resource_name(name, "image name")
    with app.db.write() as session:
        owner = lookup.tenant(session, tenant_name) if tenant_name else None
        image = lookup.image(session, owner, name)
        users = session.scalar(select(func.count()).select_from(VM).where(VM.image_id == image.id))
        if users:
            raise Conflict(f"image {name!r} is in use by {users} VM(s)")
        dependants = list(session.scalars(select(Image.name).where(
            or_(Image.kernel_id == image.id, Image.ramdisk_id == image.id))))
        if dependants:
            raise Conflict(f"image {name!r} is the kernel or ramdisk of: {', '.join(dependants)}")
        sha, path = image.sha256, image.path
        session.delete(image)
        session.flush()
        shared = session.scalar(select(func.count()).select_from(Image)
                                .where(Image.sha256 == sha, Image.path == path))
    if not shared:
        image_store.remove(app, path)
    return {"name": name, "deleted": True}


# --- helpers -------------------------------------------------------------------------------


def _validate(req: ImportRequest) -> None:
    validate.resource_name(req.name, "image name")
    if req.sha256:
        validate.sha256(req.sha256.lower())
    if req.disk_format is not None and req.disk_format not in DISK_FORMATS:
        raise InvalidInput(f"invalid disk format {req.disk_format!r}: use one of "
                           f"{', '.join(DISK_FORMATS)}")
    if (req.kernel or req.ramdisk or req.cmdline) and req.disk_format in ("aki", "ari"):
        raise InvalidInput("--kernel, --ramdisk and --cmdline belong to a disk image, "
                           "not to a kernel or ramdisk")
    if req.ramdisk and not req.kernel:
        raise InvalidInput("--ramdisk needs --kernel")
    if req.cmdline is not None:
        if not req.kernel:
            raise InvalidInput("--cmdline needs --kernel")
        if len(req.cmdline) > MAX_CMDLINE or not _CMDLINE.match(req.cmdline):
            raise InvalidInput(f"invalid kernel command line: printable ASCII, at most "
                               f"{MAX_CMDLINE} characters")
    if not req.public and not req.tenant:
        raise InvalidInput("no tenant given: pass --tenant, set STACKCTL_TENANT, or --public")


def _resolve_refs(session, req: ImportRequest):
    """Owner tenant, kernel id and ramdisk id; Conflict when the name is taken in its scope."""
    owner = None if req.public else lookup.tenant(session, req.tenant)
    scope = Image.tenant_id.is_(None) if owner is None else Image.tenant_id == owner.id
    if session.scalar(select(Image.id).where(scope, Image.name == req.name)):
        raise Conflict(f"image {req.name!r} already exists")
    kernel_id = _ref(session, owner, req.kernel, "aki", "--kernel")
    ramdisk_id = _ref(session, owner, req.ramdisk, "ari", "--ramdisk")
    return owner, kernel_id, ramdisk_id


def _ref(session, owner, name: str | None, fmt: str, flag: str) -> str | None:
    if not name:
        return None
    image = lookup.image(session, owner, name)
    if image.disk_format != fmt:
        raise InvalidInput(f"{flag} {name!r} is a {image.disk_format} image, not {fmt}")
    return image.id


def _fetch(source: str, dest: Path) -> tuple[str, int]:
    """Stream ``source`` into ``dest`` (0600); returns (sha256, size)."""
    digest, size = hashlib.sha256(), 0
    scheme = urllib.parse.urlsplit(source).scheme
    try:
        if scheme in ("http", "https", "file"):
            reader = urllib.request.urlopen(source, timeout=URL_TIMEOUT_S)
        elif scheme and len(scheme) > 1:
            raise InvalidInput(f"unsupported URL scheme {scheme!r}: use http, https or file")
        else:
            path = Path(source).expanduser()
            if not path.is_file():
                raise NotFound(f"no such file: {source}")
            reader = path.open("rb")
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with reader, os.fdopen(fd, "wb") as out:
            while chunk := reader.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
    except urllib.error.URLError as exc:
        raise BackendError(f"cannot download {source}: {getattr(exc, 'reason', exc)}") from exc
    except OSError as exc:
        raise BackendError(f"cannot read {source}: {exc.strerror or exc}") from exc
    if size == 0:
        raise InvalidInput(f"{source} is empty")
    return digest.hexdigest(), size


def _check_format(info: dict, requested: str | None, size: int) -> str:
    """The format to record: the one given, else what qemu-img detected (qcow2 or raw).

    ``stackcore.image_cache.check_format`` (the same check the hosts' cache makes) refuses a
    mismatch and images that point at other files (backing file, external data file).
    """
    fmt = requested or info.get("format")
    if fmt not in DISK_FORMATS:
        raise InvalidInput(f"unsupported image format {fmt!r}: use qcow2 or raw (or give "
                           "--disk-format aki/ari for a kernel/ramdisk)")
    image_cache.check_format(info, fmt, size)
    return fmt
