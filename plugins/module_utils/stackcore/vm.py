"""Reconcile one VM (the core of ``stack_vm``): read current, build desired, plan, return
early in check mode or when there is nothing to do, otherwise apply and re-read.

    result = ensure_vm(VmRequest(name="stk-...", state="running", vcpus=1, ...), check=False)

The pieces live beside this file: ``vm_plan`` (pure planning, tested by tables), ``vm_ops``
(reading state and applying actions), ``vm_lock`` (the per-domain flock).
"""

import os
import re
import uuid as uuidlib
from dataclasses import dataclass, fields

from . import dhcp_host, validate
from .domain import DomainSpec, mac_for, normalise_mac, normalise_uuid
from .errors import BackendError, Conflict, InvalidInput, NotFound, StackError
from .libvirt_conn import DEFAULT_URI, connect, import_libvirt
from .seed import build_seed_iso
from .vm_lock import acquire
from .vm_ops import apply, current_lease, read_current, read_rebuild_token, wait_for_address
from .vm_plan import (
    GIB,
    ON,
    STATES,
    VmDesired,
    VmPaths,
    VmState,
    expected_view,
    plan_rebuild,
    plan_vm,
    state_view,
)

__all__ = ["VmRequest", "VmResult", "apply", "ensure_vm", "plan_vm", "read_current"]

STATE_ROOT = "/var/lib/stackctl"
DEFAULT_INSTANCE_DIR = f"{STATE_ROOT}/instances"
VIRT_STATE_FILE = f"{STATE_ROOT}/virt.json"
DEFAULT_NETWORK = "stack-provider"
# uuid5 namespace for domains whose uuid is neither given nor part of their name
UUID_NAMESPACE = uuidlib.UUID("5f0b9d0e-5c4b-4d8e-9a57-7a1f3d1e2c60")
_STK_NAME = re.compile(r"^stk-([0-9a-fA-F-]{36})$")


@dataclass(frozen=True)
class VmRequest:
    """The parameters of ``stack_vm`` (see contracts.md). Spec fields left None: when all of
    them are None the request only moves the power state of an existing domain."""

    name: str
    state: str = "running"
    uuid: str | None = None
    hostname: str | None = None
    tenant: str | None = None
    vm_name: str | None = None
    flavor: str | None = None
    vcpus: int | None = None
    memory_mb: int | None = None
    disk_gb: int | None = None
    image: str | None = None
    image_format: str | None = None
    kernel: str | None = None
    initrd: str | None = None
    cmdline: str | None = None
    network: str | None = None
    mac: str | None = None
    ssh_authorized_keys: tuple | None = None
    user_data: str | None = None
    virt_type: str | None = None
    instance_dir: str = DEFAULT_INSTANCE_DIR
    uri: str = DEFAULT_URI
    wait_timeout: float = 120
    stop_timeout: float = 60
    # A rebuild: recreate the disk from ``image`` unless this token's rebuild already did
    # (``vm_plan.plan_rebuild``). Needs the full spec.
    rebuild_token: str | None = None

    REQUIRED_TO_CREATE = ("vcpus", "memory_mb", "disk_gb", "image")
    NOT_SPEC = ("name", "state", "instance_dir", "uri", "wait_timeout", "stop_timeout")

    @classmethod
    def from_params(cls, params):
        """From a module's params (None means "not given"). An unknown key is an error, not
        silently ignored."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise InvalidInput(f"unsupported parameters: {', '.join(unknown)}")
        values = {k: v for k, v in params.items() if v is not None}
        if values.get("ssh_authorized_keys") is not None:
            values["ssh_authorized_keys"] = tuple(values["ssh_authorized_keys"])
        return cls(**values)

    @property
    def spec_given(self):
        return any(getattr(self, f.name) is not None
                   for f in fields(self) if f.name not in self.NOT_SPEC)

    @property
    def paths(self):
        return VmPaths(self.instance_dir, self.name)


@dataclass
class VmResult:
    """What ``stack_vm`` returns."""

    changed: bool
    vm: dict
    diff: dict
    actions: list
    forced: bool = False
    restart_required: bool = False


def _validate(req):
    validate.resource_name(req.name, "domain name")
    if req.state not in STATES:
        raise InvalidInput(f"invalid state {req.state!r}: use one of {', '.join(STATES)}")
    if not os.path.isabs(req.instance_dir):
        raise InvalidInput(f"instance_dir must be an absolute path, not {req.instance_dir!r}")
    for key in ("wait_timeout", "stop_timeout"):
        if getattr(req, key) < 0:
            raise InvalidInput(f"{key} must not be negative")
    if req.state == "absent" or not req.spec_given:
        return
    missing = [k for k in req.REQUIRED_TO_CREATE if getattr(req, k) is None]
    if missing:
        raise InvalidInput(
            f"missing {', '.join(missing)}: a VM spec needs vcpus, memory_mb, disk_gb and "
            "image (or give none of the spec parameters to only change the power state)"
        )
    validate.vcpus(req.vcpus)
    validate.ram_mb(req.memory_mb)
    validate.disk_gb(req.disk_gb)
    for key in ("image", "kernel", "initrd"):
        value = getattr(req, key)
        if value is not None and not os.path.isabs(value):
            raise InvalidInput(f"{key} must be an absolute path, not {value!r}")
    for key in ("kernel", "initrd"):
        value = getattr(req, key)
        if value is not None and not os.path.isfile(value):
            raise NotFound(f"{key} {value} does not exist")


def _resolve_uuid(req, current):
    """Given uuid > the existing domain's > the one in a ``stk-<uuid>`` name > uuid5(name).
    Never random: the MAC and the diff must be the same on every run."""
    if req.uuid:
        return normalise_uuid(req.uuid)
    if current.spec is not None and current.spec.uuid:
        return current.spec.uuid
    match = _STK_NAME.match(req.name)
    if match:
        return normalise_uuid(match.group(1))
    return str(uuidlib.uuid5(UUID_NAMESPACE, req.name))


def _resolve_virt_type(req, current):
    """kvm|qemu as given; ``auto`` keeps an existing domain's type (a re-probe must not
    flip a defined VM) and otherwise asks the KVM probe (cached per QEMU version)."""
    wanted = req.virt_type or "auto"
    if wanted in ("kvm", "qemu"):
        return wanted
    if wanted != "auto":
        raise InvalidInput(f"invalid virt_type {wanted!r}: use auto, kvm or qemu")
    if current.spec is not None and current.spec.virt_type in ("kvm", "qemu"):
        return current.spec.virt_type
    try:
        from .kvm_probe import virt_type
    except ImportError:
        raise BackendError("virt_type auto needs stackcore.kvm_probe; pass kvm or qemu") from None
    return virt_type(forced="auto", state_file=VIRT_STATE_FILE)


def build_desired(req, current):
    """VmDesired for a validated request, given what exists (uuid and virt_type may come
    from the existing domain)."""
    if req.state == "absent":
        if req.uuid and current.spec and current.spec.uuid != normalise_uuid(req.uuid):
            raise Conflict(f"domain {req.name} has uuid {current.spec.uuid}, not {req.uuid}: "
                           "not removing it")
        return VmDesired("absent")
    if not req.spec_given:
        return VmDesired(req.state)
    paths = req.paths
    vm_uuid = _resolve_uuid(req, current)
    hostname = validate.vm_name(req.hostname or req.vm_name or req.name)
    spec = DomainSpec(
        name=req.name,
        uuid=vm_uuid,
        vcpus=int(req.vcpus),
        memory_mb=int(req.memory_mb),
        virt_type=_resolve_virt_type(req, current),
        disk=paths.disk,
        disk_format="qcow2",
        seed=paths.seed,
        console_log=paths.console_log,
        network=req.network or DEFAULT_NETWORK,
        mac=normalise_mac(req.mac) if req.mac else mac_for(vm_uuid),
        # "" and None are the same to libvirt (an empty element reads back as None)
        kernel=req.kernel or None,
        initrd=req.initrd or None,
        cmdline=req.cmdline or None,
        tenant=req.tenant or None,
        vm_name=req.vm_name or None,
        flavor=req.flavor or None,
    ).validate()
    seed = build_seed_iso(vm_uuid, hostname, req.ssh_authorized_keys or (), req.user_data)
    return VmDesired(
        state=req.state,
        spec=spec,
        disk_bytes=int(req.disk_gb) * GIB,
        image=req.image,
        image_format=req.image_format or "qcow2",
        seed=seed,
    )


def _check_network(conn, network):
    libvirt = import_libvirt()
    try:
        net = conn.networkLookupByName(network)
        active = net.isActive()
    except libvirt.libvirtError:
        raise NotFound(f"libvirt network {network} does not exist (create it with "
                       "stack_network)") from None
    if not active:
        raise Conflict(f"libvirt network {network} is not active")


def _vm_view(req, state, address):
    spec = state.spec
    if spec is None:
        return {"name": req.name, "uuid": None, "state": state.power, "mac": None,
                "address": None, "disk": None, "seed": None, "console_log": None,
                "virt_type": None}
    return {"name": spec.name, "uuid": spec.uuid, "state": state.power, "mac": spec.mac,
            "address": address, "disk": spec.disk, "seed": spec.seed,
            "console_log": spec.console_log, "virt_type": spec.virt_type}


def _restart_required(state):
    """A running domain whose persistent definition differs from the live one."""
    return state.power in ON and state.live_spec != state.spec


def _predicted(req, current, desired, actions, conn):
    """VmResult for check mode: the plan's outcome, nothing changed."""
    after = expected_view(current, desired, actions)
    spec = desired.spec or current.spec
    address = None
    if after["state"] == "running" and current.power == "running" and spec is not None:
        lease = current_lease(conn, spec.network, spec.mac)
        address = lease and lease[0]
    if desired.state == "absent":
        vm = _vm_view(req, VmState(), None)
    else:
        vm = _vm_view(req, VmState(power=after["state"], spec=spec), address)
    redefines = any(a.kind == "define" for a in actions)
    restart = (after["state"] in ON and current.power in ON
               and (redefines or _restart_required(current)))
    return VmResult(changed=bool(actions), vm=vm,
                    diff={"before": state_view(current), "after": after},
                    actions=[str(a) for a in actions], restart_required=restart)


def ensure_vm(req, check=False, conn=None):
    """Make the VM match ``req``; in check mode only say what would change."""
    _validate(req)
    conn = conn or connect(req.uri)
    paths = req.paths
    lock = None
    if not check:
        lock = acquire(req.instance_dir, req.name,
                       timeout=req.wait_timeout + req.stop_timeout + 120)
    try:
        current = read_current(conn, req.name, paths, image=req.image)
        desired = build_desired(req, current)
        actions = plan_rebuild(current, desired, req.rebuild_token,
                               read_rebuild_token(paths) if req.rebuild_token else None)
        spec = desired.spec or current.spec
        starts = any(a.kind == "start" for a in actions)
        if starts:
            _check_network(conn, spec.network)
        released = _release_address(conn, req, current, check) if desired.state == "absent" \
            else []
        if check:
            predicted = _predicted(req, current, desired, actions, conn)
            predicted.changed = predicted.changed or bool(released)
            return predicted
        stale = current_lease(conn, spec.network, spec.mac) if starts else None
        forced = apply(conn, actions, desired, paths, stop_timeout=req.stop_timeout)
        after = read_current(conn, req.name, paths, image=None)
        result = VmResult(changed=bool(actions or released), vm=_vm_view(req, after, None),
                          diff={"before": state_view(current), "after": state_view(after)},
                          actions=[str(a) for a in actions], forced=forced,
                          restart_required=_restart_required(after))
        if desired.state == "running":
            result.vm["address"] = _address(conn, req, after.spec, stale, result.changed)
        elif after.power == "running":  # present: report the address, do not wait for one
            lease = current_lease(conn, after.spec.network, after.spec.mac)
            result.vm["address"] = lease and lease[0]
        if desired.state == "absent":
            lock.release(remove=True)
        return result
    except StackError as err:
        err.changed = getattr(err, "changed", False)
        raise
    finally:
        if lock is not None:
            lock.release()


def _release_address(conn, req, current, check):
    """Drop the DHCP reservation a live move made on this host for the VM (``dhcp_host``),
    before the domain goes, so a run that dies half-way still finds it. Found by the VM's MAC
    also when the domain is already gone: libvirt undefines a live-moved domain itself."""
    if current.spec is not None:
        network, mac = current.spec.network, current.spec.mac
    else:
        network = req.network or DEFAULT_NETWORK
        mac = normalise_mac(req.mac) if req.mac else mac_for(_resolve_uuid(req, current))
    return dhcp_host.release(conn, network, mac, check=check)


def _address(conn, req, spec, stale, changed):
    """The guest's address: wait up to wait_timeout for a fresh lease (0: do not wait)."""
    try:
        if req.wait_timeout > 0:
            return wait_for_address(conn, spec.name, spec.network, spec.mac,
                                    req.wait_timeout, stale=stale)
        lease = current_lease(conn, spec.network, spec.mac)
        return lease[0] if lease and lease != stale else None
    except StackError as err:
        err.changed = changed
        raise
