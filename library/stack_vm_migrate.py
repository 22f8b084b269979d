#!/usr/bin/python
"""Ansible module: move a stackctl VM from this hypervisor to another (live or by disk copy)."""

DOCUMENTATION = r"""
module: stack_vm_migrate
short_description: Live-migrate a stackctl VM, or copy a stopped one's disk, to another host
description:
  - Runs on the VM's current (source) host. The target must already hold the VM's base image
    in its cache and, for C(live), the domain defined with an empty overlay (C(stack_vm
    state=present) there).
  - C(live) migrates the running domain peer to peer with an incremental storage copy (only
    the overlay travels); it ends defined and running on the target and undefined here. The
    source libvirtd reaches the target over libssh with I(key_file) and checks its host key
    against I(known_hosts); QEMU streams memory and disk straight to I(target).
  - C(copy) rsyncs a stopped VM's overlay disk and console log into the target's instance
    directory over SSH with the same key and known_hosts.
  - C(settle) waits for any module holding the domain's lock and any libvirt job on it
    (a migration left running by an interrupted controller) and reports the domain's state.
  - C(reserve) runs on the target of a live move, after the domain is defined there - it
    reserves the guest's I(address) for its MAC in this host's libvirt network DHCP, and fails
    if another guest here holds that address (lease or reservation). C(stack_vm state=absent)
    drops the reservation with the domain.
  - Holds the domain's lock (I(instance_dir)/.I(name).lock) while working, as stack_vm does.
  - Idempotent - C(live) on a host where the domain is no longer defined and a C(copy) that
    finds the files already there change nothing. Supports check mode.
options:
  name:
    description: Domain name (C(stk-<uuid>)).
    type: str
    required: true
  mode:
    description: C(live), C(copy), C(settle) or C(reserve).
    type: str
    required: true
    choices: [live, copy, settle, reserve]
  target:
    description: Address (or resolvable name) of the target host; required for C(live) and
      C(copy).
    type: str
  address:
    description: The guest's IPv4 address to reserve; required for C(reserve).
    type: str
  target_user:
    description: User to log in as on the target.
    type: str
    default: root
  key_file:
    description: Private key for host-to-host SSH (the hypervisor role installs it).
    type: path
    default: /etc/stackctl/migration/id_ed25519
  known_hosts:
    description: Known hosts file with the hypervisors' host keys (the hypervisor role
      writes it).
    type: path
    default: /etc/stackctl/migration/known_hosts
  instance_dir:
    description: Directory holding each VM's directory.
    type: path
    default: /var/lib/stackctl/instances
  uri:
    description: libvirt connection URI of this host.
    type: str
    default: qemu:///system
  timeout:
    description: Seconds a live migration (or copy, or settle) may take; a live migration
      still running then is aborted and the VM keeps running here.
    type: int
    default: 600
  bandwidth_mib:
    description: Live migration bandwidth cap in MiB/s; 0 is unlimited.
    type: int
    default: 0
requirements:
  - libvirt-python
  - rsync and ssh (C(copy))
author: stackctl developers
"""

EXAMPLES = r"""
- name: Live-migrate a VM to lab2
  stack_vm_migrate:
    name: stk-6f1c2a4e-0d7a-4b7e-9a51-2f3c4d5e6f70
    mode: live
    target: 10.250.0.12

- name: Copy a stopped VM's disk to lab3
  stack_vm_migrate:
    name: stk-6f1c2a4e-0d7a-4b7e-9a51-2f3c4d5e6f70
    mode: copy
    target: 10.250.0.13

- name: On the target of a live move, keep the guest's address for it
  stack_vm_migrate:
    name: stk-6f1c2a4e-0d7a-4b7e-9a51-2f3c4d5e6f70
    mode: reserve
    address: 192.168.150.76
"""

RETURN = r"""
here:
  description: The domain's state on this host afterwards (running, paused, stopped, other,
    absent).
  returned: always
  type: str
detail:
  description: What was done (or would be), in words.
  returned: always
  type: str
seconds:
  description: How long the migration or copy took.
  returned: always
  type: float
"""

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

try:
    import libvirt  # noqa: F401  (used by the core; imported here to report its absence)
except ImportError:
    LIBVIRT_ERR = traceback.format_exc()
else:
    LIBVIRT_ERR = None

from ansible.module_utils.stackcore.errors import StackError
from ansible.module_utils.stackcore.migrate import MODES, MigrateRequest, run

ARGUMENT_SPEC = dict(
    name=dict(type="str", required=True),
    mode=dict(type="str", required=True, choices=list(MODES)),
    target=dict(type="str"),
    target_user=dict(type="str", default="root"),
    key_file=dict(type="path", default="/etc/stackctl/migration/id_ed25519", no_log=False),
    known_hosts=dict(type="path", default="/etc/stackctl/migration/known_hosts"),
    instance_dir=dict(type="path", default="/var/lib/stackctl/instances"),
    uri=dict(type="str", default="qemu:///system"),
    timeout=dict(type="int", default=600),
    bandwidth_mib=dict(type="int", default=0),
    address=dict(type="str"),
)


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    if LIBVIRT_ERR:
        module.fail_json(msg=missing_required_lib("libvirt-python"), exception=LIBVIRT_ERR)
    try:
        result = run(MigrateRequest(**module.params), check=module.check_mode)
    except StackError as err:
        module.fail_json(msg=str(err))
    module.exit_json(changed=result.changed, here=result.here, detail=result.detail,
                     seconds=round(result.seconds, 2))


if __name__ == "__main__":
    main()
