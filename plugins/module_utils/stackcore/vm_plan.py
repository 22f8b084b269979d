"""Planning a VM: pure data in (current state, desired state), a list of actions out.

Nothing here touches a host; ``vm_ops`` reads the state and applies the actions.
Power states use the user's words: running, paused, stopped, crashed, absent.
"""

import hashlib
import os
from dataclasses import dataclass, field, replace

from .domain import DomainSpec
from .errors import Conflict, InvalidInput, NotFound

GIB = 1024**3
STATES = ("present", "running", "stopped", "absent")
ON = ("running", "paused")  # QEMU process alive


@dataclass(frozen=True)
class VmPaths:
    """Where a VM's files live: ``<instance_dir>/<domain>/``."""

    instance_dir: str
    name: str

    @property
    def dir(self):
        return os.path.join(self.instance_dir, self.name)

    @property
    def disk(self):
        return os.path.join(self.dir, "disk.qcow2")

    @property
    def seed(self):
        return os.path.join(self.dir, "seed.iso")

    @property
    def console_log(self):
        return os.path.join(self.dir, "console.log")


@dataclass(frozen=True)
class DiskInfo:
    """What ``qemu-img info`` says about an image."""

    virtual_bytes: int
    format: str
    backing: str | None = None


@dataclass(frozen=True)
class VmState:
    """What is there now. ``spec`` is the persistent definition (what the next boot uses);
    ``live_spec`` the running one, when it differs that is a pending restart."""

    power: str = "absent"
    spec: DomainSpec | None = None
    live_spec: DomainSpec | None = None
    persistent: bool = True
    dir_exists: bool = False
    disk: DiskInfo | None = None
    seed_digest: str | None = None
    image: DiskInfo | None = None  # the requested base image, None if missing/not asked


@dataclass(frozen=True)
class VmDesired:
    """What the caller asked for. ``spec`` None means "power only": keep the definition,
    disk and seed as they are and only move the power state."""

    state: str
    spec: DomainSpec | None = None
    disk_bytes: int | None = None
    image: str | None = None
    image_format: str | None = None
    seed: bytes | None = None

    @property
    def seed_digest(self):
        return None if self.seed is None else hashlib.sha256(self.seed).hexdigest()


@dataclass(frozen=True)
class Action:
    """One step of a plan: ``kind`` says what, ``reason`` why (shown to the user)."""

    kind: str
    reason: str
    args: dict = field(default_factory=dict, compare=False)

    def __str__(self):
        return f"{self.kind}: {self.reason}"


def plan_vm(current, desired):
    """The actions that take ``current`` to ``desired``, in order; [] when nothing to do.

    Raises InvalidInput (shrinking a disk, missing parameters), NotFound (no domain for a
    power-only request, no base image) or Conflict (the name belongs to another uuid, the
    disk has another base image) before anything is touched.
    """
    if desired.state not in STATES:
        raise InvalidInput(f"invalid state {desired.state!r}: use one of {STATES}")
    if desired.state == "absent":
        return _plan_absent(current)
    if desired.spec is None:
        if current.power == "absent":
            raise NotFound(
                "domain does not exist; give vcpus, memory_mb, disk_gb and image to create it"
            )
        return _plan_power(current.power, desired.state)
    _check_identity(current, desired)
    actions = []
    power = current.power
    if desired.state == "stopped":
        actions += _plan_power(power, "stopped")
        power = "stopped" if power != "absent" else power
    if not current.dir_exists:
        actions.append(Action("make_dir", "instance directory missing"))
    actions += _plan_disk(current, desired, online=power in ON)
    if current.seed_digest != desired.seed_digest:
        why = "seed missing" if current.seed_digest is None else "seed content changed"
        actions.append(Action("write_seed", why))
    if current.spec is None or current.spec != desired.spec or not current.persistent:
        actions.append(Action("define", _define_reason(current, desired.spec)))
    if desired.state == "running":
        actions += _plan_power("stopped" if power == "absent" else power, "running")
    return actions


def _plan_absent(current):
    actions = []
    if current.power in ("running", "paused", "crashed"):
        actions.append(Action("destroy_force", f"domain is {current.power}"))
    if current.power != "absent" and current.persistent:
        actions.append(Action("undefine", "domain defined"))
    if current.dir_exists:
        actions.append(Action("remove_files", "instance directory exists"))
    return actions


def _plan_power(power, state):
    if state == "running":
        return {
            "running": [],
            "paused": [Action("resume", "domain is paused")],
            "stopped": [Action("start", "domain is stopped")],
            "crashed": [Action("destroy_force", "domain crashed"),
                        Action("start", "domain crashed")],
        }[power]
    if state == "stopped":
        return {
            "running": [Action("shutdown", "domain is running")],
            # a paused guest cannot see the ACPI button
            "paused": [Action("destroy_force", "domain is paused")],
            "crashed": [Action("destroy_force", "domain crashed")],
        }.get(power, [])
    return []  # present: leave the power state alone


def _check_identity(current, desired):
    if current.spec is not None and current.spec.uuid != desired.spec.uuid:
        raise Conflict(
            f"domain {desired.spec.name} exists with uuid {current.spec.uuid}, "
            f"not {desired.spec.uuid}"
        )
    backing = current.disk and current.disk.backing
    if backing and desired.image and os.path.realpath(backing) != os.path.realpath(desired.image):
        raise Conflict(
            f"disk {desired.spec.disk} is based on {backing}, not {desired.image}; "
            "remove the VM (state=absent) to rebuild it from another image"
        )


def _plan_disk(current, desired, online):
    want = desired.disk_bytes
    if current.disk is None:
        if not desired.image:
            raise InvalidInput("image is required to create the VM's disk")
        if current.image is None:
            raise NotFound(f"base image {desired.image} does not exist")
        if desired.image_format and current.image.format != desired.image_format:
            raise InvalidInput(
                f"base image {desired.image} is {current.image.format}, "
                f"not {desired.image_format}"
            )
        if current.image.virtual_bytes > want:
            raise InvalidInput(
                f"disk_gb {want / GIB:g} is smaller than the image "
                f"({current.image.virtual_bytes / GIB:.2f} GiB)"
            )
        return [Action("create_disk", f"disk missing: {want // GIB} GiB overlay",
                       {"size_bytes": want})]
    have = current.disk.virtual_bytes
    if want < have:
        raise InvalidInput(
            f"refusing to shrink the disk from {have / GIB:g} GiB to {want / GIB:g} GiB "
            "(data would be lost)"
        )
    if want > have:
        how = "online" if online else "offline"
        return [Action("grow_disk", f"disk {have / GIB:g} -> {want / GIB:g} GiB ({how})",
                       {"size_bytes": want, "online": online})]
    return []


def _define_reason(current, spec):
    if current.spec is None:
        return "domain not defined"
    if not current.persistent:
        return "domain is transient"
    old, new = current.spec.as_dict(), spec.as_dict()
    changed = [f"{k} {old[k]!r} -> {new[k]!r}" for k in new if old[k] != new[k]]
    return "spec changed: " + ", ".join(changed)


def _disk_gb(nbytes):
    if nbytes is None:
        return None
    return nbytes // GIB if nbytes % GIB == 0 else round(nbytes / GIB, 2)


def state_view(state):
    """The diff's view of a VmState: normalised spec + power state + disk size + seed digest."""
    if state.power == "absent" and not state.dir_exists:
        return {"state": "absent"}
    view = dict(state.spec.as_dict()) if state.spec else {}
    view.update(state=state.power, disk_gb=_disk_gb(state.disk and state.disk.virtual_bytes),
                seed_sha256=state.seed_digest)
    return view


def expected_view(current, desired, actions):
    """The diff's view of the state the plan leads to (what check mode predicts)."""
    if desired.state == "absent":
        return {"state": "absent"}
    if desired.spec is None:
        view = state_view(current)
    else:
        view = dict(desired.spec.as_dict())
        disk = desired.disk_bytes
        view.update(disk_gb=_disk_gb(disk), seed_sha256=desired.seed_digest)
    power = {"running": "running", "stopped": "stopped"}.get(desired.state)
    if power is None:  # present
        power = "stopped" if current.power == "absent" else current.power
    view["state"] = power
    return view


# ---------------------------------------------------------------- rebuild (additive)

REBUILD_TOKEN_FILE = "rebuild-token"


def rebuild_token_path(paths):
    """``<instance dir>/rebuild-token``: the token of the last rebuild that recreated the disk."""
    return os.path.join(paths.dir, REBUILD_TOKEN_FILE)


def plan_rebuild(current, desired, token, seen):
    """``plan_vm``, preceded by discarding the disk when ``token`` asks for a rebuild.

    A rebuild recreates the root disk from ``desired.image`` (the old disk's data is gone) and
    keeps the domain's uuid, MAC and seed. ``token`` is the caller's id for this rebuild; once
    the new disk exists it is written beside it (``seen`` is what is there now), so running the
    same rebuild again (a recovery) does not wipe the disk a second time. None: no rebuild.
    """
    if token is None or token == seen or desired.spec is None or desired.state == "absent":
        return plan_vm(current, desired)
    if current.power == "absent" and current.disk is None:
        raise InvalidInput("nothing to rebuild: the domain and its disk do not exist")
    actions = []
    if current.power in ("running", "paused", "crashed"):
        actions.append(Action("destroy_force", "rebuild: the old disk is discarded"))
    if current.disk is not None:
        actions.append(Action("remove_disk", "rebuild: recreate the disk from the image"))
    power = "stopped" if current.power != "absent" else "absent"
    rest = plan_vm(replace(current, power=power, disk=None), desired)
    token_action = Action("write_rebuild_token", f"rebuild {token} done", {"token": token})
    at = next(i for i, a in enumerate(rest) if a.kind == "create_disk") + 1
    return actions + rest[:at] + [token_action] + rest[at:]
