"""`stackctl host refresh` against this machine's libvirtd through the real module
(stack_hypervisor_info), with an inventory naming it twice: hv1 and hv2 (local connection)."""

import pytest

from .conftest import add_host

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_refresh_upserts_inventory_hosts_and_disables_the_rest(cli, db, inventory):
    add_host(db, "retired")
    result = cli("host", "refresh", "-o", "json")
    assert result.exit_code == 0, result.stderr
    rows = {h["name"]: h for h in result.json()}
    assert set(rows) == {"hv1", "hv2", "retired"}
    assert rows["hv2"]["address"] == "127.0.0.1"
    for name in ("hv1", "hv2"):
        assert rows[name]["enabled"] and rows[name]["vcpus"] > 0 and rows[name]["ram_mb"] > 0
        assert rows[name]["virt_type"] in ("kvm", "qemu") and rows[name]["refreshed_at"]
    assert rows["retired"]["enabled"] is False
    assert rows["retired"]["disabled_reason"] == "not in the inventory"
    assert "retired is no longer in the inventory" in result.stderr


def test_refresh_keeps_an_operators_disable(cli, db, inventory):
    add_host(db, "hv1")
    assert cli("host", "disable", "hv1", "--reason", "maintenance").exit_code == 0
    result = cli("host", "refresh", "-o", "json")
    assert result.exit_code == 0, result.stderr
    rows = {h["name"]: h for h in result.json()}
    assert (rows["hv1"]["enabled"], rows["hv1"]["disabled_reason"]) == (False, "maintenance")
    assert rows["hv1"]["vcpus"] > 0  # capacity is still refreshed
    assert rows["hv2"]["enabled"] and rows["hv2"]["disabled_reason"] is None
