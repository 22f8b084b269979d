#!/usr/bin/python
"""Ansible module stack_network: a thin shell over stackcore.network."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: stack_network
short_description: Manage a persistent libvirt NAT network with DHCP
description:
  - Defines, starts, stops and removes a libvirt network. The definition is always persistent
    (it survives a libvirtd restart and a reboot).
  - A change to the spec rewrites the persistent definition and, when the network is running,
    restarts it so the running network matches too (RV(restarted) says so). Both the persistent
    and the live definition are compared, so an edit that reached only one of them is finished.
  - The module owns the whole definition. Elements it does not manage (static DHCP hosts, DNS
    entries) are dropped when it redefines the network.
  - Spec options left unset keep the network's current value; O(address) and O(netmask) are
    required to create a network.
author:
  - stackctl team
options:
  name:
    description: Network name.
    type: str
    required: true
  state:
    description:
      - C(active) defines and starts it; C(present) defines it and leaves it running or not;
        C(inactive) defines it and stops it; C(absent) stops and undefines it.
    type: str
    choices: [present, active, inactive, absent]
    default: active
  bridge:
    description: Linux bridge name (at most 15 characters). Unset on creation lets libvirt pick.
    type: str
  address:
    description: The host's IPv4 address on the network (the guests' gateway).
    type: str
  netmask:
    description: IPv4 netmask, dotted (C(255.255.255.0)) or as a prefix length (C(24)).
    type: str
  dhcp_start:
    description: First address of the DHCP range (give O(dhcp_end) too).
    type: str
  dhcp_end:
    description: Last address of the DHCP range.
    type: str
  forward:
    description: C(nat) to give guests outbound NAT, C(none) for an isolated network.
    type: str
    choices: [nat, none]
    default: nat
  no_ping:
    description:
      - Pass dnsmasq's C(no-ping) option (libvirt's dnsmasq XML namespace). Without it dnsmasq
        pings each address before offering it, adding about 3.5 s to every new VM's boot.
    type: bool
    default: true
  autostart:
    description: Start the network when libvirtd starts.
    type: bool
    default: true
  uri:
    description: libvirt connection URI.
    type: str
    default: qemu:///system
requirements:
  - libvirt-python
notes:
  - Supports check mode and diff mode.
  - Restarting a network takes running guests' interfaces off its bridge (libvirt does not
    put them back); the module reattaches them (RV(reattached)) and warns about any it could not.
"""

EXAMPLES = r"""
- name: The provider network
  stack_network:
    name: stack-provider
    bridge: stkbr0
    address: 192.168.150.1
    netmask: 255.255.255.0
    dhcp_start: 192.168.150.10
    dhcp_end: 192.168.150.250

- name: Stop it but keep the definition
  stack_network:
    name: stack-provider
    state: inactive

- name: Remove it
  stack_network:
    name: stack-provider
    state: absent
"""

RETURN = r"""
network:
  description: The network after the run (as it is now in check mode).
  returned: always
  type: dict
  contains:
    name:
      description: Network name.
      type: str
    active:
      description: Whether it is running.
      type: bool
    autostart:
      description: Whether libvirtd starts it.
      type: bool
    persistent:
      description: Whether it has a persistent definition.
      type: bool
    bridge:
      description: Its Linux bridge (null when absent).
      type: str
    xml:
      description: libvirt's XML of the network (live when running; null when absent).
      type: str
actions:
  description: The libvirt steps taken (or, in check mode, planned), in order.
  returned: always
  type: list
  elements: str
  sample: [redefine, restart]
restarted:
  description: Whether a running network was restarted to apply a changed definition.
  returned: always
  type: bool
reattached:
  description: Running domains whose interfaces were put back on the bridge after the restart.
  returned: always
  type: list
  elements: str
"""

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

try:
    import libvirt  # noqa: F401  (only to report a missing binding early)
except ImportError:
    LIBVIRT_IMPORT_ERROR = traceback.format_exc()
else:
    LIBVIRT_IMPORT_ERROR = None

from ansible.module_utils.stackcore.errors import StackError
from ansible.module_utils.stackcore.libvirt_conn import DEFAULT_URI, connect
from ansible.module_utils.stackcore.network import FORWARDS, STATES, reconcile

ARGUMENT_SPEC = {
    "name": {"type": "str", "required": True},
    "state": {"type": "str", "choices": list(STATES), "default": "active"},
    "bridge": {"type": "str"},
    "address": {"type": "str"},
    "netmask": {"type": "str"},
    "dhcp_start": {"type": "str"},
    "dhcp_end": {"type": "str"},
    "forward": {"type": "str", "choices": list(FORWARDS), "default": "nat"},
    "no_ping": {"type": "bool", "default": True},
    "autostart": {"type": "bool", "default": True},
    "uri": {"type": "str", "default": DEFAULT_URI},
}


def run(params, check_mode):
    """Reconcile the network; returns (result, warnings)."""
    desired = {k: v for k, v in params.items() if k != "uri"}
    conn = connect(params["uri"])
    try:
        result = reconcile(conn, desired, check=check_mode)
    finally:
        conn.close()
    warnings = [
        f"guest interface not reattached to the restarted network: {failure}"
        for failure in result.pop("reattach_failures")
    ]
    return result, warnings


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    if LIBVIRT_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("libvirt-python"), exception=LIBVIRT_IMPORT_ERROR)
    try:
        result, warnings = run(module.params, module.check_mode)
    except StackError as err:
        module.fail_json(msg=str(err))
    for warning in warnings:
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
