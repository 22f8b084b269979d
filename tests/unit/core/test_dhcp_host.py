"""stackcore.dhcp_host: the reservation plans as tables, then reserve/release and the
``stack_vm_migrate mode=reserve`` / ``stack_vm state=absent`` pair on libvirt's test driver."""

import subprocess

import pytest
from stackcore import dhcp_host
from stackcore.domain import mac_for
from stackcore.errors import Conflict, InvalidInput
from stackcore.migrate import MigrateRequest, run
from stackcore.vm import VmRequest, ensure_vm

MAC, OTHER = "52:54:00:aa:bb:01", "52:54:00:aa:bb:02"
IP, IP2 = "192.168.9.50", "192.168.9.51"
ADD, DELETE = dhcp_host.ADD, dhcp_host.DELETE

RESERVE = [
    ("nothing there: added", [], [], set(), [(ADD, MAC, IP)]),
    ("already reserved: nothing to do", [(MAC, IP)], [], set(), []),
    ("the MAC's old reservation replaced", [(MAC, IP2)], [], set(),
     [(DELETE, MAC, IP2), (ADD, MAC, IP)]),
    ("a lease of a deleted guest does not hold the address", [], [(OTHER, IP)], {MAC},
     [(ADD, MAC, IP)]),
    ("its own lease is no clash", [], [(MAC.upper(), IP)], {MAC}, [(ADD, MAC, IP)]),
    ("another guest's lease elsewhere is no clash", [], [(OTHER, IP2)], {OTHER},
     [(ADD, MAC, IP)]),
]


@pytest.mark.parametrize(("case", "entries", "leases", "guests", "expected"), RESERVE,
                         ids=[r[0] for r in RESERVE])
def test_plan_reserve(case, entries, leases, guests, expected):
    assert dhcp_host.plan_reserve(entries, leases, MAC.upper(), IP, guests) == expected


@pytest.mark.parametrize(("entries", "leases", "words"), [
    ([(OTHER, IP)], [], f"reserved on this host for another guest \\({OTHER}\\)"),
    ([], [(OTHER, IP)], f"leased on this host to another guest \\({OTHER}\\)"),
])
def test_plan_reserve_refuses_an_address_another_guest_holds(entries, leases, words):
    with pytest.raises(Conflict, match=words):
        dhcp_host.plan_reserve(entries, leases, MAC, IP, {MAC, OTHER})


def test_plan_release_drops_every_reservation_of_the_mac_only():
    entries = [(MAC, IP), (OTHER, IP2), (MAC, "192.168.9.52")]
    assert dhcp_host.plan_release(entries, MAC.upper()) == [
        (DELETE, MAC, IP), (DELETE, MAC, "192.168.9.52")]
    assert dhcp_host.plan_release([(OTHER, IP2)], MAC) == []


def test_reserve_and_release_on_a_network(conn):
    assert dhcp_host.reserve(conn, "testnet", MAC, IP) == [(ADD, MAC, IP)]
    xml = conn.networkLookupByName("testnet").XMLDesc(0)
    assert dhcp_host.host_entries(xml) == [(MAC, IP)]
    assert dhcp_host.reserve(conn, "testnet", MAC, IP) == []
    with pytest.raises(Conflict, match="reserved on this host for another guest"):
        dhcp_host.reserve(conn, "testnet", OTHER, IP)
    assert dhcp_host.release(conn, "testnet", MAC, check=True) == [(DELETE, MAC, IP)]
    assert dhcp_host.release(conn, "testnet", MAC) == [(DELETE, MAC, IP)]
    assert dhcp_host.host_entries(conn.networkLookupByName("testnet").XMLDesc(0)) == []
    assert dhcp_host.release(conn, "testnet", MAC) == []
    assert dhcp_host.release(conn, "no-such-net", MAC) == []
    with pytest.raises(Conflict, match="network no-such-net is not defined"):
        dhcp_host.reserve(conn, "no-such-net", MAC, IP)


@pytest.mark.parametrize("address", [None, "", "192.168.9.300", "fe80::1", "10.0.0.1; id"])
def test_reserve_needs_an_ipv4_address_and_no_target(address):
    with pytest.raises(InvalidInput, match="invalid address"):
        MigrateRequest(name="stk-1", mode="reserve", address=address).validate()
    MigrateRequest(name="stk-1", mode="reserve", address=IP).validate()


def test_a_reservation_made_for_a_live_move_goes_with_the_domain(conn, tmp_path):
    """The target of a live move: the domain defined (stack_vm present), its address reserved
    (stack_vm_migrate mode=reserve, twice: the second changes nothing); the domain removed
    (stack_vm absent): the reservation is gone with it."""
    base = tmp_path / "base.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(base), "64M"], check=True)
    uuid = "6f1c2a4e-0d7a-4b7e-9a51-2f3c4d5e6f70"
    name, instances = f"stk-{uuid}", str(tmp_path / "instances")
    vm = ensure_vm(VmRequest(name=name, state="present", vcpus=1, memory_mb=128, disk_gb=1,
                             image=str(base), virt_type="qemu", network="testnet",
                             instance_dir=instances, uri="test:///unused", wait_timeout=0),
                   conn=conn).vm
    reserve = MigrateRequest(name=name, mode="reserve", address=IP, instance_dir=instances)
    assert run(reserve, check=True, conn=conn).changed
    assert dhcp_host.host_entries(conn.networkLookupByName("testnet").XMLDesc(0)) == []
    first = run(reserve, conn=conn)
    assert first.changed and first.detail == f"reserved {IP} for {vm['mac']} on network testnet"
    assert not run(reserve, conn=conn).changed
    assert dhcp_host.host_entries(conn.networkLookupByName("testnet").XMLDesc(0)) == [
        (vm["mac"], IP)]

    ensure_vm(VmRequest(name=name, state="absent", instance_dir=instances, uri="test:///unused"),
              conn=conn)
    assert dhcp_host.host_entries(conn.networkLookupByName("testnet").XMLDesc(0)) == []
    with pytest.raises(Conflict, match="not defined here"):
        run(reserve, conn=conn)


def test_absent_releases_the_reservation_of_a_domain_libvirt_already_undefined(conn, tmp_path):
    """The source of a live move: libvirt undefines the domain itself (UNDEFINE_SOURCE), so
    the removal that follows finds the reservation by the VM's MAC (from its uuid)."""
    uuid = "0b9e7c1a-3d2f-4e5a-8b6c-7d8e9f0a1b2c"
    name, instances = f"stk-{uuid}", str(tmp_path / "instances")
    dhcp_host.reserve(conn, "testnet", mac_for(uuid), IP2)
    absent = VmRequest(name=name, state="absent", uuid=uuid, network="testnet",
                       instance_dir=instances, uri="test:///unused")
    predicted = ensure_vm(absent, check=True, conn=conn)
    assert predicted.changed and predicted.actions == []
    assert dhcp_host.host_entries(conn.networkLookupByName("testnet").XMLDesc(0)) == [
        (mac_for(uuid), IP2)]
    assert ensure_vm(absent, conn=conn).changed
    assert dhcp_host.host_entries(conn.networkLookupByName("testnet").XMLDesc(0)) == []
    assert not ensure_vm(absent, conn=conn).changed
