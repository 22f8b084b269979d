"""stackcore.network: spec <-> XML, resolve, plan (tables), and reconcile against libvirt."""

import os
import shutil
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import replace

import pytest
from stackcore.errors import InvalidInput
from stackcore.network import (
    AUTOSTART_OFF,
    AUTOSTART_ON,
    DEFINE,
    NS_DNSMASQ,
    REDEFINE,
    RESTART,
    START,
    STOP,
    UNDEFINE,
    DesiredNetwork,
    NetworkSpec,
    NetworkState,
    build_network_xml,
    describe,
    guest_taps,
    parse_network,
    plan_network,
    predict,
    read_network,
    reconcile,
    resolve_desired,
)

SPEC = NetworkSpec(
    name="stk-nettest",
    bridge="stknetbr0",
    forward="nat",
    address="192.168.153.1",
    netmask="255.255.255.0",
    dhcp_start="192.168.153.10",
    dhcp_end="192.168.153.250",
    no_ping=True,
)
EDITED = replace(SPEC, dhcp_end="192.168.153.200")

# What libvirt 9.0 returns for SPEC once defined and running (uuid, mac, nat ports added).
LIBVIRT_XML = """<network connections='2' xmlns:dnsmasq='http://libvirt.org/schemas/network/dnsmasq/1.0'>
  <name>stk-nettest</name>
  <uuid>23a2299f-bbd1-4305-9055-f4d32bf246df</uuid>
  <forward mode='nat'>
    <nat>
      <port start='1024' end='65535'/>
    </nat>
  </forward>
  <bridge name='stknetbr0' stp='on' delay='0'/>
  <mac address='52:54:00:9c:56:03'/>
  <ip address='192.168.153.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='192.168.153.10' end='192.168.153.250'/>
    </dhcp>
  </ip>
  <dnsmasq:options>
    <dnsmasq:option value='no-ping'/>
  </dnsmasq:options>
</network>
"""


# --- XML ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        SPEC,
        replace(SPEC, no_ping=False),
        replace(SPEC, forward="none"),
        replace(SPEC, bridge=None),
        replace(SPEC, dhcp_start=None, dhcp_end=None),
    ],
    ids=["full", "ping", "isolated", "libvirt-picks-bridge", "no-dhcp"],
)
def test_built_xml_parses_back_to_the_same_spec(spec):
    assert parse_network(build_network_xml(spec)) == spec


def test_libvirt_xml_with_its_additions_parses_to_the_spec():
    assert parse_network(LIBVIRT_XML) == SPEC


def test_no_ping_uses_libvirts_dnsmasq_namespace():
    root = ET.fromstring(build_network_xml(SPEC))
    options = root.findall(f"{{{NS_DNSMASQ}}}options/{{{NS_DNSMASQ}}}option")
    assert [o.get("value") for o in options] == ["no-ping"]
    assert "xmlns:dnsmasq=" in build_network_xml(SPEC)


def test_identity_is_kept_on_redefine():
    root = ET.fromstring(build_network_xml(SPEC, uuid="u-1", mac="52:54:00:00:00:01"))
    assert root.findtext("uuid") == "u-1"
    assert root.find("mac").get("address") == "52:54:00:00:00:01"


def test_prefix_form_is_normalised_to_a_netmask():
    xml = "<network><name>n</name><ip address='10.0.0.1' prefix='16'/></network>"
    spec = parse_network(xml)
    assert spec.netmask == "255.255.0.0" and spec.forward == "none" and not spec.no_ping


def test_ipv6_addresses_are_ignored():
    xml = ("<network><name>n</name><ip family='ipv6' address='fd00::1' prefix='64'/>"
           "<ip address='10.0.0.1' netmask='255.255.255.0'/></network>")
    assert parse_network(xml).address == "10.0.0.1"


# --- resolve ------------------------------------------------------------------------------------


def state(spec=SPEC, persistent=True, active=True, autostart=True, config="same", live="same"):
    """A NetworkState; ``config``/``live`` "same" means ``spec``."""
    return NetworkState(
        name=spec.name,
        persistent=persistent,
        active=active,
        autostart=autostart,
        config=(spec if config == "same" else config) if persistent else None,
        live=(spec if live == "same" else live) if active else None,
        uuid="u-1",
        mac="52:54:00:00:00:01",
    )


FULL = {
    "bridge": "stknetbr0",
    "address": "192.168.153.1",
    "netmask": "255.255.255.0",
    "dhcp_start": "192.168.153.10",
    "dhcp_end": "192.168.153.250",
    "forward": "nat",
    "no_ping": True,
}


def test_resolve_new_network_takes_every_field():
    desired = resolve_desired(None, "stk-nettest", "active", True, **FULL)
    assert desired == DesiredNetwork("active", SPEC, True)


def test_resolve_keeps_current_values_for_unset_fields():
    desired = resolve_desired(state(), "stk-nettest", "inactive", False, forward="nat",
                              no_ping=True, bridge=None, address=None)
    assert desired.spec == SPEC and desired.state == "inactive" and desired.autostart is False


def test_resolve_accepts_a_prefix_length_as_netmask():
    desired = resolve_desired(None, "stk-nettest", **dict(FULL, netmask="24"))
    assert desired.spec.netmask == "255.255.255.0"


def test_resolve_absent_needs_no_spec():
    assert resolve_desired(None, "stk-nettest", "absent").state == "absent"


@pytest.mark.parametrize(
    "change, error",
    [
        ({"address": None, "netmask": None}, "address and netmask are required"),
        ({"bridge": "a-bridge-name-too-long"}, "invalid bridge"),
        ({"bridge": "br 0"}, "invalid bridge"),
        ({"forward": "route"}, "invalid forward"),
        ({"netmask": "255.0.255.0"}, "invalid address/netmask"),
        ({"address": "192.168.153.0"}, "not a host address"),
        ({"address": "192.168.153.255"}, "not a host address"),
        ({"dhcp_end": None}, "both dhcp_start and dhcp_end"),
        ({"dhcp_end": "192.168.154.10"}, "must lie in"),
        ({"dhcp_start": "192.168.153.200", "dhcp_end": "192.168.153.100"}, "must lie in"),
        ({"dhcp_start": "192.168.153.1"}, "includes the host"),
        ({"dhcp_start": "not-an-ip"}, "invalid DHCP range"),
    ],
)
def test_resolve_refuses_bad_specs(change, error):
    with pytest.raises(InvalidInput, match=error):
        resolve_desired(None, "stk-nettest", "active", True, **dict(FULL, **change))


def test_resolve_refuses_a_bad_name_and_state():
    with pytest.raises(InvalidInput, match="network name"):
        resolve_desired(None, "../etc", **FULL)
    with pytest.raises(InvalidInput, match="invalid state"):
        resolve_desired(None, "stk-nettest", "running", **FULL)


# --- plan ---------------------------------------------------------------------------------------

ACTIVE = DesiredNetwork("active", SPEC, True)
PRESENT = DesiredNetwork("present", SPEC, True)
INACTIVE = DesiredNetwork("inactive", SPEC, True)
ABSENT = DesiredNetwork("absent", SPEC, True)

PLAN_TABLE = [
    # (id, current, desired, actions)
    ("create-active", None, ACTIVE, [DEFINE, AUTOSTART_ON, START]),
    ("create-present", None, PRESENT, [DEFINE, AUTOSTART_ON]),
    ("create-inactive-no-autostart", None, replace(INACTIVE, autostart=False), [DEFINE]),
    ("absent-missing", None, ABSENT, []),
    ("converged-active", state(), ACTIVE, []),
    ("converged-present-running", state(), PRESENT, []),
    ("converged-present-stopped", state(active=False), PRESENT, []),
    ("converged-inactive", state(active=False), INACTIVE, []),
    ("start", state(active=False), ACTIVE, [START]),
    ("stop", state(), INACTIVE, [STOP]),
    ("edit-running", state(), replace(ACTIVE, spec=EDITED), [REDEFINE, RESTART]),
    ("edit-running-present", state(), replace(PRESENT, spec=EDITED), [REDEFINE, RESTART]),
    ("edit-stopped", state(active=False), replace(PRESENT, spec=EDITED), [REDEFINE]),
    ("edit-and-start", state(active=False), replace(ACTIVE, spec=EDITED), [REDEFINE, START]),
    ("edit-and-stop", state(), replace(INACTIVE, spec=EDITED), [REDEFINE, STOP]),
    # an earlier run redefined but died before the restart: finish it
    ("config-only-edit", state(config=EDITED), replace(ACTIVE, spec=EDITED), [RESTART]),
    # someone changed the config by hand; the live network is still right
    ("live-only-match", state(config=EDITED), ACTIVE, [REDEFINE]),
    ("transient-to-persistent", state(persistent=False, autostart=False), ACTIVE,
     [DEFINE, AUTOSTART_ON]),
    ("transient-edited", state(persistent=False, autostart=False),
     replace(ACTIVE, spec=EDITED, autostart=False), [DEFINE, RESTART]),
    ("autostart-on", state(autostart=False), ACTIVE, [AUTOSTART_ON]),
    ("autostart-off", state(), replace(ACTIVE, autostart=False), [AUTOSTART_OFF]),
    ("remove-running", state(), ABSENT, [STOP, UNDEFINE]),
    ("remove-stopped", state(active=False), ABSENT, [UNDEFINE]),
    ("remove-transient", state(persistent=False), ABSENT, [STOP]),
]


@pytest.mark.parametrize("current, desired, actions", [row[1:] for row in PLAN_TABLE],
                         ids=[row[0] for row in PLAN_TABLE])
def test_plan_network(current, desired, actions):
    assert plan_network(current, desired) == actions


@pytest.mark.parametrize("current, desired, actions", [row[1:] for row in PLAN_TABLE],
                         ids=[row[0] for row in PLAN_TABLE])
def test_predicted_state_has_nothing_left_to_do(current, desired, actions):
    """After the plan, planning again from the predicted state yields nothing."""
    after = predict(current, desired, actions)
    if desired.state == "absent":
        assert after == {"name": desired.spec.name, "state": "absent"}
        return
    converged = state(desired.spec, persistent=True, active=after["state"] == "active",
                      autostart=after["autostart"])
    assert plan_network(converged, desired) == []


def test_describe_is_flat_and_says_the_run_state():
    assert describe(state(active=False), "stk-nettest") == dict(
        FULL, name="stk-nettest", state="inactive", autostart=True, persistent=True)
    assert describe(None, "x") == {"name": "x", "state": "absent"}


def test_guest_taps_finds_interfaces_on_the_network():
    xml = """<domain><devices>
      <interface type='network'><source network='stk-nettest'/><target dev='vnet3'/></interface>
      <interface type='network'><source network='other'/><target dev='vnet4'/></interface>
      <interface type='bridge'><source bridge='stknetbr0'/><target dev='vnet5'/></interface>
    </devices></domain>"""
    assert guest_taps(xml, "stk-nettest") == ["vnet3"]


# --- libvirt's test driver (private state, no daemon) ------------------------------------------


@pytest.fixture
def test_conn(tmp_path):
    libvirt = pytest.importorskip("libvirt")
    libvirt.registerErrorHandler(lambda *_a: None, None)
    node = tmp_path / "node.xml"
    node.write_text("<node/>")
    conn = libvirt.open(f"test://{node}")
    yield conn
    conn.close()


def test_reconcile_on_the_test_driver(test_conn):
    # The test driver drops the dnsmasq namespace and cannot give the inactive XML of a running
    # network, so this covers the stopped life cycle; the running one is tested below on
    # qemu:///system.
    params = dict(name="stk-nettest", state="inactive", autostart=True,
                  **dict(FULL, no_ping=False))
    first = reconcile(test_conn, params, check=True)
    assert first["changed"] and first["actions"] == [DEFINE, AUTOSTART_ON]
    assert read_network(test_conn, "stk-nettest") is None
    applied = reconcile(test_conn, params)
    assert applied["network"]["persistent"] and applied["network"]["autostart"]
    assert applied["network"]["active"] is False
    assert reconcile(test_conn, params)["changed"] is False
    edited = reconcile(test_conn, dict(params, dhcp_end="192.168.153.100"))
    assert edited["actions"] == [REDEFINE]
    assert read_network(test_conn, "stk-nettest").config.dhcp_end == "192.168.153.100"
    assert read_network(test_conn, "stk-nettest").uuid == applied_uuid(applied)
    gone = reconcile(test_conn, {"name": "stk-nettest", "state": "absent"})
    assert gone["actions"] == [UNDEFINE] and read_network(test_conn, "stk-nettest") is None


def applied_uuid(result):
    return ET.fromstring(result["network"]["xml"]).findtext("uuid")


# --- qemu:///system -----------------------------------------------------------------------------

CORE_NET = {
    "name": "stk-nettest-core",
    "bridge": "stknetbr1",
    "address": "192.168.156.1",
    "netmask": "255.255.255.0",
    "dhcp_start": "192.168.156.10",
    "dhcp_end": "192.168.156.250",
    "forward": "nat",
    "no_ping": True,
}


@pytest.fixture
def system_conn():
    libvirt = pytest.importorskip("libvirt")
    libvirt.registerErrorHandler(lambda *_a: None, None)
    try:
        conn = libvirt.open("qemu:///system")
    except libvirt.libvirtError as exc:
        pytest.skip(f"no libvirtd: {exc.get_error_message()}")
    yield conn
    conn.close()


@pytest.fixture
def core_network(system_conn):
    """A running persistent network of our own, removed afterwards (also on failure)."""
    params = dict(CORE_NET, state="active", autostart=False)
    try:
        created = reconcile(system_conn, params)
        assert created["actions"] == [DEFINE, START]
        yield params
    finally:
        reconcile(system_conn, {"name": CORE_NET["name"], "state": "absent"})


@pytest.fixture
def halted_guest(system_conn, core_network):
    """A transient TCG guest on the test network: the KVM probe payload, halted after it ran."""
    from stackcore.kvm_probe import build_payload

    workdir = tempfile.mkdtemp(prefix="stk-nettest-")
    os.chmod(workdir, 0o755)  # QEMU runs as libvirt-qemu
    kernel = os.path.join(workdir, "probe.bin")
    with open(kernel, "wb") as f:
        f.write(build_payload())
    os.chmod(kernel, 0o644)
    dom = ET.Element("domain", type="qemu")
    ET.SubElement(dom, "name").text = "stk-nettest-core-dom"
    ET.SubElement(dom, "memory", unit="MiB").text = "16"
    os_el = ET.SubElement(dom, "os")
    ET.SubElement(os_el, "type", arch="x86_64", machine="pc").text = "hvm"
    ET.SubElement(os_el, "kernel").text = kernel
    nic = ET.SubElement(ET.SubElement(dom, "devices"), "interface", type="network")
    ET.SubElement(nic, "source", network=CORE_NET["name"])
    try:
        domain = system_conn.createXML(ET.tostring(dom, encoding="unicode"), 0)
        try:
            yield domain
        finally:
            domain.destroy()
    finally:
        shutil.rmtree(workdir)


def _bridge_of(tap):
    link = f"/sys/class/net/{tap}/master"
    return os.path.basename(os.readlink(link)) if os.path.exists(link) else None


@pytest.mark.integration
def test_edit_reaches_config_and_live_network_and_guests_stay_attached(
    system_conn, core_network, halted_guest
):
    libvirt = pytest.importorskip("libvirt")
    tap = guest_taps(halted_guest.XMLDesc(0), CORE_NET["name"])[0]
    assert _bridge_of(tap) == "stknetbr1"

    edited = reconcile(system_conn, dict(core_network, dhcp_end="192.168.156.100"))

    assert edited["actions"] == [REDEFINE, RESTART] and edited["restarted"]
    net = system_conn.networkLookupByName(CORE_NET["name"])
    live = parse_network(net.XMLDesc(0))
    config = parse_network(net.XMLDesc(libvirt.VIR_NETWORK_XML_INACTIVE))
    assert live.dhcp_end == config.dhcp_end == "192.168.156.100"
    assert live.no_ping and config.no_ping
    assert edited["reattached"] == ["stk-nettest-core-dom"] and _bridge_of(tap) == "stknetbr1"
    again = reconcile(system_conn, dict(core_network, dhcp_end="192.168.156.100"))
    assert again["changed"] is False


@pytest.mark.integration
def test_config_edited_behind_our_back_is_finished_on_the_next_run(system_conn, core_network):
    """A run that redefined but died before the restart: the next run restarts."""
    net = system_conn.networkLookupByName(CORE_NET["name"])
    edited = replace(parse_network(net.XMLDesc(0)), dhcp_end="192.168.156.100")
    uuid = ET.fromstring(net.XMLDesc(0)).findtext("uuid")
    system_conn.networkDefineXML(build_network_xml(edited, uuid=uuid))

    result = reconcile(system_conn, dict(core_network, dhcp_end="192.168.156.100"))

    assert result["actions"] == [RESTART]
    assert parse_network(net.XMLDesc(0)).dhcp_end == "192.168.156.100"
