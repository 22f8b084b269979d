"""stack_hypervisor_info run by Ansible against qemu:///system: read-only, typed, cached probe."""

import re

import pytest

pytestmark = pytest.mark.integration

DOTTED = re.compile(r"^\d+\.\d+\.\d+$")


def test_documentation_matches_argument_spec(documentation_mismatches):
    assert documentation_mismatches("stack_hypervisor_info") == []


def test_reports_the_host_and_never_changes(run_module, tmp_path):
    result = run_module("stack_hypervisor_info", {"instances_dir": str(tmp_path / "missing")},
                        diff=True)
    assert result["_status"] == "ok" and result["changed"] is False
    hv = result["hypervisor"]
    assert set(hv) == {"hostname", "vcpus", "memory_mb", "disk_gb", "disk_free_gb",
                       "kvm_usable", "virt_type", "libvirt_version", "qemu_version", "domains"}
    assert hv["vcpus"] >= 1 and hv["memory_mb"] >= 256
    assert hv["disk_gb"] >= hv["disk_free_gb"] >= 0
    assert isinstance(hv["kvm_usable"], bool)
    assert hv["virt_type"] == ("kvm" if hv["kvm_usable"] else "qemu")
    assert DOTTED.match(hv["libvirt_version"]) and DOTTED.match(hv["qemu_version"])
    assert result["kvm_probe"]["qemu_version"] == hv["qemu_version"]
    for dom in hv["domains"]:
        assert set(dom) == {"name", "uuid", "state"}
        assert dom["state"] in ("no state", "running", "idle", "paused", "in shutdown",
                                "shut off", "crashed", "pmsuspended")


def test_check_mode_gives_the_same_answer(run_module):
    checked = run_module("stack_hypervisor_info", {}, check=True)
    assert checked["_status"] == "ok" and checked["changed"] is False
    assert checked["hypervisor"]["virt_type"] in ("kvm", "qemu")


def test_forced_virt_type_is_reported_as_given(run_module):
    result = run_module("stack_hypervisor_info", {"virt_type": "qemu"})
    assert result["hypervisor"]["virt_type"] == "qemu"


def test_probe_true_reprobes(run_module):
    result = run_module("stack_hypervisor_info", {"probe": True})
    assert result["kvm_probe"]["cached"] is False
    assert result["hypervisor"]["kvm_usable"] is result["kvm_probe"]["kvm_usable"]
    assert run_module("stack_hypervisor_info", {})["kvm_probe"]["cached"] is True


def test_bad_uri_fails_with_one_line(run_module):
    result = run_module("stack_hypervisor_info", {"uri": "qemu:///nonexistent-endpoint"})
    assert result["_status"] == "failed"
    assert "cannot connect to libvirt" in result["msg"] and "Traceback" not in result["msg"]
