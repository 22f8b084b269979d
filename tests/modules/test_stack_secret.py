"""stack_secret run by Ansible on a secrets file in a tmp dir: check, apply, check again, apply
again; values generated once and never changed; with no_log they never reach the output."""

import ast
import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

PROJECT = Path(__file__).resolve().parents[2]
LIBRARY = PROJECT / "library"
VENV_BIN = PROJECT / ".venv" / "bin"
NAMES = ["hash_path_prefix", "hash_path_suffix"]


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def secret_args(tmp_path, **kw):
    return dict({"path": str(tmp_path / "secrets" / "swift.json"), "names": NAMES}, **kw)


def test_documentation_is_valid_yaml():
    source = ast.parse((LIBRARY / "stack_secret.py").read_text())
    blocks = {node.targets[0].id: ast.literal_eval(node.value) for node in source.body
              if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
              and node.targets[0].id in ("DOCUMENTATION", "EXAMPLES", "RETURN")}
    assert len(blocks) == 3 and all(yaml.safe_load(text) for text in blocks.values())


def test_documentation_matches_argument_spec(documentation_mismatches):
    assert documentation_mismatches("stack_secret") == []


def test_check_apply_check_apply(run_module, tmp_path):
    args = secret_args(tmp_path)
    path = tmp_path / "secrets" / "swift.json"

    checked = run_module("stack_secret", args, check=True, diff=True)
    assert checked["_status"] == "ok" and checked["changed"] is True
    assert checked["created"] == NAMES and checked["values"] == {}
    assert checked["diff"] == {"before": {"names": []}, "after": {"names": NAMES}}
    assert not (tmp_path / "secrets").exists()

    applied = run_module("stack_secret", args)
    assert applied["_status"] == "ok" and applied["changed"] is True
    values = applied["values"]
    assert sorted(values) == NAMES and all(len(v) == 32 for v in values.values())
    assert json.loads(path.read_text()) == values
    assert mode(path) == 0o600 and mode(path.parent) == 0o700
    written = (path.read_bytes(), os.stat(path).st_mtime_ns)

    rechecked = run_module("stack_secret", args, check=True)
    assert rechecked["changed"] is False and rechecked["values"] == values
    again = run_module("stack_secret", args, diff=True)
    assert again["changed"] is False and again["created"] == [] and again["values"] == values
    assert again["diff"]["before"] == again["diff"]["after"] == {"names": NAMES}
    assert (path.read_bytes(), os.stat(path).st_mtime_ns) == written


def test_a_new_name_is_added_and_the_old_values_stay(run_module, tmp_path):
    first = run_module("stack_secret", secret_args(tmp_path))["values"]

    result = run_module("stack_secret", secret_args(tmp_path, names=[*NAMES, "tempurl_key"],
                                                    length=64), diff=True)

    assert result["changed"] is True and result["created"] == ["tempurl_key"]
    assert {k: result["values"][k] for k in NAMES} == first
    assert len(result["values"]["tempurl_key"]) == 64
    assert result["diff"]["before"] == {"names": NAMES}


def test_malformed_file_fails_and_is_left_alone(run_module, tmp_path):
    path = tmp_path / "secrets" / "swift.json"
    path.parent.mkdir()
    path.write_text('{"hash_path_prefix": "trunc')

    for check in (True, False):
        result = run_module("stack_secret", secret_args(tmp_path), check=check)
        assert result["_status"] == "failed" and "restore it from a backup" in result["msg"]
        assert "\n" not in result["msg"] and "Traceback" not in result["_stdout"]
        assert path.read_text() == '{"hash_path_prefix": "trunc'
        assert sorted(p.name for p in path.parent.iterdir()) == ["swift.json"]


@pytest.mark.parametrize("args, message", [
    ({"length": 8}, "length must be between 16 and 128"),
    ({"length": 256}, "length must be between 16 and 128"),
    ({"names": ["ok", "not-ok"]}, "invalid secret name 'not-ok'"),
])
def test_bad_input_fails_and_creates_nothing(run_module, tmp_path, args, message):
    result = run_module("stack_secret", secret_args(tmp_path, **args))
    assert result["_status"] == "failed" and message in result["msg"]
    assert not (tmp_path / "secrets").exists()


# --- no_log: run through a playbook, since ad-hoc `ansible -m` cannot set it ---------------------


def run_play(tmp_path, task):
    """Run one task on localhost through ansible-playbook -v (which prints task results)."""
    play = [{"hosts": "localhost", "gather_facts": False, "tasks": [task]}]
    playbook = tmp_path / "play.yml"
    playbook.write_text(yaml.safe_dump(play))
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_STDOUT_CALLBACK="default",
               ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0",
               ANSIBLE_DEPRECATION_WARNINGS="0")
    proc = subprocess.run(
        [str(VENV_BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", "-v",
         "-e", f"ansible_python_interpreter={VENV_BIN / 'python'}", str(playbook)],
        cwd=PROJECT, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


@pytest.mark.parametrize("no_log", [True, False], ids=["no_log", "logged"])
def test_values_reach_the_output_only_without_no_log(tmp_path, no_log):
    args = secret_args(tmp_path)
    task = {"name": "secrets", "stack_secret": args, "register": "s", "no_log": no_log}

    outputs = [run_play(tmp_path, task) for _ in range(2)]  # generating, then reading

    values = json.loads(Path(args["path"]).read_text())
    for out in outputs:
        leaked = [v for v in values.values() if v in out]
        if no_log:
            assert leaked == [] and "censored" in out
        else:
            assert len(leaked) == 2  # the control: -v does print an unprotected result
