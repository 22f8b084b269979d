"""Every lab host as a hypervisor: its own sshd, its own libvirtd, the provider network."""

testinfra_hosts = ["ansible://hypervisors"]


def test_sshd_answers_on_the_hosts_address_as_that_host(host):
    variables = host.ansible.get_variables()
    assert host.check_output("hostname") == variables["inventory_hostname"]
    assert host.socket(f"tcp://{variables['ansible_host']}:22").is_listening


def test_libvirt_daemons_are_the_hosts_own_and_answer_on_its_socket(host):
    own_netns = host.check_output("readlink /proc/self/ns/net")
    for name in ("libvirtd", "virtlogd"):
        pid = int(host.file(f"/run/{name}.pid").content_string.strip())
        assert host.process.get(pid=pid).comm == name
        # Not the machine's (all-in-one) daemon: it runs in this host's network namespace.
        assert host.check_output(f"readlink /proc/{pid}/ns/net") == own_netns, name
    assert host.socket("unix:///run/libvirt/libvirt-sock").is_listening
    assert host.run("virsh -c qemu:///system version").rc == 0


def test_provider_network_is_active_persistent_and_autostarted(host):
    info = host.check_output("virsh -c qemu:///system net-info stack-provider")
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    assert {k: fields[k].strip() for k in ("Active", "Persistent", "Autostart")} == {
        "Active": "yes", "Persistent": "yes", "Autostart": "yes"}
    assert host.interface("stkbr0").addresses[0] == "192.168.150.1"
