"""One Swift storage device for ``stack_storage_device``: read, a pure plan, apply, re-read.

A device is a real block device (formatted only when blank, or with ``force``) or, in labs, a
sparse file loop-mounted (ext4 here holds ~2 KB per xattr, too little for Swift's metadata, so
devices are XFS). It is mounted at ``<mount_root>/<name>`` (Swift's ``devices`` setting), the
mounted root is chowned to the Swift user, and an fstab line makes ``mount -a`` or a boot bring
it back. Hosts without systemd do not mount fstab at boot, so re-running the module (which
remounts whatever is missing) is the tested way back after a restart.

Current state comes from /proc/self/mountinfo, /sys/block/loop*/loop and ``blkid -p -o export``
(each a parser over captured text, tested alone); tools get argv lists, never a shell string.
"""

import contextlib
import fcntl
import grp
import os
import pwd
import re
import shutil
import stat
import struct
import subprocess
from dataclasses import dataclass, field

from .errors import BackendError, Conflict, InvalidInput, NotFound
from .fileio import write_atomic
from .mounts import (
    Mount,
    fstab_entry,
    fstab_line,
    missing_options,
    parse_blkid,
    parse_mountinfo,
    same_fstab_line,
    set_fstab_entry,
)

STATES = ("present", "absent")
FS_TYPES = ("xfs",)
GIB = 1024**3
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_OPTION = re.compile(r"^[A-Za-z0-9_.=:/+-]+$")

# Actions, in the order plan_device emits them.
CREATE_FILE = "create_file"          # a sparse file of size_gb (loop devices only)
MKFS = "mkfs"                        # mkfs.xfs (-f only with force, over a foreign filesystem)
MKDIR = "mkdir"                      # the mount point
MOUNT = "mount"
REMOUNT_OPTIONS = "remount_options"  # mounted, but without some of mount_options
CHOWN = "chown"                      # the mounted root, to owner (Swift does not run as root)
WRITE_FSTAB = "write_fstab"          # add or update the mount point's fstab line
UMOUNT = "umount"                    # lazy (-l) only with force
DETACH_LOOP = "detach_loop"          # loop devices on the file that would otherwise linger
REMOVE_FSTAB = "remove_fstab"
REMOVE_FILE = "remove_file"          # loop files only: a block device is never wiped


# ---------------------------------------------------------------------------------------------
# Model


@dataclass(frozen=True)
class LoopDevice:
    """A loop device, from /sys/block/loopN."""

    path: str  # /dev/loopN
    device: str  # "major:minor"
    backing_file: str
    autoclear: bool
    # (st_dev, st_ino) of the backing file, from LOOP_GET_STATUS64: a path names different
    # files in different mount namespaces (hosts sharing one kernel), an inode does not.
    backing_id: tuple | None = None


@dataclass(frozen=True)
class DesiredDevice:
    """A validated request (see ``resolve_desired``)."""

    name: str
    state: str
    mount_point: str
    source: str  # the loop file or the block device
    loop: bool
    size_bytes: int | None = None
    fs_type: str = "xfs"
    owner: str = "swift"
    uid: int | None = None  # None when absent (the owner need not exist then)
    gid: int | None = None
    mount_options: tuple = ("noatime",)
    fstab: str = "/etc/fstab"
    force: bool = False

    @property
    def fstab_line(self):
        """The fstab line this device should have."""
        options = list(self.mount_options) + ["loop"] * self.loop + ["nofail"]
        return fstab_line(self.source, self.mount_point, self.fs_type, options)


@dataclass(frozen=True)
class DeviceState:
    """What the host has now, for one device (see ``read_device``)."""

    exists: bool  # the loop file or the block device
    is_block: bool = False
    size_bytes: int | None = None  # loop files only
    probe: dict = field(default_factory=dict)  # blkid -p -o export (+ AMBIVALENT)
    mount: Mount | None = None  # the top mount at our mount point, whoever's it is
    ours: bool = False  # that mount is of our source
    elsewhere: tuple = ()  # other mount points of our source (or a partition of it)
    mount_point_exists: bool = False
    owner: tuple | None = None  # (uid, gid) of the mount point
    fstab_line: str | None = None
    loops: tuple = ()  # LoopDevice backing our file

    @property
    def fs_type(self):
        return self.probe.get("TYPE")

    @property
    def content(self):
        """What is on the device, for messages; None when blank."""
        if self.probe.get("AMBIVALENT"):
            return "several filesystem signatures"
        if self.probe.get("PTTYPE"):
            return f"a {self.probe['PTTYPE']} partition table"
        return self.fs_type


# ---------------------------------------------------------------------------------------------
# Desired state and plan (pure)


def resolve_desired(name, state="present", mount_root="/srv/node", device=None, loop_file=None,
                    size_gb=None, fs_type="xfs", owner="swift", mount_options="noatime",
                    fstab="/etc/fstab", force=False):
    """Validate the request and complete it (the owner's uid/gid are looked up when present)."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidInput(f"invalid device name {name!r}: use 1-64 letters, digits, '_' or '-'")
    if state not in STATES:
        raise InvalidInput(f"invalid state {state!r}: expected present or absent")
    if fs_type not in FS_TYPES:
        raise InvalidInput(f"invalid fs_type {fs_type!r}: only xfs is supported")
    if bool(device) == bool(loop_file):
        raise InvalidInput(f"device {name}: give exactly one of device and loop_file")
    for label, path in (("mount_root", mount_root), ("device", device),
                        ("loop_file", loop_file), ("fstab", fstab)):
        if path is not None and not os.path.isabs(path):
            raise InvalidInput(f"device {name}: {label} must be an absolute path, not {path!r}")
    size_bytes = None
    if loop_file and state == "present":
        if isinstance(size_gb, bool) or not isinstance(size_gb, int) or size_gb < 1:
            raise InvalidInput(f"device {name}: size_gb must be a whole number >= 1 "
                               "with loop_file")
        size_bytes = size_gb * GIB
    options = _options(name, mount_options)
    uid = gid = None
    if state == "present":
        try:
            entry = pwd.getpwnam(owner)
        except KeyError:
            raise NotFound(f"device {name}: user {owner!r} does not exist "
                           "(the Swift role creates it before preparing devices)") from None
        uid, gid = entry.pw_uid, entry.pw_gid
    return DesiredDevice(
        name=name, state=state, mount_point=os.path.join(os.path.normpath(mount_root), name),
        source=os.path.normpath(loop_file or device), loop=bool(loop_file),
        size_bytes=size_bytes, fs_type=fs_type, owner=owner, uid=uid, gid=gid,
        mount_options=options, fstab=fstab, force=bool(force),
    )


def _options(name, text):
    options = [o.strip() for o in (text or "").split(",") if o.strip()]
    for option in options:
        if not _OPTION.match(option) or option in ("remount", "bind", "move"):
            raise InvalidInput(f"device {name}: invalid mount option {option!r}")
    # loop is added for loop files; saying it again is harmless, so drop it rather than fail.
    return tuple(dict.fromkeys(o for o in options if o != "loop"))


def plan_device(current, desired):
    """The actions that take ``current`` (DeviceState) to ``desired``; Conflict if unsafe."""
    if desired.state == "absent":
        return _plan_absent(current, desired)
    where = f"device {desired.name}"
    if current.elsewhere and not current.ours:  # also ours: a bind mount of it, fine
        raise Conflict(f"{where}: {desired.source} is mounted at {current.elsewhere[0]}, "
                       f"not {desired.mount_point}; unmount it first")
    if current.mount is not None and not current.ours:
        raise Conflict(f"{where}: {current.mount.source} is already mounted at "
                       f"{desired.mount_point}")
    actions = []
    if desired.loop:
        if not current.exists:
            actions.append(CREATE_FILE)
        elif current.size_bytes != desired.size_bytes:
            raise Conflict(f"{where}: {desired.source} has {current.size_bytes} bytes, size_gb "
                           f"asks {desired.size_bytes}; resizing is not supported")
    elif not current.exists:
        raise NotFound(f"{where}: block device {desired.source} does not exist")
    elif not current.is_block:
        raise InvalidInput(f"{where}: {desired.source} is not a block device")
    if current.exists and current.content != desired.fs_type:
        if current.content is not None and not desired.force:
            raise Conflict(f"{where}: {desired.source} holds {current.content}; "
                           "refusing to format it without force")
        if current.ours:
            raise Conflict(f"{where}: {desired.source} is mounted with {current.content}; "
                           "unmount it before reformatting")
    if not current.exists or current.content != desired.fs_type:
        actions.append(MKFS)
    if not current.mount_point_exists:
        actions.append(MKDIR)
    if not current.ours:
        actions += [MOUNT, CHOWN]
    else:
        if missing_options(current.mount, desired.mount_options):
            actions.append(REMOUNT_OPTIONS)
        if current.owner != (desired.uid, desired.gid):
            actions.append(CHOWN)
    if not same_fstab_line(current.fstab_line, desired.fstab_line):
        actions.append(WRITE_FSTAB)
    return actions


def _plan_absent(current, desired):
    if current.mount is not None and not current.ours:
        raise Conflict(f"device {desired.name}: {current.mount.source} is mounted at "
                       f"{desired.mount_point}, not {desired.source}; leaving it alone")
    if desired.loop and current.elsewhere:
        raise Conflict(f"device {desired.name}: {desired.source} is also mounted at "
                       f"{current.elsewhere[0]}; not removing it")
    actions = [UMOUNT] if current.ours else []
    # A mounted loop device with autoclear goes with the umount; any other would linger.
    if any(not (loop.autoclear and current.ours and current.mount.device == loop.device)
           for loop in current.loops):
        actions.append(DETACH_LOOP)
    if current.fstab_line is not None:
        actions.append(REMOVE_FSTAB)
    if desired.loop and current.exists:
        actions.append(REMOVE_FILE)
    return actions


def describe(current, desired):
    """A flat dict of the device for diffs (normalised: equal when nothing is to be done)."""
    out = {"name": desired.name, "source": desired.source, "mount_point": desired.mount_point,
           "exists": current.exists, "fs_type": current.fs_type, "mounted": current.ours,
           "mount_options": None, "owner": None, "fstab": current.fstab_line}
    if desired.loop:
        out["size_bytes"] = current.size_bytes
    if current.ours:
        missing = missing_options(current.mount, desired.mount_options)
        out["mount_options"] = (",".join(current.mount.options) if missing
                                else ",".join(desired.mount_options))
        out["owner"] = _owner_name(current.owner)
    if same_fstab_line(current.fstab_line, desired.fstab_line):
        out["fstab"] = desired.fstab_line
    return out


def predict(current, desired):
    """The description the device will have once the plan is applied."""
    before = describe(current, desired)
    if desired.state == "absent":
        gone = {"exists": False, "fs_type": None} if desired.loop else {}
        if desired.loop:
            gone["size_bytes"] = None
        return {**before, **gone, "mounted": False, "mount_options": None, "owner": None,
                "fstab": None}
    after = {**before, "exists": True, "fs_type": desired.fs_type, "mounted": True,
             "mount_options": ",".join(desired.mount_options),
             "owner": _owner_name((desired.uid, desired.gid)),
             "fstab": desired.fstab_line}
    if desired.loop:
        after["size_bytes"] = desired.size_bytes
    return after


def _owner_name(owner):
    """``user:group`` of a (uid, gid) pair (numbers where the names are unknown)."""
    if owner is None:
        return None
    uid, gid = owner
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    try:
        group = grp.getgrgid(gid).gr_name
    except KeyError:
        group = str(gid)
    return f"{user}:{group}"


# ---------------------------------------------------------------------------------------------
# Reading the host


def read_loop_devices(sys_block="/sys/block"):
    """The attached loop devices (those with a backing file)."""
    loops = []
    with contextlib.suppress(FileNotFoundError):
        for entry in sorted(os.listdir(sys_block)):
            base = os.path.join(sys_block, entry)
            backing = _read(os.path.join(base, "loop", "backing_file"))
            if entry.startswith("loop") and backing:
                loops.append(LoopDevice(
                    path=f"/dev/{entry}", device=_read(os.path.join(base, "dev")),
                    backing_file=backing.removesuffix(" (deleted)"),
                    autoclear=_read(os.path.join(base, "loop", "autoclear")) == "1",
                    backing_id=_loop_backing_id(f"/dev/{entry}")))
    return loops


_LOOP_GET_STATUS64 = 0x4C05
_LOOP_INFO64 = struct.Struct("=QQQQQIIII64s64s32s2Q")  # struct loop_info64 (linux/loop.h)


def _loop_backing_id(path):
    """(device, inode) of the file behind loop device ``path``, or None if unreadable."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        buf = fcntl.ioctl(fd, _LOOP_GET_STATUS64, bytes(_LOOP_INFO64.size))
    except OSError:
        return None
    finally:
        os.close(fd)
    lo_device, lo_inode = _LOOP_INFO64.unpack(buf)[:2]
    return (lo_device, lo_inode)


def backs(loop, path, file_id):
    """Whether ``loop`` is attached to the file at ``path`` (identity ``file_id``)."""
    if loop.backing_id is not None and file_id is not None:
        return loop.backing_id == file_id
    return loop.backing_file == path


def _read(path):
    try:
        with open(path) as handle:
            return handle.read().strip()
    except OSError:
        return None


def _block_ids(path):
    """major:minor of a block device and of its partitions (a mounted partition means in use)."""
    rdev = os.stat(path).st_rdev
    ident = f"{os.major(rdev)}:{os.minor(rdev)}"
    ids = {ident}
    sys_dir = f"/sys/dev/block/{ident}"
    with contextlib.suppress(OSError):
        for entry in os.listdir(sys_dir):
            part = _read(os.path.join(sys_dir, entry, "dev"))
            if part and os.path.exists(os.path.join(sys_dir, entry, "partition")):
                ids.add(part)
    return ids


def probe(path):
    """``blkid -p -o export PATH`` as a dict: {} when blank, AMBIVALENT=1 on several signatures."""
    blkid = shutil.which("blkid") or "/sbin/blkid"
    proc = _run([blkid, "-p", "-o", "export", path], check=False)
    if proc.returncode == 2:  # nothing found
        return {}
    if proc.returncode == 8:  # ambivalent low-level probing result
        return {"AMBIVALENT": "1"}
    if proc.returncode != 0:
        raise BackendError(f"blkid {path} failed: {_last_line(proc)}")
    return parse_blkid(proc.stdout)


def read_device(desired, mountinfo="/proc/self/mountinfo"):
    """The DeviceState of ``desired`` on this host."""
    source = desired.source
    try:
        st = os.stat(source)
    except FileNotFoundError:
        st = None
    is_block = st is not None and stat.S_ISBLK(st.st_mode)
    with open(mountinfo) as handle:
        mounts = parse_mountinfo(handle.read())
    loops = ()
    if desired.loop:
        real = os.path.realpath(source)
        file_id = (st.st_dev, st.st_ino) if st is not None else None
        loops = tuple(lp for lp in read_loop_devices() if backs(lp, real, file_id))
        ids = {lp.device for lp in loops}
    else:
        ids = _block_ids(source) if is_block else set()
    point = os.path.realpath(desired.mount_point)  # mountinfo shows symlink-free paths
    at_point = [m for m in mounts if m.mount_point == point]
    top = at_point[-1] if at_point else None
    ours = top is not None and top.device in ids
    elsewhere = tuple(dict.fromkeys(m.mount_point for m in mounts
                                    if m.device in ids and m.mount_point != point))
    owner = None
    with contextlib.suppress(FileNotFoundError):
        point_stat = os.stat(desired.mount_point)
        owner = (point_stat.st_uid, point_stat.st_gid)
    fstab_text = _read(desired.fstab) or ""
    return DeviceState(
        exists=st is not None, is_block=is_block,
        size_bytes=st.st_size if st is not None and desired.loop else None,
        probe=probe(source) if st is not None else {},
        mount=top, ours=ours, elsewhere=elsewhere,
        mount_point_exists=os.path.isdir(desired.mount_point), owner=owner,
        fstab_line=fstab_entry(fstab_text, desired.mount_point), loops=loops,
    )


# ---------------------------------------------------------------------------------------------
# Applying


def _run(argv, check=True):
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise BackendError(f"{argv[0]} not found (install xfsprogs / util-linux)") from None
    if check and proc.returncode != 0:
        raise BackendError(_last_line(proc))  # tools name themselves: "mount: /x: ..."
    return proc


def _last_line(proc):
    lines = (proc.stderr or proc.stdout or "").strip().splitlines()
    return lines[-1] if lines else f"exit status {proc.returncode}"


def _tool(name):
    return shutil.which(name) or f"/sbin/{name}"


def _edit_fstab(desired, line):
    """Read, edit, replace: under a lock on fstab's directory, so two runs at once (several
    devices, or several lab nodes on one machine) never lose each other's lines."""
    fd = os.open(os.path.dirname(desired.fstab) or ".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        text = _read_text(desired.fstab)
        exists = os.path.exists(desired.fstab)
        mode = stat.S_IMODE(os.stat(desired.fstab).st_mode) if exists else 0o644
        write_atomic(desired.fstab, set_fstab_entry(text, desired.mount_point, line), mode)
    finally:
        os.close(fd)


def _read_text(path):
    try:
        with open(path) as handle:
            return handle.read()
    except FileNotFoundError:
        return ""


def _do(desired, action):
    opts = list(desired.mount_options)
    if action == CREATE_FILE:
        os.makedirs(os.path.dirname(desired.source), exist_ok=True)
        fd = os.open(desired.source, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(fd, desired.size_bytes)  # sparse: no blocks until Swift writes
        finally:
            os.close(fd)
    elif action == MKFS:
        _run([_tool("mkfs.xfs"), "-q"] + ["-f"] * desired.force + [desired.source])
    elif action == MKDIR:
        os.makedirs(desired.mount_point, mode=0o755, exist_ok=True)
    elif action == MOUNT:
        opts = opts + ["loop"] * desired.loop
        _run([_tool("mount"), "-t", desired.fs_type] + ["-o", ",".join(opts)] * bool(opts)
             + [desired.source, desired.mount_point])
    elif action == REMOUNT_OPTIONS:
        # Source and target both given: mount(8) then reads no fstab (whose loop would be wrong).
        source = read_device(desired).mount.source
        _run([_tool("mount"), "-o", ",".join(["remount", *opts]), source, desired.mount_point])
    elif action == CHOWN:
        os.chown(desired.mount_point, desired.uid, desired.gid)
    elif action == WRITE_FSTAB:
        _edit_fstab(desired, desired.fstab_line)
    elif action == UMOUNT:
        _run([_tool("umount")] + ["-l"] * desired.force + [desired.mount_point])
    elif action == DETACH_LOOP:
        for loop in read_device(desired).loops:  # re-read: the umount may have cleared it
            _run([_tool("losetup"), "-d", loop.path])
    elif action == REMOVE_FSTAB:
        _edit_fstab(desired, None)
    elif action == REMOVE_FILE:
        os.unlink(desired.source)
    else:
        raise InvalidInput(f"unknown storage device action {action!r}")


def apply(desired, actions):
    """Carry out ``actions`` in order; a loop file created by this run is removed again if a
    step fails before it is mounted (no half-made devices). Returns the re-read DeviceState."""
    created = False
    for action in actions:
        try:
            _do(desired, action)
        except OSError as exc:
            _discard(desired, created)
            raise BackendError(f"device {desired.name}: {action} failed: {exc}") from exc
        except BackendError as exc:
            _discard(desired, created)
            raise BackendError(f"device {desired.name}: {action} failed: {exc}") from exc
        created = created or action == CREATE_FILE
        if action == MOUNT:
            created = False  # mounted: it is a working device now, keep it
    final = read_device(desired)
    _verify(desired, final)
    return final


def _discard(desired, created):
    if created:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(desired.source)


def _verify(desired, final):
    if desired.state == "absent":
        if final.ours:
            raise BackendError(f"device {desired.name}: still mounted at {desired.mount_point}")
        return
    if not final.ours:
        raise BackendError(f"device {desired.name}: not mounted at {desired.mount_point} "
                           "after mounting it")
    missing = missing_options(final.mount, desired.mount_options)
    if missing:
        raise BackendError(f"device {desired.name}: mount options {','.join(missing)} did not "
                           "take effect on a remount; unmount it and run again")


def device_facts(desired, state):
    """The ``device`` return value of stack_storage_device."""
    loop = next((lp.path for lp in state.loops if state.ours and lp.device == state.mount.device),
                None)
    return {
        "name": desired.name,
        "source": desired.source,
        "mount_point": desired.mount_point,
        "mounted": state.ours,
        "fs_type": state.fs_type,
        "uuid": state.probe.get("UUID"),
        "mount_options": ",".join(state.mount.options) if state.ours else None,
        "owner": _owner_name(state.owner) if state.ours else None,
        "loop_device": loop,
        "size_bytes": state.size_bytes,
        "fstab": state.fstab_line,
    }


def reconcile(params, check=False):
    """Read, plan, and (unless ``check`` or nothing to do) apply; one place for all of it.

    ``params``: keyword arguments of ``resolve_desired``. Returns ``{"changed", "actions",
    "diff", "device"}``.
    """
    desired = resolve_desired(**params)
    current = read_device(desired)
    actions = plan_device(current, desired)
    diff = {"before": describe(current, desired), "after": predict(current, desired)}
    final = current
    if actions and not check:
        final = apply(desired, actions)
    return {"changed": bool(actions), "actions": actions, "diff": diff,
            "device": device_facts(desired, final)}
