"""libvirt networks for ``stack_network``: spec <-> XML, a pure plan, and one reconcile.

The definition is always persistent (``networkDefineXML``). An edit is written to the persistent
config AND, when the network is running, applied by restarting it: we compare both the config
and the live XML with the desired spec, so an edit that reached only one of them (e.g. a run that
died between redefine and restart) is finished on the next run.
"""

import ipaddress
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, fields, replace

from .errors import BackendError, InvalidInput
from .libvirt_conn import import_libvirt, is_no_such
from .validate import resource_name

NS_DNSMASQ = "http://libvirt.org/schemas/network/dnsmasq/1.0"
ET.register_namespace("dnsmasq", NS_DNSMASQ)

STATES = ("present", "active", "inactive", "absent")
FORWARDS = ("nat", "none")
_BRIDGE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")

# Actions, in the order plan_network emits them.
DEFINE = "define"          # create the persistent definition (a transient one becomes persistent)
REDEFINE = "redefine"      # replace the persistent definition
AUTOSTART_ON = "autostart_on"
AUTOSTART_OFF = "autostart_off"
START = "start"
STOP = "stop"
RESTART = "restart"        # destroy + create: the running network picks up the new definition
UNDEFINE = "undefine"


@dataclass(frozen=True)
class NetworkSpec:
    """The part of a network's XML we control, normalised (what idempotence compares)."""

    name: str
    bridge: str | None = None
    forward: str = "nat"
    address: str | None = None
    netmask: str | None = None
    dhcp_start: str | None = None
    dhcp_end: str | None = None
    no_ping: bool = True


@dataclass(frozen=True)
class NetworkState:
    """A network as libvirt has it: the persistent config and the live definition may differ."""

    name: str
    persistent: bool
    active: bool
    autostart: bool
    config: NetworkSpec | None  # None when transient
    live: NetworkSpec | None  # None when not running
    uuid: str | None = None
    mac: str | None = None
    xml: str | None = None

    @property
    def spec(self):
        return self.config or self.live


@dataclass(frozen=True)
class DesiredNetwork:
    """What the caller asked for, complete (see ``resolve_desired``)."""

    state: str
    spec: NetworkSpec
    autostart: bool = True


# ---------------------------------------------------------------------------------------------
# XML


def build_network_xml(spec, uuid=None, mac=None):
    """libvirt network XML for a spec. ``uuid``/``mac`` keep an existing network's identity."""
    root = ET.Element("network")
    ET.SubElement(root, "name").text = spec.name
    if uuid:
        ET.SubElement(root, "uuid").text = uuid
    if spec.forward == "nat":
        ET.SubElement(root, "forward", mode="nat")
    if spec.bridge:
        ET.SubElement(root, "bridge", name=spec.bridge, stp="on", delay="0")
    if mac:
        ET.SubElement(root, "mac", address=mac)
    if spec.address:
        ip = ET.SubElement(root, "ip", address=spec.address, netmask=spec.netmask)
        if spec.dhcp_start:
            dhcp = ET.SubElement(ip, "dhcp")
            ET.SubElement(dhcp, "range", start=spec.dhcp_start, end=spec.dhcp_end)
    if spec.no_ping:
        # dnsmasq pings every address before offering it: +3.5 s per new VM, serialised.
        options = ET.SubElement(root, f"{{{NS_DNSMASQ}}}options")
        ET.SubElement(options, f"{{{NS_DNSMASQ}}}option", value="no-ping")
    return ET.tostring(root, encoding="unicode")


def parse_network(xml):
    """The normalised NetworkSpec of a libvirt network XML (uuid, mac, ports etc. dropped)."""
    root = ET.fromstring(xml)
    forward = root.find("forward")
    bridge = root.find("bridge")
    address = netmask = dhcp_start = dhcp_end = None
    ip = _ipv4(root)
    if ip is not None:
        address = ip.get("address")
        netmask = _netmask(ip)
        dhcp_range = ip.find("dhcp/range")
        if dhcp_range is not None:
            dhcp_start, dhcp_end = dhcp_range.get("start"), dhcp_range.get("end")
    no_ping = any(
        option.get("value") == "no-ping"
        for option in root.iterfind(f"{{{NS_DNSMASQ}}}options/{{{NS_DNSMASQ}}}option")
    )
    return NetworkSpec(
        name=root.findtext("name"),
        bridge=bridge.get("name") if bridge is not None else None,
        forward=forward.get("mode", "nat") if forward is not None else "none",
        address=address,
        netmask=netmask,
        dhcp_start=dhcp_start,
        dhcp_end=dhcp_end,
        no_ping=no_ping,
    )


def identity(xml):
    """(uuid, mac) of a libvirt network XML."""
    root = ET.fromstring(xml)
    mac = root.find("mac")
    return root.findtext("uuid"), mac.get("address") if mac is not None else None


def _ipv4(root):
    for ip in root.iterfind("ip"):
        if ip.get("family", "ipv4") == "ipv4":
            return ip
    return None


def _netmask(ip):
    if ip.get("netmask"):
        return ip.get("netmask")
    if ip.get("prefix"):
        return str(ipaddress.IPv4Network(f"0.0.0.0/{ip.get('prefix')}").netmask)
    return None


# ---------------------------------------------------------------------------------------------
# Desired state and plan (pure)


def resolve_desired(current, name, state="active", autostart=True, **spec_params):
    """Validate the request and complete it: parameters left None keep the current value.

    ``spec_params``: bridge, address, netmask, dhcp_start, dhcp_end, forward, no_ping.
    """
    resource_name(name, "network name")
    if state not in STATES:
        raise InvalidInput(f"invalid state {state!r}: expected one of {', '.join(STATES)}")
    base = current.spec if current is not None and current.spec else NetworkSpec(name=name)
    known = {f.name for f in fields(NetworkSpec)} - {"name"}
    unknown = set(spec_params) - known
    if unknown:
        raise InvalidInput(f"unknown network parameters: {', '.join(sorted(unknown))}")
    spec = replace(base, **{k: v for k, v in spec_params.items() if v is not None})
    if state != "absent":
        spec = _validated(spec)
    return DesiredNetwork(state=state, spec=spec, autostart=bool(autostart))


def _validated(spec):
    if spec.forward not in FORWARDS:
        raise InvalidInput(f"invalid forward {spec.forward!r}: expected nat or none")
    if spec.bridge is not None and not _BRIDGE.match(spec.bridge):
        raise InvalidInput(f"invalid bridge {spec.bridge!r}: 1-15 letters, digits, '_', '.', '-'")
    if spec.address is None or spec.netmask is None:
        raise InvalidInput(f"network {spec.name}: address and netmask are required to create it")
    try:
        iface = ipaddress.IPv4Interface(f"{spec.address}/{spec.netmask}")
    except ValueError as exc:
        raise InvalidInput(f"network {spec.name}: invalid address/netmask: {exc}") from None
    net = iface.network
    if iface.ip in (net.network_address, net.broadcast_address):
        raise InvalidInput(f"network {spec.name}: {iface.ip} is not a host address of {net}")
    spec = replace(spec, address=str(iface.ip), netmask=str(net.netmask))
    if (spec.dhcp_start is None) != (spec.dhcp_end is None):
        raise InvalidInput(f"network {spec.name}: give both dhcp_start and dhcp_end, or neither")
    if spec.dhcp_start is not None:
        try:
            start = ipaddress.IPv4Address(spec.dhcp_start)
            end = ipaddress.IPv4Address(spec.dhcp_end)
        except ValueError as exc:
            raise InvalidInput(f"network {spec.name}: invalid DHCP range: {exc}") from None
        if not (start in net and end in net and start <= end):
            raise InvalidInput(f"network {spec.name}: DHCP range {start}-{end} must lie in {net}")
        if start <= iface.ip <= end:
            raise InvalidInput(f"network {spec.name}: DHCP range includes the host's {iface.ip}")
        spec = replace(spec, dhcp_start=str(start), dhcp_end=str(end))
    return spec


def plan_network(current, desired):
    """The libvirt actions that take ``current`` (NetworkState or None) to ``desired``."""
    if desired.state == "absent":
        if current is None:
            return []
        return ([STOP] if current.active else []) + ([UNDEFINE] if current.persistent else [])
    if current is None:
        return (
            [DEFINE]
            + ([AUTOSTART_ON] if desired.autostart else [])
            + ([START] if desired.state == "active" else [])
        )
    actions = []
    if not current.persistent:
        actions.append(DEFINE)
    elif current.config != desired.spec:
        actions.append(REDEFINE)
    if current.autostart != desired.autostart:
        actions.append(AUTOSTART_ON if desired.autostart else AUTOSTART_OFF)
    keep_running = desired.state == "active" or (desired.state == "present" and current.active)
    if current.active and not keep_running:
        actions.append(STOP)
    elif keep_running and not current.active:
        actions.append(START)
    elif keep_running and current.live != desired.spec:
        actions.append(RESTART)
    return actions


def predict(current, desired, actions):
    """The description (see ``describe``) the network will have after ``actions``."""
    if desired.state == "absent":
        return describe(None, desired.spec.name)
    active = current is not None and current.active
    if START in actions or RESTART in actions:
        active = True
    if STOP in actions:
        active = False
    return _description(desired.spec, active, desired.autostart, True)


def describe(state, name):
    """A flat dict of a network for diffs: the normalised spec plus run state."""
    if state is None:
        return {"name": name, "state": "absent"}
    return _description(state.spec, state.active, state.autostart, state.persistent)


def _description(spec, active, autostart, persistent):
    out = asdict(spec)
    out.update(state="active" if active else "inactive", autostart=autostart, persistent=persistent)
    return out


# ---------------------------------------------------------------------------------------------
# libvirt


def read_network(conn, name):
    """The NetworkState of network ``name``, or None when it does not exist."""
    libvirt = import_libvirt()
    try:
        net = conn.networkLookupByName(name)
        active = bool(net.isActive())
        persistent = bool(net.isPersistent())
        autostart = bool(net.autostart()) if persistent else False
        xml = net.XMLDesc(0)
        # Only a running persistent network can have a config that differs from what runs.
        config_xml = net.XMLDesc(libvirt.VIR_NETWORK_XML_INACTIVE) if active and persistent else xml
    except libvirt.libvirtError as exc:
        if is_no_such(exc, "network"):
            return None
        raise BackendError(f"cannot read network {name}: {exc.get_error_message()}") from exc
    uuid, mac = identity(config_xml if persistent else xml)
    return NetworkState(
        name=name,
        persistent=persistent,
        active=active,
        autostart=autostart,
        config=parse_network(config_xml) if persistent else None,
        live=parse_network(xml) if active else None,
        uuid=uuid,
        mac=mac,
        xml=xml,
    )


def apply(conn, current, desired, actions):
    """Carry out ``actions`` in order; return the re-read NetworkState (None when removed)."""
    libvirt = import_libvirt()
    name = desired.spec.name
    for action in actions:
        try:
            _do(conn, current, desired, action)
        except libvirt.libvirtError as exc:
            raise BackendError(
                f"network {name}: {action} failed: {exc.get_error_message()}"
            ) from exc
    return read_network(conn, name)


def _do(conn, current, desired, action):
    if action in (DEFINE, REDEFINE):
        uuid, mac = (current.uuid, current.mac) if current is not None else (None, None)
        conn.networkDefineXML(build_network_xml(desired.spec, uuid=uuid, mac=mac))
        return
    net = conn.networkLookupByName(desired.spec.name)
    if action == AUTOSTART_ON:
        net.setAutostart(1)
    elif action == AUTOSTART_OFF:
        net.setAutostart(0)
    elif action == START:
        net.create()
    elif action == STOP:
        net.destroy()
    elif action == RESTART:
        net.destroy()
        net.create()
    elif action == UNDEFINE:
        net.undefine()
    else:
        raise InvalidInput(f"unknown network action {action!r}")


def reattach_guests(conn, name, bridge):
    """Put running guests' taps back on the bridge after a restart (libvirt 9 leaves them off).

    Returns (reattached domain names, failure messages).
    """
    libvirt = import_libvirt()
    ip = shutil.which("ip") or "/sbin/ip"
    reattached, failures = [], []
    for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
        try:
            xml = dom.XMLDesc(0)
        except libvirt.libvirtError:
            continue  # stopped meanwhile: its interfaces are gone anyway
        for tap in guest_taps(xml, name):
            argv = [ip, "link", "set", "dev", tap, "master", bridge]
            proc = subprocess.run(argv, capture_output=True, text=True, check=False)
            if proc.returncode == 0:
                reattached.append(dom.name())
            else:
                failures.append(f"{dom.name()} ({tap}): {proc.stderr.strip()}")
    return sorted(set(reattached)), failures


def guest_taps(domain_xml, network):
    """Tap devices of a running domain's interfaces on ``network``."""
    root = ET.fromstring(domain_xml)
    taps = []
    for iface in root.iterfind("devices/interface[@type='network']"):
        source, target = iface.find("source"), iface.find("target")
        if source is not None and source.get("network") == network and target is not None:
            taps.append(target.get("dev"))
    return taps


def network_facts(state, name):
    """The ``network`` return value of stack_network."""
    if state is None:
        return {"name": name, "active": False, "autostart": False, "persistent": False,
                "bridge": None, "xml": None}
    spec = state.spec
    return {
        "name": state.name,
        "active": state.active,
        "autostart": state.autostart,
        "persistent": state.persistent,
        "bridge": spec.bridge if spec else None,
        "xml": state.xml,
    }


def reconcile(conn, desired_params, check=False):
    """Read, plan, and (unless ``check`` or nothing to do) apply; one place for all of it.

    ``desired_params``: keyword arguments of ``resolve_desired`` (name, state, autostart, spec
    fields). Returns ``{"changed", "actions", "restarted", "reattached", "reattach_failures",
    "diff", "network"}``; after a restart, running guests are put back on the bridge.
    """
    name = desired_params["name"]
    current = read_network(conn, name)
    desired = resolve_desired(current, **desired_params)
    actions = plan_network(current, desired)
    diff = {"before": describe(current, name), "after": predict(current, desired, actions)}
    final, reattached, failures = current, [], []
    if actions and not check:
        final = apply(conn, current, desired, actions)
        if RESTART in actions:
            reattached, failures = reattach_guests(conn, name, final.live.bridge)
    return {
        "changed": bool(actions),
        "actions": actions,
        "restarted": RESTART in actions and not check,
        "reattached": reattached,
        "reattach_failures": failures,
        "diff": diff,
        "network": network_facts(final, name),
    }
