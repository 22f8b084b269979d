"""stack_network run by Ansible against qemu:///system, on a network of its own."""

import pytest

pytestmark = pytest.mark.integration

NAME = "stk-nettest"
ARGS = {
    "name": NAME,
    "bridge": "stknetbr0",
    "address": "192.168.153.1",
    "netmask": "255.255.255.0",
    "dhcp_start": "192.168.153.10",
    "dhcp_end": "192.168.153.250",
}


@pytest.fixture
def libvirt_conn():
    libvirt = pytest.importorskip("libvirt")
    libvirt.registerErrorHandler(lambda *_a: None, None)
    conn = libvirt.open("qemu:///system")
    yield conn
    conn.close()


@pytest.fixture
def network(libvirt_conn):
    """The test network's name; it is removed before and after (also when a test fails)."""
    def remove():
        libvirt = pytest.importorskip("libvirt")
        try:
            net = libvirt_conn.networkLookupByName(NAME)
        except libvirt.libvirtError:
            return
        if net.isActive():
            net.destroy()
        if net.isPersistent():
            net.undefine()

    remove()
    yield NAME
    remove()


def _live_and_config(libvirt_conn):
    import libvirt
    from stackcore.network import parse_network

    net = libvirt_conn.networkLookupByName(NAME)
    return (parse_network(net.XMLDesc(0)),
            parse_network(net.XMLDesc(libvirt.VIR_NETWORK_XML_INACTIVE)))


def test_documentation_matches_argument_spec(documentation_mismatches):
    assert documentation_mismatches("stack_network") == []


def test_check_apply_check_apply(run_module, network, libvirt_conn):
    import libvirt

    checked = run_module("stack_network", ARGS, check=True, diff=True)
    assert checked["_status"] == "ok" and checked["changed"] is True
    assert checked["actions"] == ["define", "autostart_on", "start"]
    assert checked["diff"]["before"] == {"name": NAME, "state": "absent"}
    assert checked["diff"]["after"]["state"] == "active"
    with pytest.raises(libvirt.libvirtError):
        libvirt_conn.networkLookupByName(NAME)

    applied = run_module("stack_network", ARGS, diff=True)
    assert applied["changed"] is True
    net = applied["network"]
    assert net["active"] and net["autostart"] and net["persistent"]
    assert net["bridge"] == "stknetbr0" and "no-ping" in net["xml"]
    assert applied["diff"]["after"] == dict(
        {k: v for k, v in ARGS.items()}, forward="nat", no_ping=True, state="active",
        autostart=True, persistent=True)
    assert "+    state: active" in applied["_stdout"]  # --diff shows it on screen

    assert run_module("stack_network", ARGS, check=True)["changed"] is False
    again = run_module("stack_network", ARGS, diff=True)
    assert again["changed"] is False and again["actions"] == []
    assert again["diff"]["before"] == again["diff"]["after"]


def test_edit_redefines_and_restarts(run_module, network, libvirt_conn):
    run_module("stack_network", ARGS)
    edited = dict(ARGS, dhcp_end="192.168.153.200")

    checked = run_module("stack_network", edited, check=True, diff=True)
    assert checked["actions"] == ["redefine", "restart"] and checked["restarted"] is False
    assert checked["diff"]["before"]["dhcp_end"] == "192.168.153.250"
    assert checked["diff"]["after"]["dhcp_end"] == "192.168.153.200"
    live, config = _live_and_config(libvirt_conn)
    assert live.dhcp_end == config.dhcp_end == "192.168.153.250"

    applied = run_module("stack_network", edited, diff=True)
    assert applied["changed"] and applied["restarted"] is True
    live, config = _live_and_config(libvirt_conn)
    assert live.dhcp_end == config.dhcp_end == "192.168.153.200"
    assert run_module("stack_network", edited)["changed"] is False


def test_unset_options_keep_current_values(run_module, network):
    run_module("stack_network", ARGS)
    result = run_module("stack_network", {"name": NAME, "state": "present"})
    assert result["changed"] is False and result["network"]["active"] is True


def test_inactive_then_absent(run_module, network, libvirt_conn):
    run_module("stack_network", ARGS)
    stop = dict(ARGS, state="inactive")
    assert run_module("stack_network", stop, check=True)["actions"] == ["stop"]
    stopped = run_module("stack_network", stop)
    assert stopped["changed"] and stopped["network"]["active"] is False
    assert stopped["network"]["persistent"] is True
    assert run_module("stack_network", stop)["changed"] is False

    absent = {"name": NAME, "state": "absent"}
    checked = run_module("stack_network", absent, check=True, diff=True)
    assert checked["changed"] and checked["actions"] == ["undefine"]
    assert checked["diff"]["after"] == {"name": NAME, "state": "absent"}
    gone = run_module("stack_network", absent)
    assert gone["changed"] and gone["network"]["persistent"] is False
    assert run_module("stack_network", absent)["changed"] is False
    assert NAME not in [n.name() for n in libvirt_conn.listAllNetworks(0)]


@pytest.mark.parametrize(
    "args, message",
    [
        ({"name": NAME, "address": "192.168.153.1"}, "address and netmask are required"),
        ({**ARGS, "dhcp_end": None}, "give both dhcp_start and dhcp_end"),
        ({"name": NAME}, "address and netmask are required"),
        (dict(ARGS, dhcp_end="10.0.0.9"), "must lie in"),
        (dict(ARGS, bridge="much-too-long-bridge"), "invalid bridge"),
    ],
)
def test_bad_parameters_fail_without_touching_libvirt(run_module, network, libvirt_conn,
                                                       args, message):
    result = run_module("stack_network", args)
    assert result["_status"] == "failed" and message in result["msg"]
    assert NAME not in [n.name() for n in libvirt_conn.listAllNetworks(0)]
