"""``stackctl plan`` on the deployed all-in-one cloud: nothing pending on a converged host,
a hand-made drift in a file the roles template is reported (file, +/- lines, the daemon that
restarts) without being put right, and the exit status says which."""

import hashlib
import json
import os
import stat
from pathlib import Path

import pytest

from stackctl.workflows.plan import CHANGES_PENDING

# Read only by the rsync daemon, for replication, which a one-replica aio never does: no other
# test depends on it, and rsync re-reads it on each connection.
DRIFTED = Path("/etc/swift/rsyncd.conf")


def plan(cli, *args):
    proc = cli.run("plan", *args, check=False, timeout=900)
    assert proc.returncode in (0, CHANGES_PENDING), proc.stderr
    return proc


def test_a_converged_host_has_nothing_pending(cli):
    proc = plan(cli)
    assert proc.returncode == 0, proc.stdout
    assert "no changes: the fleet matches the playbooks" in proc.stdout


@pytest.fixture
def drifted_file():
    original, mode = DRIFTED.read_bytes(), stat.S_IMODE(DRIFTED.stat().st_mode)
    try:
        DRIFTED.write_bytes(original + b"# drift made by tests/integration/test_plan.py\n")
        yield hashlib.sha256(DRIFTED.read_bytes()).hexdigest()
    finally:
        DRIFTED.write_bytes(original)  # the original bytes: nothing to restart
        os.chmod(DRIFTED, mode)


def test_a_drift_is_reported_and_left_alone(cli, drifted_file):
    proc = plan(cli, "--tags", "storage_node")
    assert proc.returncode == CHANGES_PENDING, proc.stdout + proc.stderr
    assert f"{DRIFTED}: +0 -1" in proc.stdout
    assert "restarts: restart rsyncd" in proc.stdout
    assert hashlib.sha256(DRIFTED.read_bytes()).hexdigest() == drifted_file  # unchanged

    detail = json.loads(plan(cli, "--tags", "storage_node", "-o", "json").stdout)
    aio = next(h for h in detail["hosts"] if h["host"] == "aio")
    assert aio["restarts"] == ["restart rsyncd"]
    assert [c["role"] for c in aio["changes"]] == ["storage_node", "storage_node"]
    assert aio["vms_touched"] == []
