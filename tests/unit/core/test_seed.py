"""stackcore.seed: the NoCloud seed ISO, read back as the guest would see it."""

import email
import io
import shutil
import subprocess
import time

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from stackcore.errors import InvalidInput
from stackcore.seed import build_seed_iso, read_seed_files, yaml_scalar

pycdlib = pytest.importorskip("pycdlib")

KEYS = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE3vUkOkJz4c9 alice@laptop",
        "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 bob"]
VM_UUID = "6f1c2a4e-0d7a-4b7e-9a51-2f3c4d5e6f70"


def test_volume_label_is_cidata():
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(build_seed_iso(VM_UUID, "web-1", KEYS)))
    try:
        assert iso.pvd.volume_identifier.decode().strip() == "cidata"
    finally:
        iso.close()


def test_label_sits_where_a_guest_without_blkid_reads_it():
    data = build_seed_iso(VM_UUID, "web-1", KEYS)
    assert data[32769:32774] == b"CD001"
    assert data[32808:32840].decode().strip() == "cidata"


def test_files_are_named_meta_data_and_user_data_in_rock_ridge_and_joliet():
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(build_seed_iso(VM_UUID, "web-1", KEYS)))
    try:
        rr = sorted(c.rock_ridge.name().decode() for c in iso.list_children(rr_path="/")
                    if c.is_file())
        joliet = sorted(c.file_identifier().decode("utf-16_be") for c in
                        iso.list_children(joliet_path="/") if c.is_file())
    finally:
        iso.close()
    assert rr == ["meta-data", "user-data"]
    assert [name.split(";")[0] for name in joliet] == ["meta-data", "user-data"]


@pytest.mark.skipif(not shutil.which("isoinfo"), reason="isoinfo (genisoimage) not installed")
def test_isoinfo_lists_the_rock_ridge_names(tmp_path):
    path = tmp_path / "seed.iso"
    path.write_bytes(build_seed_iso(VM_UUID, "web-1", KEYS))
    out = subprocess.run(["isoinfo", "-R", "-l", "-i", str(path)], capture_output=True,
                         text=True, check=True).stdout
    assert "meta-data" in out and "user-data" in out


def test_meta_data_is_yaml_with_instance_id_hostname_and_keys():
    meta = yaml.safe_load(read_seed_files(build_seed_iso(VM_UUID, "web-1", KEYS))["meta-data"])
    assert meta == {"instance-id": VM_UUID, "local-hostname": "web-1", "public-keys": KEYS}


def test_user_data_is_a_cloud_config_with_hostname_and_keys():
    text = read_seed_files(build_seed_iso(VM_UUID, "web-1", KEYS))["user-data"]
    assert text.startswith("#cloud-config\n")
    assert yaml.safe_load(text) == {"hostname": "web-1", "ssh_authorized_keys": KEYS}


def test_keys_are_plain_lines_a_shell_parser_can_grep():
    text = read_seed_files(build_seed_iso(VM_UUID, "web-1", KEYS))["user-data"]
    assert f"  - {KEYS[0]}\n" in text


def test_no_keys_gives_empty_lists():
    files = read_seed_files(build_seed_iso(VM_UUID, "web-1", []))
    assert yaml.safe_load(files["meta-data"])["public-keys"] == []
    assert yaml.safe_load(files["user-data"])["ssh_authorized_keys"] == []


def _parts(user_data_text):
    msg = email.message_from_string(user_data_text)
    assert msg.is_multipart()
    return [(p.get_content_type(), p.get_payload(decode=True).decode(), p)
            for p in msg.get_payload()]


def test_a_user_script_becomes_a_second_mime_part():
    script = "#!/bin/sh\necho hello > /tmp/hello\n"
    parts = _parts(read_seed_files(build_seed_iso(VM_UUID, "web-1", KEYS, script))["user-data"])
    assert [p[0] for p in parts] == ["text/cloud-config", "text/x-shellscript"]
    assert yaml.safe_load(parts[0][1])["ssh_authorized_keys"] == KEYS
    assert parts[1][1] == script


def test_a_user_cloud_config_is_merged_with_lists_appended():
    user = "#cloud-config\npackages: [htop]\nssh_authorized_keys: [ssh-ed25519 AAAAC3x extra]\n"
    parts = _parts(read_seed_files(build_seed_iso(VM_UUID, "web-1", KEYS, user))["user-data"])
    assert [p[0] for p in parts] == ["text/cloud-config", "text/cloud-config"]
    assert parts[1][1] == user
    assert "list(append)" in parts[1][2]["Merge-Type"]


def test_non_ascii_user_data_survives():
    script = "#!/bin/sh\necho 'héllo wörld'\n"
    parts = _parts(read_seed_files(build_seed_iso(VM_UUID, "web-1", KEYS, script))["user-data"])
    assert parts[1][1] == script


def test_other_user_data_is_refused():
    with pytest.raises(InvalidInput, match="#!"):
        build_seed_iso(VM_UUID, "web-1", KEYS, "just some text")


def test_a_multi_line_key_is_refused():
    with pytest.raises(InvalidInput):
        build_seed_iso(VM_UUID, "web-1", ["ssh-ed25519 AAAA\nhostname: evil"])


def test_same_inputs_give_the_same_bytes_whatever_the_clock_and_zone(monkeypatch):
    first = build_seed_iso(VM_UUID, "web-1", KEYS, "#!/bin/sh\ntrue\n")
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    try:
        monkeypatch.setattr(time, "time", lambda: 2_000_000_000.0)
        second = build_seed_iso(VM_UUID, "web-1", KEYS, "#!/bin/sh\ntrue\n")
    finally:
        monkeypatch.undo()
        time.tzset()
    assert first == second


def test_different_inputs_give_different_bytes():
    base = build_seed_iso(VM_UUID, "web-1", KEYS)
    assert build_seed_iso(VM_UUID, "web-2", KEYS) != base
    assert build_seed_iso(VM_UUID, "web-1", KEYS[:1]) != base
    assert build_seed_iso(VM_UUID, "web-1", KEYS, "#!/bin/sh\n") != base


def test_pycdlib_gets_its_clock_back():
    build_seed_iso(VM_UUID, "web-1", KEYS)
    import pycdlib.headervd
    import pycdlib.pycdlib
    assert pycdlib.pycdlib.time is time
    assert pycdlib.headervd.time is time


def test_building_is_fast():
    build_seed_iso(VM_UUID, "web-1", KEYS)  # imports
    start = time.perf_counter()
    for _ in range(10):
        build_seed_iso(VM_UUID, "web-1", KEYS)
    assert (time.perf_counter() - start) / 10 < 0.05


@pytest.mark.parametrize("value", [
    "web-1", "123", "true", "no", "null", "~", "1e3", "0x1f", "a: b", "a #b", "-x", "[x]",
    "{a}", "x:", "' q", '"q"', "", " lead", "trail ", "multi\nline", "ünï", "*ref", "&anchor",
    "!tag", "%dir", "@at", "`tick", "|", ">",
])
def test_yaml_scalar_round_trips(value):
    assert yaml.safe_load(f"k: {yaml_scalar(value)}\n")["k"] == value


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30))
def test_yaml_scalar_round_trips_any_text(value):
    loaded = yaml.safe_load(f"k: {yaml_scalar(value)}\n")["k"]
    assert loaded == value


def test_plain_scalars_stay_unquoted():
    assert yaml_scalar("web-1") == "web-1"
    assert yaml_scalar(KEYS[0]) == KEYS[0]
    assert yaml_scalar(VM_UUID) == VM_UUID

