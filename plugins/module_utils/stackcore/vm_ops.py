"""The side of a VM that touches the host: reading its state, applying planned actions,
waiting for its DHCP lease. Plans come from ``vm_plan`` (pure)."""

import hashlib
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass

from .domain import build_domain_xml, parse_domain
from .errors import BackendError, NotFound, StackError
from .fileio import write_atomic
from .libvirt_conn import import_libvirt, is_no_such
from .vm_plan import DiskInfo, VmState

POLL_S = 0.25
QEMU_IMG_TIMEOUT_S = 120


def _libvirt_error(what, exc):
    return BackendError(f"{what}: {exc.get_error_message()}")


# ---------------------------------------------------------------- qemu-img and files


def _run(argv, what):
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=QEMU_IMG_TIMEOUT_S,
                              check=False)
    except FileNotFoundError:
        raise BackendError(f"{what}: {argv[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise BackendError(f"{what}: {argv[0]} timed out after {QEMU_IMG_TIMEOUT_S} s") from None
    if proc.returncode != 0:
        raise BackendError(f"{what}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def disk_info(path):
    """``qemu-img info`` of ``path`` as DiskInfo, None if the file does not exist.

    ``-U`` (force share) because a running QEMU holds the write lock on its disk.
    """
    if not os.path.exists(path):
        return None
    out = _run(["qemu-img", "info", "-U", "--output=json", path], f"cannot inspect {path}")
    info = json.loads(out)
    return DiskInfo(
        virtual_bytes=int(info["virtual-size"]),
        format=info["format"],
        backing=info.get("full-backing-filename") or info.get("backing-filename"),
    )


def file_digest(path):
    """sha256 of a (small) file, None if it does not exist."""
    try:
        with open(path, "rb") as fh:
            return hashlib.sha256(fh.read()).hexdigest()
    except FileNotFoundError:
        return None


# ---------------------------------------------------------------- reading the state

_POWER = {
    "VIR_DOMAIN_NOSTATE": "running",
    "VIR_DOMAIN_RUNNING": "running",
    "VIR_DOMAIN_BLOCKED": "running",
    "VIR_DOMAIN_SHUTDOWN": "running",  # shutting down, still running
    "VIR_DOMAIN_PAUSED": "paused",
    "VIR_DOMAIN_PMSUSPENDED": "paused",
    "VIR_DOMAIN_SHUTOFF": "stopped",
    "VIR_DOMAIN_CRASHED": "crashed",
}


def lookup(conn, name):
    """The virDomain called ``name`` or None."""
    libvirt = import_libvirt()
    try:
        return conn.lookupByName(name)
    except libvirt.libvirtError as exc:
        if is_no_such(exc, "domain"):
            return None
        raise _libvirt_error(f"cannot look up domain {name}", exc) from None


def power_of(dom):
    """running | paused | stopped | crashed for a virDomain."""
    libvirt = import_libvirt()
    code = dom.state()[0]
    for const, word in _POWER.items():
        if getattr(libvirt, const) == code:
            return word
    return "running"


def read_current(conn, name, paths, image=None):
    """VmState of domain ``name`` with its files at ``paths`` (and the base ``image``)."""
    libvirt = import_libvirt()
    dom = lookup(conn, name)
    fields = {}
    if dom is not None:
        try:
            power = power_of(dom)
            spec = parse_domain(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
            live = parse_domain(dom.XMLDesc(0)) if power != "stopped" else spec
            persistent = bool(dom.isPersistent())
        except libvirt.libvirtError as exc:
            if is_no_such(exc, "domain"):  # vanished under us (transient, destroyed)
                return read_current(conn, name, paths, image)
            raise _libvirt_error(f"cannot read domain {name}", exc) from None
        fields.update(power=power, spec=spec, live_spec=live, persistent=persistent)
    return VmState(
        dir_exists=os.path.isdir(paths.dir),
        disk=disk_info(paths.disk),
        seed_digest=file_digest(paths.seed),
        image=disk_info(image) if image else None,
        **fields,
    )


# ---------------------------------------------------------------- DHCP leases


def current_lease(conn, network, mac):
    """(address, expiry) of the newest IPv4 lease for ``mac`` on ``network``, or None.

    DHCPLeases keeps stale leases, so only this MAC's are considered; drivers without lease
    support (the test driver) give None.
    """
    libvirt = import_libvirt()
    try:
        leases = conn.networkLookupByName(network).DHCPLeases(mac)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_NO_NETWORK,
                                    libvirt.VIR_ERR_OPERATION_INVALID):
            return None
        raise _libvirt_error(f"cannot read DHCP leases of network {network}", exc) from None
    mine = [
        lease for lease in leases
        if lease.get("mac", "").lower() == mac.lower()
        and lease.get("type") == libvirt.VIR_IP_ADDR_TYPE_IPV4
    ]
    if not mine:
        return None
    best = max(mine, key=lambda lease: lease.get("expirytime", 0))
    return best["ipaddr"], best.get("expirytime", 0)


def wait_for_address(conn, name, network, mac, timeout, stale=None):
    """The guest's IPv4 address once it holds a lease that is not ``stale`` (the lease seen
    before this start); BackendError when ``timeout`` passes or the domain stops."""
    deadline = time.monotonic() + timeout
    while True:
        lease = current_lease(conn, network, mac)
        if lease is not None and lease != stale:
            return lease[0]
        dom = lookup(conn, name)
        if dom is None or power_of(dom) not in ("running", "paused"):
            raise BackendError(f"domain {name} stopped while waiting for its DHCP address")
        if time.monotonic() >= deadline:
            raise BackendError(
                f"domain {name} is running but got no DHCP lease for {mac} on network "
                f"{network} within {timeout:g} s"
            )
        time.sleep(POLL_S)


# ---------------------------------------------------------------- applying actions


@dataclass
class ApplyContext:
    """What the actions need besides their own args."""

    conn: object
    desired: object  # VmDesired
    paths: object  # VmPaths
    stop_timeout: float
    forced: bool = False


def _dom(ctx):
    dom = lookup(ctx.conn, ctx.paths.name)
    if dom is None:
        raise NotFound(f"domain {ctx.paths.name} disappeared while being changed")
    return dom


def _make_dir(ctx, _args):
    os.makedirs(ctx.paths.dir, mode=0o755, exist_ok=True)
    os.chmod(ctx.paths.dir, 0o755)  # QEMU (libvirt-qemu) must traverse it whatever the umask


def _create_disk(ctx, args):
    desired, disk = ctx.desired, ctx.paths.disk
    tmp = f"{disk}.tmp"
    if os.path.exists(tmp):
        os.unlink(tmp)  # left by a killed run
    _run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", desired.image,
          "-F", desired.image_format, tmp, str(args["size_bytes"])],
         f"cannot create disk {disk}")
    os.chmod(tmp, 0o644)
    os.replace(tmp, disk)


def _grow_disk(ctx, args):
    size = args["size_bytes"]
    if args.get("online"):
        libvirt = import_libvirt()
        try:
            _dom(ctx).blockResize("vda", size, libvirt.VIR_DOMAIN_BLOCK_RESIZE_BYTES)
        except libvirt.libvirtError as exc:
            raise _libvirt_error(f"cannot grow disk of {ctx.paths.name}", exc) from None
    else:
        _run(["qemu-img", "resize", "-q", ctx.paths.disk, str(size)],
             f"cannot grow disk {ctx.paths.disk}")


def _write_seed(ctx, _args):
    write_atomic(ctx.paths.seed, ctx.desired.seed)


def _libvirt_call(ctx, what, fn, *args, ignore=()):
    libvirt = import_libvirt()
    try:
        return fn(*args)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() in ignore:
            return None
        raise _libvirt_error(f"cannot {what} domain {ctx.paths.name}", exc) from None


def _define(ctx, _args):
    _libvirt_call(ctx, "define", ctx.conn.defineXML, build_domain_xml(ctx.desired.spec))


def _start(ctx, _args):
    _libvirt_call(ctx, "start", _dom(ctx).create)


def _resume(ctx, _args):
    dom = _dom(ctx)
    libvirt = import_libvirt()
    if dom.state()[0] == libvirt.VIR_DOMAIN_PMSUSPENDED:
        _libvirt_call(ctx, "wake up", dom.pMWakeup, 0)
    else:
        _libvirt_call(ctx, "resume", dom.resume)


def _destroy_force(ctx, _args):
    libvirt = import_libvirt()
    dom = lookup(ctx.conn, ctx.paths.name)
    if dom is not None:
        _libvirt_call(ctx, "destroy", dom.destroy, ignore=(libvirt.VIR_ERR_OPERATION_INVALID,
                                                            libvirt.VIR_ERR_NO_DOMAIN))


def _shutdown(ctx, _args):
    """ACPI power button, wait up to stop_timeout for the guest to power off, then destroy."""
    libvirt = import_libvirt()
    dom = _dom(ctx)
    if ctx.stop_timeout > 0:
        # default method: ACPI power button (the domain has no guest agent channel)
        _libvirt_call(ctx, "shut down", dom.shutdown,
                      ignore=(libvirt.VIR_ERR_OPERATION_INVALID,))
        deadline = time.monotonic() + ctx.stop_timeout
        while time.monotonic() < deadline:
            dom = lookup(ctx.conn, ctx.paths.name)
            if dom is None or power_of(dom) == "stopped":
                return
            time.sleep(POLL_S)
    _destroy_force(ctx, {})
    ctx.forced = True


def _undefine(ctx, _args):
    libvirt = import_libvirt()
    dom = lookup(ctx.conn, ctx.paths.name)
    if dom is None or not dom.isPersistent():
        return
    flags = (libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
             | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
             | libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA
             | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
    try:
        dom.undefineFlags(flags)
    except libvirt.libvirtError as exc:
        if is_no_such(exc, "domain"):
            return
        if exc.get_error_code() not in (libvirt.VIR_ERR_NO_SUPPORT,
                                        libvirt.VIR_ERR_INVALID_ARG):
            raise _libvirt_error(f"cannot undefine domain {ctx.paths.name}", exc) from None
        _libvirt_call(ctx, "undefine", dom.undefine, ignore=(libvirt.VIR_ERR_NO_DOMAIN,))


def _remove_files(ctx, _args):
    if os.path.isdir(ctx.paths.dir):
        shutil.rmtree(ctx.paths.dir)


ACTIONS = {
    "make_dir": _make_dir,
    "create_disk": _create_disk,
    "grow_disk": _grow_disk,
    "write_seed": _write_seed,
    "define": _define,
    "start": _start,
    "resume": _resume,
    "shutdown": _shutdown,
    "destroy_force": _destroy_force,
    "undefine": _undefine,
    "remove_files": _remove_files,
}


def apply(conn, actions, desired, paths, stop_timeout=60):
    """Carry out ``actions`` in order; returns True when a guest had to be forced off.

    A failure raises a StackError whose ``changed`` says whether earlier actions ran.
    """
    ctx = ApplyContext(conn=conn, desired=desired, paths=paths, stop_timeout=stop_timeout)
    for done, action in enumerate(actions):
        try:
            ACTIONS[action.kind](ctx, action.args)
        except StackError as err:
            err.changed = done > 0
            raise
        except OSError as exc:
            err = BackendError(f"{action.kind} failed for {paths.name}: {exc}")
            err.changed = done > 0
            raise err from exc
    return ctx.forced


# ---------------------------------------------------------------- rebuild (additive)


def _remove_disk(ctx, _args):
    """Discard the root disk (a rebuild creates it again from the image)."""
    for path in (ctx.paths.disk, f"{ctx.paths.disk}.tmp"):
        if os.path.exists(path):
            os.unlink(path)


def _write_rebuild_token(ctx, args):
    from .vm_plan import rebuild_token_path

    write_atomic(rebuild_token_path(ctx.paths), args["token"].encode("utf-8"))


def read_rebuild_token(paths):
    """The token of the last rebuild of this VM's disk, or None."""
    from .vm_plan import rebuild_token_path

    try:
        with open(rebuild_token_path(paths), encoding="utf-8") as fh:
            return fh.read().strip() or None
    except FileNotFoundError:
        return None


ACTIONS.update(remove_disk=_remove_disk, write_rebuild_token=_write_rebuild_token)
