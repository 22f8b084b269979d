"""stack_vm: its documentation against its argument spec, then the module run by Ansible
(AnsiballZ and all) against the real qemu:///system (marked integration).

Each integration test gets its own directory under /var/lib/stackctl/test-tmp (QEMU, as
libvirt-qemu, must traverse it: pytest's 0700 tmp dirs would not do) and its own domain; the
module's network `stk-vmtest` is created for these tests and removed after them. Everything is
removed at teardown, also when a test fails.
"""

import ast
import concurrent.futures
import dataclasses
import functools
import json
import os
import secrets
import shutil
import stat
import subprocess
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from stackcore.errors import InvalidInput
from stackcore.vm import VmRequest

integration = pytest.mark.integration

PROJECT = Path(__file__).resolve().parents[2]
VENV_BIN = PROJECT / ".venv" / "bin"
URI = "qemu:///system"
TEST_ROOT = Path("/var/lib/stackctl/test-tmp")
GUEST_DIR = PROJECT / "build" / "images" / "test-guest"
NETWORK = "stk-vmtest"
BRIDGE = "stkvmbr0"
SUBNET = "192.168.152"
DNSMASQ_NS = "http://libvirt.org/schemas/network/dnsmasq/1.0"


# ---------------------------------------------------------------- the module file itself


def _documentation():
    tree = ast.parse((PROJECT / "library" / "stack_vm.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and node.targets[0].id == "DOCUMENTATION":
            return yaml.safe_load(ast.literal_eval(node.value))
    raise AssertionError("no DOCUMENTATION")


def test_documentation_matches_the_argument_spec(documentation_mismatches):
    assert documentation_mismatches("stack_vm") == []


def test_every_documented_option_reaches_the_core():
    assert set(_documentation()["options"]) == {f.name for f in dataclasses.fields(VmRequest)}


def test_the_core_refuses_parameters_it_does_not_know():
    with pytest.raises(InvalidInput, match="unsupported parameters: colour"):
        VmRequest.from_params({"name": "x", "colour": "red"})


# ---------------------------------------------------------------- through Ansible


def _libvirt():
    libvirt = pytest.importorskip("libvirt")
    libvirt.registerErrorHandler(lambda *_a: None, None)
    return libvirt


@pytest.fixture(scope="module")
def conn():
    libvirt = _libvirt()
    try:
        c = libvirt.open(URI)
    except libvirt.libvirtError as exc:
        pytest.skip(f"no libvirtd at {URI}: {exc.get_error_message()}")
    yield c
    c.close()


def _network_xml():
    ET.register_namespace("dnsmasq", DNSMASQ_NS)
    net = ET.Element("network")
    ET.SubElement(net, "name").text = NETWORK
    ET.SubElement(net, "bridge", name=BRIDGE, stp="off")
    ip = ET.SubElement(net, "ip", address=f"{SUBNET}.1", netmask="255.255.255.0")
    dhcp = ET.SubElement(ip, "dhcp")
    ET.SubElement(dhcp, "range", start=f"{SUBNET}.10", end=f"{SUBNET}.250")
    opts = ET.SubElement(net, f"{{{DNSMASQ_NS}}}options")
    ET.SubElement(opts, f"{{{DNSMASQ_NS}}}option", value="no-ping")
    return ET.tostring(net, encoding="unicode")


def _remove_network(conn, libvirt):
    try:
        net = conn.networkLookupByName(NETWORK)
    except libvirt.libvirtError:
        return
    persistent = net.isPersistent()
    if net.isActive():
        net.destroy()
    if persistent:
        net.undefine()


@pytest.fixture(scope="module")
def network(conn):
    """A transient NAT-less network with DHCP (no-ping) just for these tests."""
    libvirt = _libvirt()
    _remove_network(conn, libvirt)  # left by a killed run
    conn.networkCreateXML(_network_xml())
    yield NETWORK
    _remove_network(conn, libvirt)


@pytest.fixture
def workdir():
    """/var/lib/stackctl/test-tmp/<random>, 0755 all the way down, removed after."""
    TEST_ROOT.mkdir(parents=True, exist_ok=True)
    for path in (TEST_ROOT.parent, TEST_ROOT):
        path.chmod(0o755)
    path = TEST_ROOT / secrets.token_hex(6)
    path.mkdir(mode=0o755)
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def domain(conn):
    """A fresh domain name stk-<uuid>; the domain is destroyed and undefined after the test."""
    vm_uuid = str(uuid.uuid4())
    name = f"stk-{vm_uuid}"
    yield name
    libvirt = _libvirt()
    try:
        dom = conn.lookupByName(name)
    except libvirt.libvirtError:
        return
    if dom.isActive():
        dom.destroy()
    if dom.isPersistent():
        dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                          | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                          | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)


@pytest.fixture
def base_image(workdir):
    path = workdir / "base.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "64M"], check=True)
    path.chmod(0o644)
    return str(path)


@pytest.fixture
def stack_vm(run_module):
    """Run stack_vm through Ansible (tests/modules/conftest.py's run_module)."""
    return functools.partial(run_module, "stack_vm")


def spec_args(name, workdir, image, network, **extra):
    args = dict(name=name, vcpus=1, memory_mb=128, disk_gb=1, image=image, virt_type="qemu",
                network=network, instance_dir=str(workdir / "instances"), wait_timeout=0,
                stop_timeout=3, tenant="t1", vm_name="vm1", flavor="m1.nano",
                ssh_authorized_keys=["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAITEST test"])
    args.update(extra)
    return args


def domain_state(conn, name):
    libvirt = _libvirt()
    try:
        dom = conn.lookupByName(name)
    except libvirt.libvirtError:
        return "absent"
    return "running" if dom.isActive() else "stopped"


@integration
def test_check_create_reapply_stop_start_absent(stack_vm, conn, network, workdir, domain,
                                                 base_image):
    args = spec_args(domain, workdir, base_image, network, state="running")
    instance = workdir / "instances" / domain

    checked = stack_vm(args, check=True)
    assert checked["changed"] is True, checked
    assert checked["vm"]["state"] == "running"
    assert domain_state(conn, domain) == "absent" and not instance.exists()

    created = stack_vm(args)
    assert created["changed"] is True, created
    assert created["vm"]["state"] == "running" and domain_state(conn, domain) == "running"
    assert created["vm"]["mac"].startswith("52:54:00:")
    assert created["vm"]["uuid"] == domain[len("stk-"):]
    for name in ("disk.qcow2", "seed.iso"):
        assert (instance / name).is_file()
    assert stat.S_IMODE(instance.stat().st_mode) == 0o755

    assert stack_vm(args, check=True)["changed"] is False
    again = stack_vm(args, diff=True)
    assert again["changed"] is False and again["actions"] == []
    assert again["diff"]["before"] == again["diff"]["after"]
    assert "--- before" not in again["_stdout"]

    stopped = stack_vm(dict(args, state="stopped"))
    # the throwaway disk boots nothing, so nobody answers the ACPI button
    assert stopped["changed"] is True and stopped["forced"] is True
    assert domain_state(conn, domain) == "stopped"
    assert stack_vm(dict(args, state="stopped"))["changed"] is False

    started = stack_vm({"name": domain, "instance_dir": args["instance_dir"],
                        "state": "running", "wait_timeout": 0})
    assert started["changed"] is True and domain_state(conn, domain) == "running"

    absent = {"name": domain, "state": "absent", "instance_dir": args["instance_dir"]}
    assert stack_vm(absent, check=True)["changed"] is True
    assert domain_state(conn, domain) == "running"
    gone = stack_vm(absent)
    assert gone["changed"] is True and gone["vm"]["state"] == "absent"
    assert stack_vm(absent)["changed"] is False
    assert domain_state(conn, domain) == "absent"
    assert os.listdir(workdir / "instances") == []


@integration
def test_diff_shows_a_memory_change_and_restart_required(stack_vm, conn, network, workdir,
                                                         domain, base_image):
    args = spec_args(domain, workdir, base_image, network, state="running")
    stack_vm(args)
    changed = stack_vm(dict(args, memory_mb=192), diff=True)
    assert changed["diff"]["before"]["memory_mb"] == 128
    assert changed["diff"]["after"]["memory_mb"] == 192
    text = changed["_stdout"]
    assert "--- before" in text and "+++ after" in text
    assert "-    memory_mb: 128" in text and "+    memory_mb: 192" in text
    result = stack_vm(dict(args, memory_mb=192))
    assert result["changed"] is False and result["restart_required"] is True


@integration
def test_virt_type_auto_uses_the_probe_and_then_keeps_the_domains_type(
        stack_vm, conn, network, workdir, domain, base_image):
    args = spec_args(domain, workdir, base_image, network, state="present", virt_type="auto")
    result = stack_vm(args)
    assert result["changed"] is True, result
    assert result["vm"]["virt_type"] in ("kvm", "qemu")
    assert stack_vm(args)["changed"] is False


@integration
def test_user_mistakes_fail_with_one_line_and_change_nothing(stack_vm, conn, network, workdir,
                                                             domain, base_image):
    args = spec_args(domain, workdir, base_image, network, state="stopped", disk_gb=2)
    stack_vm(args)
    shrink = stack_vm(dict(args, disk_gb=1))
    assert shrink["_status"] == "failed" and shrink["changed"] is False
    assert "refusing to shrink" in shrink["msg"]
    # ansible 2.19 adds exception="(traceback unavailable)" to every failure: no real one here
    assert "Traceback" not in shrink["_stdout"] and "Traceback" not in shrink.get("exception", "")

    missing = stack_vm({"name": domain + "x", "instance_dir": args["instance_dir"], "vcpus": 1})
    assert missing["_status"] == "failed"
    assert "missing memory_mb, disk_gb, image" in missing["msg"]

    bad_user_data = stack_vm(dict(args, user_data="plain text"))
    assert bad_user_data["_status"] == "failed" and "user_data must start" in bad_user_data["msg"]
    assert "plain text" not in json.dumps(bad_user_data)  # no_log


@integration
def test_absent_waits_for_a_create_that_is_still_running(stack_vm, conn, network, workdir,
                                                         domain, base_image):
    """A recovering controller removes a VM whose create is still waiting for its address:
    the removal waits for the lock, then leaves nothing behind."""
    args = spec_args(domain, workdir, base_image, network, state="running", wait_timeout=6)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        create = pool.submit(stack_vm, args)  # the empty disk never asks for a lease
        lock = workdir / "instances" / f".{domain}.lock"
        deadline = time.monotonic() + 30
        while domain_state(conn, domain) != "running" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert lock.exists()
        removal = pool.submit(stack_vm, {"name": domain, "state": "absent",
                                         "instance_dir": args["instance_dir"]})
        created, removed = create.result(), removal.result()
    assert created["_status"] == "failed" and created["changed"] is True
    assert "no DHCP lease" in created["msg"]
    assert removed["_status"] == "ok" and removed["changed"] is True
    assert domain_state(conn, domain) == "absent"
    assert os.listdir(workdir / "instances") == []


def _guest():
    manifest = GUEST_DIR / "manifest.json"
    if not manifest.exists():
        pytest.skip(f"test guest not built ({manifest} missing): run "
                    "`python images/test-guest/build.py --out build/images/test-guest`")
    data = json.loads(manifest.read_text())
    files = {k: str(GUEST_DIR / v["path"]) for k, v in data["files"].items()}
    return files, data["cmdline"]


@integration
@pytest.mark.slow
def test_a_real_guest_boots_gets_an_address_and_stops_cleanly(stack_vm, conn, network, workdir,
                                                             domain, tmp_path):
    files, cmdline = _guest()
    guest = workdir / "guest"
    guest.mkdir(mode=0o755)
    for key in ("disk", "kernel", "initrd"):  # QEMU reads them: copy to a traversable dir
        shutil.copy(files[key], guest / key)
        (guest / key).chmod(0o644)
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    args = spec_args(domain, workdir, str(guest / "disk"), network, state="running",
                     kernel=str(guest / "kernel"), initrd=str(guest / "initrd"),
                     cmdline=cmdline, wait_timeout=120, stop_timeout=60, hostname="boot-1",
                     ssh_authorized_keys=[Path(f"{key}.pub").read_text().strip()])

    start = time.monotonic()
    result = stack_vm(args)
    booted_s = time.monotonic() - start
    assert result["changed"] is True, result
    address = result["vm"]["address"]
    assert address and address.startswith(f"{SUBNET}."), result
    print(f"create + boot to DHCP lease: {booted_s:.1f} s")

    proc = _ssh(address, key, "hostname")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "boot-1"

    again = stack_vm(args)
    assert again["changed"] is False and again["vm"]["address"] == address

    stopped = stack_vm(dict(args, state="stopped"))
    assert stopped["changed"] is True and stopped["forced"] is False  # ACPI reached the guest

    power_only = {"name": domain, "instance_dir": args["instance_dir"], "wait_timeout": 120}
    restarted = stack_vm(dict(power_only, state="running"))
    assert restarted["changed"] is True and restarted["vm"]["address"] == address
    assert stack_vm(dict(power_only, state="stopped"))["forced"] is False
    log = (workdir / "instances" / domain / "console.log").read_text(errors="replace")
    assert log.count("reboot: Power down") == 2  # append='on': both boots are in the log

    gone = stack_vm({"name": domain, "state": "absent", "instance_dir": args["instance_dir"]})
    assert gone["changed"] is True and domain_state(conn, domain) == "absent"


def _ssh(address, key, command, timeout=60):
    argv = ["ssh", "-i", str(key), "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR", f"root@{address}", command]
    deadline = time.monotonic() + timeout
    while True:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        if proc.returncode == 0 or time.monotonic() > deadline:
            return proc
        time.sleep(1)
