"""The all-in-one deploy converges: a second run of the site playbook changes nothing, check
mode predicts no change, and what it built is there (daemons, persistent network, dirs)."""

import json
import os
import re
import stat
import subprocess

from .conftest import PROJECT


def run_site(*extra):
    """Run playbooks/site.yml on the aio inventory; return {host: {ok, changed, failed, ...}}."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(PROJECT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    proc = subprocess.run([str(PROJECT / ".venv/bin/ansible-playbook"), "playbooks/site.yml",
                           *extra],
                          cwd=PROJECT, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    recap = proc.stdout[proc.stdout.rindex("PLAY RECAP"):]
    return {m["host"]: {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m["counts"])}
            for m in re.finditer(r"^(?P<host>\S+)\s+:\s+(?P<counts>.*)$", recap, re.M)}


def test_second_deploy_reports_no_change():
    run_site()
    stats = run_site()
    assert {host: s["changed"] for host, s in stats.items()} == {"aio": 0}
    assert all(s["failed"] == 0 and s["unreachable"] == 0 for s in stats.values())


def test_check_mode_predicts_no_change_on_a_deployed_host():
    stats = run_site("--check", "--diff")
    assert stats["aio"]["changed"] == 0


def test_what_the_deploy_built_is_there():
    virsh = ["virsh", "-c", "qemu:///system"]
    info = subprocess.run([*virsh, "net-info", "stack-provider"], capture_output=True, text=True,
                          check=True).stdout
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    assert fields["Active"].strip() == "yes"
    assert fields["Persistent"].strip() == "yes"
    assert fields["Autostart"].strip() == "yes"
    assert "no-ping" in subprocess.run([*virsh, "net-dumpxml", "stack-provider"],
                                       capture_output=True, text=True, check=True).stdout
    for path in ("/var/lib/stackctl/images", "/var/lib/stackctl/instances"):
        mode = os.stat(path).st_mode
        assert stat.S_IMODE(mode) & 0o005 == 0o005, f"{path} must be traversable by libvirt-qemu"
    with open("/var/lib/stackctl/virt.json") as handle:
        virt = json.loads(handle.read())
    assert "kvm_usable" in virt
