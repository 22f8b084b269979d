"""Disabling and enabling hosts: the operator's reason survives ``host refresh``, a host that
left the inventory is disabled by refresh and enabled again when it is back, and a disabled
host keeps its VMs while new ones go elsewhere."""

import pytest
from sqlalchemy import select

from stackctl.models import Host
from stackctl.runner import HostOutcome
from stackctl.workflows import hosts
from stackctl.workflows.hosts import NOT_IN_INVENTORY

from .conftest import add_host

OPERATOR = "disk swap"


def test_disable_and_enable_round_trip(cli, db):
    add_host(db)
    off = cli("host", "disable", "aio", "--reason", "  disk \n swap ", "-o", "json")
    assert off.exit_code == 0, off.stderr
    assert (off.json()["enabled"], off.json()["disabled_reason"]) == (False, OPERATOR)
    table = cli("host", "list").stdout
    assert "REASON" in table and OPERATOR in table
    assert ["disabled_reason", "disk", "swap"] in [
        line.split() for line in cli("host", "show", "aio").stdout.splitlines()]
    on = cli("host", "enable", "aio", "-o", "json").json()
    assert (on["enabled"], on["disabled_reason"]) == (True, None)


def test_disable_without_a_reason_records_who(cli, db):
    add_host(db)
    shown = cli("host", "disable", "aio", "-o", "json").json()
    assert shown["disabled_reason"] == "disabled by an operator"


@pytest.mark.parametrize("args,code,message", [
    (["disable", "nope"], 3, "host 'nope' is not known (run 'stackctl host refresh')"),
    (["enable", "nope"], 3, "host 'nope' is not known (run 'stackctl host refresh')"),
    (["disable", "aio", "--reason", "x" * 256], 2,
     "the reason is longer than 255 characters"),
    (["disable", "aio", "--reason", NOT_IN_INVENTORY], 2,
     "the reason 'not in the inventory' is reserved for hosts that left the inventory"),
])
def test_mistakes_are_one_line(cli, db, args, code, message):
    add_host(db)
    result = cli("host", *args)
    assert result.exit_code == code
    assert result.stderr == f"stackctl: error: {message}\n"


def test_a_host_that_left_the_inventory_cannot_be_enabled_by_hand(cli, db):
    add_host(db, enabled=False)
    with db.write() as session:
        session.scalar(select(Host)).disabled_reason = NOT_IN_INVENTORY
    result = cli("host", "enable", "aio")
    assert result.exit_code == 4
    assert "is not in the inventory: add it to the 'hypervisors' group" in result.stderr


def test_a_disabled_host_keeps_its_vms_and_takes_no_new_ones(tenant_with_vm, cli, home):
    assert cli("host", "disable", "aio", "--reason", OPERATOR).exit_code == 0
    vm = cli("vm", "show", "web-1", "-o", "json", tenant="a").json()
    assert (vm["state"], vm["host"]) == ("running", "aio")
    [host] = cli("host", "list", "-o", "json").json()
    assert host["vms"] == 1
    result = cli("vm", "create", "web-2", "--image", "img", "--flavor", "m1.nano", "--key",
                 "k1", tenant="a")
    assert result.exit_code == 4
    assert result.stderr.splitlines()[-1] == "stackctl: error: no host is enabled: aio is disabled"
    assert not (home / "run").exists() or not list((home / "run").iterdir())


# --- refresh's decisions ------------------------------------------------------------------


class InventoryRunner:
    """Test double for refresh's decisions only (the real run is test_host_refresh.py): the
    inventory's hypervisors, each answering stack_hypervisor_info, or failing."""

    def __init__(self, inventory, failing=()):
        self.inventory, self.failing = inventory, set(failing)

    def inventory_hosts(self, group):
        # refresh also records the fleet (every group) for the inventory plugin
        return {name: "127.0.0.1" for name in self.inventory} if group == "hypervisors" else {}

    def run_each(self, names, tasks, progress=None, label="adhoc"):
        info = {"hypervisor": {"vcpus": 4, "memory_mb": 4096, "disk_gb": 50,
                               "virt_type": "qemu"}}
        return {name: HostOutcome([], "unreachable") if name in self.failing
                else HostOutcome([info]) for name in names}


# (case, rows before: name -> (enabled, reason), inventory, failing,
#  rows after, result.enabled, result.disabled)
REFRESHES = [
    ("a new host is enabled", {}, ["hv1"], [], {"hv1": (True, None)}, [], []),
    ("a host that left is disabled, saying why", {"hv1": (True, None)}, [], [],
     {"hv1": (False, NOT_IN_INVENTORY)}, [], ["hv1"]),
    ("a host back in the inventory is enabled again", {"hv1": (False, NOT_IN_INVENTORY)},
     ["hv1"], [], {"hv1": (True, None)}, ["hv1"], []),
    ("a host disabled before reasons were kept is enabled when present", {"hv1": (False, None)},
     ["hv1"], [], {"hv1": (True, None)}, ["hv1"], []),
    ("an operator's disable survives refresh", {"hv1": (False, OPERATOR)}, ["hv1"], [],
     {"hv1": (False, OPERATOR)}, [], []),
    ("an operator's reason survives the host leaving", {"hv1": (False, OPERATOR)}, [], [],
     {"hv1": (False, OPERATOR)}, [], []),
    ("an enabled host stays enabled", {"hv1": (True, None)}, ["hv1"], [],
     {"hv1": (True, None)}, [], []),
    ("a host that fails to answer keeps its row", {"hv1": (False, NOT_IN_INVENTORY)}, ["hv1"],
     ["hv1"], {"hv1": (False, NOT_IN_INVENTORY)}, [], []),
]


@pytest.mark.parametrize("case,before,inventory,failing,after,enabled,disabled", REFRESHES,
                         ids=[r[0] for r in REFRESHES])
def test_refresh_decides_enabled(app, db, case, before, inventory, failing, after, enabled,
                                 disabled):
    for name, (on, reason) in before.items():
        add_host(db, name, enabled=on)
        with db.write() as session:
            session.scalar(select(Host).where(Host.name == name)).disabled_reason = reason
    app.runner = InventoryRunner(inventory, failing)
    result = hosts.refresh(app)
    assert {h["name"]: (h["enabled"], h["disabled_reason"]) for h in result.hosts} == after
    assert (result.enabled, result.disabled) == (enabled, disabled)
    assert list(result.failed) == list(failing)
