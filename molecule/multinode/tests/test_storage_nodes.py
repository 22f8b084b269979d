"""Every Swift storage node: servers and rsync on its swift_ip, the controller's rings."""

testinfra_hosts = ["ansible://storage_nodes"]


def test_storage_servers_and_rsync_listen_on_the_swift_ip(host):
    ip = host.ansible.get_variables()["swift_ip"]
    for port in (6200, 6201, 6202, 873):
        assert host.socket(f"tcp://{ip}:{port}").is_listening, port


def test_rings_are_the_controllers_builders(host, builder_rings):
    assert {ring: host.file(f"/etc/swift/{ring}.ring.gz").md5sum
            for ring in builder_rings} == builder_rings
