"""The test guest image (images/test-guest) does what docs/contracts.md promises.

Its NoCloud seed parser is checked directly with busybox awk. The integration tests boot the
built image under TCG with raw libvirt-python on qemu:///system, on a NAT network of their own:
the guest takes the seed's hostname and keys, gets an address by DHCP and answers SSH within
seconds, keeps its host key across a hard power-off, runs a user-data script once per instance
and powers off on an ACPI shutdown. Everything the tests create (domains, the network, files
under /var/lib/stackctl/test-tmp) is removed at the end.
"""

from __future__ import annotations

import contextlib
import io
import json
import secrets
import shutil
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GUEST_SRC = REPO / "images" / "test-guest"
IMAGE_DIR = REPO / "build" / "images" / "test-guest"
URI = "qemu:///system"
NETWORK = "stk-imgtest"
BRIDGE = "stkimgbr0"
GATEWAY = "192.168.151.1"
# QEMU runs as libvirt-qemu: every directory on a disk, kernel or seed path must be traversable.
TEST_TMP = Path("/var/lib/stackctl/test-tmp")
BOOT_TIMEOUT = 60


# ---------------------------------------------------------------- the seed parser, no VM needed

def flatten(text: str, script: str = "yaml.awk") -> list[tuple[str, str]]:
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("busybox is not installed (Debian package busybox-static)")
    proc = subprocess.run([busybox, "awk", "-f", str(GUEST_SRC / "rootfs/usr/lib/stackctl-guest"
                                                      / script)],
                          input=text, capture_output=True, text=True, timeout=10, check=True)
    return [tuple(line.split("\t", 1)) for line in proc.stdout.splitlines()]


def test_block_yaml_meta_data_is_flattened():
    text = ("instance-id: iid-1\nlocal-hostname: 'vm-1.example'\npublic-keys:\n"
            "  - ssh-ed25519 AAAA one@host\n  - \"ssh-rsa BBBB two\"\n")
    assert flatten(text) == [("instance-id", "iid-1"), ("local-hostname", "vm-1.example"),
                             ("public-keys", "ssh-ed25519 AAAA one@host"),
                             ("public-keys", "ssh-rsa BBBB two")]


def test_json_meta_data_is_flattened_like_yaml():
    doc = {"instance-id": "iid-2", "local-hostname": "web", "public-keys": ["ssh-ed25519 A k"]}
    for text in (json.dumps(doc), json.dumps(doc, indent=2)):
        assert flatten(text) == [("instance-id", "iid-2"), ("local-hostname", "web"),
                                 ("public-keys", "ssh-ed25519 A k")]


def test_cloud_config_keys_lists_and_comments():
    text = ("#cloud-config\nhostname: web01  # the short name\nssh_authorized_keys:\n"
            "- ssh-ed25519 AAAA k1\nusers:\n  - name: root\n    ssh_authorized_keys:\n"
            "      - ssh-rsa CCCC k2\nruncmd: [ls, 'echo a: b']\nwrite_files:\n"
            "  - content: |\n      line one\n      line two\n")
    assert flatten(text) == [
        ("hostname", "web01"), ("ssh_authorized_keys", "ssh-ed25519 AAAA k1"),
        ("users/name", "root"), ("users/ssh_authorized_keys", "ssh-rsa CCCC k2"),
        ("runcmd", "ls"), ("runcmd", "echo a: b"),
        ("write_files/content", "line one"), ("write_files/content", "line two")]


def test_malformed_flow_values_end_instead_of_looping():
    assert flatten("broken: [a, ]]}\nnext: 1\n")[0] == ("broken", "a")


def test_mime_multipart_is_split_into_typed_parts(tmp_path):
    body = multipart_user_data("#cloud-config\nhostname: x\n", "#!/bin/sh\necho hi\n")
    busybox = shutil.which("busybox") or pytest.skip("busybox is not installed")
    subprocess.run([busybox, "awk", "-v", f"dir={tmp_path}", "-f",
                    str(GUEST_SRC / "rootfs/usr/lib/stackctl-guest/mime.awk")],
                   input=body, text=True, check=True, timeout=10)
    assert (tmp_path / "001.type").read_text().strip() == "text/cloud-config"
    assert (tmp_path / "002.type").read_text().strip() == "text/x-shellscript"
    assert "echo hi" in (tmp_path / "002.body").read_text()


def multipart_user_data(cloud_config: str, script: str) -> str:
    """user-data as cloud-init's make-mime writes it."""
    from email.mime.multipart import MIMEMultipart
    from email.mime.text import MIMEText

    message = MIMEMultipart()
    message.attach(MIMEText(cloud_config, "cloud-config"))
    message.attach(MIMEText(script, "x-shellscript"))
    return message.as_string()


# ---------------------------------------------------------------- booting the image

@pytest.fixture(scope="session")
def image() -> dict:
    """The built image's manifest; the build is a no-op when it is up to date."""
    proc = subprocess.run([sys.executable, str(GUEST_SRC / "build.py"), "--out", str(IMAGE_DIR)],
                          capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads((IMAGE_DIR / "manifest.json").read_text())


@pytest.fixture(scope="session")
def conn():
    libvirt = pytest.importorskip("libvirt")
    libvirt.registerErrorHandler(lambda *args: None, None)
    try:
        connection = libvirt.open(URI)
    except libvirt.libvirtError as err:
        pytest.skip(f"no libvirtd at {URI}: {err}")
    yield connection
    connection.close()


@pytest.fixture(scope="session")
def workdir():
    """A private 0755 directory under /var/lib/stackctl/test-tmp, removed at the end
    (with test-tmp and /var/lib/stackctl if this made them and they are empty)."""
    made = [parent for parent in (TEST_TMP.parent, TEST_TMP) if not parent.exists()]
    path = TEST_TMP / secrets.token_hex(4)
    path.mkdir(mode=0o755, parents=True)
    for directory in (*made, path):
        directory.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)
    for directory in reversed(made):
        with contextlib.suppress(OSError):
            directory.rmdir()


@pytest.fixture(scope="session")
def network(conn):
    """A transient NAT network with DHCP whose dnsmasq does not ping before offering."""
    import libvirt

    try:
        stale = conn.networkLookupByName(NETWORK)
        if stale.isActive():
            stale.destroy()
        if stale.isPersistent():
            stale.undefine()
    except libvirt.libvirtError:
        pass
    net = conn.networkCreateXML(network_xml())
    yield net
    net.destroy()


def network_xml() -> str:
    dnsmasq = "http://libvirt.org/schemas/network/dnsmasq/1.0"
    ET.register_namespace("dnsmasq", dnsmasq)
    root = ET.Element("network")
    ET.SubElement(root, "name").text = NETWORK
    ET.SubElement(root, "forward", mode="nat")
    ET.SubElement(root, "bridge", name=BRIDGE, stp="off", delay="0")
    ip = ET.SubElement(root, "ip", address=GATEWAY, netmask="255.255.255.0")
    dhcp = ET.SubElement(ip, "dhcp")
    ET.SubElement(dhcp, "range", start="192.168.151.10", end="192.168.151.250")
    options = ET.SubElement(root, f"{{{dnsmasq}}}options")
    ET.SubElement(options, f"{{{dnsmasq}}}option", value="no-ping")
    return ET.tostring(root, encoding="unicode")


@pytest.fixture(scope="session")
def ssh_key(workdir) -> Path:
    key = workdir / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "imgtest", "-f",
                    str(key)], check=True, timeout=30)
    return key


@pytest.fixture(scope="session")
def base(image, workdir) -> dict[str, Path]:
    """The image's files copied under workdir (libvirt relabels what a guest uses)."""
    files = {}
    for role, entry in image["files"].items():
        files[role] = workdir / entry["path"]
        shutil.copyfile(IMAGE_DIR / entry["path"], files[role])
        files[role].chmod(0o644)
    return files


@dataclass
class Guest:
    """One booted test guest: its domain, MAC, files and boot timings."""

    dom: object
    mac: str
    dir: Path
    hostname: str
    started: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def console(self) -> Path:
        return self.dir / "console.log"

    def console_text(self) -> str:
        try:
            return self.console.read_text(errors="replace")
        except OSError:
            return ""


@pytest.fixture
def boot(conn, network, base, ssh_key, image, workdir):
    """boot(hostname, user_data=None, meta_keys=True, seed_first=False) -> a started Guest;
    all are removed after."""
    guests: list[Guest] = []

    def start(hostname: str, user_data: str | None = None, meta_keys: bool = True,
              seed_first: bool = False) -> Guest:
        name = f"stk-imgtest-{secrets.token_hex(3)}"
        gdir = workdir / name
        gdir.mkdir(mode=0o755)
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(base["disk"]),
                        "-F", "qcow2", str(gdir / "disk.qcow2")], check=True, timeout=30)
        keys = [ssh_key.with_suffix(".pub").read_text().strip()] if meta_keys else []
        (gdir / "seed.iso").write_bytes(seed_iso(f"iid-{name}", hostname, keys, user_data))
        mac = "52:54:00:" + ":".join(f"{byte:02x}" for byte in secrets.token_bytes(3))
        xml = domain_xml(name, mac, gdir, base, image["cmdline"], seed_first)
        dom = conn.defineXML(xml)
        guest = Guest(dom=dom, mac=mac, dir=gdir, hostname=hostname)
        guests.append(guest)
        guest.started = time.monotonic()
        dom.create()
        return guest

    yield start
    import libvirt

    for guest in guests:
        with contextlib.suppress(libvirt.libvirtError):
            if guest.dom.isActive():
                guest.dom.destroy()
        with contextlib.suppress(libvirt.libvirtError):
            guest.dom.undefine()


def seed_iso(instance_id: str, hostname: str, keys: list[str], user_data: str | None) -> bytes:
    """A NoCloud seed as cloud-init expects it: ISO9660 labelled cidata holding meta-data and
    user-data (Rock Ridge and Joliet carry the lower-case names)."""
    import pycdlib

    meta = f"instance-id: {instance_id}\nlocal-hostname: {hostname}\n"
    if keys:
        meta += "public-keys:\n" + "".join(f"  - {key}\n" for key in keys)
    if user_data is None:
        user_data = f"#cloud-config\nhostname: {hostname}\nssh_authorized_keys:\n" + "".join(
            f"  - {key}\n" for key in keys)
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, vol_ident="cidata", rock_ridge="1.09", joliet=3)
    for iso_name, name, data in (("METADATA.;1", "meta-data", meta),
                                 ("USERDATA.;1", "user-data", user_data)):
        payload = data.encode()
        iso.add_fp(io.BytesIO(payload), len(payload), f"/{iso_name}", rr_name=name,
                   joliet_path=f"/{name}")
    out = io.BytesIO()
    iso.write_fp(out)
    iso.close()
    return out.getvalue()


def domain_xml(name: str, mac: str, gdir: Path, base: dict[str, Path], cmdline: str,
               seed_first: bool = False) -> str:
    """What the guest needs: ACPI (for shutdown), virtio disk/net/rng, a serial console.
    seed_first puts the seed disk on the lower PCI slot, so the guest sees it as vda."""
    root = ET.Element("domain", type="qemu")
    ET.SubElement(root, "name").text = name
    ET.SubElement(root, "memory", unit="MiB").text = "128"
    ET.SubElement(root, "vcpu").text = "1"
    os_el = ET.SubElement(root, "os")
    ET.SubElement(os_el, "type", arch="x86_64", machine="pc").text = "hvm"
    ET.SubElement(os_el, "kernel").text = str(base["kernel"])
    ET.SubElement(os_el, "initrd").text = str(base["initrd"])
    ET.SubElement(os_el, "cmdline").text = cmdline
    features = ET.SubElement(root, "features")
    ET.SubElement(features, "acpi")
    ET.SubElement(features, "apic")
    ET.SubElement(root, "on_poweroff").text = "destroy"
    ET.SubElement(root, "on_reboot").text = "restart"
    ET.SubElement(root, "on_crash").text = "destroy"
    devices = ET.SubElement(root, "devices")
    disks = [("vda", gdir / "disk.qcow2", "qcow2", False, "0x0a"),
             ("vdb", gdir / "seed.iso", "raw", True, "0x09")]
    for dev, source, fmt, readonly, slot in disks:
        disk = ET.SubElement(devices, "disk", type="file", device="disk")
        ET.SubElement(disk, "driver", name="qemu", type=fmt)
        ET.SubElement(disk, "source", file=str(source))
        ET.SubElement(disk, "target", dev=dev, bus="virtio")
        if readonly:
            ET.SubElement(disk, "readonly")
        if seed_first:  # libvirt would otherwise order the slots by target name
            ET.SubElement(disk, "address", type="pci", domain="0x0000", bus="0x00", slot=slot,
                          function="0x0")
    nic = ET.SubElement(devices, "interface", type="network")
    ET.SubElement(nic, "source", network=NETWORK)
    ET.SubElement(nic, "mac", address=mac)
    ET.SubElement(nic, "model", type="virtio")
    rng = ET.SubElement(devices, "rng", model="virtio")
    ET.SubElement(rng, "backend", model="random").text = "/dev/urandom"
    serial = ET.SubElement(devices, "serial", type="file")
    ET.SubElement(serial, "source", path=str(gdir / "console.log"), append="on")
    ET.SubElement(serial, "target", port="0")
    ET.SubElement(devices, "memballoon", model="none")
    return ET.tostring(root, encoding="unicode")


# ---------------------------------------------------------------- helpers on a running guest

def wait_for_lease(network, guest: Guest, timeout: float = BOOT_TIMEOUT) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        leases = [lease for lease in network.DHCPLeases()
                  if lease["mac"].lower() == guest.mac and lease.get("ipaddr")]
        if leases:
            guest.timings.setdefault("lease", time.monotonic() - guest.started)
            return max(leases, key=lambda lease: lease["expirytime"])["ipaddr"]
        time.sleep(0.1)
    raise AssertionError(f"no DHCP lease for {guest.mac} in {timeout} s\n{guest.console_text()}")


def ssh(key: Path, ip: str, *command: str, timeout: float = 15) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
         "-o", "ConnectTimeout=3", "-i", str(key), f"root@{ip}", *command],
        capture_output=True, text=True, timeout=timeout, check=False)


def wait_for_ssh(key: Path, ip: str, guest: Guest, timeout: float = BOOT_TIMEOUT) -> str:
    """Retry `ssh ... hostname` until it answers; returns its output. Short TCP probes
    first, so a SYN lost before the guest has its address costs no 1 s retransmit."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((ip, 22), timeout=0.3).close()
            break
        except OSError:
            time.sleep(0.05)
    last = None
    while time.monotonic() < deadline:
        last = ssh(key, ip, "hostname")
        if last.returncode == 0:
            guest.timings.setdefault("ssh", time.monotonic() - guest.started)
            return last.stdout.strip()
        time.sleep(0.2)
    raise AssertionError(f"no SSH to {ip}: {last and last.stderr}\n{guest.console_text()}")


def host_key(ip: str) -> str:
    proc = subprocess.run(["ssh-keyscan", "-T", "5", "-t", "ed25519", ip],
                          capture_output=True, text=True, timeout=30, check=False)
    keys = [line.split(None, 1)[1] for line in proc.stdout.splitlines()
            if line and not line.startswith("#")]
    assert keys, f"ssh-keyscan {ip} found no key: {proc.stderr}"
    return keys[0]


def wait_for_console(guest: Guest, text: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while text not in guest.console_text():
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} not on the console\n{guest.console_text()}")
        time.sleep(0.1)


def wait_for_state(dom, wanted: int, timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if dom.state()[0] == wanted:
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"domain state {dom.state()} is not {wanted} after {timeout} s")


# ---------------------------------------------------------------- the integration tests

@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("run", [1, 2, 3])
def test_guest_answers_ssh_with_the_seed_hostname(boot, network, ssh_key, run):
    guest = boot(f"imgtest-{run}")
    ip = wait_for_lease(network, guest)
    assert wait_for_ssh(ssh_key, ip, guest) == guest.hostname
    assert ip.startswith("192.168.151.")
    # The serial log can trail the guest: sshd may answer before "ready" reaches the file.
    wait_for_console(guest, f"stackctl-guest: ready {guest.hostname} {ip}")
    assert "-----BEGIN SSH HOST KEY KEYS-----" in guest.console_text()
    print(f"\nboot {run}: DHCP lease {guest.timings['lease']:.1f} s, "
          f"SSH {guest.timings['ssh']:.1f} s after start")
    assert guest.timings["ssh"] < 30, "boot to SSH far slower than ~5 s: entropy or KVM probe?"


@pytest.mark.integration
@pytest.mark.slow
def test_acpi_shutdown_powers_the_guest_off(boot, network, ssh_key):
    import libvirt

    guest = boot("imgtest-acpi")
    wait_for_ssh(ssh_key, wait_for_lease(network, guest), guest)
    guest.dom.shutdown()
    took = wait_for_state(guest.dom, libvirt.VIR_DOMAIN_SHUTOFF, 20)
    print(f"\nACPI shutdown to shut off: {took:.1f} s")
    assert "power button pressed" in guest.console_text()


@pytest.mark.integration
@pytest.mark.slow
def test_host_key_survives_hard_power_off_and_user_script_runs_once(boot, network, ssh_key):
    import libvirt

    key = ssh_key.with_suffix(".pub").read_text().strip()
    user_data = multipart_user_data(
        f"#cloud-config\nhostname: imgtest-ud\nssh_authorized_keys:\n  - {key}\n",
        "#!/bin/sh\necho \"ran $(date +%s)\" >> /root/user-script.log\n")
    # No key in meta-data: logging in proves user-data's ssh_authorized_keys were honoured,
    # and the hostname proves user-data's hostname wins over meta-data's local-hostname.
    # The seed disk comes first on the PCI bus: the root filesystem is found by its label.
    guest = boot("imgtest-meta-name", user_data=user_data, meta_keys=False, seed_first=True)
    ip = wait_for_lease(network, guest)
    assert wait_for_ssh(ssh_key, ip, guest) == "imgtest-ud"
    assert ssh(ssh_key, ip, "findfs", "LABEL=stackctl-root").stdout.strip() == "/dev/vdb"
    first_key = host_key(ip)
    assert first_key.split()[1] in guest.console_text()
    wait_for_console(guest, "stackctl-guest: user-data scripts done")
    guest.dom.destroy()  # a hard power-off right after the first boot
    guest.dom.create()
    guest.started, guest.timings = time.monotonic(), {}
    wait_for_state(guest.dom, libvirt.VIR_DOMAIN_RUNNING, 10)
    ip = wait_for_lease(network, guest)
    wait_for_ssh(ssh_key, ip, guest)
    assert host_key(ip) == first_key
    ran = ssh(ssh_key, ip, "cat", "/root/user-script.log")
    assert ran.returncode == 0 and len(ran.stdout.splitlines()) == 1, ran.stdout + ran.stderr
