"""stack_storage_device run by Ansible: a 1 GiB loop-mounted XFS file under a tmp dir."""

import os
import shutil
import subprocess

import pytest

BASE = "# test fstab\n"


def _skip_reason():
    if os.geteuid() != 0:
        return "needs root to loop-mount"
    if not shutil.which("mkfs.xfs"):
        return "mkfs.xfs missing (bootstrap.sh --test installs xfsprogs)"
    if not os.path.exists("/dev/loop-control"):
        return "no loop devices (/dev/loop-control) in this container"
    return None


def cleanup_devices(root):
    """Unmount everything under ``root`` and detach loop devices on its files."""
    with open("/proc/self/mountinfo") as handle:
        points = [line.split()[4] for line in handle if line.split()[4].startswith(str(root))]
    for point in reversed(points):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)
    for image in root.rglob("*.img"):
        out = subprocess.run(["losetup", "-j", str(image)], capture_output=True, text=True,
                             check=False).stdout
        for line in out.splitlines():
            subprocess.run(["losetup", "-d", line.split(":", 1)[0]], capture_output=True,
                           check=False)


@pytest.fixture
def lab(tmp_path):
    """Module arguments for a loop device under tmp_path; unmounted and detached after."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    (tmp_path / "fstab").write_text(BASE)
    args = {"name": "d1", "mount_root": str(tmp_path / "node"),
            "loop_file": str(tmp_path / "disks" / "d1.img"), "size_gb": 1, "owner": "root",
            "fstab": str(tmp_path / "fstab")}
    try:
        yield args
    finally:
        cleanup_devices(tmp_path)


def _mounted(point):
    with open("/proc/self/mountinfo") as handle:
        return any(line.split()[4] == str(point) for line in handle)


def test_documentation_matches_argument_spec(documentation_mismatches):
    assert documentation_mismatches("stack_storage_device") == []


def test_check_apply_check_apply(run_module, lab, tmp_path):
    image, point = tmp_path / "disks" / "d1.img", tmp_path / "node" / "d1"

    checked = run_module("stack_storage_device", lab, check=True, diff=True)
    assert checked["_status"] == "ok" and checked["changed"] is True
    assert checked["actions"] == ["create_file", "mkfs", "mkdir", "mount", "chown", "write_fstab"]
    assert checked["diff"]["before"]["mounted"] is False
    assert checked["diff"]["after"]["mounted"] is True
    assert not image.exists() and not _mounted(point)
    assert (tmp_path / "fstab").read_text() == BASE

    applied = run_module("stack_storage_device", lab, diff=True)
    assert applied["_status"] == "ok" and applied["changed"] is True
    device = applied["device"]
    assert device["mounted"] and device["fs_type"] == "xfs" and device["owner"] == "root:root"
    assert "noatime" in device["mount_options"].split(",") and _mounted(point)
    assert device["fstab"] == f"{image} {point} xfs noatime,loop,nofail 0 0"
    assert "+    mounted: true" in applied["_stdout"]  # --diff shows it on screen

    again_checked = run_module("stack_storage_device", lab, check=True)
    assert again_checked["changed"] is False and again_checked["actions"] == []
    again = run_module("stack_storage_device", lab, diff=True)
    assert again["changed"] is False and again["diff"]["before"] == again["diff"]["after"]

    subprocess.run(["umount", str(point)], check=True)
    back = run_module("stack_storage_device", lab)
    assert back["changed"] is True and back["actions"] == ["mount", "chown"] and _mounted(point)

    absent = dict(lab, state="absent")
    gone = run_module("stack_storage_device", absent, diff=True)
    assert gone["changed"] is True and gone["actions"] == ["umount", "remove_fstab", "remove_file"]
    assert not image.exists() and not _mounted(point)
    assert (tmp_path / "fstab").read_text() == BASE
    assert run_module("stack_storage_device", absent)["changed"] is False


@pytest.mark.parametrize("args, message", [
    ({"owner": "no-such-user-xyz"}, "user 'no-such-user-xyz' does not exist"),
    ({"size_gb": None}, "size_gb must be a whole number"),
    ({"name": "d/1"}, "invalid device name"),
    ({"device": "/dev/null"}, "mutually exclusive"),
])
def test_bad_parameters_fail_with_one_line_and_touch_nothing(run_module, lab, tmp_path,
                                                             args, message):
    result = run_module("stack_storage_device", {**lab, **args})
    assert result["_status"] == "failed" and message in result["msg"]
    assert "\n" not in result["msg"] and "Traceback" not in result["_stdout"]
    assert not os.path.exists(tmp_path / "disks" / "d1.img")
    assert (tmp_path / "fstab").read_text() == BASE


def test_a_device_mounted_elsewhere_is_a_clear_failure(run_module, lab, tmp_path):
    assert run_module("stack_storage_device", lab)["changed"] is True
    result = run_module("stack_storage_device", dict(lab, mount_root=str(tmp_path / "other")))
    assert result["_status"] == "failed" and "is mounted at" in result["msg"]
    assert result.get("changed", False) is False
