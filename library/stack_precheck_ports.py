#!/usr/bin/python
"""Ansible module stack_precheck_ports: a thin shell over stackcore.precheck's port check."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: stack_precheck_ports
short_description: Whether the ports our daemons listen on are free or already theirs
description:
  - Read-only; never reports a change. Reads the host's listening TCP sockets (IPv4 and IPv6,
    in the network namespace the module runs in) and the processes holding them.
  - A port counts as free when nothing listens on it (on its address or a wildcard), or when
    the listener is the daemon that should hold it, recognised by its pid file (the process it
    names or a child of it, as a server's workers are) or by a word of its command line. So the
    check passes on a host already deployed.
  - Problems come back as one line per port, such as
    C(port 6200 on 10.250.0.12 is taken by pid 123 (nginx); object-server needs it); the
    module does not fail on them (the playbook says which host).
  - Run as root to see every process; another user's sockets show as held by
    "a process this user cannot see".
author:
  - stackctl team
options:
  ports:
    description: The ports to check.
    type: list
    elements: dict
    required: true
    suboptions:
      port:
        description: TCP port.
        type: int
        required: true
      address:
        description: Address the daemon binds (C(0.0.0.0) or C(::) for every address).
        type: str
        required: true
      owner:
        description: The daemon that listens there, for messages.
        type: str
        required: true
      pidfile:
        description: Pid file of that daemon, as stack_daemon (or its init system) writes it.
        type: path
      match:
        description: A word of that daemon's command line (also required of the pid file's process).
        type: str
notes:
  - Supports check mode; it changes nothing in either mode.
"""

EXAMPLES = r"""
- name: Check the object server's port
  stack_precheck_ports:
    ports:
      - port: 6200
        address: 10.250.0.12
        owner: object-server
        pidfile: /run/swift/object-server.pid
        match: /etc/swift/object-server.conf
  register: ports

- name: Fail on ports another program holds
  ansible.builtin.fail:
    msg: "{{ inventory_hostname }}: {{ ports.problems | join('; ') }}"
  when: ports.problems | length > 0
"""

RETURN = r"""
ports:
  description: One entry per port asked about, in order.
  returned: always
  type: list
  elements: dict
  contains:
    port:
      description: The port.
      type: int
    address:
      description: The address, canonical.
      type: str
    owner:
      description: The daemon that should hold it.
      type: str
    state:
      description: C(free) (nobody listens), C(ours) (the owner listens) or C(taken).
      type: str
    pid:
      description: A process listening in the way (null when free, or when it cannot be seen).
      type: int
    process:
      description: That process's name.
      type: str
    listening_on:
      description: The address it listens on (a wildcard covers every address).
      type: str
problems:
  description: One line per taken port, without the host's name.
  returned: always
  type: list
  elements: str
  sample: ["port 6200 on 10.250.0.12 is taken by pid 123 (nginx); object-server needs it"]
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.stackcore.errors import StackError
from ansible.module_utils.stackcore.precheck import PortSpec, check_ports

PORT_OPTIONS = {
    "port": {"type": "int", "required": True},
    "address": {"type": "str", "required": True},
    "owner": {"type": "str", "required": True},
    "pidfile": {"type": "path"},
    "match": {"type": "str"},
}
ARGUMENT_SPEC = {
    "ports": {"type": "list", "elements": "dict", "required": True, "options": PORT_OPTIONS},
}


def run(params):
    """Judge each port; returns the module result."""
    specs = [PortSpec(port=p["port"], address=p["address"], owner=p["owner"],
                      pidfile=p["pidfile"] or "", match=p["match"] or "")
             for p in params["ports"]]
    verdicts = check_ports(specs)
    return {"changed": False, "ports": [v.as_dict() for v in verdicts],
            "problems": [v.problem for v in verdicts if v.problem]}


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    try:
        result = run(module.params)
    except StackError as err:
        module.fail_json(msg=str(err))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
