"""Filters for the storage roles: thin shims over stackcore.swift_layout."""

import os
import sys

try:  # the project's virtualenv installs stackcore
    from stackcore.swift_layout import PORT_VARS, ring_devices, ring_mismatches
except ImportError:  # a plain Ansible: the core next door, in plugins/module_utils
    sys.path.append(os.path.join(os.path.dirname(__file__), os.pardir, "module_utils"))
    from stackcore.swift_layout import PORT_VARS, ring_devices, ring_mismatches


def swift_ring_devices(hostvars, hosts, kind):
    """``{{ hostvars | swift_ring_devices(groups['storage_nodes'], 'object') }}``"""
    nodes = []
    for host in hosts:
        hv = hostvars[host]
        nodes.append({
            "name": host, "ip": hv["swift_ip"], "zone": hv.get("swift_zone", 1),
            "region": hv.get("swift_region", 1), "devices": hv.get("swift_devices", []),
            "ports": {kind: hv.get(var, port) for kind, (var, port) in PORT_VARS.items()},
        })
    return ring_devices(nodes, kind)


class FilterModule:
    def filters(self):
        return {"swift_ring_devices": swift_ring_devices, "swift_ring_mismatches": ring_mismatches}
