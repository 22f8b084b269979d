"""Where a Swift cluster's pieces are, from the inventory's per-node variables (pure)."""

from .errors import InvalidInput
from .ring_plan import _RING_NAME

SERVER_KINDS = ("account", "container", "object")
# Server kind -> (inventory variable, the roles' default port).
PORT_VARS = {"object": ("swift_object_port", 6200), "container": ("swift_container_port", 6201),
             "account": ("swift_account_port", 6202)}


def ring_devices(nodes, kind):
    """The stack_ring device list of ring ``kind`` for ``nodes``.

    ``nodes``: one dict per storage node with ``ip``, ``zone``, ``region`` (default 1),
    ``ports`` ({kind: port}) and ``devices`` (each with ``name`` and ``weight``, default 100).
    """
    if not _RING_NAME.match(str(kind)):
        raise InvalidInput(f"unknown ring {kind!r}")
    server = "object" if kind.startswith("object") else kind
    out = []
    for node in nodes:
        if not node.get("devices"):
            raise InvalidInput(f"storage node {node.get('name', node.get('ip'))} lists no "
                               "swift_devices")
        for dev in node["devices"]:
            if "name" not in dev:
                raise InvalidInput(f"a device of storage node {node.get('name')} has no name")
            out.append({"region": int(node.get("region", 1)), "zone": int(node["zone"]),
                        "ip": node["ip"], "port": int(node["ports"][server]),
                        "device": dev["name"], "weight": float(dev.get("weight", 100))})
    return out


def ring_mismatches(host_stats, builder_stats):
    """Names of rings whose copy on a host is missing or differs from the controller's.

    Both arguments are the ``results`` of a looped ``stat`` (item = ring name, stat.checksum).
    """
    builder = {r["item"]: r.get("stat", {}).get("checksum") for r in builder_stats}
    bad = []
    for result in host_stats:
        name = result["item"]
        have = result.get("stat", {}).get("checksum")
        if have is None or builder.get(name) is None or have != builder[name]:
            bad.append(name)
    return bad
