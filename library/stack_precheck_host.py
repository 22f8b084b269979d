#!/usr/bin/python
"""Ansible module stack_precheck_host: a thin shell over stackcore.precheck's host checks."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: stack_precheck_host
short_description: Free disk, available memory, the clock and a forced KVM of a host
description:
  - Read-only; never reports a change. Measures the host and returns one-line problems
    (without the host's name, which the playbook adds); it does not fail on them.
  - Disk is the space free for unprivileged use on the filesystem of each of O(paths) (a
    directory not made yet is measured at its nearest existing parent; each filesystem once).
  - Memory is the kernel's MemAvailable.
  - The clock is compared by offsets from the Ansible controller's clock. O(reference_time) is
    the controller's time when the task was sent (C(now().timestamp()) in the task) and
    RV(clock_offset) this host's time minus it; compare with the reference host's offset
    measured the same way (O(reference_offset)) and the transport delay mostly cancels.
  - O(virt_type=kvm) requires KVM to really run a guest (stackcore.kvm_probe's cached verdict;
    only /dev/kvm before QEMU is installed). C(auto) and C(qemu) always pass, as TCG works
    anywhere.
author:
  - stackctl team
options:
  paths:
    description: Directories whose filesystems need O(min_disk_gb) free.
    type: list
    elements: path
    default: []
  min_disk_gb:
    description: GiB each filesystem needs free (0 checks nothing).
    type: float
    default: 0
  min_memory_mb:
    description: MiB of memory that must be available (0 checks nothing).
    type: int
    default: 0
  reference_time:
    description: The Ansible controller's clock (seconds since the epoch) when the task was sent;
      omitted, the clock is not checked.
    type: float
  reference_offset:
    description: The reference host's RV(clock_offset), measured the same way.
    type: float
    default: 0
  reference_name:
    description: The reference host's name, for messages.
    type: str
    default: the controller
  max_clock_skew:
    description: Seconds this host's clock may differ from the reference host's.
    type: float
    default: 5
  virt_type:
    description: The hypervisor's C(hypervisor_virt_type); omitted, virtualisation is not checked.
    type: str
    choices: [auto, kvm, qemu]
notes:
  - Supports check mode; it changes nothing in either mode (a KVM probe may refresh its cache).
"""

EXAMPLES = r"""
- name: Measure the host against the controller's clock
  stack_precheck_host:
    paths: [/var/lib/stackctl]
    min_disk_gb: 5
    min_memory_mb: 512
    reference_time: "{{ now().timestamp() }}"
    reference_offset: "{{ controller_clock.clock_offset }}"
  register: host_check
"""

RETURN = r"""
disk:
  description: Free space per path asked about.
  returned: always
  type: list
  elements: dict
  contains:
    path:
      description: The path asked about.
      type: str
    mount:
      description: Mount point of the filesystem holding it.
      type: str
    free_gb:
      description: GiB free for unprivileged use.
      type: float
memory_available_mb:
  description: MemAvailable in MiB.
  returned: always
  type: int
clock_offset:
  description: This host's clock minus O(reference_time), in seconds (null without it).
  returned: always
  type: float
kvm:
  description: The KVM probe's record for O(virt_type=kvm) (null otherwise, or before QEMU is
    installed).
  returned: always
  type: dict
problems:
  description: One line per problem, without the host's name.
  returned: always
  type: list
  elements: str
  sample: ["2.1 GiB free for /var/lib/stackctl (on /), at least 5 GiB needed"]
"""

import time

# The clock first: everything after this line adds to the measured offset.
STARTED = time.time()

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.stackcore.errors import StackError
from ansible.module_utils.stackcore.precheck import HostLimits, host_report

ARGUMENT_SPEC = {
    "paths": {"type": "list", "elements": "path", "default": []},
    "min_disk_gb": {"type": "float", "default": 0},
    "min_memory_mb": {"type": "int", "default": 0},
    "reference_time": {"type": "float"},
    "reference_offset": {"type": "float", "default": 0},
    "reference_name": {"type": "str", "default": "the controller"},
    "max_clock_skew": {"type": "float", "default": 5},
    "virt_type": {"type": "str", "choices": ["auto", "kvm", "qemu"]},
}


def run(params, started=STARTED):
    """Measure and judge the host; returns the module result."""
    limits = HostLimits(min_disk_gb=params["min_disk_gb"], min_memory_mb=params["min_memory_mb"],
                        max_clock_skew=params["max_clock_skew"],
                        reference_name=params["reference_name"])
    report = host_report(params["paths"], limits, reference_time=params["reference_time"],
                         reference_offset=params["reference_offset"],
                         virt_type=params["virt_type"], clock=lambda: started)
    return {"changed": False, **report}


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    try:
        result = run(module.params)
    except StackError as err:
        module.fail_json(msg=str(err))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
