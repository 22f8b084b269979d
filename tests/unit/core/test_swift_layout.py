"""stackcore.swift_layout: ring device lists from the inventory's per-node variables, and which
rings on a host differ from the controller's (tables)."""

import pytest
from stackcore.errors import InvalidInput
from stackcore.swift_layout import ring_devices, ring_mismatches

PORTS = {"account": 6202, "container": 6201, "object": 6200}


def node(i, devices=({"name": "d1", "weight": 50},), **kw):
    return dict({"name": f"sn{i}", "ip": f"10.0.0.{i}", "zone": i, "ports": PORTS,
                 "devices": list(devices)}, **kw)


def dev(i, port, name="d1", weight=50.0, region=1):
    return {"region": region, "zone": i, "ip": f"10.0.0.{i}", "port": port, "device": name,
            "weight": weight}


# --- ring_devices ------------------------------------------------------------------------------


@pytest.mark.parametrize("nodes, kind, expected", [
    pytest.param([node(1)], "account", [dev(1, 6202)], id="account-port"),
    pytest.param([node(1)], "container", [dev(1, 6201)], id="container-port"),
    pytest.param([node(1)], "object", [dev(1, 6200)], id="object-port"),
    pytest.param([node(1)], "object-1", [dev(1, 6200)], id="policy-ring-uses-object-port"),
    pytest.param([node(1)], "object-12", [dev(1, 6200)], id="policy-ring-two-digits"),
    pytest.param([node(1, devices=[{"name": "d1"}])], "object", [dev(1, 6200, weight=100.0)],
                 id="default-weight-100"),
    pytest.param([node(1, region=2)], "object", [dev(1, 6200, region=2)], id="region"),
    pytest.param([node(1, region="3", zone="1", ports={"object": "6300"})], "object",
                 [dev(1, 6300, region=3)], id="strings-from-inventory-become-numbers"),
    pytest.param([node(1, devices=[{"name": "d1"}, {"name": "d2", "weight": 0}]),
                  node(2, devices=[{"name": "d1", "weight": "25"}])], "container",
                 [dev(1, 6201, weight=100.0), dev(1, 6201, "d2", 0.0), dev(2, 6201, weight=25.0)],
                 id="node-order-then-device-order"),
    pytest.param([], "object", [], id="no-nodes"),
])
def test_ring_devices(nodes, kind, expected):
    got = ring_devices(nodes, kind)
    assert got == expected
    assert all(isinstance(d["weight"], float) and isinstance(d["port"], int) for d in got)


@pytest.mark.parametrize("nodes, kind, message", [
    pytest.param([node(1, devices=[])], "object", "storage node sn1 lists no swift_devices",
                 id="empty-device-list"),
    pytest.param([{"ip": "10.0.0.9", "zone": 1, "ports": PORTS}], "object",
                 "storage node 10.0.0.9 lists no swift_devices", id="no-devices-key-named-by-ip"),
    pytest.param([node(1), node(2, devices=[])], "account", "sn2", id="second-node"),
    pytest.param([node(1, devices=[{"weight": 1}])], "object", "a device of storage node sn1 has "
                 "no name", id="device-without-name"),
    pytest.param([node(1)], "objects", "unknown ring 'objects'", id="unknown-ring"),
    pytest.param([node(1)], "proxy", "unknown ring 'proxy'", id="not-a-ring"),
    pytest.param([node(1)], "Object", "unknown ring", id="case-matters"),
])
def test_ring_devices_refuses(nodes, kind, message):
    with pytest.raises(InvalidInput, match=message):
        ring_devices(nodes, kind)


def test_ring_devices_does_not_change_its_input():
    nodes = [node(1, devices=[{"name": "d1"}])]
    before = repr(nodes)
    ring_devices(nodes, "object")
    assert repr(nodes) == before


# --- ring_mismatches ---------------------------------------------------------------------------


def found(*pairs, directory="/etc/swift"):
    """The ``files`` of a ``find`` with get_checksum: (ring name, checksum) pairs."""
    return [{"path": f"{directory}/{name}.ring.gz", "checksum": checksum}
            for name, checksum in pairs]


NAMES = ["account", "container", "object"]
BUILDER = found(("account", "a1"), ("container", "c1"), ("object", "o1"),
                directory="/etc/stackctl/swift/aio")


@pytest.mark.parametrize("host, builder, names, expected", [
    pytest.param(found(("account", "a1"), ("container", "c1"), ("object", "o1")), BUILDER,
                 NAMES, [], id="all-equal"),
    pytest.param(found(("account", "a1"), ("object", "o1")), BUILDER, NAMES, ["container"],
                 id="missing-on-host"),
    pytest.param(found(("account", "a1"), ("container", None), ("object", "o1")), BUILDER,
                 NAMES, ["container"], id="no-checksum"),
    pytest.param(found(("account", "a1"), ("container", "c1"), ("object", "o1")),
                 found(("account", "a1"), ("object", "o1")), NAMES, ["container"],
                 id="missing-builder-ring"),
    pytest.param(found(("account", "a1"), ("container", "c2"), ("object", "o2")), BUILDER,
                 NAMES, ["container", "object"], id="different-checksums-in-names-order"),
    pytest.param([], [], NAMES, NAMES, id="missing-everywhere-is-still-a-mismatch"),
    pytest.param(found(("account", "a1"), ("object-1", "p1")), BUILDER, ["account"], [],
                 id="only-the-named-rings-count"),
    pytest.param(None, BUILDER, ["object"], ["object"], id="find-skipped"),
])
def test_ring_mismatches(host, builder, names, expected):
    assert ring_mismatches(host, builder, names) == expected
