"""`stackctl --help` and `stackctl vm list` start-up against a bare `python -c pass`, same run."""

import os
import shutil
import sys
import tempfile
from pathlib import Path

from common import report, run_quiet, timed

VENV = Path(__file__).resolve().parents[1] / ".venv" / "bin"


def main(repeat=15):
    python, stackctl = str(VENV / "python"), str(VENV / "stackctl")
    home = tempfile.mkdtemp(prefix="stackctl-bench-")
    env = dict(os.environ, STACKCTL_HOME=home, STACKCTL_TENANT="bench")
    try:
        run_quiet([stackctl, "tenant", "create", "bench"], env=env)
        baseline = timed(lambda: run_quiet([python, "-c", "pass"]), repeat)
        helps = timed(lambda: run_quiet([stackctl, "--help"], env=env), repeat)
        lists = timed(lambda: run_quiet([stackctl, "vm", "list"], env=env), repeat)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    med, _ = report("stackctl --help", helps, "python -c pass", baseline, "< 150 ms")
    report("stackctl vm list", lists, "python -c pass", baseline)
    return med < 0.150


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
