"""Every Swift proxy: proxy and memcached on its address, the controller's rings."""

testinfra_hosts = ["ansible://proxies"]


def test_proxy_and_memcached_listen_and_the_proxy_is_healthy(host, lab):
    variables = host.ansible.get_variables()
    ip = variables.get("swift_proxy_ip", variables["swift_ip"])
    for port in (8080, 11211):
        assert host.socket(f"tcp://{ip}:{port}").is_listening, port
    endpoint = lab.proxy_endpoint(variables["inventory_hostname"])
    assert host.check_output(f"curl -s {endpoint}/healthcheck") == "OK"


def test_rings_are_the_controllers_builders(host, builder_rings):
    assert {ring: host.file(f"/etc/swift/{ring}.ring.gz").md5sum
            for ring in builder_rings} == builder_rings
