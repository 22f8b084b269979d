"""`stackctl lab`: hosts that answer SSH as themselves, a lab that only grows, and a `down`
that leaves nothing behind (and can run twice). No deploy: a few seconds."""

import json
import subprocess

import pytest

from .labtools import INVENTORY_DIR, LAB_ROOT, lab, lab_leftovers, require_no_lab


@pytest.fixture
def two_hosts():
    """`lab up --hosts 2` and its status rows; the lab is taken down whatever happens."""
    require_no_lab()
    up = lab("up", "--hosts", "2")
    try:
        assert up.returncode == 0, up.stderr
        status = lab("status", "-o", "json")
        assert status.returncode == 0, status.stderr
        yield json.loads(status.stdout)
    finally:
        lab("down")


def test_two_hosts_answer_ssh_as_themselves_refuse_to_shrink_and_go_down_twice(two_hosts):
    assert [(h["name"], h["ssh"]) for h in two_hosts] == [("lab1", True), ("lab2", True)]
    for row in two_hosts:
        proc = subprocess.run(
            ["ssh", "-i", str(LAB_ROOT / "id_ed25519"), "-o", "BatchMode=yes",
             "-o", "ConnectTimeout=5", "-o", "StrictHostKeyChecking=yes",
             "-o", f"UserKnownHostsFile={INVENTORY_DIR / 'known_hosts'}",
             f"root@{row['address']}", "hostname"],
            capture_output=True, text=True, timeout=30, check=False)
        assert (proc.returncode, proc.stdout.strip()) == (0, row["name"]), proc.stderr

    shrink = lab("up", "--hosts", "1")
    assert shrink.returncode != 0
    assert len(shrink.stderr.strip().splitlines()) == 1, shrink.stderr
    assert "lab down" in shrink.stderr and shrink.stdout == ""
    assert [h["name"] for h in json.loads(lab("status", "-o", "json").stdout)] == ["lab1", "lab2"]

    first = lab("down")
    assert first.returncode == 0, first.stderr
    assert lab_leftovers() == []
    second = lab("down")
    assert second.returncode == 0, second.stderr
    assert lab_leftovers() == []
