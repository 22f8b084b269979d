"""`stackctl --help` and `stackctl vm list` start-up against a bare `python -c pass`, same run."""

import os
import sys
import tempfile
from pathlib import Path

from common import report, run_quiet, timed

VENV = Path(__file__).resolve().parents[1] / ".venv" / "bin"


def main(repeat=15):
    python, stackctl = str(VENV / "python"), str(VENV / "stackctl")
    env = dict(os.environ, STACKCTL_HOME=tempfile.mkdtemp(prefix="stackctl-bench-"),
               STACKCTL_TENANT="bench")
    run_quiet([stackctl, "tenant", "create", "bench"], env=env)
    baseline = timed(lambda: run_quiet([python, "-c", "pass"]), repeat)
    helps = timed(lambda: run_quiet([stackctl, "--help"], env=env), repeat)
    lists = timed(lambda: run_quiet([stackctl, "vm", "list"], env=env), repeat)
    med, _ = report("stackctl --help", helps, "python -c pass", baseline, "< 150 ms")
    report("stackctl vm list", lists, "python -c pass", baseline)
    return med < 0.150


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
