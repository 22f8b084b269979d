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


def ring_mismatches(host_files, builder_files, names):
    """Names of rings (of ``names``, in that order) whose copy on a host is missing or differs
    from the controller's.

    ``host_files`` and ``builder_files`` are the ``files`` of a ``find`` with
    ``get_checksum`` (path and checksum per file) in the host's Swift directory and in the
    controller's builder directory; ``<name>.ring.gz`` is a ring's file.
    """
    def by_name(files):
        return {f["path"].rsplit("/", 1)[-1]: f.get("checksum") for f in files or ()}

    host, builder = by_name(host_files), by_name(builder_files)
    bad = []
    for name in names:
        have, want = host.get(f"{name}.ring.gz"), builder.get(f"{name}.ring.gz")
        if have is None or want is None or have != want:
            bad.append(name)
    return bad
