#!/usr/bin/python
"""Ansible module: a flattened, standalone qcow2 of a stopped stackctl VM's disk."""

DOCUMENTATION = r"""
module: stack_vm_snapshot
short_description: Flatten a stopped stackctl VM's disk into a standalone qcow2 and upload it
description:
  - With I(state=present), writes C(qemu-img convert -O qcow2) of the VM's overlay disk
    (I(instance_dir)/I(name)/disk.qcow2 merged with its base image) to I(path), atomically.
    An existing I(path) is reused, not made again.
  - The VM must be stopped; a running VM's disk is locked by QEMU and the module fails with a
    clear message instead of copying a disk that changes.
  - With I(upload_url), then PUTs the file there (a Swift temp URL), with its sha256 as
    C(X-Object-Meta-Sha256) and its md5 as C(ETag), and checks Swift's answer.
  - I(state=absent) removes I(path) (and a partial C(<path>.part)).
  - Holds the per-domain lock (I(instance_dir)/.I(name).lock) while flattening.
  - Supports check mode.
options:
  name:
    description: Domain name (C(stk-<uuid>)); names the instance directory.
    type: str
    required: true
  path:
    description: Absolute path of the snapshot file on the host.
    type: path
    required: true
  state:
    description: C(present) makes (and optionally uploads) the snapshot, C(absent) removes it.
    type: str
    choices: [present, absent]
    default: present
  upload_url:
    description: URL to PUT the finished file to (a Swift temp URL); no upload without it.
    type: str
  sha256:
    description: Expected sha256 of the file when uploading (the one a previous run reported).
    type: str
  instance_dir:
    description: Directory holding each VM's directory.
    type: path
    default: /var/lib/stackctl/instances
requirements:
  - qemu-img
author: stackctl developers
"""

EXAMPLES = r"""
- name: Flatten the (stopped) VM's disk
  stack_vm_snapshot:
    name: stk-6f1c2a4e-0d7a-4b7e-9a51-2f3c4d5e6f70
    path: /var/lib/stackctl/snapshots/0b1c.qcow2
  register: snap

- name: Upload it to Swift by a PUT temp URL, then drop the file
  stack_vm_snapshot:
    name: stk-6f1c2a4e-0d7a-4b7e-9a51-2f3c4d5e6f70
    path: /var/lib/stackctl/snapshots/0b1c.qcow2
    upload_url: "{{ put_temp_url }}"
    sha256: "{{ snap.snapshot.sha256 }}"
"""

RETURN = r"""
snapshot:
  description: The snapshot file (null when absent, or before it is made in check mode).
  returned: always
  type: dict
  contains:
    path: {description: Path of the file., type: str}
    sha256: {description: sha256 of the file., type: str}
    md5: {description: md5 of the file (Swift's ETag)., type: str}
    size: {description: Size in bytes., type: int}
    virtual_size: {description: Virtual disk size in bytes., type: int}
    format: {description: Always qcow2., type: str}
etag:
  description: The ETag the upload target answered (null without I(upload_url)).
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.stackcore.errors import StackError
from ansible.module_utils.stackcore.snapshot import (
    make_snapshot,
    remove_snapshot,
    upload_snapshot,
)

ARGUMENT_SPEC = dict(
    name=dict(type="str", required=True),
    path=dict(type="path", required=True),
    state=dict(type="str", default="present", choices=["present", "absent"]),
    upload_url=dict(type="str", no_log=True),
    sha256=dict(type="str"),
    instance_dir=dict(type="path", default="/var/lib/stackctl/instances"),
)


def run(params, check):
    """The module's result for ``params``."""
    if params["state"] == "absent":
        removed = remove_snapshot(params["instance_dir"], params["name"], params["path"], check)
        return {"changed": removed, "snapshot": None, "etag": None}
    snap, changed = make_snapshot(params["instance_dir"], params["name"], params["path"],
                                  check)
    etag = None
    if params["upload_url"] and snap is not None:
        changed = True
        if not check:
            etag = upload_snapshot(snap, params["upload_url"], params["sha256"] or "")
    return {"changed": changed, "snapshot": snap and snap.as_dict(), "etag": etag}


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True,
                           required_by={"upload_url": ("sha256",)})
    try:
        result = run(module.params, module.check_mode)
    except StackError as err:
        module.fail_json(msg=str(err))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
