"""stack_ring run by Ansible on a temporary swift_dir: check, apply, check again, apply again."""

import hashlib
import importlib.util

import pytest

# The module runs Swift in its own process; never import it here (eventlet's process-wide
# side effects break other tests in this process: see tests/unit/core/test_ring.py).
if importlib.util.find_spec("swift") is None:
    pytest.skip("swift is not installed", allow_module_level=True)


def dev(i, **kw):
    return dict({"zone": i, "ip": f"127.0.0.{i}", "port": 6200, "device": "sdb", "weight": 100},
                **kw)


def ring_args(swift_dir, devices=None, **kw):
    return dict({"name": "object", "swift_dir": str(swift_dir), "part_power": 8, "replicas": 3,
                 "min_part_hours": 0, "devices": devices or [dev(1), dev(2), dev(3)]}, **kw)


def files(swift_dir):
    return {p.name: (p.stat().st_mtime_ns, hashlib.md5(p.read_bytes()).hexdigest())
            for p in swift_dir.iterdir()}


def test_documentation_matches_argument_spec(documentation_mismatches):
    assert documentation_mismatches("stack_ring") == []


def test_check_apply_check_apply(run_module, tmp_path):
    args = ring_args(tmp_path)

    checked = run_module("stack_ring", args, check=True, diff=True)
    assert checked["_status"] == "ok" and checked["changed"] is True
    assert checked["parts_moved"] == 768 and list(tmp_path.iterdir()) == []
    assert [a["action"] for a in checked["actions"]][:2] == ["create", "add_device"]
    assert checked["diff"]["before"] == {"name": "object", "state": "absent"}

    applied = run_module("stack_ring", args, diff=True)
    assert applied["changed"] is True and applied["parts_moved"] == 768
    ring = applied["ring"]
    assert ring["md5"] == checked["ring"]["md5"]
    assert ring["md5"] == hashlib.md5((tmp_path / "object.ring.gz").read_bytes()).hexdigest()
    assert ring["builder"] == str(tmp_path / "object.builder") and ring["balance"] == 0.0
    assert [d["parts"] for d in ring["devices"]] == [256, 256, 256]
    assert "+    part_power: 8" in applied["_stdout"]  # --diff shows it on screen
    written = files(tmp_path)

    assert run_module("stack_ring", args, check=True)["changed"] is False
    again = run_module("stack_ring", args, diff=True)
    assert again["changed"] is False and again["actions"] == [] and again["parts_moved"] == 0
    assert again["diff"]["before"] == again["diff"]["after"]
    assert files(tmp_path) == written


def test_add_device_check_then_apply(run_module, tmp_path):
    run_module("stack_ring", ring_args(tmp_path))
    written = files(tmp_path)
    args = ring_args(tmp_path, devices=[dev(1), dev(2), dev(3), dev(4)])

    checked = run_module("stack_ring", args, check=True, diff=True)
    assert checked["changed"] and checked["parts_moved"] == 192
    assert len(checked["diff"]["after"]["devices"]) == 4
    assert files(tmp_path) == written

    applied = run_module("stack_ring", args)
    assert applied["changed"] and applied["parts_moved"] == 192
    assert applied["ring"]["md5"] == checked["ring"]["md5"]
    assert run_module("stack_ring", args)["changed"] is False


def test_min_part_hours_block_is_a_warning(run_module, tmp_path):
    run_module("stack_ring", ring_args(tmp_path, min_part_hours=1))
    result = run_module("stack_ring", ring_args(
        tmp_path, devices=[dev(1), dev(2), dev(3), dev(4)], min_part_hours=1))
    assert result["_status"] == "ok" and result["min_part_hours_blocked"] is True
    assert any("min_part_hours" in w for w in result.get("warnings", []))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"part_power": 10}, "partition power increase procedure"),
        ({"devices": [dev(1), dev(2), dev(3, port=70000)]}, "port 70000"),
        ({"devices": [dev(1), dev(2), dev(3, device="../sdb")]}, "invalid device name"),
        ({"devices": [dev(1), dev(2)]}, "at least 3 devices"),
        ({"name": "objects"}, "invalid ring name"),
    ],
)
def test_bad_parameters_fail_cleanly_without_writing(run_module, tmp_path, change, message):
    run_module("stack_ring", ring_args(tmp_path))
    written = files(tmp_path)
    result = run_module("stack_ring", dict(ring_args(tmp_path), **change))
    assert result["_status"] == "failed" and message in result["msg"]
    assert "Traceback" not in result["msg"]
    assert files(tmp_path) == written
