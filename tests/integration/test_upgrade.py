"""playbooks/upgrade.yml on the all-in-one cloud (no drain hook: one host has nowhere to move
VMs to): it runs host by host, checks libvirtd and every Swift server before and after, and a
run with nothing left to upgrade changes nothing. Then ``stackctl upgrade`` end to end."""

import os
import re
import subprocess

from .conftest import PROJECT


def run_upgrade(*extra):
    env = dict(os.environ, ANSIBLE_CONFIG=str(PROJECT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    proc = subprocess.run([str(PROJECT / ".venv/bin/ansible-playbook"), "playbooks/upgrade.yml",
                           *extra], cwd=PROJECT, env=env, capture_output=True, text=True,
                          check=False, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    recap = proc.stdout[proc.stdout.rindex("PLAY RECAP"):]
    counts = {m["host"]: {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m["counts"])}
              for m in re.finditer(r"^(?P<host>\S+)\s+:\s+(?P<counts>.*)$", recap, re.M)}
    return proc.stdout, counts


def test_second_upgrade_changes_nothing_and_the_health_checks_pass():
    run_upgrade()
    out, counts = run_upgrade("-e", "upgrade_drain_cmd=", "-e", "upgrade_enable_cmd=")
    assert counts["aio"]["changed"] == 0 and counts["aio"]["failed"] == 0
    assert re.search(r"msg: 'aio: libvirt [\d.]+, QEMU [\d.]+", out)
    for task in ("Ask the account, container and object servers for their health check",
                 "Ask the object server's recon which Swift it runs",
                 "Ask the proxy for its health check",
                 "Fail if this host's rings differ from the controller's builders"):
        block = out[out.index(task):].split("TASK [", 2)[0]
        assert "ok: [aio]" in block, block


def test_stackctl_upgrade_drains_upgrades_and_enables_the_host(cli):
    proc = cli.run("upgrade", "-o", "json", check=False, timeout=1800)
    assert proc.returncode == 0, proc.stderr
    assert '"done": [\n    "aio"\n  ]' in proc.stdout
    host = cli.json("host", "show", "aio")
    assert host["enabled"] is True
    assert "nothing to recover" in cli.run("recover").stdout
