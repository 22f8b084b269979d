"""stackcore.hostinfo: versions, states, disk figures, and gather() on libvirt's test driver."""

import os
import shutil

import pytest
from stackcore.hostinfo import (
    GIB,
    cached_images,
    disk_usage,
    dotted_version,
    gather,
    instances,
    memory_mb,
    nearest_existing,
    state_word,
)

# A private test-driver host: two domains, one running and one shut off.
NODE_XML = """<node>
  <cpu><nodes>1</nodes><sockets>1</sockets><cores>4</cores><threads>1</threads></cpu>
  <memory>8388608</memory>
  <domain type='test'>
    <name>stk-running</name>
    <uuid>11111111-2222-3333-4444-555555555555</uuid>
    <memory>131072</memory>
    <os><type>hvm</type></os>
  </domain>
  <domain type='test'>
    <name>stk-off</name>
    <uuid>66666666-7777-8888-9999-000000000000</uuid>
    <memory>131072</memory>
    <os><type>hvm</type></os>
  </domain>
</node>
"""


@pytest.mark.parametrize(
    "number, dotted",
    [(9000000, "9.0.0"), (7002022, "7.2.22"), (10010001, "10.10.1"), (2, "0.0.2")],
)
def test_dotted_version(number, dotted):
    assert dotted_version(number) == dotted


@pytest.mark.parametrize(
    "state, word",
    [(0, "no state"), (1, "running"), (2, "idle"), (3, "paused"), (4, "in shutdown"),
     (5, "shut off"), (6, "crashed"), (7, "pmsuspended"), (42, "unknown")],
)
def test_state_word_matches_virsh(state, word):
    assert state_word(state) == word


def test_nearest_existing_walks_up_to_a_parent(tmp_path):
    assert nearest_existing(str(tmp_path / "a" / "b" / "c")) == str(tmp_path)
    assert nearest_existing(str(tmp_path)) == str(tmp_path)


def test_disk_usage_of_a_missing_dir_is_that_of_its_filesystem(tmp_path):
    total, free = disk_usage(str(tmp_path / "instances" / "not-yet"))
    usage = shutil.disk_usage(tmp_path)
    assert total == usage.total // GIB
    assert abs(free - usage.free // GIB) <= 1  # other writers may move it meanwhile


@pytest.fixture
def test_conn(tmp_path):
    libvirt = pytest.importorskip("libvirt")
    libvirt.registerErrorHandler(lambda *_a: None, None)
    node = tmp_path / "node.xml"
    node.write_text(NODE_XML)
    conn = libvirt.open(f"test://{node}")
    conn.lookupByName("stk-off").destroy()  # the test driver starts every domain it loads
    yield conn
    conn.close()


def test_gather_on_the_test_driver(test_conn, tmp_path):
    info = gather(test_conn, str(tmp_path / "instances"), kvm_usable=False, virt_type="qemu")
    assert info["vcpus"] == 4
    assert info["memory_mb"] == 8192  # the test driver has no memory stats: nodeinfo
    assert info["kvm_usable"] is False and info["virt_type"] == "qemu"
    assert info["libvirt_version"].count(".") == 2
    assert info["qemu_version"].count(".") == 2
    assert info["disk_gb"] >= info["disk_free_gb"] >= 0
    assert info["domains"] == [
        {"name": "stk-off", "uuid": "66666666-7777-8888-9999-000000000000", "state": "shut off"},
        {"name": "stk-running", "uuid": "11111111-2222-3333-4444-555555555555",
         "state": "running"},
    ]
    assert isinstance(info["hostname"], str) and info["hostname"]


@pytest.mark.integration
def test_memory_on_the_real_host_matches_meminfo():
    """nodeinfo misses hot-plugged memory on this machine; the all-cells stats do not."""
    libvirt = pytest.importorskip("libvirt")
    libvirt.registerErrorHandler(lambda *_a: None, None)
    conn = libvirt.open("qemu:///system")
    try:
        with open("/proc/meminfo") as f:
            total_kib = int(f.readline().split()[1])
        assert memory_mb(conn, conn.getInfo()) == total_kib // 1024
    finally:
        conn.close()


def test_gather_never_needs_the_instances_dir_to_exist(test_conn):
    info = gather(test_conn, "/nonexistent/stackctl/instances", True, "kvm")
    assert info["disk_gb"] == shutil.disk_usage("/").total // GIB
    assert os.path.exists("/") and info["virt_type"] == "kvm"


SHA_A, SHA_B = "a" * 64, "0123456789abcdef" * 4


def test_instances_say_which_disks_exist_and_skip_lock_files(tmp_path):
    (tmp_path / "stk-with-disk").mkdir()
    (tmp_path / "stk-with-disk" / "disk.qcow2").write_bytes(b"")
    (tmp_path / "stk-no-disk").mkdir()
    (tmp_path / "stk-no-disk" / "seed.iso").write_bytes(b"")
    (tmp_path / ".stk-with-disk.lock").write_bytes(b"")
    (tmp_path / "stray-file").write_bytes(b"")
    assert instances(str(tmp_path)) == [{"name": "stk-no-disk", "disk": False},
                                        {"name": "stk-with-disk", "disk": True}]


def test_cached_images_are_sha256_files_only(tmp_path):
    for name in (SHA_A, SHA_B, f".{SHA_A}.lock", f".{SHA_B}.x1y2.part", "README", "A" * 64):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / ("b" * 64)).mkdir()  # not a file
    assert cached_images(str(tmp_path)) == [SHA_B, SHA_A]


def test_missing_directories_hold_nothing(tmp_path):
    assert instances(str(tmp_path / "none")) == []
    assert cached_images(str(tmp_path / "none")) == []
