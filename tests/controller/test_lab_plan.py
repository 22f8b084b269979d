"""The lab's plan: addresses, names, private directories, sshd config, the inventory."""

from pathlib import Path

import pytest
from stackcore.errors import InvalidInput

from stackctl.lab import plan

ROOT = Path("/var/lib/stackctl-lab")


@pytest.mark.parametrize("count,cidr,names,addresses,gateway", [
    (1, plan.DEFAULT_CIDR, ["lab1"], ["10.250.0.11"], "10.250.0.1"),
    (3, plan.DEFAULT_CIDR, ["lab1", "lab2", "lab3"],
     ["10.250.0.11", "10.250.0.12", "10.250.0.13"], "10.250.0.1"),
    (2, "192.168.77.0/24", ["lab1", "lab2"], ["192.168.77.11", "192.168.77.12"],
     "192.168.77.1"),
    (16, "10.9.0.0/26", [f"lab{i}" for i in range(1, 17)],
     [f"10.9.0.{10 + i}" for i in range(1, 17)], "10.9.0.1"),
])
def test_addresses_and_names(count, cidr, names, addresses, gateway):
    lab = plan.plan(count, ROOT, cidr)
    assert [h.name for h in lab.hosts] == names
    assert [h.address for h in lab.hosts] == addresses
    assert lab.gateway == gateway
    assert all(len(h.veth) <= 15 and len(h.netns) <= 32 for h in lab.hosts)  # IFNAMSIZ


@pytest.mark.parametrize("count,cidr,message", [
    (0, plan.DEFAULT_CIDR, "--hosts must be between 1 and 16, not 0"),
    (17, plan.DEFAULT_CIDR, "--hosts must be between 1 and 16, not 17"),
    (2, "10.250.0.5/24", "invalid lab network"),
    (2, "nonsense", "invalid lab network"),
    (2, "8.8.8.0/24", "is not a private range"),
    (8, "10.1.0.0/28", "too small for 8 hosts"),
])
def test_bad_requests(count, cidr, message):
    with pytest.raises(InvalidInput, match=message):
        plan.plan(count, ROOT, cidr)


def test_private_directories_live_under_the_host():
    host = plan.plan(1, ROOT).hosts[0]
    assert host.private_source("/var/lib/libvirt") == ROOT / "hosts/lab1/private/var_lib_libvirt"
    assert "/opt/stackctl" not in plan.PRIVATE_DIRS  # Swift's venv is part of the shared image


def test_boot_script_drops_inherited_mounts_then_binds_and_becomes_sshd():
    lab = plan.plan(2, ROOT)
    script = plan.boot_script(lab, lab.hosts[1]).splitlines()
    assert script[:2] == ["set -e", "hostname lab2"]
    drops = [i for i, line in enumerate(script) if "umount -l" in line]
    tmpfs = script.index("mount -t tmpfs -o mode=0755 tmpfs /run")
    binds = [i for i, line in enumerate(script) if line.startswith("mount --bind")]
    assert len(drops) == len(plan.PRIVATE_DIRS) + 1 and max(drops) < tmpfs < min(binds)
    assert "mount --bind /var/lib/stackctl-lab/hosts/lab2/private/srv /srv" in script
    assert script[-1].startswith("exec /usr/sbin/sshd -D -f /var/lib/stackctl-lab/hosts/lab2/")


def test_sshd_is_key_only_on_the_lab_address():
    lab = plan.plan(1, ROOT)
    config = plan.sshd_config(lab, lab.hosts[0]).splitlines()
    for line in ("ListenAddress 10.250.0.11", "PasswordAuthentication no",
                 "KbdInteractiveAuthentication no", "PermitRootLogin prohibit-password",
                 f"AuthorizedKeysFile {ROOT}/authorized_keys"):
        assert line in config


@pytest.mark.parametrize("count,storage", [(1, ["lab1"]), (3, ["lab1", "lab2", "lab3"]),
                                           (6, ["lab1", "lab2", "lab3"])])
def test_inventory_groups(count, storage):
    lab = plan.plan(count, ROOT)
    inv = plan.inventory(lab, "/venv/bin/python3", Path("/p/inventories/lab/known_hosts"))
    groups = inv["all"]["children"]
    assert list(groups["controllers"]["hosts"]) == ["controller"]
    assert groups["controllers"]["hosts"]["controller"] == {"ansible_connection": "local"}
    assert list(groups["hypervisors"]["hosts"]) == [f"lab{i}" for i in range(1, count + 1)]
    assert list(groups["storage_nodes"]["hosts"]) == storage
    assert list(groups["proxies"]["hosts"]) == storage
    zones = [v["swift_zone"] for v in groups["storage_nodes"]["hosts"].values()]
    assert zones == list(range(1, len(storage) + 1))
    lab1 = groups["hypervisors"]["hosts"]["lab1"]
    assert lab1["ansible_host"] == "10.250.0.11"
    assert "StrictHostKeyChecking=yes" in lab1["ansible_ssh_common_args"]
    assert "UserKnownHostsFile=/p/inventories/lab/known_hosts" in lab1["ansible_ssh_common_args"]
    assert inv["all"]["vars"] == {"ansible_python_interpreter": "/venv/bin/python3"}


def test_known_hosts_lines():
    lab = plan.plan(2, ROOT)
    lines = plan.known_hosts_lines(lab, {"lab1": "ssh-ed25519 AAAA root@lab1\n",
                                         "lab2": "ssh-ed25519 BBBB root@lab2"})
    assert lines == ["10.250.0.11,lab1 ssh-ed25519 AAAA root@lab1",
                     "10.250.0.12,lab2 ssh-ed25519 BBBB root@lab2"]
