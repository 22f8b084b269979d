"""Per-tenant S3/Swift credentials: the controller's database is the truth, every proxy gets
the whole set in ``<swift_conf_dir>/stackauth/tenants-<controller id>.json`` (0640
root:swift), which the stackauth middleware re-reads within a second. No proxy restart, no
reload. The file is named by the controller's id, so a second controller database on the same
proxies (a test, a lab) never overwrites this one's keys; with no keys left it is removed.

A change is committed only after every proxy took the new file; if a proxy fails the database
is rolled back and the error says which proxy, so a retry (or the next ``stackctl deploy``)
brings the proxies back in line with the database.
"""

from __future__ import annotations

import json
import secrets
import string

from sqlalchemy import select
from stackcore.errors import BackendError, NotFound

from stackctl.app import App
from stackctl.models import Credential, Setting, Tenant, utcnow
from stackctl.runner import HostVar, Task
from stackctl.workflows import lookup, storage_env

_KEY_ALPHABET = string.ascii_uppercase + string.digits
_SECRET_ALPHABET = string.ascii_letters + string.digits
CONTROLLER_ID = "controller_id"


def new_access_key() -> str:
    """AWS-like: ``STK`` and 17 of [A-Z0-9] (``STKS`` starts only the service user's)."""
    while True:
        key = "STK" + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(17))
        if not key.startswith("STKS"):
            return key


def new_secret() -> str:
    return "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(40))


def create(app: App, tenant_name: str | None) -> dict:
    env = storage_env.load(app)
    with app.db.write() as session:
        tenant = lookup.tenant(session, tenant_name)
        cred = Credential(tenant=tenant, access_key=new_access_key(), secret=new_secret())
        session.add(cred)
        session.flush()
        push(app, env, session)
        return _with_secret(cred, env)


def list_(app: App, tenant_name: str | None) -> list[dict]:
    with app.db.read() as session:
        tenant = lookup.tenant(session, tenant_name)
        rows = session.scalars(select(Credential).where(Credential.tenant_id == tenant.id)
                               .order_by(Credential.created_at, Credential.access_key))
        return [c.to_dict() for c in rows]


def rotate(app: App, tenant_name: str | None, access_key: str) -> dict:
    """A new secret for ``access_key``; the old one stops working at once."""
    env = storage_env.load(app)
    with app.db.write() as session:
        cred = _find(session, tenant_name, access_key)
        cred.secret = new_secret()
        cred.rotated_at = utcnow()
        session.flush()
        push(app, env, session)
        return _with_secret(cred, env)


def revoke(app: App, tenant_name: str | None, access_key: str) -> dict:
    env = storage_env.load(app)
    with app.db.write() as session:
        cred = _find(session, tenant_name, access_key)
        session.delete(cred)
        session.flush()
        push(app, env, session)
        return {"access_key": access_key, "revoked": True}


def sync(app: App) -> dict:
    """Write the database's credentials to every proxy (after a deploy, or to repair)."""
    env = storage_env.load(app)
    with app.db.write() as session:  # write: the controller id is made on first use
        count = push(app, env, session)
    return {"proxies": list(env.proxies), "credentials": count}


def sync_if_any(app: App) -> dict | None:
    """``sync`` when the database holds credentials (a cloud without storage has none)."""
    from sqlalchemy import func

    with app.db.read() as session:
        if not session.scalar(select(func.count()).select_from(Credential)):
            return None
    return sync(app)


def push(app: App, env: storage_env.StorageEnv, session) -> int:
    """Write every tenant credential to every proxy; BackendError naming the failed ones."""
    rows = session.scalars(select(Credential).join(Tenant).order_by(Credential.access_key))
    users = [{"access_key": c.access_key, "secret": c.secret, "account": c.tenant.name,
              "groups": [".admin"]} for c in rows]
    content = json.dumps({"version": 1, "users": users}, indent=2, sort_keys=True) + "\n"
    # In the directory the storage_proxy role makes (roles/storage_proxy/vars/main.yml).
    dest = HostVar("swift_conf_dir", "/etc/swift",
                   suffix=f"/stackauth/tenants-{controller_id(session)}.json")
    if users:
        task = Task("ansible.builtin.copy",
                    {"content": content, "dest": dest, "owner": "root",
                     "group": HostVar("swift_user", "swift"), "mode": "0640"},
                    name="write the tenants' credentials")
    else:
        task = Task("ansible.builtin.file", {"path": dest, "state": "absent"},
                    name="remove this controller's (empty) credentials file")
    tasks = [task]
    outcomes = app.runner.run_each(list(env.proxies), tasks, label="credentials")
    failed = {host: o.error for host, o in outcomes.items() if o.error}
    if failed:
        host, error = next(iter(sorted(failed.items())))
        raise BackendError(f"could not write the credentials on proxy {host}: {error}"
                           + (f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""))
    return len(users)


def controller_id(session) -> str:
    """This controller's id (created on first use, kept in the database)."""
    row = session.get(Setting, CONTROLLER_ID)
    if row is None:
        row = Setting(key=CONTROLLER_ID, value=secrets.token_hex(8))
        session.add(row)
        session.flush()
    return row.value


def _find(session, tenant_name: str | None, access_key: str) -> Credential:
    tenant = lookup.tenant(session, tenant_name)
    cred = session.scalar(select(Credential).where(Credential.access_key == access_key,
                                                   Credential.tenant_id == tenant.id))
    if cred is None:  # another tenant's key looks exactly like a missing one
        raise NotFound(f"credential {access_key!r} does not exist")
    return cred


def _with_secret(cred: Credential, env: storage_env.StorageEnv) -> dict:
    """Shown once, at create and rotate; never again."""
    return dict(cred.to_dict(), secret=cred.secret, endpoint=env.endpoint,
                swift_auth_url=f"{env.endpoint}/auth/v1.0",
                swift_user=f"{cred.tenant.name}:{cred.access_key}")
