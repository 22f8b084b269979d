"""stack_swift_conf run by Ansible on a swift.conf in a tmp dir: check, apply, check again,
apply again; a different hash is refused and the file left alone; diffs never show the hash."""

import ast
import grp
import json
import os
import stat
from pathlib import Path

import pytest
import yaml

LIBRARY = Path(__file__).resolve().parents[2] / "library"
PREFIX = "p" * 8 + "0123456789abcdef"
SUFFIX = "s" * 8 + "fedcba9876543210"
OLD_PREFIX = "o" * 8 + "1111222233334444"
GROUP = grp.getgrgid(os.getgid()).gr_name

# The module makes the file root-owned (uid 0) and treats any other owner as drift to repair.
needs_root = pytest.mark.skipif(os.geteuid() != 0,
                                reason="stack_swift_conf chowns swift.conf to root")


def conf_args(tmp_path, **kw):
    return dict({"path": str(tmp_path / "etc" / "swift.conf"), "hash_path_prefix": PREFIX,
                 "hash_path_suffix": SUFFIX, "group": GROUP}, **kw)


def snapshot(path):
    st = os.stat(path)
    return path.read_bytes(), st.st_mtime_ns, st.st_ino, stat.S_IMODE(st.st_mode)


def shown(result):
    """Everything the run put on screen or returned."""
    return result["_stdout"] + json.dumps(result)


def test_documentation_is_valid_yaml():
    source = ast.parse((LIBRARY / "stack_swift_conf.py").read_text())
    blocks = {node.targets[0].id: ast.literal_eval(node.value) for node in source.body
              if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
              and node.targets[0].id in ("DOCUMENTATION", "EXAMPLES", "RETURN")}
    assert len(blocks) == 3 and all(yaml.safe_load(text) for text in blocks.values())


def test_documentation_matches_argument_spec(documentation_mismatches):
    assert documentation_mismatches("stack_swift_conf") == []


@needs_root
def test_check_apply_check_apply(run_module, tmp_path):
    args = conf_args(tmp_path)
    conf = tmp_path / "etc" / "swift.conf"

    checked = run_module("stack_swift_conf", args, check=True, diff=True)
    assert checked["_status"] == "ok" and checked["changed"] is True
    assert checked["path"] == str(conf) and not (tmp_path / "etc").exists()

    applied = run_module("stack_swift_conf", args, diff=True)
    assert applied["_status"] == "ok" and applied["changed"] is True
    text = conf.read_text()
    assert f"swift_hash_path_prefix = {PREFIX}\n" in text
    assert "[storage-policy:0]\nname = gold\ndefault = yes\n" in text
    st = os.stat(conf)
    assert stat.S_IMODE(st.st_mode) == 0o640 and st.st_gid == os.getgid() and st.st_uid == 0
    written = snapshot(conf)

    assert run_module("stack_swift_conf", args, check=True)["changed"] is False
    again = run_module("stack_swift_conf", args, diff=True)
    assert again["_status"] == "ok" and again["changed"] is False
    assert snapshot(conf) == written


@needs_root
def test_diff_masks_the_hash_values(run_module, tmp_path):
    applied = run_module("stack_swift_conf", conf_args(tmp_path), diff=True)
    assert applied["changed"] is True
    assert "swift_hash_path_prefix = ********" in applied["diff"]["after"]
    assert "swift_hash_path_suffix = ********" in applied["diff"]["after"]
    assert "+swift_hash_path_prefix = ********" in applied["_stdout"]  # --diff on screen
    assert PREFIX not in shown(applied) and SUFFIX not in shown(applied)


@needs_root
def test_policy_change_rewrites_and_shows_only_policies(run_module, tmp_path):
    run_module("stack_swift_conf", conf_args(tmp_path))
    args = conf_args(tmp_path, policies=[{"index": 0, "name": "gold", "default": True},
                                         {"index": 1, "name": "silver"}])

    result = run_module("stack_swift_conf", args, diff=True)

    assert result["changed"] is True
    assert "+[storage-policy:1]" in result["_stdout"]
    assert "[storage-policy:1]\nname = silver\n" in (tmp_path / "etc" / "swift.conf").read_text()
    assert PREFIX not in shown(result)
    assert run_module("stack_swift_conf", args)["changed"] is False


@needs_root
@pytest.mark.parametrize("other", [{"hash_path_prefix": OLD_PREFIX},
                                   {"hash_path_suffix": OLD_PREFIX}], ids=["prefix", "suffix"])
def test_a_different_hash_is_refused_and_the_file_left_alone(run_module, tmp_path, other):
    conf = tmp_path / "etc" / "swift.conf"
    run_module("stack_swift_conf", conf_args(tmp_path))
    written = snapshot(conf)

    for check in (True, False):
        result = run_module("stack_swift_conf", conf_args(tmp_path, **other), check=check,
                            diff=True)
        assert result["_status"] == "failed" and not result.get("changed")
        msg = result["msg"]
        assert "\n" not in msg and msg.startswith(f"{conf} already has a different hash")
        assert "Traceback" not in result["_stdout"]
        assert PREFIX not in shown(result) and OLD_PREFIX not in shown(result)
        assert snapshot(conf) == written


@needs_root
def test_allowed_hash_change_masks_the_old_values_too(run_module, tmp_path):
    conf = tmp_path / "etc" / "swift.conf"
    run_module("stack_swift_conf", conf_args(tmp_path, hash_path_prefix=OLD_PREFIX))

    result = run_module("stack_swift_conf", conf_args(tmp_path, allow_hash_change=True),
                        diff=True)

    assert result["_status"] == "ok" and result["changed"] is True
    assert "swift_hash_path_prefix = ********\n" in result["diff"]["before"]
    assert OLD_PREFIX not in shown(result)  # not a parameter, so only mask() hides it
    assert f"swift_hash_path_prefix = {PREFIX}\n" in conf.read_text()


@needs_root
def test_wrong_mode_is_repaired_without_a_content_change(run_module, tmp_path):
    conf = tmp_path / "etc" / "swift.conf"
    run_module("stack_swift_conf", conf_args(tmp_path))
    content = conf.read_bytes()
    os.chmod(conf, 0o644)

    assert run_module("stack_swift_conf", conf_args(tmp_path), check=True)["changed"] is True
    assert stat.S_IMODE(os.stat(conf).st_mode) == 0o644
    assert run_module("stack_swift_conf", conf_args(tmp_path))["changed"] is True
    assert stat.S_IMODE(os.stat(conf).st_mode) == 0o640 and conf.read_bytes() == content
    assert run_module("stack_swift_conf", conf_args(tmp_path))["changed"] is False


@pytest.mark.parametrize("args, message", [
    ({"hash_path_prefix": "short"}, "hash_path_prefix must be at least 16"),
    ({"policies": [{"index": 0, "name": "gold"}]}, "exactly one storage policy"),
    ({"group": "no-such-group-stackctl"}, "group 'no-such-group-stackctl' does not exist"),
])
def test_bad_input_fails_with_one_line_and_writes_nothing(run_module, tmp_path, args, message):
    result = run_module("stack_swift_conf", conf_args(tmp_path, **args))
    assert result["_status"] == "failed" and message in result["msg"]
    assert "\n" not in result["msg"] and "Traceback" not in result["_stdout"]
    assert not (tmp_path / "etc").exists()
