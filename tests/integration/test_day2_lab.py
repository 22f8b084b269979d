"""Day-two operations on three lab hosts (`stackctl lab up --hosts 3`, site.yml deployed by
`stackctl deploy`): live and cold migration with data checked inside the guest, a drain with
an anti-affinity group, a migration killed half-way (deterministically at each side of the
switch-over, and from outside while libvirt works), and the evacuation of a host that died.
After each, exactly one copy of each VM exists: the domain on the host the controller says,
nowhere else."""

import json
import os
import signal
import sqlite3
import subprocess
import time
import uuid

import pytest
from stackcore import dhcp_host

from stackctl.lab import runtime as lab_runtime

from .conftest import PROJECT, STACKCTL, Cli, import_guest
from .labtools import LAB_ROOT, lab, lab_leftovers, require_no_lab

LAB_KEY = LAB_ROOT / "id_ed25519"
KNOWN_HOSTS = PROJECT / "inventories" / "lab" / "known_hosts"
INVENTORY = PROJECT / "inventories" / "lab" / "hosts.yml"
HOSTS = ("lab1", "lab2", "lab3")
NETWORK = "stack-provider"  # roles/hypervisor: hypervisor_network_name
OTHER_MAC = "52:54:00:00:00:99"  # a guest that is not there, holding an address by reservation


class LabCli(Cli):
    def env(self, **extra):
        return super().env(STACKCTL_INVENTORY=str(INVENTORY), **extra)


@pytest.fixture(scope="module")
def cloud(tmp_path_factory, guest_image):
    """Three deployed lab hosts and a controller with a tenant, a key and the test guest."""
    require_no_lab()
    env = dict(os.environ)
    env.pop("STACKCTL_LAB_DIR", None)
    home = tmp_path_factory.mktemp("day2")
    try:
        up = lab("up", "--hosts", "3", timeout=600)
        assert up.returncode == 0, up.stderr
        c = LabCli(home=home / "home", tenant=f"t{uuid.uuid4().hex[:8]}")
        c.run("deploy", timeout=1200)
        c.run("tenant", "create", c.tenant)
        c.run("host", "refresh")
        key = home / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
                       check=True)
        c.run("keypair", "add", "k1", "--public-key", f"{key}.pub")
        import_guest(c, guest_image)
        c.key = key
        yield c
    finally:
        down = lab("down")
        assert down.returncode == 0, down.stderr
        assert lab_leftovers() == []


def host_address(name):
    return f"10.250.0.{10 + int(name.removeprefix('lab'))}"


def on_host(name, command, check=True):
    """Run ``command`` on lab host ``name`` over its sshd."""
    argv = ["ssh", "-i", str(LAB_KEY), "-o", f"UserKnownHostsFile={KNOWN_HOSTS}",
            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
            f"root@{host_address(name)}", command]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"{command!r} on {name}: {proc.stderr.strip()}")
    return proc.stdout


def guest(cloud, vm, command, timeout=120):
    """Run ``command`` in the VM, reached through its hypervisor (as docs/lab.md shows)."""
    jump = (f"ssh -i {LAB_KEY} -o UserKnownHostsFile={KNOWN_HOSTS} -o BatchMode=yes "
            f"-W %h:%p root@{host_address(vm['host'])}")
    argv = ["ssh", "-i", str(cloud.key), "-o", "BatchMode=yes", "-o", "ConnectTimeout=8",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR", "-o", f"ProxyCommand={jump}", f"root@{vm['address']}",
            command]
    deadline = time.monotonic() + timeout
    while True:
        proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
        if proc.returncode == 0:
            return proc.stdout.strip()
        if time.monotonic() > deadline:
            raise AssertionError(f"{command!r} in {vm['name']}: {proc.stderr.strip()}")
        time.sleep(2)


def copies(vm_uuid):
    """{host: libvirt state} of every lab host that has the VM's domain defined or running,
    and the hosts that still hold its instance directory."""
    domain = f"stk-{vm_uuid}"
    found, dirs = {}, []
    for name in HOSTS:
        state = on_host(name, f"virsh domstate {domain} 2>/dev/null || true").strip()
        if state:
            found[name] = state
        if on_host(name, f"test -d /var/lib/stackctl/instances/{domain} && echo yes || true"
                   ).strip():
            dirs.append(name)
    return found, dirs


def reservations(mac):
    """{host: [addresses]} of the DHCP reservations for ``mac`` on the lab hosts' networks."""
    found = {}
    for name in HOSTS:
        xml = on_host(name, f"virsh net-dumpxml {NETWORK}")
        mine = [ip for m, ip in dhcp_host.host_entries(xml) if m == mac.lower()]
        if mine:
            found[name] = mine
    return found


def assert_one_copy(cloud, name, state="running"):
    vm = cloud.json("vm", "show", name)
    found, dirs = copies(vm["uuid"])
    assert found == {vm["host"]: state}, (vm["host"], found)
    assert dirs == [vm["host"]], dirs
    assert vm["moving_to"] is None
    return vm


def create(cloud, name, *extra):
    return cloud.json("vm", "create", name, "--image", "tg", "--flavor", "m1.nano", "--key",
                      "k1", *extra)


def mark(cloud, vm):
    """Write a file in the guest (synced to its disk); returns the guest's boot id."""
    return guest(cloud, vm, "echo moved-with-me > /root/marker && sync && "
                            "cat /proc/sys/kernel/random/boot_id")


def test_live_migration_keeps_the_guest_running_with_its_data(cloud):
    vm = create(cloud, "live1")
    boot_id = mark(cloud, vm)
    moved = cloud.json("vm", "migrate", "live1", "--live")
    assert moved["host"] != vm["host"] and moved["mode"] == "live"
    after = assert_one_copy(cloud, "live1")
    assert guest(cloud, after, "cat /root/marker") == "moved-with-me"
    # The same boot: the guest never restarted.
    assert guest(cloud, after, "cat /proc/sys/kernel/random/boot_id") == boot_id
    # It kept its address, and the target's DHCP keeps that address for it.
    assert after["address"] == vm["address"]
    assert reservations(vm["mac"]) == {after["host"]: [vm["address"]]}
    cloud.run("vm", "delete", "live1")
    assert copies(vm["uuid"]) == ({}, [])
    assert reservations(vm["mac"]) == {}


def dhcp_host_entry(host, command, mac, ip):
    entry = f"<host mac='{mac}' ip='{ip}'/>"
    on_host(host, f"virsh net-update {NETWORK} {command} ip-dhcp-host \"{entry}\" "
                  "--live --config")


def test_cold_migration_to_a_chosen_host_moves_the_disk(cloud):
    vm = create(cloud, "cold1")
    boot_id = mark(cloud, vm)
    to = next(h for h in HOSTS if h != vm["host"])
    # The target's dnsmasq would likely lease the guest its old address again (it hashes the
    # MAC); with that address reserved for another guest there, it cannot: the move must
    # record the address the guest really got.
    dhcp_host_entry(to, "add-last", OTHER_MAC, vm["address"])
    try:
        moved = cloud.json("vm", "migrate", "cold1", "--to", to)
    finally:
        dhcp_host_entry(to, "delete", OTHER_MAC, vm["address"])
    assert moved["host"] == to and moved["mode"] == "cold"
    assert moved["address"] != vm["address"]
    after = assert_one_copy(cloud, "cold1")
    assert guest(cloud, after, "cat /root/marker") == "moved-with-me"
    assert guest(cloud, after, "cat /proc/sys/kernel/random/boot_id") != boot_id
    # Refusals come before anything moves.
    same = cloud.run("vm", "migrate", "cold1", "--to", to, check=False)
    assert same.returncode != 0 and f"already on {to}" in same.stderr
    cloud.run("vm", "stop", "cold1")
    live = cloud.run("vm", "migrate", "cold1", "--live", check=False)
    assert live.returncode != 0 and "needs a running VM" in live.stderr
    cloud.run("vm", "delete", "cold1")


def test_drain_respects_anti_affinity_and_refuses_when_a_vm_cannot_move(cloud):
    cloud.run("server-group", "create", "spread", "--policy", "anti-affinity")
    members = {create(cloud, f"ag{i}", "--group", "spread")["host"]: f"ag{i}"
               for i in (1, 2, 3)}
    assert sorted(members) == list(HOSTS)
    refused = cloud.run("host", "drain", "lab3", check=False)
    assert refused.returncode != 0
    assert f"{members['lab3']}: no host is free of server group 'spread'" in refused.stderr
    assert "nothing was moved" in refused.stderr
    assert cloud.json("vm", "show", members["lab3"])["host"] == "lab3"
    assert next(h for h in cloud.json("host", "list") if h["name"] == "lab3")["enabled"]

    cloud.run("vm", "delete", members["lab1"])
    report = cloud.json("host", "drain", "lab3")
    assert [(r["vm"].split("/")[1], r["to"], r["mode"], r["result"]) for r in report["vms"]] \
        == [(members["lab3"], "lab1", "live", "moved")]
    assert_one_copy(cloud, members["lab3"])
    lab3 = next(h for h in cloud.json("host", "list") if h["name"] == "lab3")
    assert (lab3["enabled"], lab3["disabled_reason"], lab3["vms"]) == (False, "draining", 0)
    cloud.run("host", "enable", "lab3")
    for name in (members["lab2"], members["lab3"]):
        cloud.run("vm", "delete", name)
    cloud.run("server-group", "delete", "spread")


def journal_step(home):
    try:
        with sqlite3.connect(f"file:{home}/stackctl.db?mode=ro", uri=True, timeout=1) as conn:
            row = conn.execute("SELECT step FROM operations WHERE kind = 'vm.migrate' "
                               "AND status = 'running'").fetchone()
    except sqlite3.OperationalError:
        return None
    return row[0] if row else None


def kill_from_outside(cloud, name):
    """SIGKILL the whole stackctl process group while the live migration runs on the source
    host; the module (and libvirt's job) may carry on without its caller."""
    proc = subprocess.Popen([STACKCTL, "vm", "migrate", name, "--live"],
                            env=cloud.env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while journal_step(cloud.home) != "move" and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(2)  # the module is running on the source: libvirt is copying
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def test_a_migration_killed_at_any_point_is_settled_to_one_copy(cloud):
    """One VM (boots are dear under TCG), killed three times: right before the live migration
    starts (rolled back to the source), right after it finished (finished on the target), and
    from outside while libvirt copies (recovery waits for libvirt, reads where the domain is and
    settles). Never zero copies, never two; always the same boot and the guest's file."""
    vm = create(cloud, "crash1")
    boot_id = mark(cloud, vm)
    where = vm["host"]
    for step, ends_on in (("move", "source"), ("cleanup", "target")):
        killed = cloud.run("vm", "migrate", "crash1", "--live", check=False,
                           STACKCTL_CRASH_AT=step)
        assert killed.returncode == -signal.SIGKILL, (step, killed.stderr)
        out = cloud.run("recover").stdout
        assert ("rolled back" if ends_on == "source" else "finished") in out, (step, out)
        after = assert_one_copy(cloud, "crash1")
        assert (after["host"] == where) == (ends_on == "source"), (step, where, after["host"])
        assert guest(cloud, after, "cat /proc/sys/kernel/random/boot_id") == boot_id, step
        assert guest(cloud, after, "cat /root/marker") == "moved-with-me", step
        # The target's address reservation is gone with a rolled-back copy, kept with a
        # finished move.
        assert reservations(vm["mac"]) == (
            {} if ends_on == "source" else {after["host"]: [vm["address"]]}), step
        where = after["host"]

    kill_from_outside(cloud, "crash1")
    out = cloud.run("recover").stdout
    assert "crash1" in out, out
    after = assert_one_copy(cloud, "crash1")
    assert guest(cloud, after, "cat /proc/sys/kernel/random/boot_id") == boot_id
    assert guest(cloud, after, "cat /root/marker") == "moved-with-me"
    assert reservations(vm["mac"]) == {after["host"]: [vm["address"]]}
    cloud.run("vm", "delete", "crash1")
    assert copies(vm["uuid"]) == ({}, [])
    assert reservations(vm["mac"]) == {}


def test_evacuate_rebuilds_the_vms_of_a_dead_host_elsewhere(cloud):
    vm = create(cloud, "evac1")
    mark(cloud, vm)
    refused = cloud.run("host", "evacuate", vm["host"], check=False)
    assert refused.returncode != 0 and "is up and answers" in refused.stderr
    # The host dies: every process in its namespace (sshd, libvirtd, QEMU) is killed.
    netns = f"stklab-{vm['host']}"
    for pid in lab_runtime.netns_pids(netns):
        os.kill(pid, signal.SIGKILL)
    report = cloud.json("host", "evacuate", vm["host"])
    assert [r["vm"].split("/")[1] for r in report["vms"]] == ["evac1"]
    after = cloud.json("vm", "show", "evac1")
    assert after["host"] != vm["host"] and after["state"] == "running"
    assert after["uuid"] == vm["uuid"] and after["mac"] == vm["mac"]
    # Rebuilt from its image and seed: it answers with the tenant's key; its disk is new.
    assert guest(cloud, after, "hostname") == "evac1"
    assert guest(cloud, after, "cat /root/marker 2>/dev/null || echo lost") == "lost"
    cloud.run("vm", "delete", "evac1")
    dead = next(h for h in cloud.json("host", "list") if h["name"] == vm["host"])
    assert not dead["enabled"]


def test_cli_output_is_json_on_request(cloud):
    plan = json.loads(cloud.run("host", "drain", "lab1", "--dry-run", "-o", "json").stdout)
    assert isinstance(plan, list)
