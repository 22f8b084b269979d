#!/usr/bin/python
"""Ansible module: a daemon with a pid file, for hosts without systemd."""

DOCUMENTATION = r"""
module: stack_daemon
short_description: Keep a daemon running with a pid file on hosts without systemd
description:
  - Starts, stops or restarts a program and tracks it by pid file.
  - A pid file that names a dead process, or a live process whose command line does not
    contain I(match), counts as not running (stale after a reboot or crash).
  - Use the service module where the host runs systemd; roles pick one or the other.
options:
  name:
    description: Name used in messages.
    type: str
    required: true
  argv:
    description: Command to run, as a list (never a shell string).
    type: list
    elements: str
    required: true
  pidfile:
    description: Absolute path of the pid file.
    type: path
    required: true
  match:
    description: Word that must appear in the process command line; default the program's basename.
    type: str
    default: ""
  daemonize:
    description: The program stays in the foreground, so detach it and write the pid file here.
    type: bool
    default: false
  log_file:
    description: Where a detached program's output goes (with I(daemonize)).
    type: path
    default: ""
  wait_for:
    description: A path (socket or file) that exists once the daemon is ready.
    type: path
    default: ""
  env:
    description: Extra environment variables for the program (for example C(PYTHONPATH)).
    type: dict
    default: {}
  state:
    description: Desired state.
    type: str
    choices: [started, stopped, restarted]
    default: started
  timeout:
    description: Seconds to wait for start or stop.
    type: float
    default: 15
author: stackctl developers
"""

EXAMPLES = r"""
- name: Run libvirtd as a plain daemon
  stack_daemon:
    name: libvirtd
    argv: [libvirtd, --daemon, --pid-file, /run/libvirtd.pid]
    pidfile: /run/libvirtd.pid
    wait_for: /run/libvirt/libvirt-sock
"""

RETURN = r"""
pid:
  description: Pid of the running daemon (null when stopped).
  returned: always
  type: int
actions:
  description: What was done (or would be, in check mode), in order.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.stackcore.daemon import DaemonSpec, ensure
from ansible.module_utils.stackcore.errors import StackError


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            argv=dict(type="list", elements="str", required=True),
            pidfile=dict(type="path", required=True),
            match=dict(type="str", default=""),
            daemonize=dict(type="bool", default=False),
            log_file=dict(type="path", default=""),
            wait_for=dict(type="path", default=""),
            state=dict(type="str", choices=["started", "stopped", "restarted"], default="started"),
            timeout=dict(type="float", default=15),
            env=dict(type="dict", default={}),
        ),
        supports_check_mode=True,
    )
    params = dict(module.params)
    state = params.pop("state")
    try:
        spec = DaemonSpec(**{**params, "argv": tuple(params["argv"]),
                             "env": tuple(sorted((str(k), str(v))
                                                 for k, v in params["env"].items()))})
        changed, actions, pid = ensure(spec, state, check_mode=module.check_mode)
    except StackError as err:
        module.fail_json(msg=str(err))
    was_running = actions[0] == "stop" if actions else state != "stopped"
    diff = {"before": {"running": was_running}, "after": {"running": state != "stopped"}}
    module.exit_json(changed=changed, actions=actions, pid=pid, diff=diff)


if __name__ == "__main__":
    main()
