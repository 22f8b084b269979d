#!/usr/bin/python
"""Ansible module stack_image_cache: a thin shell over stackcore.image_cache."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: stack_image_cache
short_description: Keep a verified image in a hypervisor's image cache
description:
  - Makes sure the image with a given sha256 is in the host's cache as C(<cache_dir>/<sha256>),
    fetching it from O(url) or copying it from O(src), or removes it.
  - The sha256 is verified while streaming and C(qemu-img info) must agree with O(format);
    qcow2 images with a backing file or an external data file are refused.
  - The file appears only by an atomic rename after verification, so a cached file is trusted
    by its name (and size, when O(src) is given) unless O(verify=true).
  - Concurrent runs for the same sha256 serialise on a lock and fetch once; on failure nothing
    is left in the cache.
author:
  - stackctl team
options:
  sha256:
    description: Lower-case hex sha256 of the image; also its name in the cache.
    type: str
    required: true
  format:
    description:
      - Declared format. C(aki) (kernel) and C(ari) (ramdisk) are plain files that qemu-img
        sees as raw.
      - Required with O(state=present).
    type: str
    choices: [qcow2, raw, aki, ari]
  src:
    description: Absolute path of the image on the host. Mutually exclusive with O(url).
    type: path
  url:
    description: C(http), C(https) or C(file) URL of the image. Mutually exclusive with O(src).
    type: str
  cache_dir:
    description: The cache directory (created 0755; files are 0644 so QEMU can read them).
    type: path
    default: /var/lib/stackctl/images
  verify:
    description: Re-hash a cached file instead of trusting its name; a bad file is replaced.
    type: bool
    default: false
  state:
    description: C(present) caches the image, C(absent) removes it (overlays using it break).
    type: str
    choices: [present, absent]
    default: present
notes:
  - Supports check mode (reports whether it would fetch) and diff mode.
"""

EXAMPLES = r"""
- name: Cache the test guest's disk from the controller's image store
  stack_image_cache:
    sha256: "{{ disk_sha256 }}"
    format: qcow2
    url: "http://127.0.0.1:8080/images/{{ disk_sha256 }}"

- name: Cache a kernel copied to the host beforehand
  stack_image_cache:
    sha256: "{{ kernel_sha256 }}"
    format: aki
    src: /tmp/vmlinuz

- name: Drop an image nobody uses any more
  stack_image_cache:
    sha256: "{{ old_sha256 }}"
    state: absent
"""

RETURN = r"""
path:
  description: Path of the cached image.
  returned: always
  type: str
  sample: /var/lib/stackctl/images/9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
sha256:
  description: The image's sha256.
  returned: always
  type: str
size:
  description: Size in bytes (null in check mode before a fetch, and for O(state=absent)).
  returned: always
  type: int
format:
  description: The declared format (null for O(state=absent)).
  returned: always
  type: str
action:
  description: What was (or in check mode would be) done, one of none, fetch, copy, remove.
  returned: always
  type: str
  sample: fetch
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.stackcore.errors import StackError
from ansible.module_utils.stackcore.image_cache import (
    DEFAULT_CACHE_DIR,
    FORMATS,
    cache_path,
    ensure_cached,
    remove_cached,
)

ARGUMENT_SPEC = {
    "sha256": {"type": "str", "required": True},
    "format": {"type": "str", "choices": list(FORMATS)},
    "src": {"type": "path"},
    "url": {"type": "str"},
    "cache_dir": {"type": "path", "default": DEFAULT_CACHE_DIR},
    "verify": {"type": "bool", "default": False},
    "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
}


def run(params, check_mode):
    """Reconcile one cache entry; returns the module result."""
    path = cache_path(params["cache_dir"], params["sha256"])
    before = "present" if os.path.lexists(path) else "absent"
    if params["state"] == "absent":
        result = remove_cached(params["cache_dir"], params["sha256"], check=check_mode)
    else:
        result = ensure_cached(
            params["cache_dir"],
            params["sha256"],
            params["format"],
            src=params["src"],
            url=params["url"],
            check=check_mode,
            verify=params["verify"],
        )
    out = result.as_dict()
    if before == "present" and result.changed and result.action in ("fetch", "copy"):
        before = "present, failed verification (replaced)"
    out["diff"] = {
        "before": {"path": path, "state": before},
        "after": {"path": path, "state": params["state"]},
    }
    return out


def main():
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        mutually_exclusive=[("src", "url")],
        required_if=[("state", "present", ("format",)), ("state", "present", ("src", "url"), True)],
        supports_check_mode=True,
    )
    try:
        result = run(module.params, module.check_mode)
    except StackError as err:
        module.fail_json(msg=str(err))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
