"""vm resize, snapshot, rebuild and set-state through the real CLI, libvirtd, QEMU and (when
deployed) Swift, checked from inside the guest over SSH.

Boots are expensive under TCG, so each test walks one VM through several commands.
"""

import json
import subprocess

import pytest

from .conftest import INSTANCES, ssh

HOST_SNAPSHOTS = "/var/lib/stackctl/snapshots"


def guest(vm, key, command):
    proc = ssh(vm["address"], key, command)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def dominfo(domain):
    out = subprocess.run(["virsh", "-c", "qemu:///system", "dominfo", domain],
                         capture_output=True, text=True, check=True).stdout
    return dict(line.split(":", 1) for line in out.splitlines() if ":" in line)


def disk_bytes(domain):
    out = subprocess.run(["qemu-img", "info", "-U", "--output=json",
                          str(INSTANCES / domain / "disk.qcow2")],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)["virtual-size"]


def test_resize_grows_cpu_ram_and_disk_refuses_a_shrink_and_set_state_fixes_the_record(
        cli, tenant_key, imported_image):
    cli.run("vm", "create", "adm-1", "--image", imported_image, "--flavor", "m1.nano",
            "--key", "k1")
    small = int(guest(cli.json("vm", "show", "adm-1"), tenant_key,
                      "grep MemTotal /proc/meminfo").split()[1])

    proc = cli.run("vm", "resize", "adm-1", "m1.micro")
    assert "stopping the VM and starting it again to apply CPU/RAM" in proc.stderr
    vm = cli.json("vm", "show", "adm-1")
    assert (vm["flavor"], vm["vcpus"], vm["ram_mb"], vm["disk_gb"], vm["state"]) == (
        "m1.micro", 1, 256, 2, "running")
    out = guest(vm, tenant_key, "nproc; grep MemTotal /proc/meminfo; cat /sys/block/vda/size")
    cpus, mem, sectors = out.split("\n")[0], int(out.split("\n")[1].split()[1]), out.split()[-1]
    assert cpus == "1"
    assert mem > small + 100 * 1024, (small, mem)  # 128 -> 256 MiB, less the kernel's share
    assert int(sectors) * 512 == 2 * 1024**3

    domain = vm["domain"]
    before = (dominfo(domain)["Max memory"], disk_bytes(domain))
    proc = cli.run("vm", "resize", "adm-1", "m1.nano", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "stackctl: error: refusing to shrink the disk of VM 'adm-1' from 2 GiB to 1 GiB "
        "(flavor 'm1.nano'): data would be lost; nothing was changed"]
    assert cli.json("vm", "show", "adm-1") == vm
    assert (dominfo(domain)["Max memory"], disk_bytes(domain)) == before

    stuck = cli.json("vm", "set-state", "adm-1", "--state", "error")
    assert stuck["state"] == "error" and "administrator" in stuck["fault"]
    fixed = cli.json("vm", "set-state", "adm-1", "--from-host")
    assert (fixed["state"], fixed["fault"]) == ("running", None)
    assert dominfo(domain)["State"].strip() == "running"  # the host was never touched


def swift_object(cli, monkeypatch, sha256):
    """Headers of images/<sha256> in the service account, None when absent (or when images
    live in the local store)."""
    from stackctl import config
    from stackctl.app import App
    from stackctl.workflows import image_store, storage_env

    monkeypatch.setenv("STACKCTL_HOME", str(cli.home))
    app = App(config.load())
    if image_store.backend(app) != "swift":
        return None
    return storage_env.load(app).session().head_object(storage_env.SERVICE_ACCOUNT,
                                                      image_store.CONTAINER, sha256)


def test_snapshot_boots_as_a_new_vm_and_rebuild_wipes_the_disk_but_keeps_the_identity(
        cli, tenant_key, imported_image, monkeypatch):
    cli.run("vm", "create", "src", "--image", imported_image, "--flavor", "m1.nano",
            "--key", "k1")
    vm = cli.json("vm", "show", "src")
    guest(vm, tenant_key, "echo kept-by-the-snapshot > /root/marker && sync")

    # Killed after the upload, before the image is marked active: recovery removes the row
    # and the object, and the VM is running again.
    proc = cli.run("vm", "snapshot", "src", "broken", check=False,
                   STACKCTL_CRASH_AT="finish")
    assert proc.returncode != 0
    [half] = [i for i in cli.json("image", "list") if i["name"] == "broken"]
    assert half["status"] == "saving" and len(half["sha256"]) == 64
    if half["path"].startswith("swift:"):
        assert swift_object(cli, monkeypatch, half["sha256"]) is not None
    recovered = cli.json("recover")
    assert [r["status"] for r in recovered] == ["rolled_back"]
    assert "broken" not in {i["name"] for i in cli.json("image", "list")}
    assert swift_object(cli, monkeypatch, half["sha256"]) is None
    assert not list(_snapshot_files(half["id"]))
    assert cli.json("vm", "show", "src")["state"] == "running"

    proc = cli.run("vm", "snapshot", "src", "src-snap")
    assert "stopping src" in proc.stderr
    snap = cli.json("image", "show", "src-snap")
    assert (snap["status"], snap["visibility"], snap["disk_format"]) == (
        "active", "private", "qcow2")
    assert (snap["kernel"], snap["ramdisk"]) == ("tg-kernel", "tg-initrd")
    assert snap["cmdline"]
    if snap["path"].startswith("swift:"):
        head = swift_object(cli, monkeypatch, snap["sha256"])
        assert int(head["content-length"]) == snap["size"]
        assert head["x-object-meta-sha256"] == snap["sha256"]
    assert cli.json("vm", "show", "src")["state"] == "running"

    cli.run("vm", "create", "from-snap", "--image", "src-snap", "--flavor", "m1.nano",
            "--key", "k1")
    copy = cli.json("vm", "show", "from-snap")
    assert guest(copy, tenant_key, "hostname; cat /root/marker").split() == [
        "from-snap", "kept-by-the-snapshot"]

    rebuilt = cli.json("vm", "rebuild", "src")
    assert {k: rebuilt[k] for k in ("uuid", "mac", "address", "keypair", "name", "state")} == {
        k: vm[k] for k in ("uuid", "mac", "address", "keypair", "name", "state")}
    out = guest(rebuilt, tenant_key, "hostname; test -e /root/marker && echo still || echo gone")
    assert out.split() == ["src", "gone"]

    # Deleting the image (after the VM booted from it) removes its object too.
    cli.run("vm", "delete", "from-snap")
    cli.run("image", "delete", "src-snap")
    assert swift_object(cli, monkeypatch, snap["sha256"]) is None


def _snapshot_files(image_id):
    import glob

    return glob.glob(f"{HOST_SNAPSHOTS}/{image_id}*")


@pytest.fixture(autouse=True)
def _no_snapshot_files_left():
    """Whatever happens, no flattened copy of ours may stay on the host."""
    before = set(_snapshot_files(""))
    yield
    assert set(_snapshot_files("")) <= before


def test_local_store_snapshot_of_a_stopped_vm_keeps_it_stopped_and_rolls_back_cleanly(
        cli, tenant_key, imported_image):
    import hashlib

    cli.run("vm", "create", "cold", "--image", imported_image, "--flavor", "m1.nano",
            "--key", "k1")
    cli.run("vm", "stop", "cold")
    local = {"STACKCTL_IMAGE_STORE": "local"}
    images = cli.home / "images"

    proc = cli.run("vm", "snapshot", "cold", "cold-snap", "-o", "json", **local)
    snap = json.loads(proc.stdout)
    assert snap["status"] == "active" and snap["path"] == str(images / snap["sha256"])
    assert hashlib.sha256((images / snap["sha256"]).read_bytes()).hexdigest() == snap["sha256"]
    assert cli.json("vm", "show", "cold")["state"] == "stopped"
    assert dominfo(f"stk-{cli.json('vm', 'show', 'cold')['uuid']}")["State"].strip() == "shut off"

    proc = cli.run("vm", "snapshot", "cold", "cold-2", check=False, STACKCTL_CRASH_AT="store",
                   **local)
    assert proc.returncode != 0
    assert [r["status"] for r in cli.json("recover")] == ["rolled_back"]
    assert "cold-2" not in {i["name"] for i in cli.json("image", "list")}
    assert sorted(p.name for p in images.iterdir()) == [snap["sha256"]]
