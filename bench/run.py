"""Run every benchmark; each prints ratios against a baseline measured in the same run.
Exit status 1 when a target is missed (timings are never asserted by the tests)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import startup
import storage
import vm_create

if __name__ == "__main__":
    print("== start-up ==", flush=True)
    ok = startup.main()
    print("== vm create ==", flush=True)
    ok = vm_create.main() and ok
    print("== storage ==", flush=True)
    ok = storage.main() and ok
    sys.exit(0 if ok else 1)
