"""DHCP host reservations (``<ip><dhcp><host mac= ip=/>``) on a hypervisor's libvirt network.

Every hypervisor runs its own NAT network with the same subnet and its own dnsmasq. A guest
moved live keeps the address the source's dnsmasq leased it; the target's dnsmasq never leased
it, so it could offer that address to the next VM started there, or have leased it already to
one of its own guests. ``reserve`` (run on the target before the move) refuses when the address
is taken there and otherwise reserves it for the guest's MAC; ``release`` (run whenever the
domain is removed from a host) drops the reservation again.

``plan_reserve`` and ``plan_release`` are pure: entries and leases in, network-update actions
out. The libvirt side applies them with ``virNetworkUpdate`` to the live network and its
persistent config at once (no restart: running guests keep their network).
"""

import xml.etree.ElementTree as ET

from .errors import BackendError, Conflict
from .libvirt_conn import import_libvirt, is_no_such

ADD, DELETE = "add", "delete"
_HINT = ": a live move would clash; move the VM cold (it takes a new address) or elsewhere"


def host_entries(network_xml):
    """[(mac, ip)] of the network's IPv4 DHCP host entries, MACs lower-cased."""
    root = ET.fromstring(network_xml)
    found = []
    for ip in root.findall("ip"):
        if ip.get("family", "ipv4") != "ipv4":
            continue
        for host in ip.findall("dhcp/host"):
            if host.get("mac") and host.get("ip"):
                found.append((host.get("mac").lower(), host.get("ip")))
    return found


def plan_reserve(entries, leases, mac, ip, guest_macs):
    """Actions that make ``ip`` reserved for ``mac`` and for nothing else.

    ``entries``: [(mac, ip)] reservations; ``leases``: [(mac, ip)] dnsmasq's leases;
    ``guest_macs``: MACs of the domains defined on the host (a lease of any other MAC is left
    over from a deleted guest and does not hold the address). Conflict when another guest holds
    the address by reservation or by lease.
    """
    mac = mac.lower()
    for other, address in entries:
        if address == ip and other != mac:
            raise Conflict(f"address {ip} is reserved on this host for another guest ({other})"
                           f"{_HINT}")
    for other, address in leases:
        if address == ip and other.lower() != mac and other.lower() in guest_macs:
            raise Conflict(f"address {ip} is leased on this host to another guest ({other})"
                           f"{_HINT}")
    actions = [(DELETE, m, a) for m, a in entries if m == mac and a != ip]
    if (mac, ip) not in entries:
        actions.append((ADD, mac, ip))
    return actions


def plan_release(entries, mac):
    return [(DELETE, m, a) for m, a in entries if m == mac.lower()]


def reserve(conn, network, mac, ip, check=False):
    """Reserve ``ip`` for ``mac`` on ``network``; returns the actions (empty: already so)."""
    net = _network(conn, network)
    leases = [(lease.get("mac", ""), lease.get("ipaddr")) for lease in _leases(net)]
    actions = plan_reserve(host_entries(_xml(net)), leases, mac, ip, _guest_macs(conn))
    if not check:
        _apply(net, actions)
    return actions


def release(conn, network, mac, check=False):
    """Drop every reservation of ``mac`` on ``network`` (a missing network has none)."""
    try:
        net = _network(conn, network)
    except Conflict:
        return []
    actions = plan_release(host_entries(_xml(net)), mac)
    if not check:
        _apply(net, actions)
    return actions


def _network(conn, name):
    libvirt = import_libvirt()
    try:
        return conn.networkLookupByName(name)
    except libvirt.libvirtError as exc:
        if is_no_such(exc, "network"):
            raise Conflict(f"network {name} is not defined on this host") from None
        raise BackendError(f"cannot read network {name}: {exc.get_error_message()}") from exc


def _xml(net):
    return net.XMLDesc(0)  # live when active; every update goes to both live and config


def _leases(net):
    libvirt = import_libvirt()
    try:
        return net.DHCPLeases()
    except libvirt.libvirtError as exc:
        if exc.get_error_code() in (libvirt.VIR_ERR_NO_SUPPORT,
                                    libvirt.VIR_ERR_OPERATION_INVALID):
            return []  # the test driver has no leases; an inactive network leases nothing
        raise BackendError(f"cannot read DHCP leases: {exc.get_error_message()}") from exc


def _guest_macs(conn):
    macs = set()
    for dom in conn.listAllDomains():
        root = ET.fromstring(dom.XMLDesc(0))
        macs.update(m.get("address", "").lower() for m in root.findall("devices/interface/mac"))
    return macs


def _apply(net, actions):
    libvirt = import_libvirt()
    flags = libvirt.VIR_NETWORK_UPDATE_AFFECT_CONFIG
    if net.isActive():
        flags |= libvirt.VIR_NETWORK_UPDATE_AFFECT_LIVE
    commands = {ADD: libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST,
                DELETE: libvirt.VIR_NETWORK_UPDATE_COMMAND_DELETE}
    for kind, mac, ip in actions:
        xml = ET.tostring(ET.Element("host", mac=mac, ip=ip), encoding="unicode")
        try:
            net.update(commands[kind], libvirt.VIR_NETWORK_SECTION_IP_DHCP_HOST, -1, xml, flags)
        except libvirt.libvirtError as exc:
            raise BackendError(f"cannot {kind} the DHCP reservation {ip} for {mac}: "
                               f"{exc.get_error_message()}") from exc
