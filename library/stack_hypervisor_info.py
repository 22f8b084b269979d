#!/usr/bin/python
"""Ansible module stack_hypervisor_info: a thin shell over stackcore.hostinfo and kvm_probe."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: stack_hypervisor_info
short_description: Capacity, versions, domains, instance disks and cached images of a hypervisor
description:
  - Read-only; never reports a change.
  - RV(hypervisor.kvm_usable) comes from a real probe (a tiny guest run under C(-accel kvm)
    with a timeout), not from the presence of C(/dev/kvm). The verdict is cached in
    C(/var/lib/stackctl/virt.json) per QEMU version and host kernel; the first call on a host
    may take a few seconds.
author:
  - stackctl team
options:
  uri:
    description: libvirt connection URI.
    type: str
    default: qemu:///system
  instances_dir:
    description:
      - Directory holding instance disks; disk figures are those of the filesystem holding it
        (or its nearest existing parent).
    type: path
    default: /var/lib/stackctl/instances
  image_cache_dir:
    description: The image cache; RV(cached_images) lists the images in it.
    type: path
    default: /var/lib/stackctl/images
  virt_type:
    description:
      - C(auto) reports C(kvm) when the probe found KVM usable, else C(qemu) (TCG).
        C(kvm) or C(qemu) is reported as given.
    type: str
    choices: [auto, kvm, qemu]
    default: auto
  probe:
    description: Re-run the KVM probe even when a cached result for this QEMU version exists.
    type: bool
    default: false
requirements:
  - libvirt-python
notes:
  - Supports check mode; it changes nothing in either mode (it may write the probe cache).
"""

EXAMPLES = r"""
- name: Read the hypervisor
  stack_hypervisor_info:
  register: hv

- name: Re-probe KVM after a host change
  stack_hypervisor_info:
    probe: true
"""

RETURN = r"""
hypervisor:
  description: What the host has.
  returned: always
  type: dict
  contains:
    hostname:
      description: The host's name as libvirt reports it.
      type: str
    vcpus:
      description: Logical CPUs.
      type: int
    memory_mb:
      description: Host RAM in MiB.
      type: int
    disk_gb:
      description: Size in GiB of the filesystem holding O(instances_dir), rounded down.
      type: int
    disk_free_gb:
      description: Free GiB on that filesystem (for unprivileged use), rounded down.
      type: int
    kvm_usable:
      description: Whether a guest really runs under KVM at a usable speed.
      type: bool
    virt_type:
      description: The libvirt domain type to use, C(kvm) or C(qemu).
      type: str
    libvirt_version:
      description: libvirt's version, dotted.
      type: str
      sample: 9.0.0
    qemu_version:
      description: QEMU's version, dotted.
      type: str
      sample: 7.2.22
    domains:
      description: Every domain libvirt knows, sorted by name.
      type: list
      elements: dict
      contains:
        name:
          description: Domain name.
          type: str
        uuid:
          description: Domain UUID.
          type: str
        state:
          description: As virsh words it (running, idle, paused, in shutdown, shut off, crashed,
            pmsuspended).
          type: str
instances:
  description: Each instance directory under O(instances_dir) (named after its domain, whether
    or not libvirt still knows that domain), sorted by name.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The directory's name, the domain's name.
      type: str
    disk:
      description: Whether its C(disk.qcow2) exists.
      type: bool
cached_images:
  description: The sha256 names of the complete images in O(image_cache_dir), sorted.
  returned: always
  type: list
  elements: str
kvm_probe:
  description: The KVM probe record used (from the cache or just measured).
  returned: always
  type: dict
  sample:
    qemu_version: 7.2.22
    kvm_usable: false
    probed_at: "2025-01-01T00:00:00Z"
    detail: "no marker within 6.0 s (killed); the guest got as far as: long mode"
    cached: true
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
from ansible.module_utils.stackcore.hostinfo import (
    DEFAULT_IMAGE_CACHE_DIR,
    DEFAULT_INSTANCES_DIR,
    cached_images,
    gather,
    instances,
)
from ansible.module_utils.stackcore.kvm_probe import VIRT_TYPES, kvm_status
from ansible.module_utils.stackcore.libvirt_conn import DEFAULT_URI, connect

ARGUMENT_SPEC = {
    "uri": {"type": "str", "default": DEFAULT_URI},
    "instances_dir": {"type": "path", "default": DEFAULT_INSTANCES_DIR},
    "image_cache_dir": {"type": "path", "default": DEFAULT_IMAGE_CACHE_DIR},
    "virt_type": {"type": "str", "choices": list(VIRT_TYPES), "default": "auto"},
    "probe": {"type": "bool", "default": False},
}


def run(params):
    """Gather the facts; returns the module result."""
    status = kvm_status(reprobe=params["probe"])
    virt_type = params["virt_type"]
    if virt_type == "auto":
        virt_type = "kvm" if status["kvm_usable"] else "qemu"
    conn = connect(params["uri"])
    try:
        hypervisor = gather(conn, params["instances_dir"], status["kvm_usable"], virt_type)
    finally:
        conn.close()
    return {"changed": False, "hypervisor": hypervisor, "kvm_probe": status,
            "instances": instances(params["instances_dir"]),
            "cached_images": cached_images(params["image_cache_dir"])}


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    if LIBVIRT_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("libvirt-python"), exception=LIBVIRT_IMPORT_ERROR)
    try:
        result = run(module.params)
    except StackError as err:
        module.fail_json(msg=str(err))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
