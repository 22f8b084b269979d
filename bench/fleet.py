"""Rollouts on lab hosts, measured in one run (these machines are noisy: compare within a run).

1. The no-op re-run of playbooks/site.yml on 1, 3 and 6 lab hosts (each size deployed once
   first), with the project's connection settings (ansible.cfg: pipelining, ControlPersist,
   forks 10), with Ansible's defaults (no pipelining, forks 5; Ansible's default ssh_args
   already persist connections) and, when mitogen is installed, with its linear strategy.
   Every re-run must report changed=0.
2. Six VMs created at once across three hosts (two each) against one VM on one host, to the
   point where every guest answers SSH. Images are cached on every host first.

Needs root and a machine where `stackctl lab up` works; takes the lab down first and after.
Usage: python bench/fleet.py [--sizes 1,3,6] [--repeat 1] [--no-vms]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
STACKCTL = str(BIN / "stackctl")
INVENTORY = PROJECT / "inventories" / "lab" / "hosts.yml"
LAB_KEY = "/var/lib/stackctl-lab/id_ed25519"
KNOWN_HOSTS = PROJECT / "inventories" / "lab" / "known_hosts"
RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)")


def configs() -> dict[str, dict[str, str]]:
    """Environment per connection setting (on top of the project's ansible.cfg)."""
    found = {
        "project": {},
        "ansible defaults": {"ANSIBLE_PIPELINING": "False", "ANSIBLE_FORKS": "5",
                             "ANSIBLE_SSH_ARGS": "-C -o ControlMaster=auto -o ControlPersist=60s"},
    }
    try:
        import ansible_mitogen
    except ImportError:
        print("mitogen: not installed (pip install mitogen) - not measured", flush=True)
    else:
        strategy = Path(ansible_mitogen.__file__).parent / "plugins" / "strategy"
        found["project + mitogen"] = {"ANSIBLE_STRATEGY_PLUGINS": str(strategy),
                                      "ANSIBLE_STRATEGY": "mitogen_linear"}
    return found


def stackctl(*args: str, env: dict | None = None) -> str:
    proc = subprocess.run([STACKCTL, *args], capture_output=True, text=True, env=env,
                          check=False)
    if proc.returncode != 0:
        raise SystemExit(f"stackctl {' '.join(args)} failed: {proc.stderr.strip()[-500:]}")
    return proc.stdout


def site(extra_env: dict[str, str]) -> tuple[float, int, str]:
    """Run site.yml on the lab; (seconds, changed tasks over all hosts, recap)."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(PROJECT / "ansible.cfg"), **extra_env)
    start = time.perf_counter()
    proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(INVENTORY),
                           str(PROJECT / "playbooks" / "site.yml")], capture_output=True,
                          text=True, env=env, cwd=PROJECT, check=False)
    seconds = time.perf_counter() - start
    rows = [RECAP.match(line) for line in proc.stdout.splitlines()]
    rows = [m for m in rows if m]
    if proc.returncode != 0 or not rows or any(int(m[4]) or int(m[5]) for m in rows):
        tail = "\n".join(proc.stdout.splitlines()[-30:])
        raise SystemExit(f"site.yml failed ({extra_env or 'project'}):\n{tail}")
    return seconds, sum(int(m[3]) for m in rows), " ".join(f"{m[1]}:{m[3]}" for m in rows)


def _last_error(exc: SystemExit) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if "ERROR" in ln or "msg" in ln]
    return lines[0] if lines else str(exc).splitlines()[0]


def rollouts(sizes: list[int], repeat: int, with_vms: bool) -> None:
    cases = configs()
    results: dict[tuple[int, str], list[float]] = {}
    for size in sizes:
        stackctl("lab", "up", "--hosts", str(size))
        first, changed, _ = site({})
        print(f"{size} host(s): first deploy {first:6.1f} s (changed={changed})", flush=True)
        for _ in range(repeat):
            for name, env in list(cases.items()):  # interleaved: noise hits all alike
                try:
                    seconds, changed, recap = site(env)
                except SystemExit as exc:
                    if name == "project":
                        raise
                    print(f"{name}: fails, not measured further: {_last_error(exc)}",
                          flush=True)
                    del cases[name]
                    continue
                if changed:
                    raise SystemExit(f"no-op re-run changed something ({name}): {recap}")
                results.setdefault((size, name), []).append(seconds)
        if size == 3 and with_vms:
            vms(repeat)  # on the deployed 3-host lab, before it grows
    print(f"\nno-op re-run of site.yml (median of {repeat}; every run changed=0)", flush=True)
    header = f"{'hosts':>5}  " + "  ".join(f"{name:>18}" for name in cases)
    print(header + "   defaults/project", flush=True)
    for size in sizes:
        medians = {n: statistics.median(results[(size, n)]) for n in cases
                   if (size, n) in results}
        cells = "  ".join(f"{medians[n]:16.1f} s" if n in medians else f"{'-':>18}"
                          for n in cases)
        ratio = medians.get("ansible defaults", 0) / medians["project"]
        line = f"{size:>5}  {cells}   {ratio:5.2f}x"
        if "project + mitogen" in medians:
            line += f"   mitogen/project {medians['project + mitogen'] / medians['project']:4.2f}"
        print(line, flush=True)


# --- VMs ------------------------------------------------------------------------------------


def vm_env(home: Path) -> dict[str, str]:
    return dict(os.environ, STACKCTL_HOME=str(home), STACKCTL_INVENTORY=str(INVENTORY),
                STACKCTL_TENANT="bench")


def prepare_controller(env: dict, key: Path) -> None:
    img = PROJECT / "build" / "images" / "test-guest"
    manifest = json.loads((img / "manifest.json").read_text())
    stackctl("host", "refresh", env=env)
    stackctl("tenant", "create", "bench", env=env)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    stackctl("keypair", "add", "k", "--public-key", f"{key}.pub", env=env)
    stackctl("image", "import", "kern", str(img / "vmlinuz"), "--disk-format", "aki", env=env)
    stackctl("image", "import", "initrd", str(img / "initrd.img"), "--disk-format", "ari",
             env=env)
    stackctl("image", "import", "tg", str(img / "disk.qcow2"), "--kernel", "kern",
             "--ramdisk", "initrd", "--cmdline", manifest["cmdline"], env=env)


def boot(env: dict, key: Path, names: list[str]) -> float:
    """Create ``names`` at once; seconds until every guest answers SSH."""
    start = time.perf_counter()

    def one(name: str) -> None:
        vm = json.loads(stackctl("vm", "create", name, "--image", "tg", "--flavor", "m1.nano",
                                 "--key", "k", "-o", "json", env=env))
        host = json.loads(stackctl("host", "show", vm["host"], "-o", "json", env=env))
        wait_ssh(key, host["address"], vm["address"])

    with ThreadPoolExecutor(len(names)) as pool:
        list(pool.map(one, names))
    return time.perf_counter() - start


def wait_ssh(key: Path, jump: str, address: str, timeout: float = 120) -> None:
    proxy = (f"ProxyCommand=ssh -i {LAB_KEY} -o UserKnownHostsFile={KNOWN_HOSTS} "
             f"-o StrictHostKeyChecking=yes -W %h:%p root@{jump}")
    argv = ["ssh", "-i", str(key), "-o", "BatchMode=yes", "-o", "ConnectTimeout=3",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR", "-o", proxy, f"root@{address}", "true"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if subprocess.run(argv, capture_output=True, check=False).returncode == 0:
            return
        time.sleep(0.2)
    raise SystemExit(f"no SSH from {address} (on {jump}) within {timeout:.0f} s")


def delete(env: dict, names: list[str]) -> None:
    with ThreadPoolExecutor(len(names)) as pool:
        list(pool.map(lambda n: stackctl("vm", "delete", n, env=env), names))


def vms(repeat: int) -> None:
    home = Path(tempfile.mkdtemp(prefix="stackctl-bench-"))
    try:
        env, key = vm_env(home), home / "id_ed25519"
        prepare_controller(env, key)
        stackctl("server-group", "create", "warm", "--policy", "anti-affinity", env=env)
        warm = ["warm-1", "warm-2", "warm-3"]
        with ThreadPoolExecutor(3) as pool:  # every host caches the image once
            list(pool.map(lambda n: stackctl("vm", "create", n, "--image", "tg", "--flavor",
                                             "m1.nano", "--key", "k", "--group", "warm",
                                             env=env), warm))
        delete(env, warm)
        one, six = [], []
        for i in range(repeat):
            one.append(boot(env, key, [f"one-{i}"]))
            delete(env, [f"one-{i}"])
            names = [f"six-{i}-{n}" for n in range(1, 7)]
            six.append(boot(env, key, names))
            hosts = [json.loads(stackctl("vm", "show", n, "-o", "json", env=env))["host"]
                     for n in names]
            delete(env, names)
        one_s, six_s = statistics.median(one), statistics.median(six)
        print(f"\nVMs to SSH-ready (median of {repeat}): 1 VM on 1 host {one_s:5.1f} s; "
              f"6 VMs across 3 hosts {six_s:5.1f} s (placed {sorted(hosts)}): "
              f"ratio {six_s / one_s:4.2f} for 6x the guests", flush=True)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,3,6")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--no-vms", action="store_true")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    stackctl("lab", "down")
    try:
        rollouts(sizes, args.repeat, with_vms=not args.no_vms and 3 in sizes)
    finally:
        stackctl("lab", "down")


if __name__ == "__main__":
    main()
