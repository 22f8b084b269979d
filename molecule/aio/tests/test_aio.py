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


SWIFT_DAEMONS = [f"{kind}-{role}" for kind, roles in (
    ("account", ("server", "replicator", "auditor", "reaper")),
    ("container", ("server", "replicator", "auditor", "updater")),
    ("object", ("server", "replicator", "auditor", "updater"))) for role in roles]


def test_swift_daemons_run_as_swift_from_their_pid_files(host):
    for name in [*SWIFT_DAEMONS, "proxy-server"]:
        pidfile = host.file(f"/run/swift/{name}.pid")
        assert pidfile.exists, name
        pid = pidfile.content_string.strip()
        assert host.file(f"/proc/{pid}").exists, name
        # The parent stays root to hold the port; servers fork their workers as swift, the
        # background daemons drop to swift themselves.
        users = host.check_output(f"ps -o user= --pid {pid} --ppid {pid}").split()
        assert "swift" in users, name


def test_storage_and_proxy_listen(host):
    for port in (6200, 6201, 6202, 8080, 11211, 873):
        assert host.socket(f"tcp://127.0.0.1:{port}").is_listening, port
    assert host.check_output("curl -s http://127.0.0.1:8080/healthcheck") == "OK"


def test_rings_on_the_node_are_the_builders(host):
    for ring in ("account", "container", "object"):
        built = host.file(f"/etc/stackctl/swift/aio/{ring}.ring.gz").sha256sum
        assert host.file(f"/etc/swift/{ring}.ring.gz").sha256sum == built


def test_device_is_xfs_mounted_noatime_and_swift_owned(host):
    mount = host.mount_point("/srv/node/d1")
    assert mount.exists and mount.filesystem == "xfs" and "noatime" in mount.options
    assert host.file("/srv/node/d1").user == "swift"


def test_secrets_are_private(host):
    assert host.file("/etc/stackctl/secrets/swift.json").mode == 0o600
    conf = host.file("/etc/swift/swift.conf")
    assert conf.mode == 0o640 and conf.user == "root" and conf.group == "swift"
    assert host.file("/etc/swift/stackauth").mode == 0o750
