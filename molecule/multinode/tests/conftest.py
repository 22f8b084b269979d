"""What the multinode verify shares: the lab's inventory (as Ansible reads it) and the
controller, driven as a user would drive it (the installed `stackctl` in a home of its own,
STACKCTL_INVENTORY pointing at the lab). Everything the controller creates is deleted at
teardown, so `molecule destroy` (`stackctl lab down`) is all that is left to do."""

import json
import os
import shlex
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import testinfra
from testinfra.utils.ansible_runner import AnsibleRunner

PROJECT = Path(__file__).resolve().parents[3]
INVENTORY = PROJECT / "inventories" / "lab" / "hosts.yml"
STACKCTL = str(PROJECT / ".venv" / "bin" / "stackctl")
IMAGE_DIR = PROJECT / "build" / "images" / "test-guest"
RINGS = ("account", "container", "object")


class Lab:
    """The lab's inventory as Ansible reads it (group_vars included) and what it tells."""

    def __init__(self):
        self.ansible = AnsibleRunner(str(INVENTORY))

    def hosts(self, group):
        return self.ansible.get_hosts(group)

    def vars(self, name):
        return self.ansible.get_variables(name)

    def proxy_endpoint(self, name):
        """The S3 endpoint of proxy ``name`` (swift_proxy_ip or swift_ip, swift_proxy_port)."""
        hv = self.vars(name)
        ip = hv.get("swift_proxy_ip", hv["swift_ip"])
        return f"http://{ip}:{hv.get('swift_proxy_port', 8080)}"

    def ssh_via(self, hypervisor, address, key, command, timeout=120):
        """Run ``command`` as root in the guest at ``address`` (on ``hypervisor``'s NAT
        network, which only the hypervisor reaches), retrying until the guest's sshd answers."""
        hv = self.vars(hypervisor)
        jump = ["ssh", "-i", hv["ansible_ssh_private_key_file"], "-o", "BatchMode=yes",
                "-o", "ConnectTimeout=5", *shlex.split(hv["ansible_ssh_common_args"]),
                "-W", "%h:%p", f"root@{hv['ansible_host']}"]
        argv = ["ssh", "-i", str(key), "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
                # A guest's host key is new with every VM; the hypervisor's is checked (jump).
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "LogLevel=ERROR", "-o", f"ProxyCommand={shlex.join(jump)}",
                f"root@{address}", command]
        deadline = time.monotonic() + timeout
        while True:
            proc = subprocess.run(argv, capture_output=True, text=True, check=False,
                                  timeout=30)
            if proc.returncode == 0 or time.monotonic() > deadline:
                return proc
            time.sleep(1)


@pytest.fixture(scope="session")
def lab():
    return Lab()


@pytest.fixture(scope="session")
def builder_rings(lab):
    """md5 of each ring the controller built (its builder directory: swift_cluster_name)."""
    controller = testinfra.get_host("local://")
    name = lab.vars("controller")["swift_cluster_name"]
    return {ring: controller.file(f"/etc/stackctl/swift/{name}/{ring}.ring.gz").md5sum
            for ring in RINGS}


@dataclass
class Controller:
    """The installed `stackctl` in a private home, against the lab, as one tenant."""

    home: Path
    tenant: str
    key: Path | None = None  # the private half of the tenant's keypair `k1`

    def run(self, *args, check=True, timeout=300):
        env = dict(os.environ, STACKCTL_HOME=str(self.home), STACKCTL_INVENTORY=str(INVENTORY),
                   STACKCTL_TENANT=self.tenant)
        for name in ("STACKCTL_DB_URL", "STACKCTL_STORAGE_URL", "STACKCTL_SWIFT_SECRETS"):
            env.pop(name, None)
        proc = subprocess.run([STACKCTL, *args], capture_output=True, text=True, env=env,
                              timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"stackctl {' '.join(args)} exited {proc.returncode}: "
                                 f"{proc.stderr.strip()}")
        return proc

    def json(self, *args, **kwargs):
        return json.loads(self.run(*args, "-o", "json", **kwargs).stdout)

    def each(self, argvs):
        """Run several commands at once (as several users would); their JSON, in order."""
        with ThreadPoolExecutor(max(1, len(argvs))) as pool:
            return list(pool.map(lambda argv: self.json(*argv), argvs))


def guest_image():
    """The test guest's manifest (built now if `make image` was not run)."""
    manifest = IMAGE_DIR / "manifest.json"
    if not manifest.exists():
        subprocess.run([str(PROJECT / ".venv/bin/python"),
                        str(PROJECT / "images/test-guest/build.py"), "--out", str(IMAGE_DIR)],
                       check=True)
    return json.loads(manifest.read_text())


@pytest.fixture(scope="session")
def cloud(tmp_path_factory):
    """A tenant with keypair `k1` and the test guest imported as `tg` (into the lab's object
    storage); at teardown everything the tests made is deleted, and the tenant with it."""
    home = tmp_path_factory.mktemp("controller")
    c = Controller(home=home / "home", tenant=f"mn{uuid.uuid4().hex[:8]}",
                   key=home / "id_ed25519")
    c.run("tenant", "create", c.tenant)
    c.run("host", "refresh")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(c.key)], check=True)
    c.run("keypair", "add", "k1", "--public-key", f"{c.key}.pub")
    image = guest_image()
    files = image["files"]
    c.run("image", "import", "tg-kernel", str(IMAGE_DIR / files["kernel"]["path"]),
          "--disk-format", "aki")
    c.run("image", "import", "tg-initrd", str(IMAGE_DIR / files["initrd"]["path"]),
          "--disk-format", "ari")
    c.run("image", "import", "tg", str(IMAGE_DIR / files["disk"]["path"]),
          "--sha256", files["disk"]["sha256"], "--kernel", "tg-kernel",
          "--ramdisk", "tg-initrd", "--cmdline", image["cmdline"])
    yield c
    c.each([("vm", "delete", vm["name"]) for vm in c.json("vm", "list")])
    for group in c.json("server-group", "list"):
        c.run("server-group", "delete", group["name"])
    for bucket in c.json("bucket", "list"):
        c.run("bucket", "delete", bucket["name"], "--force")
    for cred in c.json("credentials", "list"):
        c.run("credentials", "revoke", cred["access_key"])
    # Disk images before the kernel and ramdisk they boot with.
    for name in ("tg", "tg-initrd", "tg-kernel"):
        c.run("image", "delete", name)
    c.run("keypair", "delete", "k1")
    c.run("tenant", "delete", c.tenant)
