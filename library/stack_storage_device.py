#!/usr/bin/python
"""Ansible module stack_storage_device: a thin shell over stackcore.storage_device."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: stack_storage_device
short_description: Prepare and mount one Swift storage device (XFS)
description:
  - Formats a device with XFS, mounts it at O(mount_root)/O(name) (Swift's C(devices) setting)
    with O(mount_options), makes the mounted root owned by O(owner), and keeps one fstab line for
    the mount point so C(mount -a) or a boot mounts it again.
  - The device is either a real block device (O(device)), formatted only when it holds no
    filesystem or partition table (or with O(force)), or, for labs and all-in-one hosts, a sparse
    file of O(size_gb) GiB (O(loop_file)) that is loop-mounted.
  - Without systemd nothing mounts fstab at boot; re-running the module after a restart mounts
    whatever is missing (it reports changed).
  - A device mounted at another path, or another filesystem mounted at the mount point, is
    refused. C(absent) unmounts, removes the fstab line and deletes a loop file; a block device
    is never wiped. The (empty) mount point directory is left in place.
author:
  - stackctl team
options:
  name:
    description: Device name as the ring knows it (C(d1)); letters, digits, C(_) and C(-).
    type: str
    required: true
  state:
    description: C(present) formats (when blank) and mounts it; C(absent) unmounts and forgets it.
    type: str
    choices: [present, absent]
    default: present
  mount_root:
    description: Directory the device is mounted under (Swift's C(devices)).
    type: path
    default: /srv/node
  device:
    description:
      - A block device (C(/dev/sdb)). Prefer a stable name (C(/dev/disk/by-id/...)), since the
        fstab line names it too. Mutually exclusive with O(loop_file).
    type: path
  loop_file:
    description: A file to create (sparse), format and loop-mount instead of a block device.
    type: path
  size_gb:
    description: Size of O(loop_file) in GiB; required with it when O(state=present).
    type: int
  fs_type:
    description: Filesystem to create; only XFS holds Swift's xattrs here.
    type: str
    choices: [xfs]
    default: xfs
  owner:
    description: User (and its primary group) owning the mounted root; it must exist.
    type: str
    default: swift
  mount_options:
    description: Comma-separated mount options (C(loop) is added for loop files).
    type: str
    default: noatime
  fstab:
    description: The fstab file to keep the mount's line in.
    type: path
    default: /etc/fstab
  force:
    description:
      - Format over an existing foreign filesystem or partition table (destroys its data), and
        unmount lazily (C(umount -l)) when removing a busy device.
    type: bool
    default: false
notes:
  - Supports check mode and diff mode.
  - The fstab line carries C(nofail), so a dead disk does not stop a boot; Swift's
    C(mount_check) then treats the device as unmounted.
requirements:
  - xfsprogs (mkfs.xfs), util-linux (mount, umount, losetup, blkid)
"""

EXAMPLES = r"""
- name: A real disk
  stack_storage_device:
    name: d1
    device: /dev/disk/by-id/wwn-0x5000c500a1b2c3d4

- name: A lab device in a 10 GiB sparse file
  stack_storage_device:
    name: d1
    loop_file: /srv/swift-disks/d1.img
    size_gb: 10

- name: Remove the lab device (unmount, fstab line, file)
  stack_storage_device:
    name: d1
    loop_file: /srv/swift-disks/d1.img
    state: absent
"""

RETURN = r"""
device:
  description: The device after the run (as it is now, in check mode).
  returned: always
  type: dict
  contains:
    name:
      description: Device name.
      type: str
    source:
      description: The block device or loop file.
      type: str
    mount_point:
      description: Where it is (to be) mounted.
      type: str
    mounted:
      description: Whether it is mounted at RV(device.mount_point).
      type: bool
    fs_type:
      description: Filesystem found on it (null when blank or gone).
      type: str
    uuid:
      description: Filesystem UUID.
      type: str
    mount_options:
      description: The mount's options as the kernel shows them (null when unmounted).
      type: str
    owner:
      description: C(user:group) of the mounted root (null when unmounted).
      type: str
    loop_device:
      description: The loop device backing a mounted loop file.
      type: str
    size_bytes:
      description: Size of the loop file (null for a block device).
      type: int
    fstab:
      description: The fstab line for the mount point (null when none).
      type: str
actions:
  description: The steps taken (or, in check mode, planned), in order.
  returned: always
  type: list
  elements: str
  sample: [create_file, mkfs, mkdir, mount, chown, write_fstab]
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.stackcore.errors import StackError
from ansible.module_utils.stackcore.storage_device import FS_TYPES, STATES, reconcile

ARGUMENT_SPEC = {
    "name": {"type": "str", "required": True},
    "state": {"type": "str", "choices": list(STATES), "default": "present"},
    "mount_root": {"type": "path", "default": "/srv/node"},
    "device": {"type": "path"},
    "loop_file": {"type": "path"},
    "size_gb": {"type": "int"},
    "fs_type": {"type": "str", "choices": list(FS_TYPES), "default": "xfs"},
    "owner": {"type": "str", "default": "swift"},
    "mount_options": {"type": "str", "default": "noatime"},
    "fstab": {"type": "path", "default": "/etc/fstab"},
    "force": {"type": "bool", "default": False},
}


def main():
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        mutually_exclusive=[("device", "loop_file")],
        required_one_of=[("device", "loop_file")],
        supports_check_mode=True,
    )
    try:
        result = reconcile(dict(module.params), check=module.check_mode)
    except StackError as err:
        module.fail_json(msg=str(err))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
