#!/usr/bin/python
"""Ansible module stack_ring: a thin shell over stackcore.ring."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: stack_ring
short_description: Manage an OpenStack Swift ring (builder and ring file) declaratively
description:
  - Creates or updates C(<swift_dir>/<name>.builder) through Swift's own Python ring-builder API,
    rebalances when the placement changed, and writes C(<swift_dir>/<name>.ring.gz).
  - Devices are identified by (ip, port, device). Devices not listed are removed; a device whose
    zone or region changes is removed and added again (all its partitions move).
  - The rebalance uses a fixed seed per ring name, so the same builder and request give the same
    ring, byte for byte, on every node; RV(ring.md5) lets a later check compare nodes.
  - Options left unset keep the ring's current value. O(part_power) and O(devices) are required
    to create a ring. The partition power of an existing ring is never changed (Swift's partition
    power increase procedure does that); asking for another one fails.
  - When O(min_part_hours) keeps recently moved partitions in place, the module says so
    (RV(min_part_hours_blocked)); a later run, once that time has passed, continues the rebalance.
  - Files are written atomically (temporary file in O(swift_dir), fsync, rename) and only when
    something changed; a missing or outdated ring file is rewritten from its builder.
author:
  - stackctl team
options:
  name:
    description: Ring name, C(account), C(container), C(object) or C(object-N) for storage policy N.
    type: str
    required: true
  swift_dir:
    description: Directory of the builder and ring files. It must exist.
    type: path
    default: /etc/swift
  part_power:
    description: Partition power (2**part_power partitions), 1-32. Required to create the ring.
    type: int
  replicas:
    description: Replica count, at least 1 (Swift allows fractional counts). C(3) on creation.
    type: float
  min_part_hours:
    description:
      - Hours before a moved partition may move again, 0-255. C(1) on creation.
    type: int
  devices:
    description:
      - The complete list of the ring's devices. Unset leaves the devices as they are.
    type: list
    elements: dict
    suboptions:
      region:
        description: Region, 0 or more.
        type: int
        default: 1
      zone:
        description: Zone, 0 or more.
        type: int
        required: true
      ip:
        description: Address of the storage server (IP address or host name).
        type: str
        required: true
      port:
        description: Port of the storage server, 1-65535.
        type: int
        required: true
      device:
        description: Device name under the server's devices directory (no C(/), no C(..)).
        type: str
        required: true
      weight:
        description: Relative weight, 0 or more (0 drains the device).
        type: float
        required: true
      meta:
        description: Free-form note kept with the device. Unset leaves the current one.
        type: str
  purge:
    description:
      - Remove devices the ring has but O(devices) does not list. V(false) makes O(devices) a
        floor (missing ones are added, others stay), for rings that C(stackctl storage device)
        also edits.
    type: bool
    default: true
  keep_weights:
    description:
      - Listed devices already in the ring keep their current weight; O(devices[].weight) is
        only the weight a new device starts with.
    type: bool
    default: false
requirements:
  - swift >= 2.38 (OpenStack Swift's Python package)
notes:
  - Supports check mode and diff mode. Check mode runs the same plan, rebalance included, on an
    in-memory copy of the builder, so RV(parts_moved) says how many would move.
"""

EXAMPLES = r"""
- name: The object ring over three loopback nodes
  stack_ring:
    name: object
    swift_dir: /etc/swift
    part_power: 10
    replicas: 3
    min_part_hours: 1
    devices:
      - {zone: 1, ip: 127.0.0.1, port: 6200, device: sdb1, weight: 100}
      - {zone: 2, ip: 127.0.0.2, port: 6200, device: sdb1, weight: 100}
      - {zone: 3, ip: 127.0.0.3, port: 6200, device: sdb1, weight: 100}
  register: object_ring

- name: Keep the devices, change min_part_hours only
  stack_ring:
    name: object
    min_part_hours: 24
"""

RETURN = r"""
ring:
  description: The ring after the run (in check mode, as it would be).
  returned: always
  type: dict
  contains:
    name:
      description: Ring name.
      type: str
    builder:
      description: Path of the builder file.
      type: str
    ring_file:
      description: Path of the ring file.
      type: str
    md5:
      description: md5 of the ring file (in check mode, of the file that would be written).
      type: str
    part_power:
      description: Partition power.
      type: int
    replicas:
      description: Replica count.
      type: float
    min_part_hours:
      description: Hours before a moved partition may move again.
      type: int
    devices:
      description: Devices sorted by (ip, port, device), with Swift's id and partition count.
      type: list
      elements: dict
    balance:
      description: Swift's balance in percent (0 is perfect; null before the first rebalance).
      type: float
parts_moved:
  description: Partition replicas the rebalance reassigned (or would reassign in check mode).
  returned: always
  type: int
min_part_hours_blocked:
  description: Whether min_part_hours kept partitions from moving, leaving the ring unbalanced.
  returned: always
  type: bool
min_part_seconds_left:
  description: Seconds until partitions moved by the last rebalance may move again.
  returned: always
  type: int
actions:
  description: The builder steps taken (or planned in check mode), in order, each with its reason.
  returned: always
  type: list
  elements: dict
  sample: [{action: add_device, device: r1z4-127.0.0.4:6200/sdb1, reason: new device},
           {action: rebalance, reason: "placement changed: add_device"}]
"""

import importlib.util

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

# Looked up, not imported: Swift imports eventlet, whose side effects reach whatever process
# imports this file (the core imports Swift lazily, when it really works on a ring).
SWIFT_MISSING = importlib.util.find_spec("swift") is None

from ansible.module_utils.stackcore.errors import StackError
from ansible.module_utils.stackcore.ring import reconcile
from ansible.module_utils.stackcore.ring_plan import DEFAULT_SWIFT_DIR

DEVICE_SPEC = {
    "region": {"type": "int", "default": 1},
    "zone": {"type": "int", "required": True},
    "ip": {"type": "str", "required": True},
    "port": {"type": "int", "required": True},
    "device": {"type": "str", "required": True},
    "weight": {"type": "float", "required": True},
    "meta": {"type": "str"},
}

ARGUMENT_SPEC = {
    "name": {"type": "str", "required": True},
    "swift_dir": {"type": "path", "default": DEFAULT_SWIFT_DIR},
    "part_power": {"type": "int"},
    "replicas": {"type": "float"},
    "min_part_hours": {"type": "int"},
    "devices": {"type": "list", "elements": "dict", "options": DEVICE_SPEC},
    "purge": {"type": "bool", "default": True},
    "keep_weights": {"type": "bool", "default": False},
}


def warnings_for(result):
    """What the user should hear about a run that otherwise succeeded."""
    if not result["min_part_hours_blocked"]:
        return []
    return [f"ring {result['ring']['name']}: min_part_hours kept recently moved partitions in "
            f"place (balance {result['ring']['balance']}%); run again in "
            f"{result['min_part_seconds_left']} s to continue the rebalance"]


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    if SWIFT_MISSING:
        module.fail_json(msg=missing_required_lib("swift"))
    try:
        result = reconcile(module.params, check=module.check_mode)
    except StackError as err:
        module.fail_json(msg=str(err))
    for warning in warnings_for(result):
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
