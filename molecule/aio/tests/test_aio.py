"""What a user of the all-in-one cloud would check after a deploy (run by molecule verify)."""

import json

testinfra_hosts = ["local://"]


def test_libvirt_daemons_run_with_live_pid_files(host):
    for name in ("libvirtd", "virtlogd"):
        pid = host.file(f"/run/{name}.pid").content_string.strip()
        assert host.process.get(pid=int(pid)).comm == name


def test_libvirt_answers_on_its_socket(host):
    assert host.socket("unix:///run/libvirt/libvirt-sock").is_listening
    assert host.run("virsh -c qemu:///system version").rc == 0


def test_provider_network_is_active_persistent_and_autostarted(host):
    info = host.check_output("virsh -c qemu:///system net-info stack-provider")
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    assert {k: fields[k].strip() for k in ("Active", "Persistent", "Autostart")} == {
        "Active": "yes", "Persistent": "yes", "Autostart": "yes"}
    assert host.interface("stkbr0").addresses[0] == "192.168.150.1"


def test_state_directories_are_traversable_by_qemu(host):
    for path in ("/var/lib/stackctl", "/var/lib/stackctl/images", "/var/lib/stackctl/instances"):
        directory = host.file(path)
        assert directory.is_directory and directory.mode & 0o005 == 0o005


def test_kvm_decision_was_made_by_a_real_probe(host):
    probe = json.loads(host.file("/var/lib/stackctl/virt.json").content_string)
    assert isinstance(probe["kvm_usable"], bool) and probe["detail"]
