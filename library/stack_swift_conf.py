#!/usr/bin/python
"""Ansible module stack_swift_conf: swift.conf, whose hash values must never change."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: stack_swift_conf
short_description: Write swift.conf, refusing to change an existing hash path prefix/suffix
description:
  - Writes C(swift.conf) (the hash path prefix/suffix and the storage policies), readable by
    root and the O(group) only.
  - If the file already holds another prefix or suffix the module fails and changes nothing;
    replacing them makes every object in the cluster unreachable. O(allow_hash_change) is for a
    cluster that stores nothing yet.
  - Diffs show the file with the hash values masked.
author:
  - stackctl team
options:
  path:
    description: The file. Swift's daemons read C(/etc/swift/swift.conf) whatever their config says.
    type: path
    default: /etc/swift/swift.conf
  hash_path_prefix:
    description: Secret prefix (16 or more letters or digits).
    type: str
    required: true
  hash_path_suffix:
    description: Secret suffix (16 or more letters or digits).
    type: str
    required: true
  policies:
    description: Storage policies; exactly one is the default.
    type: list
    elements: dict
    default: [{index: 0, name: gold, default: true}]
  group:
    description: Group that may read the file (the Swift services' group).
    type: str
    default: swift
  allow_hash_change:
    description: Replace different hash values (only safe while the cluster stores nothing).
    type: bool
    default: false
notes:
  - Supports check mode and diff.
"""

EXAMPLES = r"""
- name: swift.conf from the controller's secrets
  stack_swift_conf:
    hash_path_prefix: "{{ swift_secrets['values'].hash_path_prefix }}"
    hash_path_suffix: "{{ swift_secrets['values'].hash_path_suffix }}"
"""

RETURN = r"""
path:
  description: The file written (or that would be).
  returned: always
  type: str
"""

import grp
import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.stackcore.errors import StackError
from ansible.module_utils.stackcore.fileio import write_atomic
from ansible.module_utils.stackcore.swift_conf import plan_swift_conf

ARGUMENT_SPEC = dict(
    path=dict(type="path", default="/etc/swift/swift.conf"),
    hash_path_prefix=dict(type="str", required=True, no_log=True),
    hash_path_suffix=dict(type="str", required=True, no_log=True),
    policies=dict(type="list", elements="dict",
                  default=[{"index": 0, "name": "gold", "default": True}]),
    group=dict(type="str", default="swift"),
    allow_hash_change=dict(type="bool", default=False),
)


def _read(path):
    try:
        with open(path) as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    params = module.params
    path = params["path"]
    try:
        gid = grp.getgrnam(params["group"]).gr_gid
    except KeyError:
        module.fail_json(msg=f"group {params['group']!r} does not exist")
    uid = os.geteuid()  # root's file when run as root (the roles); the caller's otherwise
    try:
        current = _read(path)
        text, diff = plan_swift_conf(current, params["hash_path_prefix"],
                                     params["hash_path_suffix"], params["policies"],
                                     params["allow_hash_change"], path)
        st = os.stat(path) if current is not None else None
        perms_wrong = st is not None and (st.st_mode & 0o7777 != 0o640 or st.st_gid != gid
                                          or st.st_uid != uid)
        changed = text is not None or perms_wrong
        if changed and not module.check_mode:
            os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
            write_atomic(path, text if text is not None else current, 0o640, uid, gid)
    except StackError as err:
        module.fail_json(msg=str(err))
    except OSError as err:
        module.fail_json(msg=f"cannot write {path}: {err.strerror or err}")
    module.exit_json(changed=changed, path=path, diff=diff)


if __name__ == "__main__":
    main()
