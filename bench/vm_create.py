"""`stackctl vm create` against a raw libvirt-python script doing the same work on the same host.

Both start from the same cached base image (the raw side uses the host cache path stackctl's
first create filled) and do the same work: a qcow2 overlay, a NoCloud seed, define, start. The
raw side is the floor: no database, no journal, no Ansible. Measured in one run, interleaved,
so machine noise hits both. Prints medians, ratios and the difference.

    to running:   raw = overlay+seed+define+start   stackctl = `vm create --no-wait`
    to SSH-ready: raw = ... + DHCP lease + SSH       stackctl = `vm create` + SSH
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from common import report

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "plugins" / "module_utils"))
from stackcore.domain import DomainSpec, build_domain_xml, mac_for
from stackcore.seed import build_seed_iso

STACKCTL = str(PROJECT / ".venv" / "bin" / "stackctl")
IMAGE = PROJECT / "build" / "images" / "test-guest"
CACHE = Path("/var/lib/stackctl/images")
RAW_DIR = Path("/var/lib/stackctl/instances/bench-raw")
NETWORK = "stack-provider"


def ssh_ready(address, key, timeout=120):
    argv = ["ssh", "-i", str(key), "-o", "BatchMode=yes", "-o", "ConnectTimeout=2",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR", f"root@{address}", "true"]
    deadline = time.monotonic() + timeout
    while subprocess.run(argv, capture_output=True, check=False).returncode != 0:
        if time.monotonic() > deadline:
            raise RuntimeError(f"no SSH on {address}")
        time.sleep(0.1)


class Raw:
    """The floor: libvirt-python and qemu-img, nothing else."""

    def __init__(self, manifest, pubkey):
        import libvirt
        libvirt.registerErrorHandler(lambda *a: None, None)
        self.libvirt = libvirt
        self.conn = libvirt.open("qemu:///system")
        self.files = {k: str(CACHE / v["sha256"]) for k, v in manifest["files"].items()}
        self.cmdline = manifest["cmdline"]
        self.pubkey = pubkey

    def create(self):
        vm_uuid = str(uuid.uuid4())
        name, work = f"bench-{vm_uuid[:8]}", RAW_DIR / vm_uuid[:8]
        work.mkdir(parents=True, mode=0o755)
        disk, seed = work / "disk.qcow2", work / "seed.iso"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", self.files["disk"],
                        "-F", "qcow2", str(disk), "1G"], check=True)
        seed.write_bytes(build_seed_iso(vm_uuid, name, [self.pubkey]))
        spec = DomainSpec(name=name, uuid=vm_uuid, vcpus=1, memory_mb=128, virt_type="qemu",
                          disk=str(disk), network=NETWORK, mac=mac_for(vm_uuid), seed=str(seed),
                          console_log=str(work / "console.log"), kernel=self.files["kernel"],
                          initrd=self.files["initrd"], cmdline=self.cmdline)
        dom = self.conn.defineXML(build_domain_xml(spec))
        dom.create()
        return dom, spec.mac, work

    def address(self, mac, timeout=120):
        net = self.conn.networkLookupByName(NETWORK)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for lease in net.DHCPLeases(mac):
                if lease.get("ipaddr"):
                    return lease["ipaddr"]
            time.sleep(0.05)
        raise RuntimeError("no lease")

    def delete(self, dom, work):
        if dom.isActive():
            dom.destroy()
        dom.undefine()
        shutil.rmtree(work)


def cli(env, *args):
    return subprocess.run([STACKCTL, *args], env=env, check=True, capture_output=True, text=True)


def main(rounds=3):
    manifest = json.loads((IMAGE / "manifest.json").read_text())
    home = Path(tempfile.mkdtemp(prefix="stackctl-bench-"))
    env = dict(os.environ, STACKCTL_HOME=str(home), STACKCTL_TENANT="bench")
    key = home / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    files = manifest["files"]
    for args in (["tenant", "create", "bench"], ["host", "refresh"],
                 ["keypair", "add", "k", "--public-key", f"{key}.pub"],
                 ["image", "import", "bk", str(IMAGE / files["kernel"]["path"]),
                  "--disk-format", "aki"],
                 ["image", "import", "br", str(IMAGE / files["initrd"]["path"]),
                  "--disk-format", "ari"],
                 ["image", "import", "bi", str(IMAGE / files["disk"]["path"]), "--kernel", "bk",
                  "--ramdisk", "br", "--cmdline", manifest["cmdline"]]):
        cli(env, *args)
    create = ["vm", "create", "--image", "bi", "--flavor", "m1.nano", "--key", "k"]
    # Warm-up: fills the host's image cache, which the raw side then reuses.
    cli(env, "vm", create[1], "warm", *create[2:])
    cli(env, "vm", "delete", "warm")
    raw = Raw(manifest, (key.parent / "id_ed25519.pub").read_text().strip())

    raw_run, raw_ssh, st_run, st_ssh = [], [], [], []
    for i in range(rounds):
        start = time.perf_counter()
        dom, mac, work = raw.create()
        raw_run.append(time.perf_counter() - start)
        ssh_ready(raw.address(mac), key)
        raw_ssh.append(time.perf_counter() - start)
        raw.delete(dom, work)

        start = time.perf_counter()
        cli(env, "vm", create[1], f"nw{i}", *create[2:], "--no-wait")
        st_run.append(time.perf_counter() - start)
        cli(env, "vm", "delete", f"nw{i}")

        start = time.perf_counter()
        cli(env, "vm", create[1], f"w{i}", *create[2:])
        address = json.loads(cli(env, "vm", "show", f"w{i}", "-o", "json").stdout)["address"]
        ssh_ready(address, key)
        st_ssh.append(time.perf_counter() - start)
        cli(env, "vm", "delete", f"w{i}")

    med, base = report("vm create -> running", st_run, "raw libvirt -> running", raw_run,
                       "within 1.5 s of raw")
    report("vm create -> SSH-ready", st_ssh, "raw libvirt -> SSH-ready", raw_ssh)
    cli(env, "image", "delete", "bi")
    shutil.rmtree(home)
    shutil.rmtree(RAW_DIR, ignore_errors=True)
    return med - base <= 1.5


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
