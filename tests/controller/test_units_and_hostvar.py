"""stackctl.units.parse_size (sizes as users type them) and stackctl.runner.HostVar with a
suffix (a path under a host's directory variable), by tables."""

import pytest
from stackcore.errors import InvalidInput

from stackctl.runner import HostVar
from stackctl.units import parse_size

K, M, G, T = 1024, 1024**2, 1024**3, 1024**4


@pytest.mark.parametrize("text, expected", [
    ("0", 0),
    ("1048576", M),
    (1048576, M),
    ("512K", 512 * K),
    ("10M", 10 * M),
    ("2G", 2 * G),
    ("1T", T),
    ("2g", 2 * G),
    ("10KiB", 10 * K),
    ("10KB", 10 * K),
    ("10kb", 10 * K),
    ("3MiB", 3 * M),
    ("5GB", 5 * G),
    ("1TiB", T),
    ("100B", 100),
    (" 10 G ", 10 * G),
    ("007M", 7 * M),
    ("10Gi", 10 * G),  # as Kubernetes writes it
])
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", [
    "", " ", "G", "-1", "1.5G", "10P", "10GG", "10 GiB extra", "ten", "0x10", "1e3",
    "1_000", None, 1.5, True,
])
def test_parse_size_refuses(text):
    with pytest.raises(InvalidInput) as err:
        parse_size(text, "quota")
    message = str(err.value)
    assert message.startswith(f"invalid quota {text!r}: expected bytes")
    assert "\n" not in message and "10G" in message


def test_parse_size_names_what_it_parsed():
    with pytest.raises(InvalidInput, match=r"^invalid size 'x':"):
        parse_size("x")


def test_parse_size_refuses_a_lone_ib():
    with pytest.raises(InvalidInput):
        parse_size("10iB")


# --- HostVar -------------------------------------------------------------------------------------


@pytest.mark.parametrize("var, expected", [
    (HostVar("swift_conf_dir", "/etc/swift"), "{{ swift_conf_dir | default('/etc/swift') }}"),
    (HostVar("swift_conf_dir", "/etc/swift", suffix="/object.ring.gz"),
     "{{ swift_conf_dir | default('/etc/swift') }}/object.ring.gz"),
    (HostVar("swift_devices_root", "/srv/node", suffix="/d1"),
     "{{ swift_devices_root | default('/srv/node') }}/d1"),
    (HostVar("swift_conf_dir", "/etc/swift", suffix="/stackauth/tenants.json"),
     "{{ swift_conf_dir | default('/etc/swift') }}/stackauth/tenants.json"),
    (HostVar("virt", ""), "{{ virt | default('') }}"),
    (HostVar("d", "x", suffix=".img"), "{{ d | default('x') }}.img"),
])
def test_host_var_jinja(var, expected):
    assert var.jinja() == expected


@pytest.mark.parametrize("name, default, suffix", [
    ("swift_conf_dir", "/etc/swift", "/{{ evil }}"),
    ("swift_conf_dir", "/etc/swift", "/a b"),
    ("swift_conf_dir", "/etc/swift", "/x'"),
    ("swift_conf_dir", "/etc/swift", "/x\n"),
    ("swift_conf_dir", "/etc/swift", "/{% if x %}"),
    ("swift_conf_dir", "/etc/sw'ift", ""),
    ("swift_conf_dir", "/etc/swift }}{{ x", ""),
    ("swift_conf_dir", "a b", "/x"),
    ("swift-conf-dir", "/etc/swift", "/x"),
    ("", "/etc/swift", ""),
])
def test_host_var_refuses_bad_default_or_suffix(name, default, suffix):
    with pytest.raises(InvalidInput, match="bad host variable reference") as err:
        HostVar(name, default, suffix=suffix)
    assert "\n" not in str(err.value)


def test_host_var_is_frozen():
    var = HostVar("swift_conf_dir", "/etc/swift", suffix="/x")
    with pytest.raises(AttributeError):
        var.suffix = "/{{ y }}"
