"""A `vm create` killed at any step is cleaned up by the next stackctl run: no orphan domain,
disk, seed or row, and the capacity it claimed is free again."""

import os
import signal
import subprocess
import time

import pytest

from .conftest import INSTANCES, STACKCTL, assert_nothing_left, domain_names

# Journal steps of vm.create, in order (stackctl/workflows/vm.py records each before doing it).
CREATE_STEPS = ["claim", "image", "domain", "finish"]


def vm_uuids_on_host():
    return {name[4:] for name in domain_names() if name.startswith("stk-")} | {
        p.name[4:] for p in INSTANCES.glob("stk-*")}


@pytest.mark.parametrize("step", CREATE_STEPS)
def test_create_killed_at_step_leaves_no_orphan(cli, tenant_key, imported_image, step):
    before = vm_uuids_on_host()
    proc = cli.run("vm", "create", "crash-1", "--image", imported_image, "--flavor", "m1.nano",
                   "--key", "k1", check=False, STACKCTL_CRASH_AT=step)
    assert proc.returncode == -signal.SIGKILL, proc.stderr

    cli.run("recover")
    assert cli.json("vm", "list") == []
    for vm_uuid in vm_uuids_on_host() - before:
        assert_nothing_left(vm_uuid)
    # The name and the capacity are free again: the same create now succeeds.
    cli.run("vm", "create", "crash-1", "--image", imported_image, "--flavor", "m1.nano",
            "--key", "k1", "--no-wait")
    cli.run("vm", "delete", "crash-1")


def test_create_killed_from_outside_while_the_host_works(cli, tenant_key, imported_image):
    """SIGKILL the whole process group mid-playbook (as an OOM kill or a lost terminal would)."""
    before = vm_uuids_on_host()
    proc = subprocess.Popen([STACKCTL, "vm", "create", "crash-2", "--image", imported_image,
                             "--flavor", "m1.nano", "--key", "k1"], env=cli.env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (vm_uuids_on_host() - before):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()

    cli.run("vm", "list")  # any state-changing or listing run recovers first
    cli.run("recover")
    assert cli.json("vm", "list") == []
    for vm_uuid in vm_uuids_on_host() - before:
        assert_nothing_left(vm_uuid)
