"""The inventory cache: reused while the static inventory's files are unchanged, never for
plugins or scripts, and invalidated by any edit to the inventory, host_vars or group_vars."""

import os

import pytest

from stackctl.config import load
from stackctl.runner import AnsibleRunner, InventoryCache

DATA = {"_meta": {"hostvars": {"aio": {"swift_ip": "127.0.0.1"}}},
        "all": {"children": ["proxies"]}, "proxies": {"hosts": ["aio"]}}


@pytest.fixture
def inventory(tmp_path):
    path = tmp_path / "inv" / "hosts.yml"
    (path.parent / "host_vars").mkdir(parents=True)
    path.write_text("all:\n  hosts:\n    aio:\n")
    (path.parent / "host_vars" / "aio.yml").write_text("swift_ip: 127.0.0.1\n")
    return path


def _touch_later(path, text):
    st = path.stat()
    path.write_text(text)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_cache_is_reused_until_a_file_changes(inventory, tmp_path):
    cache = InventoryCache(inventory, tmp_path / "cache")
    assert cache.load() is None
    cache.save(DATA)
    assert cache.load() == DATA
    assert (tmp_path / "cache").stat().st_mode & 0o777 == 0o700
    assert cache.path.stat().st_mode & 0o777 == 0o600
    _touch_later(inventory.parent / "host_vars" / "aio.yml", "swift_ip: 127.0.0.9\n")
    assert cache.load() is None


@pytest.mark.parametrize("name, text", [
    ("hosts.yml", "plugin: stackctl\n"),    # an inventory plugin's config
    ("hosts.py", "print('{}')\n"),          # a script
])
def test_dynamic_inventories_are_never_cached(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    cache = InventoryCache(path, tmp_path / "cache")
    cache.save(DATA)
    assert cache.load() is None
    assert not cache.path.exists()


def test_runner_lists_the_inventory_once(inventory, tmp_path, monkeypatch):
    config = load({"STACKCTL_HOME": str(tmp_path / "home"), "STACKCTL_INVENTORY": str(inventory)})
    calls = []

    def fake_list(self):
        calls.append(1)
        return DATA

    monkeypatch.setattr(AnsibleRunner, "_list_inventory", fake_list)
    assert AnsibleRunner(config).inventory_hostvars("proxies") == {"aio": {"swift_ip": "127.0.0.1"}}
    again = AnsibleRunner(config)               # a new invocation: the disk cache answers
    assert again.inventory_hosts("proxies") == {"aio": "aio"}
    assert again.inventory_hostvars("nosuchgroup") == {}
    assert len(calls) == 1
    _touch_later(inventory, "all:\n  hosts:\n    aio:\n    other:\n")
    AnsibleRunner(config).inventory_hostvars("proxies")
    assert len(calls) == 2
