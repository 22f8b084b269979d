"""Moving VMs between lab hosts, measured in one run against raw libvirt (noisy machines:
compare within a run).

1. Live: `stackctl vm migrate --live` (the whole journaled workflow: target prepared, libvirt
   p2p migration with incremental storage copy, source cleaned, row updated) against a raw
   `virsh migrate --live --p2p --persistent --undefinesource --copy-storage-inc` of the same
   VM between the same hosts, with the target's overlay and seed prepared by hand beforehand
   (not timed: the raw figure is libvirt's work alone).
2. Cold, to the guest answering SSH on the target: `stackctl vm migrate` against raw steps
   (virsh shutdown and wait, rsync of the overlay, virsh define and start on the target,
   undefine on the source).
3. `stackctl host drain` of a host with 4 VMs (live) against 4 raw live migrations.

Needs root and a machine where `stackctl lab up` works; takes the lab down first and after.
Usage: python bench/migrate.py [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from fleet import (
    KNOWN_HOSTS,
    LAB_KEY,
    delete,
    prepare_controller,
    stackctl,
    vm_env,
    wait_ssh,
)

MIGRATION_KEY = "/etc/stackctl/migration/id_ed25519"
MIGRATION_KNOWN = "/etc/stackctl/migration/known_hosts"
INSTANCES = "/var/lib/stackctl/instances"


def address(host: str) -> str:
    return f"10.250.0.{10 + int(host.removeprefix('lab'))}"


def on(host: str, command: str) -> str:
    argv = ["ssh", "-i", LAB_KEY, "-o", f"UserKnownHostsFile={KNOWN_HOSTS}",
            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", f"root@{address(host)}",
            command]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{command!r} on {host}: {proc.stderr.strip()[-400:]}")
    return proc.stdout


def show(env: dict, name: str) -> dict:
    return json.loads(stackctl("vm", "show", name, "-o", "json", env=env))


def prepare_raw_target(vm: dict, source: str, target: str) -> None:
    """What stackctl's prepare step does, by hand: an empty overlay on the cached base image
    and the seed, in the instance directory on the target (untimed)."""
    d = f"{INSTANCES}/{vm['domain']}"
    info = json.loads(on(source, f"qemu-img info -U --output=json {d}/disk.qcow2"))
    base = info["full-backing-filename"]
    seed = on(source, f"base64 -w0 {d}/seed.iso")
    on(target, f"mkdir -p {d} && echo {seed} | base64 -d > {d}/seed.iso && "
               f"qemu-img create -q -f qcow2 -b {base} -F qcow2 {d}/disk.qcow2 "
               f"{info['virtual-size']}")


def raw_live(vm: dict, source: str, target: str) -> float:
    prepare_raw_target(vm, source, target)
    uri = (f"qemu+libssh://root@{address(target)}/system?keyfile={MIGRATION_KEY}"
           f"&known_hosts={MIGRATION_KNOWN}&known_hosts_verify=normal&sshauth=privkey")
    start = time.perf_counter()
    on(source, f"virsh migrate --live --p2p --persistent --undefinesource --copy-storage-inc "
               f"--auto-converge {vm['domain']} '{uri}' tcp://{address(target)}")
    seconds = time.perf_counter() - start
    on(source, f"rm -rf {INSTANCES}/{vm['domain']}")
    return seconds


def raw_cold(vm: dict, key: Path, source: str, target: str) -> float:
    d, dom = f"{INSTANCES}/{vm['domain']}", vm["domain"]
    rsh = f"ssh -i {MIGRATION_KEY} -o UserKnownHostsFile={MIGRATION_KNOWN} -o BatchMode=yes"
    start = time.perf_counter()
    on(source, f"virsh shutdown {dom} >/dev/null; for i in $(seq 600); do "
               f"[ \"$(virsh domstate {dom})\" = 'shut off' ] && break; sleep 0.1; done; "
               f"virsh destroy {dom} >/dev/null 2>&1; "
               f"virsh dumpxml --inactive {dom} > /tmp/{dom}.xml; "
               f"rsync --sparse --times --mkpath -e '{rsh}' {d}/disk.qcow2 {d}/seed.iso "
               f"/tmp/{dom}.xml {address(target)}:{d}/")
    on(target, f"virsh define {d}/{dom}.xml >/dev/null && rm {d}/{dom}.xml && "
               f"virsh start {dom} >/dev/null")
    on(source, f"virsh undefine {dom} >/dev/null && rm -rf {d} /tmp/{dom}.xml")
    wait_ssh(key, address(target), vm["address"])
    return time.perf_counter() - start


def timed_stackctl(env: dict, key: Path, *args: str, ssh_vm: str | None = None) -> float:
    start = time.perf_counter()
    stackctl(*args, env=env)
    if ssh_vm:
        vm = show(env, ssh_vm)
        wait_ssh(key, address(vm["host"]), vm["address"])
    return time.perf_counter() - start


def create_on(env: dict, key: Path, names: list[str], host: str) -> None:
    """Create VMs on ``host`` (the others disabled meanwhile) and wait for SSH."""
    others = [h for h in ("lab1", "lab2", "lab3") if h != host]
    for h in others:
        stackctl("host", "disable", h, env=env)
    try:
        for name in names:
            stackctl("vm", "create", name, "--image", "tg", "--flavor", "m1.nano", "--key",
                     "k", env=env)
    finally:
        for h in others:
            stackctl("host", "enable", h, env=env)
    for name in names:
        vm = show(env, name)
        wait_ssh(key, address(host), vm["address"])


def line(label: str, ours: list[float], raw: list[float]) -> None:
    o, r = statistics.median(ours), statistics.median(raw)
    print(f"{label:<34} stackctl {o:6.1f} s   raw libvirt {r:6.1f} s   ratio {o / r:5.2f}",
          flush=True)


def run(repeat: int) -> None:
    home = Path(tempfile.mkdtemp(prefix="stackctl-bench-migrate-"))
    try:
        env, key = vm_env(home), home / "id_ed25519"
        print("deploying 3 lab hosts ...", flush=True)
        stackctl("deploy", env=env)
        prepare_controller(env, key)
        stackctl("server-group", "create", "warm", "--policy", "anti-affinity", env=env)
        warm = ["warm-1", "warm-2", "warm-3"]
        for name in warm:  # every host caches the image once
            stackctl("vm", "create", name, "--image", "tg", "--flavor", "m1.nano", "--key",
                     "k", "--group", "warm", env=env)
        delete(env, warm)

        create_on(env, key, ["m1"], "lab1")
        live_ours, live_raw, cold_ours, cold_raw = [], [], [], []
        for _ in range(repeat):
            vm = show(env, "m1")  # on lab1
            live_raw.append(raw_live(vm, "lab1", "lab2"))
            live_raw.append(raw_live(vm, "lab2", "lab1"))
            live_ours.append(timed_stackctl(env, key, "vm", "migrate", "m1", "--live", "--to",
                                            "lab2"))
            live_ours.append(timed_stackctl(env, key, "vm", "migrate", "m1", "--live", "--to",
                                            "lab1"))
        line("live migration (p2p, storage inc)", live_ours, live_raw)
        for _ in range(repeat):
            vm = show(env, "m1")  # on lab1
            cold_raw.append(raw_cold(vm, key, "lab1", "lab2"))
            cold_raw.append(raw_cold(vm, key, "lab2", "lab1"))
            cold_ours.append(timed_stackctl(env, key, "vm", "migrate", "m1", "--to", "lab2",
                                            ssh_vm="m1"))
            cold_ours.append(timed_stackctl(env, key, "vm", "migrate", "m1", "--to", "lab1",
                                            ssh_vm="m1"))
        line("cold migration, to SSH on target", cold_ours, cold_raw)
        delete(env, ["m1"])

        names = [f"d{i}" for i in range(1, 5)]
        create_on(env, key, names, "lab3")
        drain = timed_stackctl(env, key, "host", "drain", "lab3")
        raw4 = 4 * statistics.median(live_raw)
        print(f"{'drain of a host with 4 VMs (live)':<34} stackctl {drain:6.1f} s   "
              f"4 x raw live {raw4:6.1f} s   ratio {drain / raw4:5.2f}", flush=True)
        delete(env, names)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    stackctl("lab", "down")
    try:
        stackctl("lab", "up", "--hosts", "3")
        run(args.repeat)
    finally:
        stackctl("lab", "down")


if __name__ == "__main__":
    main()
