"""A tenant's buckets: Swift containers in the tenant's account (``AUTH_<tenant>``).

Swift is the truth (a bucket made with boto3 is listed too); the controller acts with the
service user, a reseller admin, always inside the asking tenant's account, so one tenant never
reaches another's buckets. Same core as the ``stack_bucket`` module (``stackcore.bucket``).
"""

from __future__ import annotations

from stackcore import bucket as core
from stackcore.errors import Conflict, NotFound

from stackctl.app import App
from stackctl.workflows import lookup, storage_env


def _tenant(app: App, tenant_name: str | None) -> str:
    with app.db.read() as session:
        return lookup.tenant(session, tenant_name).name


def create(app: App, tenant_name: str | None, name: str, acl: str = core.PRIVATE,
           quota_bytes: int = 0, versioning: bool = False) -> dict:
    core.bucket_name(name)
    account = _tenant(app, tenant_name)
    desired = core.resolve_desired(name, account, acl=acl, quota_bytes=quota_bytes,
                                   versioning=versioning)
    session = storage_env.load(app).session()
    if session.head_container(account, name) is not None:
        raise Conflict(f"bucket {name!r} already exists")
    return core.reconcile(session, desired)["bucket"]


def update(app: App, tenant_name: str | None, name: str, **changes) -> dict:
    core.bucket_name(name)
    account = _tenant(app, tenant_name)
    session = storage_env.load(app).session()
    current = show(app, tenant_name, name, session=session, account=account)
    wanted = {k: current[k] for k in ("acl", "quota_bytes", "versioning")}
    wanted.update({k: v for k, v in changes.items() if v is not None})
    return core.reconcile(session, core.resolve_desired(name, account, **wanted))["bucket"]


def list_(app: App, tenant_name: str | None) -> list[dict]:
    account = _tenant(app, tenant_name)
    session = storage_env.load(app).session()
    return [{"name": c["name"], "objects": c.get("count", 0), "bytes": c.get("bytes", 0),
             "last_modified": c.get("last_modified", "")}
            for c in session.list_containers(account) if not c["name"].endswith("+segments")]


def show(app: App, tenant_name: str | None, name: str, *, session=None,
         account: str | None = None) -> dict:
    core.bucket_name(name)
    account = account or _tenant(app, tenant_name)
    session = session or storage_env.load(app).session()
    headers = session.head_container(account, name)
    if headers is None:
        raise NotFound(f"bucket {name!r} does not exist")
    state = core.read_state(headers)
    return {"name": name, "tenant": account, "acl": state.acl,
            "quota_bytes": state.quota_bytes or 0, "versioning": bool(state.versioning),
            "objects": int(headers.get("x-container-object-count", 0)),
            "bytes": int(headers.get("x-container-bytes-used", 0))}


def delete(app: App, tenant_name: str | None, name: str, force: bool = False) -> dict:
    core.bucket_name(name)
    account = _tenant(app, tenant_name)
    session = storage_env.load(app).session()
    if session.head_container(account, name) is None:
        raise NotFound(f"bucket {name!r} does not exist")
    result = core.reconcile(session, core.resolve_desired(name, account, state=core.ABSENT,
                                                          force=force, force_hint="--force"))
    return {"name": name, "deleted": True, "objects_deleted": result.get("purged", 0)}
