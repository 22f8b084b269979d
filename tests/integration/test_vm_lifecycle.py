"""A tenant's VM from create to delete, through the real CLI, libvirtd and QEMU."""

import subprocess

from .conftest import assert_nothing_left, domain_names, ssh


def domain_state(name):
    out = subprocess.run(["virsh", "-c", "qemu:///system", "domstate", name],
                         capture_output=True, text=True, check=True).stdout
    return out.strip()


def test_vm_answers_ssh_with_the_tenants_key_and_delete_leaves_nothing(cli, tenant_key,
                                                                        imported_image):
    cli.run("vm", "create", "web-1", "--image", imported_image, "--flavor", "m1.nano",
            "--key", "k1")
    vm = cli.json("vm", "show", "web-1")
    assert vm["state"] == "running"
    assert vm["address"]
    domain = f"stk-{vm['uuid']}"
    assert domain in domain_names()

    proc = ssh(vm["address"], tenant_key, "hostname && cat /root/.ssh/authorized_keys")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "web-1"
    assert tenant_key.with_suffix(".pub").read_text().split()[1] in proc.stdout

    cli.run("vm", "stop", "web-1")
    assert cli.json("vm", "show", "web-1")["state"] == "stopped"
    assert domain_state(domain) == "shut off"

    cli.run("vm", "start", "web-1")
    vm = cli.json("vm", "show", "web-1")
    assert vm["state"] == "running"
    assert ssh(vm["address"], tenant_key, "true").returncode == 0

    cli.run("vm", "delete", "web-1")
    assert_nothing_left(vm["uuid"])
    assert cli.json("vm", "list") == []


def test_console_log_shows_the_guest_booting(cli, tenant_key, imported_image):
    cli.run("vm", "create", "log-1", "--image", imported_image, "--flavor", "m1.nano",
            "--key", "k1")
    log = cli.run("vm", "console-log", "log-1").stdout
    assert "stackctl-guest: ready log-1" in log


def test_another_tenant_cannot_see_or_touch_the_vm(cli, tenant_key, imported_image):
    cli.run("vm", "create", "mine", "--image", imported_image, "--flavor", "m1.nano", "--key", "k1")
    cli.run("tenant", "create", "intruder")
    other = {"STACKCTL_TENANT": "intruder"}
    assert cli.json("vm", "list", **other) == []
    for action in (["show"], ["stop"], ["delete"], ["console-log"]):
        proc = cli.run("vm", *action, "mine", check=False, **other)
        assert proc.returncode != 0
        assert "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    assert cli.json("vm", "show", "mine")["state"] == "running"
