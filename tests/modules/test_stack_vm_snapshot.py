"""stack_vm_snapshot: its documentation against its argument spec, then the module run by
Ansible (AnsiballZ and all) on a VM disk made of tmp files (no libvirt needed: the module only
reads the disk, and a stopped VM's disk is just a file)."""

import subprocess

import pytest

NAME = "stk-0b9e7c1a-3d2f-4e5a-8b6c-7d8e9f0a1b2c"


def test_documentation_matches_the_argument_spec(documentation_mismatches):
    assert documentation_mismatches("stack_vm_snapshot") == []


@pytest.fixture
def instance_dir(tmp_path):
    base = tmp_path / "base.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(base), "32M"], check=True)
    (tmp_path / "instances" / NAME).mkdir(parents=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(base), "-F", "qcow2",
                    str(tmp_path / "instances" / NAME / "disk.qcow2"), "64M"], check=True)
    return tmp_path / "instances"


def test_check_then_make_then_reuse_then_remove(run_module, instance_dir, tmp_path):
    args = {"name": NAME, "path": str(tmp_path / "snap.qcow2"),
            "instance_dir": str(instance_dir)}
    checked = run_module("stack_vm_snapshot", args, check=True)
    assert checked["changed"] is True and checked["snapshot"] is None
    assert not (tmp_path / "snap.qcow2").exists()

    made = run_module("stack_vm_snapshot", args)
    assert made["changed"] is True, made.get("msg")
    assert made["snapshot"]["virtual_size"] == 64 * 2**20
    assert made["snapshot"]["format"] == "qcow2"

    again = run_module("stack_vm_snapshot", args)
    assert again["changed"] is False
    assert again["snapshot"]["sha256"] == made["snapshot"]["sha256"]

    gone = run_module("stack_vm_snapshot", dict(args, state="absent"))
    assert gone["changed"] is True and not (tmp_path / "snap.qcow2").exists()
    assert run_module("stack_vm_snapshot", dict(args, state="absent"))["changed"] is False


def test_an_upload_needs_the_expected_sha256(run_module, instance_dir, tmp_path):
    result = run_module("stack_vm_snapshot", {
        "name": NAME, "path": str(tmp_path / "snap.qcow2"), "instance_dir": str(instance_dir),
        "upload_url": "http://127.0.0.1:9/v1/AUTH_x/images/y"})
    assert "missing parameter(s) required by 'upload_url': sha256" in result["msg"]
