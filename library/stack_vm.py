#!/usr/bin/python
"""Ansible module: one VM (libvirt domain, qcow2 overlay disk, NoCloud seed) on this host."""

DOCUMENTATION = r"""
module: stack_vm
short_description: Create, start, stop and remove a stackctl VM on a libvirt host
description:
  - Reconciles one VM with the spec given - a libvirt domain, a qcow2 overlay disk on a cached
    base image and a NoCloud seed ISO, under I(instance_dir)/I(name)/ - and its power state.
  - The domain definition is compared in normalised form (what stackctl sets), so re-runs
    report no change. A spec change on a running domain is written to its persistent
    definition and reported with C(restart_required).
  - Give only I(name) and I(state) to change the power state of an existing VM; give
    I(vcpus), I(memory_mb), I(disk_gb) and I(image) (and any other spec option) to create or
    update one.
  - Holds a lock on I(instance_dir)/.I(name).lock while working.
  - Supports check mode and diff mode.
options:
  name:
    description: Domain name (by convention C(stk-<uuid>)); also names the instance directory.
    type: str
    required: true
  state:
    description:
      - C(present) defines the VM and leaves its power state alone (a new VM stays off).
      - C(running) also starts it and waits up to I(wait_timeout) for its DHCP address.
      - C(stopped) sends an ACPI shutdown, waits up to I(stop_timeout), then forces it off.
      - C(absent) forces it off, undefines it and removes its instance directory, and drops
        the DHCP reservation a live move made for its MAC on its network (found by the MAC
        from I(uuid) or I(name) also when the domain is already gone).
    type: str
    choices: [present, running, stopped, absent]
    default: running
  uuid:
    description:
      - The VM's uuid (domain uuid, seed instance-id, source of the MAC).
      - Defaults to the existing domain's, else the uuid in a C(stk-<uuid>) name, else one
        derived from I(name).
    type: str
  hostname:
    description: Guest hostname written to the seed; defaults to I(vm_name), else I(name).
    type: str
  tenant:
    description: Owning tenant, recorded in the domain metadata.
    type: str
  vm_name:
    description: The user's name for the VM, recorded in the domain metadata.
    type: str
  flavor:
    description: Flavor name, recorded in the domain metadata.
    type: str
  vcpus:
    description: Number of virtual CPUs.
    type: int
  memory_mb:
    description: Memory in MiB.
    type: int
  disk_gb:
    description: Size of the root disk in GiB. It can grow (offline, or online while running)
      but never shrink.
    type: int
  image:
    description: Path of the cached base image the disk overlays (needed to create the disk).
    type: path
  image_format:
    description: Format of I(image); defaults to C(qcow2).
    type: str
    choices: [qcow2, raw]
  kernel:
    description: Kernel for direct kernel boot; without it the VM boots from its disk.
    type: path
  initrd:
    description: Initrd for direct kernel boot.
    type: path
  cmdline:
    description: Kernel command line for direct kernel boot.
    type: str
  network:
    description: libvirt network of the VM's NIC; defaults to C(stack-provider).
    type: str
  mac:
    description: MAC of the NIC; defaults to 52:54:00 plus 3 bytes of sha256(I(uuid)).
    type: str
  ssh_authorized_keys:
    description: SSH public keys for the guest (seed meta-data and user-data).
    type: list
    elements: str
  user_data:
    description:
      - Extra user-data, a script (starting with C(#!)) or a C(#cloud-config); combined with
        stackctl's own cloud-config in a MIME multipart.
    type: str
  virt_type:
    description:
      - C(kvm) or C(qemu) (TCG). C(auto) keeps an existing domain's type and otherwise uses
        the host's KVM probe. Defaults to C(auto).
    type: str
    choices: [auto, kvm, qemu]
  instance_dir:
    description: Directory holding each VM's directory.
    type: path
    default: /var/lib/stackctl/instances
  uri:
    description: libvirt connection URI.
    type: str
    default: qemu:///system
  wait_timeout:
    description: With C(state=running), seconds to wait for the guest's DHCP lease; 0 does
      not wait (the address is returned if already known).
    type: int
    default: 120
  stop_timeout:
    description: With C(state=stopped), seconds to wait for an ACPI shutdown before forcing
      the VM off.
    type: int
    default: 60
  rebuild_token:
    description:
      - Rebuild the VM - recreate its root disk from I(image), discarding the old disk's data,
        keeping the domain's uuid, MAC, seed and definition - unless the rebuild named by this
        token already happened (the token is kept in the instance directory once the new disk
        exists, so re-running the same rebuild does not wipe the disk again).
      - A running VM is forced off first (its disk is discarded anyway). Needs the full spec.
    type: str
requirements:
  - libvirt-python
  - pycdlib
  - qemu-img
author: stackctl developers
"""

EXAMPLES = r"""
- name: Boot a VM from a cached image with direct kernel boot
  stack_vm:
    name: stk-6f1c2a4e-0d7a-4b7e-9a51-2f3c4d5e6f70
    vm_name: web1
    tenant: demo
    flavor: m1.tiny
    vcpus: 1
    memory_mb: 256
    disk_gb: 1
    image: /var/lib/stackctl/images/0f3c...e1
    kernel: /var/lib/stackctl/images/7b2a...90
    initrd: /var/lib/stackctl/images/c41d...5a
    cmdline: console=ttyS0 root=/dev/vda rw
    virt_type: qemu
    ssh_authorized_keys:
      - ssh-ed25519 AAAAC3Nza... user@laptop
  register: vm

- name: Stop it (ACPI, then forced after stop_timeout)
  stack_vm:
    name: stk-6f1c2a4e-0d7a-4b7e-9a51-2f3c4d5e6f70
    state: stopped

- name: Remove it and its files
  stack_vm:
    name: stk-6f1c2a4e-0d7a-4b7e-9a51-2f3c4d5e6f70
    state: absent
"""

RETURN = r"""
vm:
  description: The VM after the run (predicted in check mode).
  returned: always
  type: dict
  contains:
    name: {description: Domain name., type: str}
    uuid: {description: Domain uuid (null when absent)., type: str}
    state: {description: "running, paused, stopped, crashed or absent.", type: str}
    mac: {description: MAC of the NIC., type: str}
    address: {description: IPv4 address from the DHCP lease (null unless running)., type: str}
    disk: {description: Path of the root disk., type: str}
    seed: {description: Path of the NoCloud seed ISO., type: str}
    console_log: {description: Path of the serial console log., type: str}
    virt_type: {description: kvm or qemu., type: str}
diff:
  description: Normalised spec, power state, disk size and seed digest before and after.
  returned: always
  type: dict
actions:
  description: What was done (or would be, in check mode), in order, each with its reason.
  returned: always
  type: list
  elements: str
forced:
  description: The guest did not power off within I(stop_timeout) and was forced off.
  returned: always
  type: bool
restart_required:
  description: The domain is running with an older definition; a restart applies the new one.
  returned: always
  type: bool
"""

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

try:
    import libvirt  # noqa: F401  (used by the core; imported here to report its absence)
except ImportError:
    LIBVIRT_ERR = traceback.format_exc()
else:
    LIBVIRT_ERR = None

try:
    import pycdlib  # noqa: F401
except ImportError:
    PYCDLIB_ERR = traceback.format_exc()
else:
    PYCDLIB_ERR = None

from ansible.module_utils.stackcore.errors import StackError
from ansible.module_utils.stackcore.vm import VmRequest, ensure_vm

ARGUMENT_SPEC = dict(
    name=dict(type="str", required=True),
    state=dict(type="str", default="running", choices=["present", "running", "stopped",
                                                       "absent"]),
    uuid=dict(type="str"),
    hostname=dict(type="str"),
    tenant=dict(type="str"),
    vm_name=dict(type="str"),
    flavor=dict(type="str"),
    vcpus=dict(type="int"),
    memory_mb=dict(type="int"),
    disk_gb=dict(type="int"),
    image=dict(type="path"),
    image_format=dict(type="str", choices=["qcow2", "raw"]),
    kernel=dict(type="path"),
    initrd=dict(type="path"),
    cmdline=dict(type="str"),
    network=dict(type="str"),
    mac=dict(type="str"),
    ssh_authorized_keys=dict(type="list", elements="str", no_log=False),
    user_data=dict(type="str", no_log=True),
    virt_type=dict(type="str", choices=["auto", "kvm", "qemu"]),
    instance_dir=dict(type="path", default="/var/lib/stackctl/instances"),
    uri=dict(type="str", default="qemu:///system"),
    wait_timeout=dict(type="int", default=120),
    stop_timeout=dict(type="int", default=60),
    rebuild_token=dict(type="str"),
)


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    if LIBVIRT_ERR:
        module.fail_json(msg=missing_required_lib("libvirt-python"), exception=LIBVIRT_ERR)
    if PYCDLIB_ERR and module.params["state"] != "absent":
        module.fail_json(msg=missing_required_lib("pycdlib"), exception=PYCDLIB_ERR)
    try:
        result = ensure_vm(VmRequest.from_params(module.params), check=module.check_mode)
    except StackError as err:
        module.fail_json(msg=str(err), changed=getattr(err, "changed", False))
    module.exit_json(changed=result.changed, vm=result.vm, diff=result.diff,
                     actions=result.actions, forced=result.forced,
                     restart_required=result.restart_required)


if __name__ == "__main__":
    main()
