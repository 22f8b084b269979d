"""The image store: format detection, checksums, kernels and ramdisks, and that a failed
import leaves nothing behind."""

import functools
import hashlib
import http.server
import subprocess
import threading

import pytest


def store_files(home):
    images = home / "images"
    return sorted(p.name for p in images.iterdir()) if images.exists() else []


@pytest.fixture
def tenant(cli):
    assert cli("tenant", "create", "a").exit_code == 0
    return "a"


def imported(cli, *args, tenant="a"):
    result = cli("image", "import", *args, "-o", "json", tenant=tenant)
    assert result.exit_code == 0, result.stderr
    return result.json()


def test_qcow2_is_detected_and_stored_by_checksum(cli, tenant, qcow2, home):
    image = imported(cli, "img", str(qcow2))
    digest = hashlib.sha256(qcow2.read_bytes()).hexdigest()
    assert (image["disk_format"], image["sha256"], image["visibility"]) == (
        "qcow2", digest, "private")
    assert image["virtual_size"] == 64 * 1024**2
    assert store_files(home) == [digest]
    assert oct((home / "images" / digest).stat().st_mode & 0o777) == "0o600"


def test_raw_is_detected(cli, tenant, tmp_path):
    raw = tmp_path / "disk.raw"
    raw.write_bytes(b"\0" * 1024 * 1024)
    assert imported(cli, "raw", str(raw))["disk_format"] == "raw"


def test_declared_format_must_match_the_file(cli, tenant, qcow2, home):
    result = cli("image", "import", "img", str(qcow2), "--disk-format", "raw", tenant="a")
    assert result.exit_code == 2 and "declared raw, but qemu-img sees qcow2" in result.stderr
    result = cli("image", "import", "k", str(qcow2), "--disk-format", "aki", tenant="a")
    assert result.exit_code == 2 and "declared aki, but qemu-img sees qcow2" in result.stderr
    assert store_files(home) == []


def test_checksum_mismatch_leaves_nothing(cli, tenant, qcow2, home):
    result = cli("image", "import", "img", str(qcow2), "--sha256", "0" * 64, tenant="a")
    assert result.exit_code == 2 and "checksum mismatch" in result.stderr
    assert store_files(home) == []
    assert cli("image", "list", "-o", "json", tenant="a").json() == []


def test_matching_checksum_is_accepted_in_any_case(cli, tenant, qcow2):
    digest = hashlib.sha256(qcow2.read_bytes()).hexdigest()
    assert imported(cli, "img", str(qcow2), "--sha256", digest.upper())["sha256"] == digest


def test_qcow2_with_a_backing_file_is_refused(cli, tenant, qcow2, tmp_path, home):
    overlay = tmp_path / "overlay.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(qcow2), "-F", "qcow2",
                    str(overlay)], check=True)
    result = cli("image", "import", "img", str(overlay), tenant="a")
    assert result.exit_code == 2 and "backing file" in result.stderr
    assert store_files(home) == []


def test_unsupported_formats_are_refused(cli, tenant, tmp_path, home):
    vdi = tmp_path / "disk.vdi"
    subprocess.run(["qemu-img", "create", "-q", "-f", "vdi", str(vdi), "16M"], check=True)
    result = cli("image", "import", "img", str(vdi), tenant="a")
    assert result.exit_code == 2 and "unsupported image format 'vdi'" in result.stderr
    assert store_files(home) == []


def test_kernel_ramdisk_and_cmdline_make_a_direct_boot_image(cli, tenant, qcow2, tmp_path):
    (tmp_path / "vmlinuz").write_bytes(b"kernel" * 100)
    (tmp_path / "initrd").write_bytes(b"initrd" * 100)
    imported(cli, "k", str(tmp_path / "vmlinuz"), "--disk-format", "aki", "--public")
    imported(cli, "r", str(tmp_path / "initrd"), "--disk-format", "ari")
    image = imported(cli, "img", str(qcow2), "--kernel", "k", "--ramdisk", "r", "--cmdline",
                     "console=ttyS0 root=/dev/vda rw")
    assert (image["kernel"], image["ramdisk"], image["cmdline"]) == (
        "k", "r", "console=ttyS0 root=/dev/vda rw")
    result = cli("image", "delete", "k", tenant="a")
    assert result.exit_code == 4 and "kernel or ramdisk of: img" in result.stderr


@pytest.mark.parametrize("args,message", [
    (["--kernel", "img0"], "is a qcow2 image, not aki"),
    (["--kernel", "nope"], "image 'nope' does not exist"),
    (["--ramdisk", "r"], "--ramdisk needs --kernel"),
    (["--cmdline", "x"], "--cmdline needs --kernel"),
    (["--disk-format", "aki", "--cmdline", "x"], "belong to a disk image"),
    (["--sha256", "xyz"], "invalid sha256"),
])
def test_bad_boot_properties_are_refused_before_reading(cli, tenant, qcow2, home, args,
                                                        message):
    imported(cli, "img0", str(qcow2))
    before = store_files(home)
    result = cli("image", "import", "img", str(qcow2), *args, tenant="a")
    assert result.exit_code in (2, 3) and message in result.stderr
    assert store_files(home) == before


def test_names_are_unique_per_scope_and_private_shadows_public(cli, tenant, qcow2, tmp_path):
    imported(cli, "img", str(qcow2), "--public")
    raw = tmp_path / "r.raw"
    raw.write_bytes(b"\1" * 4096)
    private = imported(cli, "img", str(raw))
    assert cli("image", "show", "img", "-o", "json", tenant="a").json()["id"] == private["id"]
    assert cli("image", "import", "img", str(raw), tenant="a").exit_code == 4
    assert cli("tenant", "create", "b").exit_code == 0
    assert cli("image", "show", "img", "-o", "json", tenant="b").json()["disk_format"] == "qcow2"


def test_same_content_twice_shares_one_file_until_the_last_delete(cli, tenant, qcow2, home):
    imported(cli, "one", str(qcow2))
    imported(cli, "two", str(qcow2))
    assert len(store_files(home)) == 1
    assert cli("image", "delete", "one", tenant="a").exit_code == 0
    assert len(store_files(home)) == 1
    assert cli("image", "delete", "two", tenant="a").exit_code == 0
    assert store_files(home) == []


def test_image_in_use_cannot_be_deleted(tenant_with_vm, cli, home):
    result = cli("image", "delete", "img", tenant="a")
    assert result.exit_code == 4 and "in use by 1 VM(s)" in result.stderr
    assert len(store_files(home)) == 1


def test_import_from_a_url(cli, tenant, qcow2):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=qcow2.parent)
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/{qcow2.name}"
        assert imported(cli, "web", url)["disk_format"] == "qcow2"
        missing = cli("image", "import", "x", url + ".nope", tenant="a")
        assert missing.exit_code == 5 and "cannot download" in missing.stderr
    finally:
        server.shutdown()


def test_missing_file_and_bad_scheme(cli, tenant, tmp_path):
    result = cli("image", "import", "x", str(tmp_path / "nope"), tenant="a")
    assert result.exit_code == 3 and "no such file" in result.stderr
    result = cli("image", "import", "x", "ftp://127.0.0.1/x", tenant="a")
    assert result.exit_code == 2 and "unsupported URL scheme" in result.stderr


def test_public_import_needs_no_tenant_and_private_needs_one(cli, qcow2):
    result = cli("image", "import", "img", str(qcow2))
    assert result.exit_code == 2 and "--public" in result.stderr
    assert cli("image", "import", "img", str(qcow2), "--public").exit_code == 0
    assert [i["name"] for i in cli("image", "list", "-o", "json").json()] == ["img"]


def test_another_tenant_cannot_delete_a_private_image(tenant_with_vm, cli, home):
    assert cli("image", "delete", "img", tenant="b").exit_code == 3
    assert len(store_files(home)) == 1
