#!/usr/bin/python
"""Ansible module stack_bucket: a thin shell over stackcore.bucket and stackcore.swift_client."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: stack_bucket
short_description: Manage a tenant's S3 bucket (a Swift container) declaratively
description:
  - Creates, updates or deletes container O(name) in Swift account C(AUTH_<account>), which
    Swift's s3api serves as the S3 bucket of the same name.
  - Talks to the Swift proxy over its API with v1 auth (tempauth); the user must be a reseller
    admin, so one service user manages every tenant's buckets.
  - >-
    O(acl=public-read) sets C(X-Container-Read: .r:*,.rlistings); O(acl=private) removes the read
    ACL (the write ACL is left alone). O(quota_bytes) is C(X-Container-Meta-Quota-Bytes).
    O(versioning) is Swift's object versioning (C(X-Versions-Enabled)), which s3api maps to S3
    bucket versioning; once enabled it can only be suspended (C(false)), never removed.
  - After a change the bucket is read again; a setting Swift did not keep (for example versioning
    on a proxy without object versioning) fails the task.
  - Deleting a non-empty bucket fails unless O(force) is set; then its objects, old versions,
    delete markers and s3api's C(<name>+segments) container go first.
author:
  - stackctl team
options:
  endpoint:
    description: Swift proxy URL, C(http(s)://host:port), without C(/auth) or C(/v1).
    type: str
    required: true
  auth_user:
    description: v1 auth user, C(<account>:<user>) (a reseller admin).
    type: str
    required: true
  auth_key:
    description: v1 auth key of O(auth_user).
    type: str
    required: true
  account:
    description: Tenant name; the bucket lives in Swift account C(AUTH_<account>).
    type: str
    required: true
  name:
    description:
      - Bucket name, by S3's rules (3-63 lower-case letters, digits, C(.) and C(-), starting and
        ending with a letter or digit, not an IPv4 address, no reserved prefix or suffix).
    type: str
    required: true
  state:
    description: Whether the bucket exists.
    type: str
    choices: [present, absent]
    default: present
  acl:
    description: Canned ACL. C(public-read) lets anyone read and list the bucket.
    type: str
    choices: [private, public-read]
    default: private
  quota_bytes:
    description: Most bytes the bucket may hold; C(0) means no quota.
    type: int
    default: 0
  versioning:
    description:
      - Keep old versions of objects. C(false) on a bucket that had it suspends it (old versions
        stay); on a bucket that never had it, nothing is set.
    type: bool
    default: false
  force:
    description: With O(state=absent), delete the bucket's objects and old versions first.
    type: bool
    default: false
notes:
  - Supports check mode and diff mode.
  - The proxy needs C(account_autocreate = true) for the first bucket of a new tenant, and
    C(allow_object_versioning = true) in its versioned_writes filter for O(versioning).
"""

EXAMPLES = r"""
- name: A public bucket with a 10 GiB quota for tenant demo
  stack_bucket:
    endpoint: http://127.0.0.1:8080
    auth_user: service:stackctl
    auth_key: "{{ swift_service_key }}"
    account: demo
    name: demo-www
    acl: public-read
    quota_bytes: 10737418240

- name: Keep old versions of the backups
  stack_bucket:
    endpoint: http://127.0.0.1:8080
    auth_user: service:stackctl
    auth_key: "{{ swift_service_key }}"
    account: demo
    name: demo-backups
    versioning: true

- name: Delete a bucket and everything in it
  stack_bucket:
    endpoint: http://127.0.0.1:8080
    auth_user: service:stackctl
    auth_key: "{{ swift_service_key }}"
    account: demo
    name: demo-scratch
    state: absent
    force: true
"""

RETURN = r"""
bucket:
  description: The bucket after the run (in check mode, as it would be).
  returned: always
  type: dict
  contains:
    name:
      description: Bucket (container) name.
      type: str
    account:
      description: Tenant name (Swift account C(AUTH_<account>)).
      type: str
    state:
      description: C(present) or C(absent).
      type: str
    acl:
      description: C(private), C(public-read), or the read ACL Swift holds when it is neither
        (null when absent).
      type: str
    quota_bytes:
      description: Quota in bytes, 0 for none (null when absent).
      type: int
    versioning:
      description: Whether object versioning is enabled (null when absent).
      type: bool
    objects:
      description: Object count as Swift last reported it.
      type: int
    bytes:
      description: Bytes used, old versions included, as Swift last reported it.
      type: int
action:
  description: What was done (or would be in check mode), C(create), C(update), C(delete) or
    C(none).
  returned: always
  type: str
reasons:
  description: Why, one line per setting that changed.
  returned: always
  type: list
  elements: str
  sample: ["acl private -> public-read", "quota_bytes none -> 1048576"]
purged:
  description: Objects, old versions and delete markers deleted before the bucket (O(force)).
  returned: always
  type: int
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.stackcore.bucket import reconcile, resolve_desired
from ansible.module_utils.stackcore.errors import StackError
from ansible.module_utils.stackcore.swift_client import SwiftSession

ARGUMENT_SPEC = {
    "endpoint": {"type": "str", "required": True},
    "auth_user": {"type": "str", "required": True},
    "auth_key": {"type": "str", "required": True, "no_log": True},
    "account": {"type": "str", "required": True},
    "name": {"type": "str", "required": True},
    "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
    "acl": {"type": "str", "choices": ["private", "public-read"], "default": "private"},
    "quota_bytes": {"type": "int", "default": 0},
    "versioning": {"type": "bool", "default": False},
    "force": {"type": "bool", "default": False},
}
DESIRED = ("name", "account", "state", "acl", "quota_bytes", "versioning", "force")


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    params = module.params
    try:
        desired = resolve_desired(**{key: params[key] for key in DESIRED})
        session = SwiftSession(params["endpoint"], params["auth_user"], params["auth_key"])
        result = reconcile(session, desired, check=module.check_mode)
    except StackError as err:
        module.fail_json(msg=str(err))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
