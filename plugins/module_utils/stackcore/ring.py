"""Swift rings for ``stack_ring``: desired state, a pure plan, and one reconcile over Swift's own
``RingBuilder`` (``swift.common.ring``, imported lazily so the rest of stackcore works without it).

Files: ``<swift_dir>/<name>.builder`` (the builder, Swift's pickle) and
``<swift_dir>/<name>.ring.gz`` (the ring the servers read). Swift writes ring files with a fixed
gzip mtime, so the same ring data gives the same bytes: the md5 of ``.ring.gz`` is how rings
are compared across nodes.

A device is identified by (ip, port, device). Swift places replicas by (region, zone), so moving a
device to another zone or region is a remove plus an add. The partition power of an existing ring
is never changed here: Swift needs its partition-power-increase procedure for that.
"""

import copy
import hashlib
import os
import tempfile
from dataclasses import asdict

from .errors import BackendError, Conflict, NotFound
from .fileio import atomic_path, fsync_dir
from .ring_plan import (
    ADD_DEVICE,
    BALANCE_SLACK,
    CREATE,
    DEFAULT_MIN_PART_HOURS,
    DEFAULT_REPLICAS,
    REBALANCE,
    REMOVE_DEVICE,
    SAVE_BUILDER,
    SET_META,
    SET_MIN_PART_HOURS,
    SET_REPLICAS,
    SET_WEIGHT,
    WRITE_RING,
    Device,
    RingState,
    plan_ring,
    resolve_desired,
)

# ---------------------------------------------------------------------------------------------
# Swift


def import_ring():
    """``swift.common.ring`` (RingBuilder, RingData, Ring), or BackendError when not installed."""
    try:
        from swift.common import exceptions as swift_exceptions  # noqa: F401
        from swift.common import ring
    except ImportError as exc:
        raise BackendError(f"OpenStack Swift's Python package is needed to build rings "
                           f"(pip install 'swift>=2.38'): {exc}") from exc
    return ring


def paths(swift_dir, name):
    """(builder file, ring file) of ring ``name``."""
    return (os.path.join(swift_dir, f"{name}.builder"),
            os.path.join(swift_dir, f"{name}.ring.gz"))


def rebalance_seed(name):
    """A fixed seed per ring name: the same builder and request give the same ring everywhere."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big")


def load_builder(swift_dir, name):
    """The RingBuilder of ring ``name``, or None when it has no builder file."""
    ring = import_ring()
    from swift.common import exceptions as swift_exceptions

    builder_file, _ = paths(swift_dir, name)
    if not os.path.isdir(swift_dir):
        raise NotFound(f"swift_dir {swift_dir} does not exist")
    if not os.path.exists(builder_file):
        return None
    try:
        return ring.RingBuilder.load(builder_file)
    except (swift_exceptions.RingBuilderError, OSError) as exc:
        raise BackendError(f"cannot load {builder_file}: {exc}") from exc


def builder_devices(builder):
    """The devices of a builder (those pending removal left out), sorted by identity."""
    removing = {dev["id"] for dev in builder._remove_devs}
    devices = [
        Device(ip=dev["ip"], port=int(dev["port"]), device=dev["device"], zone=int(dev["zone"]),
               weight=float(dev["weight"]), region=int(dev.get("region", 1)),
               meta=dev.get("meta", ""), id=dev["id"])
        for dev in builder.devs if dev is not None and dev["id"] not in removing
    ]
    return tuple(sorted(devices, key=lambda d: d.key))


def read_state(builder, name, ring_file):
    """The RingState of a loaded builder (None for None); compares the ring file with it."""
    if builder is None:
        return None
    devices = builder_devices(builder)
    keys = [dev.key for dev in devices]
    if len(set(keys)) != len(keys):
        raise Conflict(f"ring {name}: the builder lists a device twice (same ip, port, device); "
                       "fix it with swift-ring-builder")
    rebalanced = builder.ever_rebalanced
    pending = builder.devs_changed or bool(builder._remove_devs) or (
        not rebalanced and bool(devices))
    balance = builder.get_balance() if rebalanced and devices else 0.0
    return RingState(
        name=name,
        part_power=builder.part_power,
        replicas=float(builder.replicas),
        min_part_hours=builder.min_part_hours,
        devices=devices,
        pending=pending,
        rebalance_due=rebalanced and not pending and _rebalance_would_help(builder, name),
        ring_current=rebalanced and file_md5(ring_file) == ring_md5(builder, ring_file),
        balance=balance,
        min_part_seconds_left=builder.min_part_seconds_left,
        next_part_power=builder.next_part_power,
    )


def _rebalance_would_help(builder, name):
    """Whether an earlier rebalance left the ring unbalanced and one now would improve it (by
    Swift's own 1 % rule). Only tried once min_part_hours has passed; on a copy."""
    if builder.min_part_seconds_left > 0 or not any(d for d in builder.devs):
        return False
    before = builder.get_balance()
    if before < BALANCE_SLACK:
        return False
    trial = copy.deepcopy(builder)
    moved, after, _ = _rebalance(trial, name)
    return moved > 0 and abs(before - after) >= BALANCE_SLACK


def _rebalance(builder, name):
    from swift.common import exceptions as swift_exceptions

    try:
        return builder.rebalance(seed=rebalance_seed(name))
    except swift_exceptions.RingBuilderError as exc:
        raise BackendError(f"ring {name}: rebalance failed: {exc}") from exc


def file_md5(path):
    """md5 hex digest of a file, or None when it does not exist."""
    try:
        with open(path, "rb") as f:
            return hashlib.md5(f.read(), usedforsecurity=False).hexdigest()
    except FileNotFoundError:
        return None


def ring_md5(builder, ring_file):
    """md5 of the ring file the builder would write now (written to a private temp dir: Swift
    puts the file's base name in the gzip header, so the name must match)."""
    with tempfile.TemporaryDirectory(prefix="stackctl-ring-") as tmp:
        path = os.path.join(tmp, os.path.basename(ring_file))
        builder.get_ring().save(path)
        return file_md5(path)


def apply_actions(builder, desired, actions):
    """Carry out the edit and rebalance actions on ``builder`` (a new one for CREATE), in memory.

    Returns (builder, partition replicas moved, balance after; None, None without a rebalance).
    """
    moved = balance = None
    for action in actions:
        if action.kind == CREATE:
            ring = import_ring()
            replicas = desired.replicas if desired.replicas is not None else DEFAULT_REPLICAS
            hours = desired.min_part_hours
            builder = ring.RingBuilder(desired.part_power, replicas,
                                       DEFAULT_MIN_PART_HOURS if hours is None else hours)
        elif action.kind == SET_REPLICAS:
            builder.set_replicas(action.value)
        elif action.kind == SET_MIN_PART_HOURS:
            builder.change_min_part_hours(action.value)
        elif action.kind == REMOVE_DEVICE:
            builder.remove_dev(action.device.id)
        elif action.kind == ADD_DEVICE:
            dev = action.device
            builder.add_dev({"region": dev.region, "zone": dev.zone, "ip": dev.ip,
                             "port": dev.port, "device": dev.device, "weight": dev.weight,
                             "meta": dev.meta or "", "replication_ip": dev.ip,
                             "replication_port": dev.port})
        elif action.kind == SET_WEIGHT:
            builder.set_dev_weight(action.device.id, action.value)
        elif action.kind == SET_META:
            # No builder API for meta: swift-ring-builder's set_info edits the dict too.
            builder.devs[action.device.id]["meta"] = action.value
        elif action.kind == REBALANCE:
            moved, balance, _ = _rebalance(builder, desired.name)
    return builder, moved, balance


def save_builder(builder, builder_file):
    """Write the builder atomically (Swift's own save, into a temp file that is then renamed)."""
    with atomic_path(builder_file, 0o644) as tmp:
        builder.save(tmp)


def write_ring(builder, ring_file):
    """Write the ring file; Swift's RingData.save is atomic (temp in the dir, fsync, rename)."""
    builder.get_ring().save(ring_file)
    fsync_dir(os.path.dirname(ring_file))


# ---------------------------------------------------------------------------------------------
# Describe and reconcile


def describe(builder, name):
    """Normalised view of a builder for diffs (devices sorted by identity, with ids and parts)."""
    if builder is None:
        return {"name": name, "state": "absent"}
    parts = {dev["id"]: dev.get("parts", 0) for dev in builder.devs if dev is not None}
    devices = []
    for dev in builder_devices(builder):
        out = asdict(dev)
        out["parts"] = parts.get(dev.id, 0)
        devices.append(out)
    return {"name": name, "part_power": builder.part_power, "replicas": float(builder.replicas),
            "min_part_hours": builder.min_part_hours, "devices": devices}


def ring_facts(builder, desired, md5):
    """The ``ring`` return value of stack_ring."""
    builder_file, ring_file = paths(desired.swift_dir, desired.name)
    facts = describe(builder, desired.name)
    facts.pop("state", None)
    facts.update(builder=builder_file, ring_file=ring_file, md5=md5)
    balanced = builder is not None and builder.ever_rebalanced and any(builder.devs)
    facts["balance"] = round(builder.get_balance(), 2) if balanced else None
    facts.setdefault("devices", [])
    for key in ("part_power", "replicas", "min_part_hours"):
        facts.setdefault(key, None)
    return facts


def reconcile(params, check=False):
    """Read, plan, apply on an in-memory copy (also in check mode, so the rebalance is real),
    and, unless ``check`` or nothing to do, write. One place for all of it.

    ``params``: keyword arguments of ``resolve_desired``. Returns ``{"changed", "actions",
    "parts_moved", "min_part_hours_blocked", "min_part_seconds_left", "diff", "ring"}``.
    """
    desired = resolve_desired(**params)
    builder_file, ring_file = paths(desired.swift_dir, desired.name)
    builder = load_builder(desired.swift_dir, desired.name)
    try:
        current = read_state(builder, desired.name, ring_file)
        actions = plan_ring(current, desired)
        work = copy.deepcopy(builder)
        work, moved, balance = apply_actions(work, desired, actions)
        kinds = {a.kind for a in actions}
        md5 = file_md5(ring_file)
        if WRITE_RING in kinds:
            md5 = ring_md5(work, ring_file)
        if actions and not check:
            if SAVE_BUILDER in kinds:
                save_builder(work, builder_file)
            if WRITE_RING in kinds:
                write_ring(work, ring_file)
                md5 = file_md5(ring_file)
    except (OSError, ValueError, IndexError) as exc:
        raise BackendError(f"ring {desired.name}: {exc}") from exc
    seconds_left = work.min_part_seconds_left if work is not None else 0
    blocked = moved is not None and balance >= BALANCE_SLACK and seconds_left > 0
    return {
        "changed": bool(actions),
        "actions": [a.as_dict() for a in actions],
        "parts_moved": moved or 0,
        "min_part_hours_blocked": blocked,
        "min_part_seconds_left": seconds_left,
        "diff": {"before": describe(builder, desired.name),
                 "after": describe(work, desired.name)},
        "ring": ring_facts(work, desired, md5),
    }
