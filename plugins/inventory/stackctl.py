"""Inventory plugin: what the stackctl controller knows (a shim over stackctl.workflows.fleet)."""

import os
import sys

from ansible.errors import AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin

DOCUMENTATION = r"""
name: stackctl
short_description: The hosts and VMs of a stackctl controller
description:
  - Reads the stackctl controller's database (never creates it) and lists every inventory host
    it recorded in its groups (C(controllers), C(hypervisors), C(storage_nodes), C(proxies)),
    the hypervisors in C(hypervisors_enabled) or C(hypervisors_disabled), and every VM as
    C(<tenant>.<vm name>) in C(vms), C(tenant_<tenant>), C(vms_on_<host>) and C(vms_<state>).
  - The configuration file's name must end in C(stackctl.yml) or C(stackctl.yaml).
  - Ansible must run in the Python environment where stackctl is installed.
options:
  plugin:
    description: The name of this plugin, to use it.
    required: true
    choices: [stackctl]
  home:
    description:
      - The controller's home (its SQLite database and C(stackctl.toml)); stackctl's default
        C(~/.local/share/stackctl) when unset.
    type: str
    env:
      - name: STACKCTL_HOME
  db_url:
    description: The controller's SQLAlchemy database URL; default from O(home).
    type: str
    env:
      - name: STACKCTL_DB_URL
  tenant:
    description: List only this tenant's VMs (the other hosts are always listed).
    type: str
"""

EXAMPLES = r"""
# inventories/stackctl.yml
plugin: stackctl
tenant: demo
"""


class InventoryModule(BaseInventoryPlugin):
    NAME = "stackctl"

    def verify_file(self, path):
        return super().verify_file(path) and path.endswith(("stackctl.yml", "stackctl.yaml"))

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        fleet, stack_error = _import_stackctl()
        try:
            data = fleet.read_inventory(self.get_option("home"), self.get_option("db_url"),
                                        self.get_option("tenant"))
        except stack_error as exc:
            raise AnsibleParserError(f"stackctl inventory: {exc}") from exc
        for group in data["all"]["children"]:
            self.inventory.add_group(group)
            for host in data[group]["hosts"]:
                self.inventory.add_host(host, group=group)
        for host, variables in data["_meta"]["hostvars"].items():
            self.inventory.add_host(host)
            for key, value in variables.items():
                self.inventory.set_variable(host, key, value)


def _import_stackctl():
    try:
        from stackcore.errors import StackError

        from stackctl.workflows import fleet
    except ImportError:
        # Not installed: the project next door (its dependencies must still be importable).
        project = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir)
        sys.path += [os.path.normpath(project),
                     os.path.normpath(os.path.join(project, "plugins", "module_utils"))]
        try:
            from stackcore.errors import StackError

            from stackctl.workflows import fleet
        except ImportError as exc:
            raise AnsibleParserError(
                f"stackctl inventory: cannot import stackctl in {sys.executable} ({exc}): "
                "run Ansible from stackctl's virtualenv") from exc
    return fleet, StackError
