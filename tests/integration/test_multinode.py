"""The molecule `multinode` scenario: three lab hosts (`stackctl lab up`), converge (site.yml),
idempotence, testinfra verify (services on every host, rings, a VM on each hypervisor, S3
across proxies), destroy (`stackctl lab down`) leaving nothing behind."""

import os
import subprocess

from .conftest import PROJECT
from .labtools import lab, lab_leftovers, require_no_lab

# molecule/multinode/tests: 3 checks x 3 hypervisors, 2 x 3 storage nodes, 2 x 3 proxies,
# and 2 through the controller (VMs on every hypervisor, S3 through two proxies).
VERIFY_TESTS = 23


def test_molecule_multinode_scenario_converges_idempotently_verifies_and_leaves_nothing():
    require_no_lab()
    venv_bin = PROJECT / ".venv" / "bin"
    env = dict(os.environ, PATH=f"{venv_bin}:{os.environ['PATH']}", ANSIBLE_FORCE_COLOR="0",
               NO_COLOR="1")
    env.pop("STACKCTL_LAB_DIR", None)
    try:
        proc = subprocess.run([str(venv_bin / "molecule"), "test", "-s", "multinode"],
                              cwd=PROJECT, env=env, capture_output=True, text=True,
                              check=False, timeout=1800)
        left = lab_leftovers()  # QEMU guests of lab hosts included
    finally:
        # A second `down` must succeed; after a failed scenario it is the one that cleans up.
        again = lab("down")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert f"{VERIFY_TESTS} passed" in out, out[-4000:]
    assert left == []
    assert again.returncode == 0, again.stderr
