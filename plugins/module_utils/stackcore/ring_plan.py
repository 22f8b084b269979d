"""The pure half of ``stack_ring``: desired rings validated from module parameters, and
``plan_ring(current, desired) -> actions`` (no Swift import, no I/O; tested by tables).
``stackcore.ring`` applies the plan with Swift's ``RingBuilder``."""

import ipaddress
import math
import os
import re
from dataclasses import dataclass, field, replace

from .errors import Conflict, InvalidInput

DEFAULT_SWIFT_DIR = "/etc/swift"
DEFAULT_REPLICAS = 3.0
DEFAULT_MIN_PART_HOURS = 1
# Swift's own threshold: a rebalance that changes balance by less than 1 % is not worth saving.
BALANCE_SLACK = 1.0

_RING_NAME = re.compile(r"^(account|container|object|object-[1-9][0-9]{0,3})$")
_DEVICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$")

# Action kinds, in the order plan_ring emits them.
CREATE = "create"                      # a new RingBuilder(part_power, replicas, min_part_hours)
SET_REPLICAS = "set_replicas"
SET_MIN_PART_HOURS = "set_min_part_hours"
REMOVE_DEVICE = "remove_device"
ADD_DEVICE = "add_device"
SET_WEIGHT = "set_weight"
SET_META = "set_meta"                  # no placement change: only the ring's device list
REBALANCE = "rebalance"
SAVE_BUILDER = "save_builder"
WRITE_RING = "write_ring"
PLACEMENT = (CREATE, SET_REPLICAS, REMOVE_DEVICE, ADD_DEVICE, SET_WEIGHT)


@dataclass(frozen=True)
class Device:
    """One ring device, normalised. ``id`` is Swift's device id (None until the builder adds it);
    it is not part of equality, the identity is ``key`` = (ip, port, device)."""

    ip: str
    port: int
    device: str
    zone: int
    weight: float
    region: int = 1
    meta: str | None = None  # None in a desired device: leave the ring's meta as it is
    id: int | None = field(default=None, compare=False)

    @property
    def key(self):
        return (self.ip, self.port, self.device)

    def label(self):
        """Swift's way of writing a device: r1z2-127.0.0.1:6200/sdb."""
        return f"r{self.region}z{self.zone}-{self.ip}:{self.port}/{self.device}"


@dataclass(frozen=True)
class DesiredRing:
    """What the caller asked for, validated; None means "keep what the ring has"."""

    name: str
    swift_dir: str = DEFAULT_SWIFT_DIR
    part_power: int | None = None
    replicas: float | None = None
    min_part_hours: int | None = None
    devices: tuple[Device, ...] | None = None
    purge: bool = True          # devices the ring has but the request does not list are removed
    keep_weights: bool = False  # listed devices already in the ring keep their ring weight


@dataclass(frozen=True)
class RingState:
    """A builder as it is on disk, plus the facts the plan needs about its ring file."""

    name: str
    part_power: int
    replicas: float
    min_part_hours: int
    devices: tuple[Device, ...]
    pending: bool = False           # the builder holds changes no rebalance has placed yet
    rebalance_due: bool = False     # min_part_hours has passed and a rebalance would improve it
    ring_current: bool = True       # <name>.ring.gz exists and is exactly the builder's ring
    balance: float = 0.0
    min_part_seconds_left: int = 0
    next_part_power: int | None = None


@dataclass(frozen=True)
class Action:
    """One builder step, with why it is needed."""

    kind: str
    reason: str
    device: Device | None = None
    value: float | int | None = None

    def as_dict(self):
        out = {"action": self.kind, "reason": self.reason}
        if self.device is not None:
            out["device"] = self.device.label()
        if self.value is not None:
            out["value"] = self.value
        return out


# ---------------------------------------------------------------------------------------------
# Desired state (pure validation, before anything is touched)


def resolve_desired(name, swift_dir=DEFAULT_SWIFT_DIR, part_power=None, replicas=None,
                    min_part_hours=None, devices=None, purge=True, keep_weights=False):
    """Validate a request; raise InvalidInput with one clear line for the first problem.

    ``purge=False`` and ``keep_weights=True`` make ``devices`` a floor rather than the whole
    truth: listed devices are added when missing, everything else the ring has stays as it is
    (how the roles seed a ring that ``stackctl storage device`` then manages).
    """
    if not isinstance(name, str) or not _RING_NAME.match(name):
        raise InvalidInput(f"invalid ring name {name!r}: expected account, container, object "
                           "or object-N (a storage policy index)")
    if not isinstance(swift_dir, str) or not os.path.isabs(swift_dir):
        raise InvalidInput(f"invalid swift_dir {swift_dir!r}: expected an absolute path")
    if part_power is not None:
        part_power = _number(part_power, "part_power", 1, 32, whole=True)
    if replicas is not None:
        replicas = float(_number(replicas, "replicas", 1, 255))
    if min_part_hours is not None:
        # Swift counts hours since a partition moved in one byte: 255 means "never again".
        min_part_hours = _number(min_part_hours, "min_part_hours", 0, 255, whole=True)
    if devices is not None:
        devices = tuple(_device(dev, i) for i, dev in enumerate(devices))
        seen = set()
        for dev in devices:
            if dev.key in seen:
                raise InvalidInput(f"device {dev.ip}:{dev.port}/{dev.device} is listed twice")
            seen.add(dev.key)
    return DesiredRing(name=name, swift_dir=os.path.normpath(swift_dir), part_power=part_power,
                       replicas=replicas, min_part_hours=min_part_hours, devices=devices,
                       purge=bool(purge), keep_weights=bool(keep_weights))


def _number(value, what, low, high, whole=False):
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInput(f"invalid {what} {value!r}: expected a number")
    if whole and value != int(value):
        raise InvalidInput(f"invalid {what} {value!r}: expected a whole number")
    if not low <= value <= high:
        raise InvalidInput(f"invalid {what} {value}: must be between {low} and {high}")
    return int(value) if whole else value


def _device(dev, index):
    if not isinstance(dev, dict):
        raise InvalidInput(f"devices[{index}]: expected a dict, got {type(dev).__name__}")
    missing = [k for k in ("ip", "port", "device", "zone", "weight") if dev.get(k) is None]
    if missing:
        raise InvalidInput(f"devices[{index}]: missing {', '.join(missing)}")
    unknown = set(dev) - {"ip", "port", "device", "zone", "weight", "region", "meta"}
    if unknown:
        raise InvalidInput(f"devices[{index}]: unknown keys {', '.join(sorted(unknown))}")
    where = f"devices[{index}]"
    name = dev["device"]
    if not isinstance(name, str) or not _DEVICE_NAME.match(name) or ".." in name:
        raise InvalidInput(f"{where}: invalid device name {name!r}: use 1-64 letters, digits, "
                           "'.', '_', ':' or '-', starting with a letter or digit, no '/' or '..'")
    meta = dev.get("meta")
    if meta is not None and not isinstance(meta, str):
        raise InvalidInput(f"{where}: meta must be a string")
    region = dev.get("region")
    return Device(
        ip=_address(dev["ip"], where),
        port=_number(dev["port"], f"{where} port", 1, 65535, whole=True),
        device=name,
        zone=_number(dev["zone"], f"{where} zone", 0, 2**31 - 1, whole=True),
        region=_number(1 if region is None else region, f"{where} region", 0, 2**31 - 1,
                       whole=True),
        weight=float(_number(dev["weight"], f"{where} weight", 0, 1e9)),
        meta=meta,
    )


def _address(value, where):
    """Swift's normalisation: IP addresses in canonical form, host names lower-case."""
    if not isinstance(value, str):
        raise InvalidInput(f"{where}: invalid ip {value!r}")
    try:
        return str(ipaddress.ip_address(value.strip("[]")))
    except ValueError:
        pass
    if _HOSTNAME.match(value.lower()):
        return value.lower()
    raise InvalidInput(f"{where}: invalid ip {value!r}: expected an IP address or a host name")


# ---------------------------------------------------------------------------------------------
# Plan (pure)


def plan_ring(current, desired):
    """The builder actions that take ``current`` (RingState or None) to ``desired``.

    Raises InvalidInput for requests Swift cannot do this way (a partition power change, too few
    devices for the replica count) and Conflict for a ring in the middle of a power increase.
    """
    actions = []
    if current is None:
        actions.append(_create(desired))
        have = {}
    else:
        if current.next_part_power is not None:
            raise Conflict(f"ring {desired.name}: a partition power increase is in progress; "
                           "finish or cancel it with swift-ring-builder first")
        if desired.part_power is not None and desired.part_power != current.part_power:
            raise InvalidInput(
                f"ring {desired.name}: part_power is {current.part_power}, asked for "
                f"{desired.part_power}; an existing ring's partition power changes only through "
                "Swift's partition power increase procedure, not by this module")
        if desired.replicas is not None and desired.replicas != current.replicas:
            actions.append(Action(SET_REPLICAS, f"replicas {current.replicas:g} -> "
                                  f"{desired.replicas:g}", value=desired.replicas))
        if desired.min_part_hours is not None and desired.min_part_hours != current.min_part_hours:
            actions.append(Action(SET_MIN_PART_HOURS, f"min_part_hours {current.min_part_hours} "
                                  f"-> {desired.min_part_hours}", value=desired.min_part_hours))
        have = {dev.key: dev for dev in current.devices}
    if desired.devices is not None:
        actions += _device_actions(have, desired.devices, desired.purge, desired.keep_weights)
    _check_enough_devices(current, desired)
    return actions + _finish(current, actions)


def _create(desired):
    if desired.part_power is None:
        raise InvalidInput(f"ring {desired.name}: part_power is required to create the ring")
    if not desired.devices:
        raise InvalidInput(f"ring {desired.name}: devices are required to create the ring")
    replicas = desired.replicas if desired.replicas is not None else DEFAULT_REPLICAS
    hours = desired.min_part_hours
    hours = DEFAULT_MIN_PART_HOURS if hours is None else hours
    return Action(CREATE, f"no builder: part_power {desired.part_power}, replicas {replicas:g}, "
                  f"min_part_hours {hours}", value=desired.part_power)


def _device_actions(have, wanted, purge=True, keep_weights=False):
    removes, adds, weights, metas = [], [], [], []
    wanted_keys = {dev.key for dev in wanted}
    for key in sorted(set(have) - wanted_keys) if purge else ():
        removes.append(Action(REMOVE_DEVICE, "not in the desired devices", device=have[key]))
    for dev in wanted:
        old = have.get(dev.key)
        if old is None:
            adds.append(Action(ADD_DEVICE, f"new device, weight {dev.weight:g}",
                               device=_with_meta(dev, "")))
        elif (old.region, old.zone) != (dev.region, dev.zone):
            why = (f"moves from r{old.region}z{old.zone} to r{dev.region}z{dev.zone}: Swift places "
                   "replicas by region and zone, so the device is removed and added again "
                   "(its partitions move)")
            removes.append(Action(REMOVE_DEVICE, why, device=old))
            adds.append(Action(ADD_DEVICE, why, device=_with_meta(dev, old.meta)))
        else:
            if old.weight != dev.weight and not keep_weights:
                weights.append(Action(SET_WEIGHT, f"weight {old.weight:g} -> {dev.weight:g}",
                                      device=old, value=dev.weight))
            if dev.meta is not None and dev.meta != old.meta:
                metas.append(Action(SET_META, f"meta {old.meta!r} -> {dev.meta!r}",
                                    device=old, value=dev.meta))
    return removes + adds + weights + metas


def _with_meta(dev, default):
    return dev if dev.meta is not None else replace(dev, meta=default or "")


def _check_enough_devices(current, desired):
    replicas = desired.replicas
    if replicas is None:
        replicas = current.replicas if current is not None else DEFAULT_REPLICAS
    devices = desired.devices if desired.devices is not None else current.devices
    if current is not None and desired.devices is not None:
        have = {dev.key: dev for dev in current.devices}
        if desired.keep_weights:  # a listed device the ring has keeps the ring's weight
            devices = tuple(
                replace(dev, weight=have[dev.key].weight)
                if dev.key in have and (have[dev.key].region, have[dev.key].zone)
                == (dev.region, dev.zone) else dev for dev in devices)
        if not desired.purge:
            listed = {dev.key for dev in desired.devices}
            devices = tuple(devices) + tuple(d for d in current.devices if d.key not in listed)
    weighted = sum(1 for dev in devices if dev.weight > 0)
    if weighted < replicas:
        raise InvalidInput(f"ring {desired.name}: {replicas:g} replicas need at least "
                           f"{math.ceil(replicas)} devices with a weight above 0, got {weighted}")


def _finish(current, actions):
    """Rebalance, save and write steps that follow the edits."""
    placement = [a for a in actions if a.kind in PLACEMENT]
    tail = []
    if placement:
        tail.append(Action(REBALANCE, "placement changed: " + ", ".join(
            sorted({a.kind for a in placement}))))
    elif current is not None and current.pending:
        tail.append(Action(REBALANCE, "the builder has changes no rebalance has placed yet"))
    elif current is not None and current.rebalance_due:
        tail.append(Action(REBALANCE, f"balance is {current.balance:.2f}% after a rebalance "
                           "limited by min_part_hours; that time has passed"))
    if actions or tail:
        tail.append(Action(SAVE_BUILDER, "the builder changed"))
    kinds = {a.kind for a in actions + tail}
    if REBALANCE in kinds or SET_META in kinds:
        tail.append(Action(WRITE_RING, "the ring changed"))
    elif current is not None and not current.ring_current:
        tail.append(Action(WRITE_RING, "the ring file is missing or differs from its builder"))
    return tail
