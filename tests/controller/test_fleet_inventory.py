"""The dynamic inventory: ``fleet.build`` by tables, ``export``/``record`` on a real SQLite file,
and the ``stackctl`` inventory plugin run by ``ansible-inventory`` as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from stackcore.errors import InvalidInput, NotFound

from stackctl.workflows import fleet

from .conftest import PROJECT, add_host, insert_vm

ANSIBLE_INVENTORY = str(Path(sys.executable).parent / "ansible-inventory")


def _hv(name, address="10.0.0.1", enabled=True, reason=None):
    return {"name": name, "address": address, "enabled": enabled, "disabled_reason": reason}


def _vm(tenant, name, host="hv1", state="running", address="192.168.150.10"):
    return {"uuid": f"uuid-{tenant}-{name}", "name": name, "tenant": tenant, "host": host,
            "state": state, "address": address, "mac": "52:54:00:00:00:01"}


def _groups(inventory: dict) -> dict[str, list[str]]:
    return {g: node["hosts"] for g, node in inventory.items() if g not in ("_meta", "all")}


# (fleet rows, hypervisor rows, VM rows) -> every group with its hosts
GROUP_CASES = {
    "nothing recorded": ([], [], [], {}),
    "fleet hosts in their groups": (
        [{"name": "aio", "address": "aio", "groups": ["controllers", "hypervisors", "proxies"]},
         {"name": "swift1", "address": "127.0.0.2", "groups": ["storage_nodes", "proxies"]}],
        [], [],
        {"controllers": ["aio"], "hypervisors": ["aio"], "proxies": ["aio", "swift1"],
         "storage_nodes": ["swift1"]}),
    "hypervisor rows alone, enabled or not": (
        [], [_hv("hv1"), _hv("hv2", enabled=False, reason="maintenance")], [],
        {"hypervisors": ["hv1", "hv2"], "hypervisors_enabled": ["hv1"],
         "hypervisors_disabled": ["hv2"]}),
    "fleet and hypervisor rows merge": (
        [{"name": "hv1", "address": "10.0.0.9", "groups": ["hypervisors"]}], [_hv("hv1")], [],
        {"hypervisors": ["hv1"], "hypervisors_enabled": ["hv1"]}),
    "VMs by tenant, host and state": (
        [], [_hv("hv1"), _hv("hv2")],
        [_vm("demo", "web-1"), _vm("demo", "web-2", host="hv2", state="stopped"),
         _vm("other", "web-1")],
        {"hypervisors": ["hv1", "hv2"], "hypervisors_enabled": ["hv1", "hv2"],
         "vms": ["demo.web-1", "demo.web-2", "other.web-1"],
         "tenant_demo": ["demo.web-1", "demo.web-2"], "tenant_other": ["other.web-1"],
         "vms_on_hv1": ["demo.web-1", "other.web-1"], "vms_on_hv2": ["demo.web-2"],
         "vms_running": ["demo.web-1", "other.web-1"], "vms_stopped": ["demo.web-2"]}),
    "group names are sanitized, host names are not": (
        [{"name": "node-1.lab", "address": None, "groups": ["storage-nodes"]}], [],
        [_vm("acme.eu-1", "db-1", host="node-1.lab")],
        {"storage_nodes": ["node-1.lab"], "vms": ["acme.eu-1.db-1"],
         "tenant_acme_eu_1": ["acme.eu-1.db-1"], "vms_on_node_1_lab": ["acme.eu-1.db-1"],
         "vms_running": ["acme.eu-1.db-1"]}),
    "a VM not placed yet has no host group": (
        [], [], [_vm("demo", "new", host=None, state="building", address=None)],
        {"vms": ["demo.new"], "tenant_demo": ["demo.new"], "vms_building": ["demo.new"]}),
    "a fleet host without groups is ungrouped": (
        [{"name": "lonely", "address": "10.0.0.5", "groups": []}], [], [],
        {"ungrouped": ["lonely"]}),
}


@pytest.mark.parametrize("fleet_rows, hv_rows, vm_rows, groups", GROUP_CASES.values(),
                         ids=GROUP_CASES.keys())
def test_build_puts_each_host_in_its_groups(fleet_rows, hv_rows, vm_rows, groups):
    inventory = fleet.build(fleet_rows, hv_rows, vm_rows)
    assert _groups(inventory) == groups
    assert inventory["all"] == {"children": sorted(groups)}
    assert sorted(inventory["_meta"]["hostvars"]) == sorted({h for hs in groups.values()
                                                              for h in hs})


# (fleet rows, hypervisor rows, VM rows, host) -> that host's variables
HOSTVAR_CASES = {
    "fleet host": (
        [{"name": "aio", "address": "aio", "groups": ["proxies", "controllers"]}], [], [], "aio",
        {"ansible_host": "aio", "stackctl_groups": ["controllers", "proxies"]}),
    "hypervisor row only": (
        [], [_hv("hv2", enabled=False, reason="disk")], [], "hv2",
        {"ansible_host": "10.0.0.1", "stackctl_groups": ["hypervisors"],
         "stackctl_enabled": False, "stackctl_disabled_reason": "disk"}),
    "the fleet's address wins over the hypervisor row's": (
        [{"name": "hv1", "address": "10.0.0.9", "groups": ["storage_nodes"]}], [_hv("hv1")], [],
        "hv1",
        {"ansible_host": "10.0.0.9", "stackctl_groups": ["hypervisors", "storage_nodes"],
         "stackctl_enabled": True, "stackctl_disabled_reason": None}),
    "VM": (
        [], [], [_vm("demo", "web-1")], "demo.web-1",
        {"ansible_host": "192.168.150.10", "ansible_user": "root", "stackctl_uuid":
         "uuid-demo-web-1", "stackctl_name": "web-1", "stackctl_tenant": "demo",
         "stackctl_host": "hv1", "stackctl_state": "running",
         "stackctl_mac": "52:54:00:00:00:01"}),
    "a VM knows its hypervisor's address (to jump through)": (
        [], [_hv("hv1")], [_vm("demo", "web-1")], "demo.web-1",
        {"ansible_host": "192.168.150.10", "ansible_user": "root", "stackctl_uuid":
         "uuid-demo-web-1", "stackctl_name": "web-1", "stackctl_tenant": "demo",
         "stackctl_host": "hv1", "stackctl_state": "running",
         "stackctl_mac": "52:54:00:00:00:01", "stackctl_host_address": "10.0.0.1"}),
    "a VM without an address has no ansible_host": (
        [], [], [_vm("demo", "new", host=None, state="error", address=None)], "demo.new",
        {"ansible_user": "root", "stackctl_uuid": "uuid-demo-new", "stackctl_name": "new",
         "stackctl_tenant": "demo", "stackctl_host": None, "stackctl_state": "error",
         "stackctl_mac": "52:54:00:00:00:01"}),
}


@pytest.mark.parametrize("fleet_rows, hv_rows, vm_rows, host, hostvars",
                         HOSTVAR_CASES.values(), ids=HOSTVAR_CASES.keys())
def test_build_sets_host_variables(fleet_rows, hv_rows, vm_rows, host, hostvars):
    assert fleet.build(fleet_rows, hv_rows, vm_rows)["_meta"]["hostvars"][host] == hostvars


@pytest.mark.parametrize("text, group", [
    ("tenant_demo", "tenant_demo"), ("tenant_acme-eu.1", "tenant_acme_eu_1"),
    ("vms_on_hv-1.example.com", "vms_on_hv_1_example_com"), ("Tenant_UP", "Tenant_UP"),
])
def test_group_names_keep_only_letters_digits_and_underscores(text, group):
    assert fleet.group_name(text) == group


# -- export, record: on the controller's real SQLite database ---------------------------------

def test_export_reads_fleet_hypervisors_and_vms(db, tenant_with_vm):
    insert_vm(db, "b", "db-1", state="stopped")
    with db.read() as session:
        inventory = fleet.export(session)
    assert _groups(inventory) == {
        "hypervisors": ["aio"], "hypervisors_enabled": ["aio"], "vms": ["a.web-1", "b.db-1"],
        "tenant_a": ["a.web-1"], "tenant_b": ["b.db-1"], "vms_on_aio": ["a.web-1", "b.db-1"],
        "vms_running": ["a.web-1"], "vms_stopped": ["b.db-1"]}
    assert inventory["_meta"]["hostvars"]["a.web-1"]["stackctl_uuid"] == tenant_with_vm


def test_export_for_one_tenant_lists_only_its_vms(db, tenant_with_vm):
    insert_vm(db, "b", "db-1")
    with db.read() as session:
        inventory = fleet.export(session, tenant="b")
    assert inventory["vms"] == {"hosts": ["b.db-1"]}
    assert "tenant_a" not in inventory
    assert inventory["hypervisors"] == {"hosts": ["aio"]}


def test_export_for_an_unknown_tenant_is_not_found(db):
    with db.read() as session, pytest.raises(NotFound, match="tenant 'nope' does not exist"):
        fleet.export(session, tenant="nope")


def test_record_upserts_hosts_and_deletes_those_gone(app, db):
    fleet.record(app, {"aio": {"address": "aio", "groups": ["hypervisors", "controllers"]},
                       "swift1": {"address": "127.0.0.2", "groups": ["storage_nodes"]}})
    fleet.record(app, {"aio": {"address": "10.0.0.1", "groups": ["proxies", "proxies"]},
                       "hv2": {"address": None, "groups": ["hypervisors"]}})
    with db.read() as session:
        inventory = fleet.export(session)
    assert _groups(inventory) == {"hypervisors": ["hv2"], "proxies": ["aio"]}
    assert inventory["_meta"]["hostvars"] == {
        "aio": {"ansible_host": "10.0.0.1", "stackctl_groups": ["proxies"]},
        "hv2": {"stackctl_groups": ["hypervisors"]}}


@pytest.mark.parametrize("hosts", [
    {"": {"address": "x", "groups": []}},
    {"aio": {"address": "x", "groups": "hypervisors"}},
    {"aio": {"address": "x", "groups": ["hypervisors", None]}},
])
def test_record_rejects_malformed_hosts(app, hosts):
    with pytest.raises(InvalidInput, match="invalid fleet host"):
        fleet.record(app, hosts)


def test_hosts_from_inventory_lists_the_fleet_groups(home, inventory, app):
    # LOCAL_INVENTORY: hypervisors hv1 and hv2 (127.0.0.1); ctl is in no fleet group.
    assert fleet.hosts_from_inventory(app.runner) == {
        "hv1": {"address": "hv1", "groups": ["hypervisors"]},
        "hv2": {"address": "127.0.0.1", "groups": ["hypervisors"]}}


def test_hosts_from_inventory_collects_every_group_of_a_host():
    class Runner:
        def inventory_hosts(self, group):
            return {"controllers": {"aio": "aio"}, "hypervisors": {"aio": "aio"},
                    "storage_nodes": {"s1": "10.0.0.2"}, "proxies": {"s1": "10.0.0.2"}}[group]

    assert fleet.hosts_from_inventory(Runner()) == {
        "aio": {"address": "aio", "groups": ["controllers", "hypervisors"]},
        "s1": {"address": "10.0.0.2", "groups": ["storage_nodes", "proxies"]}}


# -- finding the database without ever creating one ------------------------------------------

def test_open_existing_without_a_home_creates_nothing(tmp_path):
    with pytest.raises(NotFound, match="no stackctl home"):
        fleet.open_existing(home=str(tmp_path / "missing"))
    assert not (tmp_path / "missing").exists()


def test_open_existing_without_a_database_file_creates_none(tmp_path):
    with pytest.raises(NotFound, match=r"database .*stackctl\.db does not exist"):
        fleet.open_existing(home=str(tmp_path))
    with pytest.raises(NotFound, match=r"other\.db does not exist"):
        fleet.open_existing(home=str(tmp_path / "missing"),
                            db_url=f"sqlite:///{tmp_path / 'other.db'}")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("url, message", [
    ("sqlite://", "in-memory"), ("sqlite:///:memory:", "in-memory"),
    ("not a url", "invalid database URL"),
])
def test_open_existing_rejects_urls_without_state(tmp_path, url, message):
    with pytest.raises(InvalidInput, match=message):
        fleet.open_existing(home=str(tmp_path / "missing"), db_url=url)


def test_read_inventory_uses_the_homes_database(home, db):
    add_host(db, "hv1")
    inventory = fleet.read_inventory(home=str(home))
    assert inventory["hypervisors"] == {"hosts": ["hv1"]}


# -- the plugin, as ansible-inventory runs it --------------------------------------------------

def _ansible_inventory(source: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, ANSIBLE_CONFIG=str(PROJECT / "ansible.cfg"),
               ANSIBLE_HOME=str(tmp_path / "ansible-home"), ANSIBLE_NOCOLOR="1")
    return subprocess.run([ANSIBLE_INVENTORY, "-i", str(source), *args], capture_output=True,
                          text=True, env=env, timeout=120, check=False)


def _trusted(value):
    """``--list`` JSON with the values as Ansible reads them: ansible-core 2.19 writes the
    plugin's values (from the database, never templated) as ``{"__ansible_unsafe": ...}``."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {k: _trusted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_trusted(v) for v in value]
    return value


def test_ansible_inventory_lists_what_the_controller_knows(app, db, tenant_with_vm, tmp_path):
    fleet.record(app, {"aio": {"address": "aio", "groups": ["controllers", "hypervisors"]},
                       "swift1": {"address": "127.0.0.2", "groups": ["storage_nodes"]}})
    insert_vm(db, "b", "db-1", state="stopped")
    source = tmp_path / "stackctl.yml"
    source.write_text("plugin: stackctl\n")
    done = _ansible_inventory(source, tmp_path, "--list")
    assert done.returncode == 0, done.stderr
    assert "WARNING" not in done.stderr, done.stderr
    out = _trusted(json.loads(done.stdout))
    assert out["tenant_a"]["hosts"] == ["a.web-1"]
    assert out["vms_stopped"]["hosts"] == ["b.db-1"]
    assert sorted(out["vms_on_aio"]["hosts"]) == ["a.web-1", "b.db-1"]
    assert out["controllers"]["hosts"] == ["aio"]
    assert out["storage_nodes"]["hosts"] == ["swift1"]
    assert out["hypervisors_enabled"]["hosts"] == ["aio"]
    assert out["_meta"]["hostvars"]["a.web-1"] == {
        "ansible_host": "192.168.150.10", "ansible_user": "root", "stackctl_uuid": tenant_with_vm,
        "stackctl_name": "web-1", "stackctl_tenant": "a", "stackctl_host": "aio",
        "stackctl_state": "running", "stackctl_mac": "52:54:00:00:00:01",
        "stackctl_host_address": "aio"}
    assert out["_meta"]["hostvars"]["swift1"]["ansible_host"] == "127.0.0.2"

    source.write_text("plugin: stackctl\ntenant: b\n")
    done = _ansible_inventory(source, tmp_path, "--graph", "vms")
    assert done.returncode == 0, done.stderr
    assert "b.db-1" in done.stdout and "a.web-1" not in done.stdout


def test_ansible_inventory_without_a_database_says_so_and_creates_none(home, tmp_path):
    home.mkdir(mode=0o700)
    source = tmp_path / "stackctl.yml"
    source.write_text("plugin: stackctl\n")
    done = _ansible_inventory(source, tmp_path, "--list")
    assert f"stackctl inventory: database {home}/stackctl.db does not exist" in done.stderr
    assert list(home.iterdir()) == []
