"""The molecule `aio` scenario: converge (site.yml), idempotence, testinfra verify."""

import os
import subprocess

from .conftest import PROJECT


def test_molecule_aio_scenario_converges_idempotently_and_verifies():
    venv_bin = PROJECT / ".venv" / "bin"
    env = dict(os.environ, PATH=f"{venv_bin}:{os.environ['PATH']}", ANSIBLE_FORCE_COLOR="0",
               NO_COLOR="1")
    proc = subprocess.run([str(venv_bin / "molecule"), "test", "-s", "aio"], cwd=PROJECT,
                          env=env, capture_output=True, text=True, check=False, timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    # testinfra's checks (molecule/aio/tests): compute and object storage.
    assert "10 passed" in out
