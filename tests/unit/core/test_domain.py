"""stackcore.domain: the domain XML we build, its projection back, the MAC."""

import dataclasses
import hashlib
import xml.etree.ElementTree as ET

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stackcore.domain import (
    METADATA_NS,
    DomainSpec,
    build_domain_xml,
    mac_for,
    normalise_mac,
    parse_domain,
)
from stackcore.errors import InvalidInput

VM_UUID = "6f1c2a4e-0d7a-4b7e-9a51-2f3c4d5e6f70"

# ``conn``: libvirt's test driver with the network ``testnet`` (conftest.py).


def make_spec(**overrides):
    values = dict(
        name=f"stk-{VM_UUID}", uuid=VM_UUID, vcpus=2, memory_mb=256, virt_type="qemu",
        disk="/srv/i/disk.qcow2", network="testnet", mac=mac_for(VM_UUID),
        seed="/srv/i/seed.iso", console_log="/srv/i/console.log",
        tenant="demo", vm_name="web-1", flavor="m1.nano",
    )
    values.update(overrides)
    return DomainSpec(**values)


def test_disk_boot_has_boot_dev_hd_and_no_kernel():
    root = ET.fromstring(build_domain_xml(make_spec()))
    assert root.find("os/boot").get("dev") == "hd"
    assert root.find("os/kernel") is None


def test_kernel_boot_has_kernel_initrd_cmdline_and_no_boot_element():
    spec = make_spec(kernel="/img/vmlinuz", initrd="/img/initrd.img",
                     cmdline="console=ttyS0 root=/dev/vda rw")
    root = ET.fromstring(build_domain_xml(spec))
    assert root.find("os/kernel").text == "/img/vmlinuz"
    assert root.find("os/initrd").text == "/img/initrd.img"
    assert root.find("os/cmdline").text == "console=ttyS0 root=/dev/vda rw"
    assert root.find("os/boot") is None


def test_xml_carries_the_devices_the_guest_needs():
    root = ET.fromstring(build_domain_xml(make_spec()))
    assert root.get("type") == "qemu"
    assert root.find("features/acpi") is not None
    assert root.find("on_poweroff").text == "destroy"
    assert root.find("on_reboot").text == "restart"
    vda, vdb = root.findall("devices/disk")
    assert vda.find("target").attrib == {"dev": "vda", "bus": "virtio"}
    assert vda.find("driver").attrib == {"name": "qemu", "type": "qcow2", "cache": "none"}
    assert vdb.find("target").attrib == {"dev": "vdb", "bus": "virtio"}
    assert vdb.find("driver").get("type") == "raw"
    assert vdb.find("readonly") is not None
    nic = root.find("devices/interface")
    assert nic.get("type") == "network"
    assert nic.find("source").get("network") == "testnet"
    assert nic.find("mac").get("address") == mac_for(VM_UUID)
    assert nic.find("model").get("type") == "virtio"
    rng = root.find("devices/rng")
    assert rng.get("model") == "virtio"
    assert rng.find("backend").text == "/dev/urandom"
    log = root.find("devices/serial/log")
    assert log.attrib == {"file": "/srv/i/console.log", "append": "on"}


def test_kvm_domain_passes_the_host_cpu_through():
    root = ET.fromstring(build_domain_xml(make_spec(virt_type="kvm")))
    assert root.get("type") == "kvm"
    assert root.find("cpu").get("mode") == "host-passthrough"
    assert ET.fromstring(build_domain_xml(make_spec())).find("cpu") is None


def test_metadata_uses_the_contract_namespace_and_names():
    root = ET.fromstring(build_domain_xml(make_spec()))
    inst = root.find(f"metadata/{{{METADATA_NS}}}instance")
    assert {child.tag.split("}")[1]: child.text for child in inst} == {
        "tenant": "demo", "name": "web-1", "flavor": "m1.nano"}


def test_text_with_markup_characters_is_escaped_not_injected():
    spec = make_spec(cmdline="console=ttyS0 x='<a>' & y=\"b\"", kernel="/k", vm_name="a<b>&c")
    assert parse_domain(build_domain_xml(spec)) == spec


@pytest.mark.parametrize("overrides", [
    {},
    {"kernel": "/k", "initrd": "/i", "cmdline": "console=ttyS0"},
    {"kernel": "/k"},
    {"seed": None, "console_log": None, "tenant": None, "vm_name": None, "flavor": None},
    {"virt_type": "kvm", "vcpus": 8, "memory_mb": 8192},
])
def test_parse_inverts_build(overrides):
    spec = make_spec(**overrides)
    assert parse_domain(build_domain_xml(spec)) == spec


@settings(max_examples=60, deadline=None)
@given(
    vcpus=st.integers(1, 64),
    memory_mb=st.integers(64, 262144),
    text=st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1,
                 max_size=40),
)
def test_parse_inverts_build_for_any_values(vcpus, memory_mb, text):
    spec = make_spec(vcpus=vcpus, memory_mb=memory_mb, cmdline=text, kernel="/k", flavor=text)
    assert parse_domain(build_domain_xml(spec)) == spec


def test_define_and_read_back_through_libvirt_gives_the_same_spec(conn):
    spec = make_spec(kernel="/img/vmlinuz", initrd="/img/initrd.img", cmdline="console=ttyS0")
    dom = conn.defineXML(build_domain_xml(spec))
    returned = dom.XMLDesc(0)
    assert returned != build_domain_xml(spec)  # libvirt rewrites units, adds devices...
    assert parse_domain(returned) == spec  # ...the projection does not care


def test_a_memory_change_shows_in_the_projection(conn):
    conn.defineXML(build_domain_xml(make_spec()))
    conn.defineXML(build_domain_xml(make_spec(memory_mb=512)))
    got = parse_domain(conn.lookupByName(f"stk-{VM_UUID}").XMLDesc(0))
    assert got.memory_mb == 512
    assert dataclasses.replace(got, memory_mb=256) == make_spec()


@pytest.mark.parametrize("unit, amount, expected_mb", [
    ("KiB", 131072, 128), ("MiB", 256, 256), ("GiB", 2, 2048), ("b", 134217728, 128),
])
def test_memory_units_are_normalised_to_mib(unit, amount, expected_mb):
    xml = build_domain_xml(make_spec()).replace(
        '<memory unit="MiB">256</memory>', f'<memory unit="{unit}">{amount}</memory>')
    assert parse_domain(xml).memory_mb == expected_mb


def test_a_foreign_domain_projects_without_error():
    xml = (f"<domain type='xen'><name>other</name><uuid>{VM_UUID}</uuid>"
           "<memory>1024</memory><vcpu>1</vcpu><os><type>hvm</type></os></domain>")
    spec = parse_domain(xml)
    assert (spec.name, spec.virt_type, spec.disk, spec.network, spec.memory_mb) == \
        ("other", "xen", None, None, 1)


def test_mac_is_qemu_oui_plus_sha256_of_the_uuid():
    digest = hashlib.sha256(VM_UUID.encode()).hexdigest()
    assert mac_for(VM_UUID) == f"52:54:00:{digest[0:2]}:{digest[2:4]}:{digest[4:6]}"


def test_mac_ignores_uuid_spelling():
    assert mac_for(VM_UUID.upper()) == mac_for(VM_UUID)
    assert mac_for(VM_UUID.replace("-", "")) == mac_for(VM_UUID)


def test_macs_differ_between_vms():
    import uuid
    macs = {mac_for(str(uuid.UUID(int=i))) for i in range(200)}
    assert len(macs) == 200


@pytest.mark.parametrize("bad", ["not-a-uuid", "", "6f1c2a4e-0d7a-4b7e-9a51"])
def test_mac_for_rejects_a_non_uuid(bad):
    with pytest.raises(InvalidInput):
        mac_for(bad)


def test_normalise_mac():
    assert normalise_mac("52-54-00-AA-bb-0C") == "52:54:00:aa:bb:0c"
    with pytest.raises(InvalidInput):
        normalise_mac("52:54:00:aa:bb")


@pytest.mark.parametrize("overrides", [
    {"virt_type": "xen"}, {"disk_format": "vmdk"}, {"initrd": "/i"}, {"cmdline": "x"},
])
def test_validate_rejects_specs_we_cannot_build(overrides):
    with pytest.raises(InvalidInput):
        make_spec(**overrides).validate()
