"""stackcore.snapshot with real qemu-img on tmp files: a flattened copy stands alone and holds
the overlay's data; reruns reuse it; removal; the upload against a local HTTP server."""

import hashlib
import http.server
import subprocess
import threading

import pytest
from stackcore.errors import BackendError, Conflict, InvalidInput
from stackcore.image_cache import qemu_img_info
from stackcore.snapshot import (
    convert_argv,
    make_snapshot,
    remove_snapshot,
    upload_headers,
    upload_snapshot,
)

NAME = "stk-6f1c2a4e-0d7a-4b7e-9a51-2f3c4d5e6f70"


def qemu_img(*args):
    subprocess.run(["qemu-img", *args], check=True, capture_output=True)


def qemu_io(path, command):
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", command, str(path)], check=True,
                   capture_output=True)


@pytest.fixture
def vm_disk(tmp_path):
    """A base image with one pattern and the VM's overlay on it with another."""
    base = tmp_path / "base.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", str(base), "64M")
    qemu_io(base, "write -P 0xaa 0 1M")
    instances = tmp_path / "instances"
    (instances / NAME).mkdir(parents=True)
    disk = instances / NAME / "disk.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", "-b", str(base), "-F", "qcow2", str(disk), "128M")
    qemu_io(disk, "write -P 0xbb 1M 1M")
    return instances, disk


def test_the_snapshot_is_standalone_and_holds_base_and_overlay(vm_disk, tmp_path):
    instances, disk = vm_disk
    dest = tmp_path / "snaps" / "s.qcow2"
    snap, changed = make_snapshot(str(instances), NAME, str(dest))
    assert changed
    info = qemu_img_info(str(dest))
    assert info["format"] == "qcow2" and "backing-filename" not in info
    assert snap.virtual_size == 128 * 2**20 and snap.size == dest.stat().st_size
    assert snap.sha256 == hashlib.sha256(dest.read_bytes()).hexdigest()
    # identical guest-visible content, though one file is flat and the other an overlay
    subprocess.run(["qemu-img", "compare", str(disk), str(dest)], check=True,
                   capture_output=True)
    assert not (tmp_path / "snaps" / "s.qcow2.part").exists()


def test_a_second_run_reuses_the_file(vm_disk, tmp_path):
    instances, _ = vm_disk
    dest = tmp_path / "s.qcow2"
    first, _ = make_snapshot(str(instances), NAME, str(dest))
    again, changed = make_snapshot(str(instances), NAME, str(dest))
    assert not changed and again == first


def test_check_mode_makes_nothing(vm_disk, tmp_path):
    instances, _ = vm_disk
    snap, changed = make_snapshot(str(instances), NAME, str(tmp_path / "s.qcow2"), check=True)
    assert (snap, changed) == (None, True)
    assert not (tmp_path / "s.qcow2").exists()


def test_a_missing_disk_and_a_relative_path_are_refused(tmp_path):
    with pytest.raises(InvalidInput):
        make_snapshot(str(tmp_path), NAME, "s.qcow2")
    with pytest.raises(Exception, match="does not exist"):
        make_snapshot(str(tmp_path), NAME, str(tmp_path / "s.qcow2"))


def test_convert_flattens_to_qcow2():
    assert convert_argv("/d", "/o") == ["qemu-img", "convert", "-q", "-O", "qcow2", "/d", "/o"]


def test_remove_takes_the_file_and_a_partial_one(vm_disk, tmp_path):
    instances, _ = vm_disk
    dest = tmp_path / "s.qcow2"
    dest.write_bytes(b"x")
    (tmp_path / "s.qcow2.part").write_bytes(b"y")
    assert remove_snapshot(str(instances), NAME, str(dest)) is True
    assert not dest.exists() and not (tmp_path / "s.qcow2.part").exists()
    assert remove_snapshot(str(instances), NAME, str(dest)) is False


class _Store(http.server.BaseHTTPRequestHandler):
    """A PUT target that answers like Swift: ETag = md5 of the body (or a wrong one)."""

    received = {}
    wrong_etag = False

    def do_PUT(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received = {"body": body, "headers": dict(self.headers)}
        self.send_response(201)
        etag = "0" * 32 if self.wrong_etag else hashlib.md5(body).hexdigest()
        self.send_header("ETag", etag)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args):
        pass


@pytest.fixture
def store():
    server = http.server.HTTPServer(("127.0.0.1", 0), _Store)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/v1/AUTH_stackctl/images/x"
    server.shutdown()
    _Store.wrong_etag = False


def test_upload_sends_the_file_with_its_checksums(vm_disk, tmp_path, store):
    instances, _ = vm_disk
    snap, _ = make_snapshot(str(instances), NAME, str(tmp_path / "s.qcow2"))
    etag = upload_snapshot(snap, store, snap.sha256)
    assert etag == snap.md5
    assert _Store.received["body"] == (tmp_path / "s.qcow2").read_bytes()
    assert _Store.received["headers"]["X-Object-Meta-Sha256"] == snap.sha256
    assert upload_headers(1, "a", "b")["ETag"] == "b"


def test_upload_refuses_another_file_and_a_wrong_etag(vm_disk, tmp_path, store):
    instances, _ = vm_disk
    snap, _ = make_snapshot(str(instances), NAME, str(tmp_path / "s.qcow2"))
    with pytest.raises(Conflict, match="expected"):
        upload_snapshot(snap, store, "f" * 64)
    _Store.wrong_etag = True
    with pytest.raises(BackendError, match="ETag"):
        upload_snapshot(snap, store, snap.sha256)
