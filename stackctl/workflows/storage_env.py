"""Where the object storage is and how the controller talks to it.

The proxy comes from the inventory (``proxies`` group) unless ``STACKCTL_STORAGE_URL`` says;
the service user's key from the secrets file the storage roles generated on the controller.
The service user is a reseller admin: it creates buckets in tenants' accounts and keeps the
image service's objects in its own account, ``AUTH_stackctl``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from stackcore.errors import Conflict

if TYPE_CHECKING:
    from stackcore.swift_client import SwiftSession

    from stackctl.app import App

PROXY_GROUP = "proxies"
SERVICE_ACCOUNT = "stackctl"
DEFAULT_PROXY_PORT = 8080


@dataclass(frozen=True)
class StorageEnv:
    endpoint: str
    service_user: str
    service_key: str
    tempurl_key: str
    proxies: tuple[str, ...]

    def session(self) -> SwiftSession:
        from stackcore.swift_client import SwiftSession

        return SwiftSession(self.endpoint, self.service_user, self.service_key)


def proxy_endpoint(hostvars: dict) -> str:
    """``http://ip:port`` of a proxy from its inventory variables (the roles' defaults)."""
    ip = hostvars.get("swift_proxy_ip") or hostvars.get("swift_ip") or "127.0.0.1"
    port = int(hostvars.get("swift_proxy_port") or DEFAULT_PROXY_PORT)
    return f"http://{ip}:{port}"


def service_access_key(secrets: dict) -> str:
    """The service user's access key, derived as the storage_proxy role derives it."""
    return "STKS" + str(secrets["service_access"])[:16].upper()


def deployed(app: App) -> bool:
    """Whether object storage is deployed from this controller: its secrets exist and the
    inventory has proxies (the cheap file tests first; the inventory read is cached)."""
    if not app.config.swift_secrets.exists() or not app.config.inventory.is_file():
        return False
    return bool(app.runner.inventory_hostvars(PROXY_GROUP))


def load(app: App) -> StorageEnv:
    """The storage environment; Conflict when object storage is not deployed."""
    proxies = app.runner.inventory_hostvars(PROXY_GROUP)
    if not proxies:
        raise Conflict(f"object storage is not deployed: the inventory {app.config.inventory} "
                       "has no hosts in its 'proxies' group")
    secrets = _read_secrets(app.config.swift_secrets)
    endpoint = app.config.storage_url or proxy_endpoint(next(iter(proxies.values())))
    return StorageEnv(endpoint=endpoint,
                      service_user=f"{SERVICE_ACCOUNT}:{service_access_key(secrets)}",
                      service_key=str(secrets["service_key"]),
                      tempurl_key=str(secrets["tempurl_key"]), proxies=tuple(proxies))


def _read_secrets(path) -> dict:
    try:
        with open(path) as handle:
            data = json.load(handle)
    except FileNotFoundError:
        raise Conflict(f"object storage is not deployed: no secrets file {path} "
                       "(run `stackctl deploy`)") from None
    except PermissionError:
        raise Conflict(f"cannot read {path}: run stackctl as the user that deployed "
                       "the storage (root)") from None
    except ValueError:
        raise Conflict(f"the secrets file {path} is not valid JSON; restore it "
                       "from a backup") from None
    missing = [k for k in ("service_access", "service_key", "tempurl_key") if k not in data]
    if missing:
        raise Conflict(f"the secrets file {path} lacks {', '.join(missing)}: run "
                       "`stackctl deploy`")
    return data
