"""Where image bits live: the controller's file store, or Swift once storage is deployed.

- ``local``: ``<home>/images/<sha256>``; the aio hypervisor copies from that path.
- ``swift``: the object ``images/<sha256>`` in the service account (``AUTH_stackctl``);
  hypervisors fetch it with a temp URL (GET only, that object only, one hour), so they hold no
  credential, and ``stack_image_cache`` checks the sha256 while it downloads.

``STACKCTL_IMAGE_STORE=auto|local|swift`` (default auto: Swift when the inventory has proxies
and the storage secrets exist). A row's ``path`` says where its bits are (``swift:images/<sha>``
or a file path), so images imported before storage was deployed keep working.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from stackcore.errors import InvalidInput

from stackctl.app import App
from stackctl.workflows import storage_env

SWIFT_PREFIX = "swift:"
CONTAINER = "images"
TEMP_URL_SECONDS = 3600
STORES = ("auto", "local", "swift")


def backend(app: App) -> str:
    """``local`` or ``swift`` for new images."""
    wanted = os.environ.get("STACKCTL_IMAGE_STORE", "auto") or "auto"
    if wanted not in STORES:
        raise InvalidInput(f"invalid STACKCTL_IMAGE_STORE {wanted!r}: use auto, local or swift")
    if wanted != "auto":
        return wanted
    return "swift" if storage_env.deployed(app) else "local"


def store(app: App, tmp: Path, sha256: str) -> tuple[str, Callable[[], None] | None]:
    """Put the verified file ``tmp`` in the store; returns (path to record, undo or None)."""
    if backend(app) == "swift":
        return _store_swift(app, tmp, sha256)
    final = app.config.images_dir / sha256
    if final.exists():
        return str(final), None
    os.replace(tmp, final)
    return str(final), lambda: final.unlink(missing_ok=True)


def remove(app: App, path: str) -> None:
    """Delete the bits of an image no row uses any more."""
    if path.startswith(SWIFT_PREFIX):
        container, name = path[len(SWIFT_PREFIX):].split("/", 1)
        _session(app).delete_object(storage_env.SERVICE_ACCOUNT, container, name)
    else:
        Path(path).unlink(missing_ok=True)


def host_source(app: App, path: str) -> dict:
    """``stack_image_cache``'s source for a host: ``{"src": path}`` or ``{"url": temp URL}``."""
    if not path.startswith(SWIFT_PREFIX):
        return {"src": path}
    from stackcore.swift_client import temp_url

    env = storage_env.load(app)
    container, name = path[len(SWIFT_PREFIX):].split("/", 1)
    object_path = f"/v1/AUTH_{storage_env.SERVICE_ACCOUNT}/{container}/{name}"
    expires = int(time.time()) + TEMP_URL_SECONDS
    return {"url": env.endpoint + temp_url(env.tempurl_key, "GET", object_path, expires)}


def _store_swift(app: App, tmp: Path, sha256: str):
    session = _session(app)
    account = storage_env.SERVICE_ACCOUNT
    if session.head_object(account, CONTAINER, sha256) is not None:
        return f"{SWIFT_PREFIX}{CONTAINER}/{sha256}", None  # same bits, stored already
    session.put_container(account, CONTAINER)
    session.put_object(account, CONTAINER, sha256, str(tmp),
                       headers={"X-Object-Meta-Sha256": sha256})
    return (f"{SWIFT_PREFIX}{CONTAINER}/{sha256}",
            lambda: session.delete_object(account, CONTAINER, sha256))


def _session(app: App):
    return storage_env.load(app).session()


# --- VM snapshots: a host uploads, the controller verifies (additive) -------------------------


def upload_target(app: App, sha256: str) -> tuple[str, str | None]:
    """For bits a host holds: (path to record, PUT temp URL for the host), the URL None when
    the store already has these bits (``images/<sha256>``, like ``store``). Swift only."""
    from stackcore.swift_client import temp_url

    session, account = _session(app), storage_env.SERVICE_ACCOUNT
    path = f"{SWIFT_PREFIX}{CONTAINER}/{sha256}"
    head = session.head_object(account, CONTAINER, sha256)
    if head is not None and head.get("x-object-meta-sha256") == sha256:
        return path, None
    session.put_container(account, CONTAINER)
    env = storage_env.load(app)
    object_path = f"/v1/AUTH_{account}/{CONTAINER}/{sha256}"
    expires = int(time.time()) + TEMP_URL_SECONDS
    return path, env.endpoint + temp_url(env.tempurl_key, "PUT", object_path, expires)


def verify_stored(app: App, path: str, size: int, sha256: str, md5: str | None = None) -> None:
    """BackendError unless the stored object has ``size`` bytes, Swift's ETag ``md5`` (when
    given) and the sha256 the host computed (``X-Object-Meta-Sha256``). Swift only."""
    from stackcore.errors import BackendError

    container, name = path[len(SWIFT_PREFIX):].split("/", 1)
    head = _session(app).head_object(storage_env.SERVICE_ACCOUNT, container, name)
    if head is None:
        raise BackendError(f"{path} is missing from the image store after its upload")
    problems = []
    if head.get("content-length") != str(size):
        problems.append(f"{head.get('content-length')} bytes, not {size}")
    if md5 and head.get("etag", "").strip('"') != md5:
        problems.append(f"ETag {head.get('etag')}, not {md5}")
    if head.get("x-object-meta-sha256") != sha256:
        problems.append(f"sha256 {head.get('x-object-meta-sha256')}, not {sha256}")
    if problems:
        raise BackendError(f"{path} in the image store does not match the snapshot: "
                           + "; ".join(problems))
