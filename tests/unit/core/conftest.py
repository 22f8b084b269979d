"""Shared by the core tests that reconcile against libvirt's test driver (no daemon; a private
state per test)."""

import pytest

NODE_XML = """<node>
  <network>
    <name>testnet</name>
    <bridge name='tbr0'/>
    <ip address='192.168.9.1' netmask='255.255.255.0'/>
  </network>
</node>
"""


@pytest.fixture
def conn(tmp_path):
    libvirt = pytest.importorskip("libvirt")
    libvirt.registerErrorHandler(lambda *_a: None, None)
    node = tmp_path / "node.xml"
    node.write_text(NODE_XML)
    c = libvirt.open(f"test://{node}")
    yield c
    c.close()
