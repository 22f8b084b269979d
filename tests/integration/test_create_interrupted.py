"""A `vm create` killed at any step is cleaned up by the next stackctl run: no orphan domain,
disk, seed or row, and the capacity it claimed is free again.

Each test checks exactly the VM its own killed create made (the uuid `recover` reports), so
VMs that other runs create on the same host meanwhile cannot confuse it."""

import os
import signal
import sqlite3
import subprocess
import time

import pytest

from .conftest import STACKCTL, assert_nothing_left

# Journal steps of vm.create, in order (stackctl/workflows/vm.py records each before doing it;
# "domain" is entered mid-playbook, when the host run reaches the stack_vm task).
CREATE_STEPS = ["claim", "image", "domain", "finish"]
CREATE = ["vm", "create", "--image", "tg", "--flavor", "m1.nano", "--key", "k1"]


def create_argv(name, *extra):
    return [*CREATE[:2], name, *CREATE[2:], *extra]


def assert_recovered_and_clean(cli):
    """`recover` rolls the killed create back; nothing of that VM is left anywhere."""
    recovered = cli.json("recover")
    assert [(r["kind"], r["status"]) for r in recovered] == [("vm.create", "rolled_back")]
    assert cli.json("vm", "list") == []
    assert_nothing_left(recovered[0]["vm_uuid"])


@pytest.mark.parametrize("step", CREATE_STEPS)
def test_create_killed_at_step_leaves_no_orphan(cli, tenant_key, imported_image, step):
    proc = cli.run(*create_argv("crash-1"), check=False, STACKCTL_CRASH_AT=step)
    assert proc.returncode == -signal.SIGKILL, proc.stderr

    assert_recovered_and_clean(cli)
    # The name and the capacity are free again: the same create now succeeds.
    cli.run(*create_argv("crash-1", "--no-wait"))
    cli.run("vm", "delete", "crash-1")


def journal_step(db_path):
    """The current step of the running vm.create, read as another process would (WAL)."""
    try:
        with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=1) as conn:
            row = conn.execute("SELECT step FROM operations WHERE kind = 'vm.create' "
                               "AND status = 'running'").fetchone()
    except sqlite3.OperationalError:  # not created yet
        return None
    return row[0] if row else None


def test_create_killed_from_outside_while_the_host_works(cli, tenant_key, imported_image):
    """SIGKILL the whole process group while stack_vm runs on the host (as an OOM kill or a
    lost terminal would); the module may still finish after its caller is gone."""
    proc = subprocess.Popen([STACKCTL, *create_argv("crash-2")], env=cli.env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 60
    while journal_step(cli.home / "stackctl.db") != "domain" and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)  # inside the module's run: overlay, seed, define, start
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()

    assert_recovered_and_clean(cli)
