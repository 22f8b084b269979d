"""Shared helpers for module tests: run a module through Ansible (AnsiballZ and all) and parse
its result; check a module's DOCUMENTATION against its argument_spec.

    def test_something(run_module):
        result = run_module("stack_network", {"name": "x", "state": "absent"}, check=True)
        assert result["changed"] is False

``run_module`` runs ``ansible localhost -c local -m NAME -a '<json>' [--check] [--diff]`` from
the project root (so ansible.cfg's ``library`` and ``module_utils`` apply) with the venv's Python
on the "host" side. ansible-core 2.19 ships no ``json`` callback (it lives in ansible.posix),
and the built-in callbacks drop ``diff`` and ``warnings`` from what they print, so a small
notification callback written at run time saves the host's complete result as JSON. The
result dict comes back as the module returned it (``changed``, ``diff``, ``failed``, ``msg``,
``warnings``, return values) plus ``_stdout`` (the default callback's screen output, where
``--diff`` shows the diff) and ``_rc``. A module failure is returned, not raised; an Ansible
that produced no result raises AssertionError.
"""

import atexit
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

PROJECT = Path(__file__).resolve().parents[2]
LIBRARY = PROJECT / "library"
VENV_BIN = PROJECT / ".venv" / "bin"
PYTHON = VENV_BIN / "python"

_CALLBACK_NAME = "stackctl_test_result"
_CALLBACK_SOURCE = '''
import json
import os

from ansible.plugins.callback import CallbackBase
from ansible.vars.clean import module_response_deepcopy, strip_internal_keys


class CallbackModule(CallbackBase):
    """Save each host's last task result, complete, to $STACKCTL_TEST_RESULT_DIR/<host>.json."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "stackctl_test_result"
    CALLBACK_NEEDS_ENABLED = True

    def _save(self, result, status):
        data = strip_internal_keys(module_response_deepcopy(result.result))
        data["_status"] = status
        path = os.path.join(os.environ["STACKCTL_TEST_RESULT_DIR"],
                            result.host.get_name() + ".json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(data, f, default=str)

    def v2_runner_on_ok(self, result):
        self._save(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._save(result, "failed")

    def v2_runner_on_unreachable(self, result):
        self._save(result, "unreachable")

    def v2_runner_on_skipped(self, result):
        self._save(result, "skipped")
'''
_callback_dir = None


def _callback_plugins():
    """A directory holding the result-saving callback (written once per test process)."""
    global _callback_dir
    if _callback_dir is None:
        _callback_dir = tempfile.mkdtemp(prefix="stackctl-test-callback-")
        atexit.register(shutil.rmtree, _callback_dir, True)
        Path(_callback_dir, f"{_CALLBACK_NAME}.py").write_text(_CALLBACK_SOURCE)
    return _callback_dir


def run_module(name, args, check=False, diff=False, timeout=600, env=None):
    """Run module ``name`` with ``args`` (a dict) on localhost; return its result."""
    argv = [str(VENV_BIN / "ansible"), "localhost", "-i", "localhost,", "-c", "local",
            "-m", name, "-e", f"ansible_python_interpreter={PYTHON}"]
    if args:  # `-a '{}'` would be parsed as a free-form string
        argv += ["-a", json.dumps(args)]
    argv += ["--check"] * bool(check) + ["--diff"] * bool(diff)
    with tempfile.TemporaryDirectory(prefix="stackctl-test-result-") as result_dir:
        full_env = dict(
            os.environ,
            ANSIBLE_CALLBACK_PLUGINS=f"{_callback_plugins()}:{PROJECT / 'plugins' / 'callback'}",
            ANSIBLE_CALLBACKS_ENABLED=_CALLBACK_NAME,
            ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
            ANSIBLE_STDOUT_CALLBACK="default",
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_DEPRECATION_WARNINGS="0",
            ANSIBLE_LOCALHOST_WARNING="0",
            ANSIBLE_INVENTORY_UNPARSED_WARNING="0",
            STACKCTL_TEST_RESULT_DIR=result_dir,
        )
        full_env.update(env or {})
        proc = subprocess.run(argv, cwd=PROJECT, env=full_env, capture_output=True, text=True,
                              timeout=timeout, check=False)
        saved = Path(result_dir, "localhost.json")
        if not saved.exists():
            raise AssertionError(
                f"ansible saved no result for {name} (rc {proc.returncode}):\n"
                f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
            )
        result = json.loads(saved.read_text())
    result["_stdout"] = proc.stdout + proc.stderr
    result["_rc"] = proc.returncode
    return result


@pytest.fixture(name="run_module")
def run_module_fixture():
    """The ``run_module`` function, as a fixture."""
    return run_module


def load_library_module(name):
    """Import ``library/<name>.py`` as a Python module (``ansible.module_utils.stackcore`` is
    made importable from plugins/module_utils, as AnsiballZ would ship it)."""
    import ansible.module_utils

    utils_dir = str(PROJECT / "plugins" / "module_utils")
    if utils_dir not in ansible.module_utils.__path__:
        ansible.module_utils.__path__.append(utils_dir)
    module_name = f"_library_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, LIBRARY / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


_SPEC_KEYS = ("type", "required", "default", "choices", "elements")


def documentation_mismatches(name, argument_spec_attr="ARGUMENT_SPEC"):
    """Differences between a module's DOCUMENTATION options and its argument_spec (a list of
    strings, empty when they agree), and YAML errors in EXAMPLES/RETURN."""
    module = load_library_module(name)
    doc = yaml.safe_load(module.DOCUMENTATION)
    yaml.safe_load(module.EXAMPLES)
    yaml.safe_load(module.RETURN)
    spec = getattr(module, argument_spec_attr)
    options = doc.get("options") or {}
    problems = []
    if doc.get("module") != name:
        problems.append(f"DOCUMENTATION names module {doc.get('module')!r}")
    for option in sorted(set(options) ^ set(spec)):
        where = "DOCUMENTATION" if option in options else "argument_spec"
        problems.append(f"{option}: only in {where}")
    for option in sorted(set(options) & set(spec)):
        documented, coded = options[option], spec[option]
        for key in _SPEC_KEYS:
            want = coded.get(key, "str" if key == "type" else None)
            have = documented.get(key, "str" if key == "type" else None)
            if key == "required":
                want, have = bool(want), bool(have)
            if key == "choices" and want is not None:
                want = list(want)
            if want != have:
                problems.append(f"{option}.{key}: argument_spec {want!r}, DOCUMENTATION {have!r}")
        if not documented.get("description"):
            problems.append(f"{option}: no description")
    return problems


@pytest.fixture(name="documentation_mismatches")
def documentation_mismatches_fixture():
    """The ``documentation_mismatches`` function, as a fixture."""
    return documentation_mismatches


@pytest.fixture(name="load_library_module")
def load_library_module_fixture():
    """The ``load_library_module`` function, as a fixture."""
    return load_library_module
