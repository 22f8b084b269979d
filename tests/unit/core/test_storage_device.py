"""stackcore.storage_device: parsers over captured text, the plan and fstab tables, then a real
loop-mounted XFS device in a tmp dir (skipped when mkfs.xfs or loop mounting is unavailable)."""

import os
import shutil
import subprocess
from dataclasses import replace

import pytest
from stackcore.errors import BackendError, Conflict, InvalidInput, NotFound
from stackcore.mounts import (
    Mount,
    fstab_entry,
    fstab_line,
    missing_options,
    parse_blkid,
    parse_mountinfo,
    set_fstab_entry,
)
from stackcore.storage_device import (
    GIB,
    DesiredDevice,
    DeviceState,
    LoopDevice,
    describe,
    plan_device,
    predict,
    read_device,
    reconcile,
    resolve_desired,
)

# ---------------------------------------------------------------------------------------------
# Parsers

MOUNTINFO = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw,errors=remount-ro
42 27 7:0 / /srv/node/d1 rw,noatime - xfs /dev/loop0 rw,inode64,logbufs=8,logbsize=32k,noquota
43 27 8:16 / /srv/my\\040node/d2 rw,relatime shared:5 master:2 - xfs /dev/sdb rw,inode64
"""


def test_parse_mountinfo_reads_every_field_and_decodes_escapes():
    mounts = parse_mountinfo(MOUNTINFO)
    assert [m.mount_point for m in mounts] == ["/proc", "/", "/srv/node/d1", "/srv/my node/d2"]
    d1 = mounts[2]
    assert d1 == Mount(device="7:0", mount_point="/srv/node/d1", options=("rw", "noatime"),
                       fs_type="xfs", source="/dev/loop0",
                       super_options=("rw", "inode64", "logbufs=8", "logbsize=32k", "noquota"))
    assert mounts[3].device == "8:16" and mounts[3].options == ("rw", "relatime")


@pytest.mark.parametrize("text, expected", [
    ("DEVNAME=/srv/d1.img\nUUID=34bf-19\nBLOCK_SIZE=512\nTYPE=xfs\nUSAGE=filesystem\n",
     {"DEVNAME": "/srv/d1.img", "UUID": "34bf-19", "BLOCK_SIZE": "512", "TYPE": "xfs",
      "USAGE": "filesystem"}),
    ("DEVNAME=/dev/sdb\nPTUUID=5a1e\nPTTYPE=gpt\n", {"DEVNAME": "/dev/sdb", "PTUUID": "5a1e",
                                                    "PTTYPE": "gpt"}),
    ("", {}),
])
def test_parse_blkid(text, expected):
    assert parse_blkid(text) == expected


@pytest.mark.parametrize("options, missing", [
    (["noatime"], []),
    (["noatime", "nofail", "x-systemd.device-timeout=5", "defaults"], []),
    (["inode64"], []),  # shown among the superblock options
    (["noatime", "nodiratime"], ["nodiratime"]),
    (["relatime"], ["relatime"]),
])
def test_missing_options(options, missing):
    mount = parse_mountinfo(MOUNTINFO)[2]
    assert missing_options(mount, options) == missing


# ---------------------------------------------------------------------------------------------
# fstab editing (text in, text out)

LINE = "/srv/disks/d1.img /srv/node/d1 xfs noatime,loop,nofail 0 0"
BASE = "# /etc/fstab\nUUID=abc / ext4 errors=remount-ro 0 1\n"


@pytest.mark.parametrize("text, line, expected", [
    (BASE, LINE, BASE + LINE + "\n"),  # appended
    ("", LINE, LINE + "\n"),  # a missing fstab
    (BASE.rstrip("\n"), LINE, BASE + LINE + "\n"),  # no final newline
    (BASE + "/old /srv/node/d1 xfs defaults 0 0\ntmpfs /tmp tmpfs defaults 0 0\n", LINE,
     BASE + LINE + "\ntmpfs /tmp tmpfs defaults 0 0\n"),  # updated in place
    (BASE + "/a /srv/node/d1 xfs defaults 0 0\n/b /srv/node/d1/ xfs defaults 0 0\n", LINE,
     BASE + LINE + "\n"),  # duplicates (also spelled with a slash) collapse to one
    (BASE + LINE + "\n", None, BASE),  # removed
    (BASE, None, BASE),  # nothing to remove
    ("# /dev/sdz /srv/node/d1 xfs defaults 0 0\n", LINE,
     "# /dev/sdz /srv/node/d1 xfs defaults 0 0\n" + LINE + "\n"),  # comments are not entries
    (BASE + "/a /srv/node/d10 xfs defaults 0 0\n", None,
     BASE + "/a /srv/node/d10 xfs defaults 0 0\n"),  # another device's line is not ours
])
def test_set_fstab_entry(text, line, expected):
    assert set_fstab_entry(text, "/srv/node/d1", line) == expected


def test_set_fstab_entry_is_idempotent():
    once = set_fstab_entry(BASE, "/srv/node/d1", LINE)
    assert set_fstab_entry(once, "/srv/node/d1", LINE) == once


def test_fstab_line_escapes_spaces_and_entry_finds_it():
    line = fstab_line("/srv/my disks/d1.img", "/srv/my node/d1", "xfs", ["noatime", "loop"])
    assert line == "/srv/my\\040disks/d1.img /srv/my\\040node/d1 xfs noatime,loop 0 0"
    assert fstab_entry(BASE + line + "\n", "/srv/my node/d1") == line
    assert fstab_entry(BASE, "/srv/my node/d1") is None


# ---------------------------------------------------------------------------------------------
# Desired state


def test_resolve_desired_completes_a_loop_device():
    desired = resolve_desired("d1", mount_root="/srv/node/", loop_file="/srv/disks/d1.img",
                              size_gb=2, owner="root", mount_options="noatime, loop,noatime")
    assert desired.mount_point == "/srv/node/d1" and desired.loop
    assert desired.size_bytes == 2 * GIB and (desired.uid, desired.gid) == (0, 0)
    assert desired.mount_options == ("noatime",)
    assert desired.fstab_line == "/srv/disks/d1.img /srv/node/d1 xfs noatime,loop,nofail 0 0"


@pytest.mark.parametrize("kwargs, error, message", [
    ({"name": "d1/../x"}, InvalidInput, "invalid device name"),
    ({"name": "d.1"}, InvalidInput, "invalid device name"),
    ({"device": "/dev/sdb"}, InvalidInput, "exactly one of device and loop_file"),
    ({"loop_file": None}, InvalidInput, "exactly one of device and loop_file"),
    ({"size_gb": None}, InvalidInput, "size_gb must be a whole number"),
    ({"size_gb": 0}, InvalidInput, "size_gb must be a whole number"),
    ({"loop_file": "disks/d1.img"}, InvalidInput, "loop_file must be an absolute path"),
    ({"mount_root": "srv"}, InvalidInput, "mount_root must be an absolute path"),
    ({"fs_type": "ext4"}, InvalidInput, "only xfs"),
    ({"state": "mounted"}, InvalidInput, "invalid state"),
    ({"mount_options": "noatime,remount"}, InvalidInput, "invalid mount option 'remount'"),
    ({"mount_options": "noatime;rm -rf"}, InvalidInput, "invalid mount option"),
    ({"owner": "no-such-user-xyz"}, NotFound, "user 'no-such-user-xyz' does not exist"),
])
def test_resolve_desired_refuses_bad_input(kwargs, error, message):
    args = {"name": "d1", "loop_file": "/srv/disks/d1.img", "size_gb": 1, "owner": "root",
            **kwargs}
    with pytest.raises(error, match=message):
        resolve_desired(**args)


def test_absent_needs_neither_size_nor_an_existing_owner():
    desired = resolve_desired("d1", state="absent", loop_file="/srv/d1.img",
                              owner="no-such-user-xyz")
    assert desired.uid is None and desired.size_bytes is None


# ---------------------------------------------------------------------------------------------
# The plan: (current, desired) -> actions

LOOP = DesiredDevice(name="d1", state="present", mount_point="/srv/node/d1",
                     source="/srv/disks/d1.img", loop=True, size_bytes=GIB, owner="swift",
                     uid=1000, gid=1000)
DISK = replace(LOOP, source="/dev/sdb", loop=False, size_bytes=None)
OURS = Mount(device="7:0", mount_point="/srv/node/d1", options=("rw", "noatime"),
             fs_type="xfs", source="/dev/loop0", super_options=("rw", "inode64"))
XFS = {"TYPE": "xfs", "UUID": "34bf"}
LOOP0 = LoopDevice(path="/dev/loop0", device="7:0", backing_file="/srv/disks/d1.img",
                   autoclear=True)
DONE = DeviceState(exists=True, size_bytes=GIB, probe=XFS, mount=OURS, ours=True,
                   mount_point_exists=True, owner=(1000, 1000), fstab_line=LOOP.fstab_line,
                   loops=(LOOP0,))
NOTHING = DeviceState(exists=False)
BLANK_DISK = DeviceState(exists=True, is_block=True)
DISK_DONE = replace(DONE, is_block=True, size_bytes=None, mount=replace(OURS, device="8:16"),
                    fstab_line=DISK.fstab_line, loops=())
UNMOUNTED = replace(DONE, mount=None, ours=False, owner=(0, 0), loops=())
ABSENT = replace(LOOP, state="absent", uid=None, gid=None, size_bytes=None)

PLANS = [
    # name, current, desired, actions
    ("new loop file", NOTHING, LOOP,
     ["create_file", "mkfs", "mkdir", "mount", "chown", "write_fstab"]),
    ("all done", DONE, LOOP, []),
    ("unmounted by hand (or a restart)", UNMOUNTED, LOOP, ["mount", "chown"]),
    ("options lost", replace(DONE, mount=replace(OURS, options=("rw", "relatime"))), LOOP,
     ["remount_options"]),
    ("wrong owner", replace(DONE, owner=(0, 0)), LOOP, ["chown"]),
    ("wrong group", replace(DONE, owner=(1000, 0)), LOOP, ["chown"]),
    ("also bind-mounted elsewhere", replace(DONE, elsewhere=("/var/lib/c1/d1",)), LOOP, []),
    ("fstab line missing", replace(DONE, fstab_line=None), LOOP, ["write_fstab"]),
    ("fstab line outdated", replace(DONE, fstab_line="/x /srv/node/d1 xfs defaults 0 0"), LOOP,
     ["write_fstab"]),
    ("fstab line aligned differently", replace(DONE, fstab_line=LOOP.fstab_line.replace(
        " ", "\t")), LOOP, []),
    ("file left blank by someone", replace(UNMOUNTED, probe={}, mount_point_exists=False,
                                           fstab_line=None), LOOP,
     ["mkfs", "mkdir", "mount", "chown", "write_fstab"]),
    ("blank disk", BLANK_DISK, DISK, ["mkfs", "mkdir", "mount", "chown", "write_fstab"]),
    ("formatted disk, unmounted", replace(DISK_DONE, mount=None, ours=False), DISK,
     ["mount", "chown"]),
    ("disk all done", DISK_DONE, DISK, []),
    ("foreign fs, forced", replace(BLANK_DISK, probe={"TYPE": "ext4"}),
     replace(DISK, force=True), ["mkfs", "mkdir", "mount", "chown", "write_fstab"]),
    ("absent: mounted loop file", DONE, ABSENT, ["umount", "remove_fstab", "remove_file"]),
    ("absent: loop without autoclear", replace(DONE, loops=(replace(LOOP0, autoclear=False),)),
     ABSENT, ["umount", "detach_loop", "remove_fstab", "remove_file"]),
    ("absent: stray loop device, unmounted", replace(UNMOUNTED, loops=(LOOP0,)), ABSENT,
     ["detach_loop", "remove_fstab", "remove_file"]),
    ("absent: already gone", NOTHING, ABSENT, []),
    ("absent: only the fstab line left", replace(NOTHING, fstab_line=LOOP.fstab_line), ABSENT,
     ["remove_fstab"]),
    ("absent: a disk is never wiped", DISK_DONE, replace(DISK, state="absent"),
     ["umount", "remove_fstab"]),
]


@pytest.mark.parametrize("current, desired, actions",
                         [p[1:] for p in PLANS], ids=[p[0] for p in PLANS])
def test_plan_table(current, desired, actions):
    assert plan_device(current, desired) == actions


REFUSALS = [
    ("source mounted elsewhere", replace(UNMOUNTED, elsewhere=("/mnt",)), LOOP, Conflict,
     "is mounted at /mnt"),
    ("something else at the mount point", replace(
        UNMOUNTED, mount=replace(OURS, source="/dev/sdc", device="8:32")), LOOP, Conflict,
     "/dev/sdc is already mounted at /srv/node/d1"),
    ("foreign filesystem", replace(BLANK_DISK, probe={"TYPE": "ext4"}), DISK, Conflict,
     "holds ext4; refusing to format it without force"),
    ("partition table", replace(BLANK_DISK, probe={"PTTYPE": "gpt"}), DISK, Conflict,
     "holds a gpt partition table"),
    ("several signatures", replace(BLANK_DISK, probe={"AMBIVALENT": "1"}), DISK, Conflict,
     "several filesystem signatures"),
    ("foreign fs mounted, even forced", replace(DISK_DONE, probe={"TYPE": "ext4"}),
     replace(DISK, force=True), Conflict, "unmount it before reformatting"),
    ("missing disk", NOTHING, DISK, NotFound, "block device /dev/sdb does not exist"),
    ("not a block device", DeviceState(exists=True), DISK, InvalidInput, "not a block device"),
    ("loop file of another size", replace(DONE, size_bytes=2 * GIB), LOOP, Conflict,
     "resizing is not supported"),
    ("absent: someone else's mount", replace(DONE, ours=False, mount=replace(
        OURS, source="/dev/sdc")), ABSENT, Conflict, "leaving it alone"),
    ("absent: loop file in use elsewhere", replace(UNMOUNTED, elsewhere=("/mnt",)), ABSENT,
     Conflict, "not removing it"),
]


@pytest.mark.parametrize("current, desired, error, message",
                         [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
def test_plan_refuses(current, desired, error, message):
    with pytest.raises(error, match=message):
        plan_device(current, desired)


def test_diff_is_empty_when_nothing_is_to_be_done():
    desired = replace(LOOP, uid=0, gid=0)
    current = replace(DONE, owner=(0, 0))
    assert describe(current, desired) == predict(current, desired)
    assert describe(current, desired)["owner"] == "root:root"


def test_diff_shows_a_remount_and_an_absent_device():
    desired = replace(LOOP, uid=0, gid=0)
    current = replace(UNMOUNTED, owner=(0, 0))
    before, after = describe(current, desired), predict(current, desired)
    assert (before["mounted"], after["mounted"]) == (False, True)
    assert after["mount_options"] == "noatime" and after["owner"] == "root:root"
    gone = predict(DONE, ABSENT)
    assert gone["mounted"] is False and gone["exists"] is False and gone["fstab"] is None


# ---------------------------------------------------------------------------------------------
# Real devices: a 1 GiB sparse file, XFS, loop-mounted under tmp_path


def _loop_devices_of(path):
    out = subprocess.run(["losetup", "-j", str(path)], capture_output=True, text=True,
                         check=False).stdout
    return [line.split(":", 1)[0] for line in out.splitlines() if line.strip()]


def _mounted_under(root):
    """Mount points under ``root``, read without the code under test: cleanup must work even
    when that code is broken (a broken parser once left every loop device attached)."""
    with open("/proc/self/mountinfo") as handle:
        points = [line.split()[4].replace("\\040", " ") for line in handle]
    return [point for point in points if point.startswith(str(root))]


def cleanup_devices(root):
    """Unmount everything under ``root`` and detach loop devices on its files (always)."""
    for point in reversed(_mounted_under(root)):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)
    for path in root.rglob("*.img"):
        for dev in _loop_devices_of(path):
            subprocess.run(["losetup", "-d", dev], capture_output=True, check=False)


_PROBE_RESULT = []


def loop_mount_unavailable():
    """Why real loop-mounted XFS cannot be tested here (None when it can); probed once."""
    if not _PROBE_RESULT:
        _PROBE_RESULT.append(_probe_loop_mount())
    return _PROBE_RESULT[0]


def _probe_loop_mount():
    if os.geteuid() != 0:
        return "needs root to loop-mount"
    missing = [t for t in ("mkfs.xfs", "mount", "umount", "losetup", "blkid") if not
               shutil.which(t)]
    if missing:
        return f"missing {', '.join(missing)} (bootstrap.sh --test installs xfsprogs)"
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory(prefix="stackctl-loop-probe-") as tmp:
        root = Path(tmp)
        image, point = root / "probe.img", root / "mnt"
        point.mkdir()
        with open(image, "wb") as handle:
            handle.truncate(GIB // 2)
        try:
            steps = (["mkfs.xfs", "-q", str(image)],
                     ["mount", "-t", "xfs", "-o", "loop", str(image), str(point)])
            for argv in steps:
                proc = subprocess.run(argv, capture_output=True, text=True, check=False)
                if proc.returncode != 0:
                    return f"{argv[0]} on a loop file failed: {proc.stderr.strip()}"
        finally:
            cleanup_devices(root)
    return None


@pytest.fixture
def lab(tmp_path):
    """Parameters of a loop device under tmp_path; everything is unmounted/detached after."""
    reason = loop_mount_unavailable()
    if reason:
        pytest.skip(reason)
    (tmp_path / "fstab").write_text(BASE)
    params = {"name": "d1", "mount_root": str(tmp_path / "node"),
              "loop_file": str(tmp_path / "disks" / "d1.img"), "size_gb": 1, "owner": "root",
              "fstab": str(tmp_path / "fstab")}
    try:
        yield params
    finally:
        cleanup_devices(tmp_path)
        assert _mounted_under(tmp_path) == []


def _state(params):
    return read_device(resolve_desired(**params))


def test_loop_device_lifecycle(lab, tmp_path):
    image, point = tmp_path / "disks" / "d1.img", tmp_path / "node" / "d1"

    checked = reconcile(lab, check=True)
    assert checked["changed"] and checked["actions"] == [
        "create_file", "mkfs", "mkdir", "mount", "chown", "write_fstab"]
    assert not image.exists() and not point.exists()
    assert (tmp_path / "fstab").read_text() == BASE
    assert checked["diff"]["after"]["mounted"] is True

    applied = reconcile(lab)
    assert applied["changed"]
    device = applied["device"]
    assert device["mounted"] and device["fs_type"] == "xfs" and device["uuid"]
    assert "noatime" in device["mount_options"].split(",")
    assert device["owner"] == "root:root" and device["loop_device"].startswith("/dev/loop")
    assert os.stat(image).st_size == GIB and os.stat(image).st_blocks * 512 < GIB // 4  # sparse
    assert applied["diff"]["after"] == applied["diff"]["after"] | {"mounted": True}
    fstab = (tmp_path / "fstab").read_text()
    assert fstab == BASE + f"{image} {point} xfs noatime,loop,nofail 0 0\n"

    again = reconcile(lab)
    assert again["changed"] is False and again["actions"] == []
    assert again["diff"]["before"] == again["diff"]["after"]
    assert (tmp_path / "fstab").read_text() == fstab

    # A restart (or a hand) unmounts it: the next run mounts it back, and says so.
    subprocess.run(["umount", str(point)], check=True)
    assert _loop_devices_of(image) == []  # mount -o loop sets autoclear
    assert reconcile(lab, check=True)["actions"] == ["mount", "chown"]
    back = reconcile(lab)
    assert back["changed"] and back["actions"] == ["mount", "chown"]
    assert back["device"]["mounted"] and reconcile(lab)["changed"] is False

    absent = dict(lab, state="absent")
    assert reconcile(absent, check=True)["actions"] == ["umount", "remove_fstab", "remove_file"]
    assert _state(lab).ours
    gone = reconcile(absent)
    assert gone["changed"] and not gone["device"]["mounted"]
    assert not image.exists() and _loop_devices_of(image) == []
    assert str(point) not in _mounted_under(tmp_path)
    assert (tmp_path / "fstab").read_text() == BASE
    assert reconcile(absent)["changed"] is False


def test_fstab_line_mounts_it_again(lab, tmp_path):
    reconcile(lab)
    point = tmp_path / "node" / "d1"
    subprocess.run(["umount", str(point)], check=True)
    # What a boot's `mount -a` does, with our fstab: the line alone brings the device back.
    subprocess.run(["mount", "-a", "-T", lab["fstab"]], check=True)
    state = _state(lab)
    assert state.ours and "noatime" in state.mount.options
    assert reconcile(lab)["changed"] is False


def test_lost_mount_options_are_restored_by_a_remount(lab, tmp_path):
    reconcile(lab)
    point = tmp_path / "node" / "d1"
    # With the target alone, util-linux 2.38 keeps noatime on `remount,relatime`: name both.
    source = _state(lab).mount.source
    subprocess.run(["mount", "-o", "remount,relatime", source, str(point)], check=True)
    assert "noatime" not in _state(lab).mount.options
    fixed = reconcile(lab)
    assert fixed["actions"] == ["remount_options"]
    assert "noatime" in fixed["device"]["mount_options"].split(",")


def test_wrong_owner_is_fixed(lab, tmp_path):
    reconcile(lab)
    point = tmp_path / "node" / "d1"
    os.chown(point, 1, 1)
    assert reconcile(lab)["actions"] == ["chown"]
    assert (os.stat(point).st_uid, os.stat(point).st_gid) == (0, 0)


def test_a_failed_mkfs_leaves_no_half_made_file(lab, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "fakebin") + os.pathsep + os.environ["PATH"])
    fake = tmp_path / "fakebin" / "mkfs.xfs"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'mkfs.xfs: disk exploded' >&2\nexit 1\n")
    fake.chmod(0o755)
    with pytest.raises(BackendError, match=r"^device d1: mkfs failed: mkfs\.xfs: disk exploded$"):
        reconcile(lab)
    assert not (tmp_path / "disks" / "d1.img").exists()
    assert (tmp_path / "fstab").read_text() == BASE


def test_a_foreign_filesystem_is_not_reformatted(lab, tmp_path):
    image = tmp_path / "disks" / "d1.img"
    image.parent.mkdir()
    with open(image, "wb") as handle:
        handle.truncate(GIB)
    subprocess.run(["mkfs.ext4", "-q", str(image)], check=True, capture_output=True)
    with pytest.raises(Conflict, match="holds ext4; refusing to format it without force"):
        reconcile(lab)
    assert _state(lab).fs_type == "ext4"
    forced = reconcile(dict(lab, force=True))
    assert forced["actions"][0] == "mkfs" and forced["device"]["fs_type"] == "xfs"


def test_a_device_mounted_elsewhere_is_refused(lab, tmp_path):
    reconcile(lab)
    other = dict(lab, mount_root=str(tmp_path / "other"))
    with pytest.raises(Conflict, match=r"d1.img is mounted at .*/node/d1, not .*/other/d1"):
        reconcile(other)


@pytest.fixture
def block_device(lab, tmp_path):
    """A blank 1 GiB loop device attached by hand: a real block device standing in for /dev/sdb."""
    image = tmp_path / "disks" / "sdb.img"
    image.parent.mkdir()
    with open(image, "wb") as handle:
        handle.truncate(GIB)
    dev = subprocess.run(["losetup", "-f", "--show", str(image)], capture_output=True,
                         text=True, check=True).stdout.strip()
    try:
        yield dev
    finally:
        cleanup_devices(tmp_path)


def test_block_device_is_formatted_once_and_never_wiped(lab, block_device):
    params = {k: v for k, v in lab.items() if k not in ("loop_file", "size_gb")}
    params["device"] = block_device
    applied = reconcile(params)
    assert applied["actions"] == ["mkfs", "mkdir", "mount", "chown", "write_fstab"]
    uuid = applied["device"]["uuid"]
    assert applied["device"]["mounted"] and uuid and applied["device"]["loop_device"] is None
    assert reconcile(params)["changed"] is False

    gone = reconcile(dict(params, state="absent"))
    assert gone["actions"] == ["umount", "remove_fstab"]
    assert _state(params).probe.get("UUID") == uuid  # the filesystem is still there
    back = reconcile(params)  # and is mounted again without a new mkfs
    assert back["actions"] == ["mount", "chown", "write_fstab"]
    assert back["device"]["uuid"] == uuid


@pytest.mark.parametrize("backing_id,file_id,backing_file,path,expected", [
    ((65024, 7), (65024, 7), "/var/lib/stackctl/swift/d1.img", "/var/lib/stackctl/swift/d1.img",
     True),
    # Same path, another file: a lab host's bind-mounted /var/lib/stackctl sees the machine's
    # loop device by the same name. The inode decides.
    ((65024, 7), (65024, 9), "/var/lib/stackctl/swift/d1.img", "/var/lib/stackctl/swift/d1.img",
     False),
    ((65024, 7), (65024, 7), "/elsewhere/d1.img", "/var/lib/stackctl/swift/d1.img", True),
    (None, (65024, 7), "/srv/disks/d1.img", "/srv/disks/d1.img", True),  # ioctl unreadable
    ((65024, 7), None, "/srv/disks/d1.img", "/srv/disks/d1.img", True),  # file gone
])
def test_loop_backing_is_matched_by_inode(backing_id, file_id, backing_file, path, expected):
    from stackcore.storage_device import backs

    loop = LoopDevice(path="/dev/loop0", device="7:0", backing_file=backing_file,
                      autoclear=True, backing_id=backing_id)
    assert backs(loop, path, file_id) is expected
