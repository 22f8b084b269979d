"""S3 buckets as Swift containers, for ``stack_bucket``: name rules, the desired state, a pure
``plan_bucket(current headers, desired)`` (tested by tables), and one reconcile over a
``SwiftSession`` (or anything with its methods).

A bucket is a container in the tenant's account ``AUTH_<tenant>``; s3api serves it as the
bucket of the same name. What the plan controls, in Swift's terms:

- acl: ``public-read`` is ``X-Container-Read: .r:*,.rlistings`` (anyone may read and list);
  ``private`` is no read ACL. The write ACL is left alone.
- quota_bytes: ``X-Container-Meta-Quota-Bytes`` (container_quotas middleware); 0 means none.
- versioning: ``X-Versions-Enabled`` (object_versioning, what s3api maps bucket versioning
  to). Once enabled it can be suspended (``false``), never removed, as in S3.
"""

import re
from dataclasses import dataclass, field

from .errors import BackendError, Conflict, InvalidInput
from .validate import bounded_int, resource_name

PRESENT, ABSENT = "present", "absent"
PRIVATE, PUBLIC_READ = "private", "public-read"
CREATE, UPDATE, DELETE, NONE = "create", "update", "delete", "none"

READ_ACL = "X-Container-Read"
QUOTA = "X-Container-Meta-Quota-Bytes"
VERSIONS = "X-Versions-Enabled"
PUBLIC_READ_ACL = ".r:*,.rlistings"
MAX_QUOTA = 2**63 - 1
# Swift's config_true_value.
_TRUE = ("true", "1", "yes", "on", "t", "y")
# s3api keeps the parts of multipart uploads in a container of this name beside the bucket.
SEGMENTS_SUFFIX = "+segments"

_BUCKET_CHARS = re.compile(r"^[a-z0-9.-]+$")
_IPV4 = re.compile(r"^(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
                   r"(\.(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])){3}$")
# Reserved by S3; refused here so a bucket keeps its name if it ever moves to AWS.
RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")


def bucket_name(value):
    """An S3 bucket name (AWS's general-purpose bucket rules, which s3api's DNS-compliant
    check also applies); raises InvalidInput naming the rule that failed."""
    if not isinstance(value, str):
        raise InvalidInput(f"invalid bucket name {value!r}: expected a string")
    rule = None
    if not 3 <= len(value) <= 63:
        rule = f"must be 3-63 characters long, not {len(value)}"
    elif not _BUCKET_CHARS.match(value):
        rule = "may contain only lower-case letters, digits, '.' and '-'"
    elif not (value[0].isalnum() and value[-1].isalnum()):
        rule = "must start and end with a letter or digit"
    elif ".." in value:
        rule = "must not contain '..'"
    elif ".-" in value or "-." in value:
        rule = "must not have '-' next to '.'"
    elif _IPV4.match(value):
        rule = "must not be formatted as an IPv4 address"
    elif value.startswith(RESERVED_PREFIXES):
        rule = f"must not start with {', '.join(RESERVED_PREFIXES)} (reserved by S3)"
    elif value.endswith(RESERVED_SUFFIXES):
        rule = f"must not end with {', '.join(RESERVED_SUFFIXES)} (reserved by S3)"
    if rule:
        raise InvalidInput(f"invalid bucket name {value!r}: {rule}")
    return value


# ---------------------------------------------------------------------------------------------
# Desired and current state


@dataclass(frozen=True)
class DesiredBucket:
    """A validated request (``resolve_desired``)."""

    name: str
    account: str
    state: str = PRESENT
    acl: str = PRIVATE
    quota_bytes: int = 0
    versioning: bool = False
    force: bool = False
    force_hint: str = "force: true"  # how the caller spells force (the CLI: --force)


@dataclass(frozen=True)
class BucketState:
    """A container as its HEAD headers describe it, normalised."""

    acl: str                      # private, public-read, or the read ACL as Swift has it
    read_acl: str | None          # X-Container-Read, None when unset
    quota_bytes: int | str | None  # None: no quota; a str when Swift holds a non-number
    versioning: bool | None       # None: never enabled; False: suspended
    objects: int = 0
    bytes: int = 0


@dataclass(frozen=True)
class BucketPlan:
    """What to do (``action``), the headers that do it, why, and the diff it makes."""

    action: str
    set_headers: dict = field(default_factory=dict)
    remove_headers: tuple = ()
    purge: bool = False           # delete the objects (and old versions) before the bucket
    reasons: tuple = ()
    before: dict = field(default_factory=dict)
    after: dict = field(default_factory=dict)

    def headers(self):
        """Request headers: the values to set, and ``X-Remove-*: x`` for those to remove."""
        out = dict(self.set_headers)
        for name in self.remove_headers:
            out["X-Remove-" + name[len("X-"):]] = "x"
        return out


def resolve_desired(name, account, state=PRESENT, acl=PRIVATE, quota_bytes=0, versioning=False,
                    force=False, force_hint="force: true"):
    """Validate a request; InvalidInput with one line for the first problem."""
    bucket_name(name)
    resource_name(account, "account")
    if state not in (PRESENT, ABSENT):
        raise InvalidInput(f"invalid state {state!r}: expected present or absent")
    if acl not in (PRIVATE, PUBLIC_READ):
        raise InvalidInput(f"invalid acl {acl!r}: expected private or public-read")
    quota = bounded_int(0 if quota_bytes is None else quota_bytes, "quota_bytes", 0, MAX_QUOTA)
    for what, flag in (("versioning", versioning), ("force", force)):
        if not isinstance(flag, bool):
            raise InvalidInput(f"invalid {what} {flag!r}: expected true or false")
    return DesiredBucket(name=name, account=account, state=state, acl=acl, quota_bytes=quota,
                         versioning=versioning, force=force, force_hint=force_hint)


def read_state(headers):
    """The BucketState of a container's HEAD headers (any case), or None for None."""
    if headers is None:
        return None
    h = {str(k).lower(): str(v).strip() for k, v in headers.items()}
    read_acl = h.get(READ_ACL.lower()) or None
    quota = h.get(QUOTA.lower()) or None
    if quota is not None and quota.isdigit():
        quota = int(quota)
    enabled = h.get(VERSIONS.lower())
    return BucketState(
        acl=_acl_name(read_acl),
        read_acl=read_acl,
        quota_bytes=quota,
        versioning=None if enabled is None else enabled.lower() in _TRUE,
        objects=_count(h.get("x-container-object-count")),
        bytes=_count(h.get("x-container-bytes-used")),
    )


def _acl_name(read_acl):
    if read_acl is None:
        return PRIVATE
    elements = {part.strip() for part in read_acl.split(",") if part.strip()}
    return PUBLIC_READ if elements == set(PUBLIC_READ_ACL.split(",")) else read_acl


def _count(value):
    return int(value) if value and value.isdigit() else 0


def describe(desired, current):
    """Normalised view of a bucket for diffs (``current`` a BucketState or None)."""
    out = {"name": desired.name, "account": desired.account}
    if current is None:
        return dict(out, state=ABSENT)
    quota = 0 if current.quota_bytes is None else current.quota_bytes
    return dict(out, state=PRESENT, acl=current.acl, quota_bytes=quota,
                versioning=current.versioning is True)


# ---------------------------------------------------------------------------------------------
# Plan (pure)


def plan_bucket(current_headers, desired):
    """The BucketPlan that takes a container (its HEAD headers, or None when missing) to
    ``desired``. Raises Conflict for deleting a non-empty bucket without ``force``."""
    current = read_state(current_headers)
    before = describe(desired, current)
    if desired.state == ABSENT:
        return _plan_absent(current, desired, before)
    sets, removes, reasons = {}, [], []
    if current is None:
        reasons.append("the bucket does not exist")
        current = BucketState(acl=PRIVATE, read_acl=None, quota_bytes=None, versioning=None)
        action = CREATE
    else:
        action = UPDATE
    if desired.acl == PUBLIC_READ and current.acl != PUBLIC_READ:
        sets[READ_ACL] = PUBLIC_READ_ACL
        reasons.append(f"acl {current.acl} -> public-read")
    elif desired.acl == PRIVATE and current.read_acl is not None:
        removes.append(READ_ACL)
        reasons.append(f"acl {current.acl} -> private")
    want_quota = desired.quota_bytes or None
    if want_quota is None and current.quota_bytes is not None:
        removes.append(QUOTA)
        reasons.append(f"quota_bytes {current.quota_bytes} -> none")
    elif want_quota is not None and current.quota_bytes != want_quota:
        sets[QUOTA] = str(want_quota)
        have = "none" if current.quota_bytes is None else current.quota_bytes
        reasons.append(f"quota_bytes {have} -> {want_quota}")
    if desired.versioning and current.versioning is not True:
        sets[VERSIONS] = "true"
        reasons.append("versioning enabled")
    elif not desired.versioning and current.versioning is True:
        sets[VERSIONS] = "false"
        reasons.append("versioning suspended (old versions are kept; Swift cannot remove "
                       "versioning once enabled)")
    if action == UPDATE and not (sets or removes):
        return BucketPlan(NONE, reasons=("the bucket is as desired",), before=before,
                          after=before)
    after = dict(before, state=PRESENT, acl=desired.acl, quota_bytes=desired.quota_bytes,
                 versioning=desired.versioning)
    return BucketPlan(action, set_headers=sets, remove_headers=tuple(removes),
                      reasons=tuple(reasons), before=before, after=after)


def _plan_absent(current, desired, before):
    if current is None:
        return BucketPlan(NONE, reasons=("the bucket does not exist",), before=before,
                          after=before)
    # bytes counts old versions too (object_versioning adds them): no objects may still hold data
    full = current.objects > 0 or current.bytes > 0
    if full and not desired.force:
        raise Conflict(f"bucket {desired.name} in account {desired.account} is not empty "
                       f"({current.objects} objects, {current.bytes} bytes, old versions "
                       f"included); {desired.force_hint} deletes them with the bucket")
    purge = desired.force and (full or current.versioning is not None)
    reason = "the bucket exists" + (" (its objects are deleted first)" if purge else "")
    return BucketPlan(DELETE, purge=purge, reasons=(reason,), before=before,
                      after=describe(desired, None))


# ---------------------------------------------------------------------------------------------
# Reconcile (I/O through the session)


def bucket_facts(desired, state):
    """The ``bucket`` return value of stack_bucket (``state`` a BucketState or None)."""
    facts = describe(desired, state)
    if state is None:
        facts.update(acl=None, quota_bytes=None, versioning=None)
    facts.update(objects=state.objects if state else 0, bytes=state.bytes if state else 0)
    return facts


def reconcile(session, desired, check=False):
    """Read, plan, and unless ``check`` or nothing to do, apply and read again.

    Returns ``{"changed", "action", "reasons", "purged", "diff", "bucket"}``.
    """
    account, name = desired.account, desired.name
    headers = session.head_container(account, name)
    plan = plan_bucket(headers, desired)
    current = read_state(headers)
    segments = _segments(session, desired) if plan.action == DELETE else None
    purged = 0
    if plan.action == NONE:
        final = current
    elif check:
        final = _projected(plan, current)
    elif plan.action == DELETE:
        purged = _delete(session, desired, plan, current, segments)
        final = None
    else:
        if plan.action == CREATE:
            session.put_container(account, name, plan.headers())
        else:
            session.post_container(account, name, plan.headers())
        final = _verify(session, desired)
    return {"changed": plan.action != NONE, "action": plan.action,
            "reasons": list(plan.reasons), "purged": purged,
            "diff": {"before": plan.before, "after": plan.after},
            "bucket": bucket_facts(desired, final)}


def _projected(plan, current):
    if plan.after["state"] == ABSENT:
        return None
    return BucketState(acl=plan.after["acl"], read_acl=None,
                       quota_bytes=plan.after["quota_bytes"] or None,
                       versioning=plan.after["versioning"],
                       objects=current.objects if current else 0,
                       bytes=current.bytes if current else 0)


def _verify(session, desired):
    """Read the bucket again; Swift drops headers whose middleware is missing, so check."""
    headers = session.head_container(desired.account, desired.name)
    if headers is None:
        raise BackendError(f"bucket {desired.name} in account {desired.account}: Swift "
                           "accepted the request but the container does not exist")
    again = plan_bucket(headers, desired)
    if again.action != NONE:
        hint = ""
        if VERSIONS in again.set_headers:
            hint = (" (object versioning needs allow_object_versioning = true in the proxy's "
                    "versioned_writes filter)")
        raise BackendError(f"bucket {desired.name} in account {desired.account}: Swift did not "
                           f"apply: {'; '.join(again.reasons)}{hint}")
    return read_state(headers)


def _segments(session, desired):
    """The state of s3api's segments container beside the bucket (None when there is none);
    Conflict when it holds parts of unfinished multipart uploads and ``force`` is not set."""
    segments = desired.name + SEGMENTS_SUFFIX
    state = read_state(session.head_container(desired.account, segments))
    if state is not None and state.objects and not desired.force:
        raise Conflict(f"bucket {desired.name} in account {desired.account} has unfinished "
                       f"multipart uploads ({state.objects} parts in {segments}); "
                       f"{desired.force_hint} deletes them")
    return state


def _delete(session, desired, plan, current, segments):
    """Delete the bucket (its objects first with force), then s3api's segments container."""
    account, name = desired.account, desired.name
    purged = _purge(session, account, name, current) if plan.purge else 0
    try:
        session.delete_container(account, name)
    except Conflict as err:
        why = ("objects were written while it was emptied" if desired.force
               else f"it holds objects or old versions; {desired.force_hint} deletes them")
        raise Conflict(f"{err} (bucket {name}: {why})") from None
    if segments is not None:
        container = name + SEGMENTS_SUFFIX
        if desired.force:
            purged += _purge(session, account, container, segments)
        session.delete_container(account, container)
    return purged


def _purge(session, account, container, state):
    """Delete every object of a container, old versions and delete markers included."""
    deleted = 0
    if state.versioning is not None:
        if state.versioning:
            # Suspended first, so deleting the current objects leaves no delete markers.
            session.post_container(account, container, {VERSIONS: "false"})
        for obj, version_id in session.list_object_versions(account, container):
            deleted += session.delete_object(account, container, obj, version_id=version_id)
    for obj in session.list_objects(account, container):
        deleted += session.delete_object(account, container, obj)
    return deleted
