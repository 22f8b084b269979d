"""What a lab of N hosts looks like: names, addresses, interfaces, private directories, the
sshd configuration and the inventory. Pure functions of their arguments, tested by tables."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from stackcore.errors import InvalidInput

MAX_HOSTS = 16
DEFAULT_CIDR = "10.250.0.0/24"
BRIDGE = "stklab0"
HOST_OFFSET = 10  # lab1 is .11, lab2 .12, ...
STORAGE_NODES = 3  # the first three hosts (fewer in a smaller lab) run Swift with a proxy each
# Directories every lab host keeps to itself (bind mounts over the machine's, in its own mount
# namespace); /run is a fresh tmpfs. Everything else is shared: /usr and /opt/stackctl (Swift's
# virtualenv) are the hosts' common "image", which ``playbooks/lab-image.yml`` installs on the
# machine (lab hosts have no route out: nothing to download from inside).
PRIVATE_DIRS = (
    "/etc/libvirt", "/var/lib/libvirt", "/var/log/libvirt", "/var/cache/libvirt",
    "/var/lib/stackctl", "/etc/stackctl", "/etc/swift", "/srv", "/var/log/swift",
    "/var/cache/swift", "/usr/local/lib/stackctl",
)
# Copied into a new host's private directory when the machine has it (libvirt's config).
SEEDED_DIRS = ("/etc/libvirt",)


@dataclass(frozen=True)
class LabHost:
    name: str
    address: str
    netns: str
    veth: str  # the end on the bridge; the other end is eth0 inside the namespace
    root: Path  # the host's own state: private directories, host keys, logs

    def private_source(self, path: str) -> Path:
        """Where the host's private copy of ``path`` lives on the machine."""
        return self.root / "private" / path.strip("/").replace("/", "_")

    @property
    def host_key(self) -> Path:
        return self.root / "ssh_host_ed25519_key"

    @property
    def sshd_config(self) -> Path:
        return self.root / "sshd_config"

    @property
    def sshd_log(self) -> Path:
        return self.root / "sshd.log"


@dataclass(frozen=True)
class Lab:
    root: Path
    cidr: str
    bridge: str
    gateway: str  # the bridge's address: the controller as the lab hosts see it
    prefix: int
    hosts: tuple[LabHost, ...]

    @property
    def client_key(self) -> Path:
        """The controller's private key for root on every lab host (0600)."""
        return self.root / "id_ed25519"

    @property
    def authorized_keys(self) -> Path:
        return self.root / "authorized_keys"

    @property
    def state_file(self) -> Path:
        return self.root / "lab.json"


def plan(count: int, root: Path, cidr: str = DEFAULT_CIDR) -> Lab:
    """The lab of ``count`` hosts under ``root`` on ``cidr`` (the bridge takes the first
    address, lab host i the address ``HOST_OFFSET + i``)."""
    if not 1 <= count <= MAX_HOSTS:
        raise InvalidInput(f"--hosts must be between 1 and {MAX_HOSTS}, not {count}")
    try:
        net = ipaddress.IPv4Network(cidr, strict=True)
    except ValueError as exc:
        raise InvalidInput(f"invalid lab network {cidr!r}: {exc}") from None
    if not net.is_private:
        raise InvalidInput(f"lab network {cidr} is not a private range")
    if net.num_addresses < HOST_OFFSET + count + 2:
        raise InvalidInput(f"lab network {cidr} is too small for {count} hosts")
    hosts = tuple(
        LabHost(name=f"lab{i}", address=str(net[HOST_OFFSET + i]), netns=f"stklab-lab{i}",
                veth=f"stklab{i}", root=root / "hosts" / f"lab{i}")
        for i in range(1, count + 1)
    )
    return Lab(root=root, cidr=str(net), bridge=BRIDGE, gateway=str(net[1]),
               prefix=net.prefixlen, hosts=hosts)


def sshd_config(lab: Lab, host: LabHost) -> str:
    """Key-only root login on the host's lab address; everything in the lab's own files."""
    lines = [
        f"ListenAddress {host.address}",
        "Port 22",
        f"HostKey {host.host_key}",
        "PidFile /run/sshd.pid",
        f"AuthorizedKeysFile {lab.authorized_keys}",
        "PermitRootLogin prohibit-password",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "X11Forwarding no",
        "PrintMotd no",
        # Ansible opens many sessions at once over its persistent connections.
        "MaxSessions 64",
        "MaxStartups 64:30:128",
        "AcceptEnv LANG LC_*",
        "Subsystem sftp internal-sftp",
    ]
    return "\n".join(lines) + "\n"


def boot_script(lab: Lab, host: LabHost) -> str:
    """What runs inside the host's new mount + UTS namespace, then becomes its sshd."""
    lines = ["set -e", f"hostname {host.name}"]
    # The new namespace starts with a copy of the machine's mounts: drop those under the
    # private directories (the all-in-one Swift's /srv/node/d1, /run/netns/...), or this host
    # would see another host's devices where its own belong.
    for path in ("/run", *PRIVATE_DIRS):
        lines.append(f"awk -v d={path} '$5 == d || index($5, d \"/\") == 1 {{print $5}}' "
                     "/proc/self/mountinfo | sort -r | xargs -r -n1 umount -l")
    lines += ["mount -t tmpfs -o mode=0755 tmpfs /run", "mkdir -p /run/sshd /run/lock",
              "chmod 0755 /run/sshd"]
    for path in PRIVATE_DIRS:
        lines.append(f"mount --bind {host.private_source(path)} {path}")
    # A fresh host's root has no shell start-up of this machine's (a pyenv init in .bashrc,
    # which bash runs for every SSH command, cost 0.17 s per Ansible task).
    lines.append(f"if [ -e /root/.bashrc ]; then mount --bind {lab.root}/empty.bashrc "
                 "/root/.bashrc; fi")
    lines.append(f"exec /usr/sbin/sshd -D -f {host.sshd_config} -E {host.sshd_log}")
    return "\n".join(lines) + "\n"


def storage_hosts(lab: Lab) -> tuple[LabHost, ...]:
    return lab.hosts[:STORAGE_NODES]


def inventory(lab: Lab, python: str, known_hosts: Path) -> dict:
    """The Ansible inventory of the lab: this machine is the controller; every lab host is a
    hypervisor; the first three are Swift storage nodes (one zone each) with a proxy each."""
    # Connection reuse and pipelining come from ansible.cfg (the benchmark turns them off).
    ssh_args = f"-o UserKnownHostsFile={known_hosts} -o StrictHostKeyChecking=yes"
    lab_vars = {"ansible_user": "root", "ansible_ssh_private_key_file": str(lab.client_key),
                "ansible_ssh_common_args": ssh_args,
                # Lab sshds read the lab's own authorized_keys (root's home is the machine's).
                "hypervisor_migration_authorized_keys": str(lab.authorized_keys)}
    hosts = {h.name: {"ansible_host": h.address, **lab_vars} for h in lab.hosts}
    storage = {h.name: {"swift_ip": h.address, "swift_zone": i}
               for i, h in enumerate(storage_hosts(lab), start=1)}
    return {"all": {
        # Lab hosts share this machine's files: the project's virtualenv is their Python.
        "vars": {"ansible_python_interpreter": python},
        "children": {
            "controllers": {"hosts": {"controller": {"ansible_connection": "local"}}},
            "hypervisors": {"hosts": hosts},
            "storage_nodes": {"hosts": storage},
            "proxies": {"hosts": {name: None for name in storage}},
        },
    }}


def known_hosts_lines(lab: Lab, public_keys: dict[str, str]) -> list[str]:
    """``known_hosts`` lines for strict host key checking: address and name per host."""
    return [f"{h.address},{h.name} {public_keys[h.name].strip()}" for h in lab.hosts
            if h.name in public_keys]
