"""stack_image_cache run by Ansible: check, apply, check again, apply again; failures clean."""

import hashlib
import stat
import subprocess

import pytest

pytestmark = pytest.mark.integration


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "src" / "disk.qcow2"
    path.parent.mkdir()
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "32M"], check=True)
    return path


@pytest.fixture
def cache_dir(tmp_path):
    return tmp_path / "images"


def test_documentation_matches_argument_spec(documentation_mismatches):
    assert documentation_mismatches("stack_image_cache") == []


def test_check_apply_check_apply(run_module, image, cache_dir):
    digest = hashlib.sha256(image.read_bytes()).hexdigest()
    args = {"sha256": digest, "format": "qcow2", "src": str(image), "cache_dir": str(cache_dir)}
    cached = cache_dir / digest

    checked = run_module("stack_image_cache", args, check=True, diff=True)
    assert checked["_status"] == "ok" and checked["changed"] is True
    assert checked["action"] == "copy" and not cache_dir.exists()
    assert checked["diff"] == {"before": {"path": str(cached), "state": "absent"},
                               "after": {"path": str(cached), "state": "present"}}

    applied = run_module("stack_image_cache", args, diff=True)
    assert applied["changed"] is True
    assert applied["path"] == str(cached) and applied["size"] == image.stat().st_size
    assert applied["sha256"] == digest and applied["format"] == "qcow2"
    assert cached.read_bytes() == image.read_bytes()
    assert stat.S_IMODE(cached.stat().st_mode) == 0o644
    assert stat.S_IMODE(cache_dir.stat().st_mode) == 0o755

    assert run_module("stack_image_cache", args, check=True)["changed"] is False
    again = run_module("stack_image_cache", args, diff=True)
    assert again["changed"] is False and again["action"] == "none"
    assert again["diff"]["before"] == again["diff"]["after"]
    assert sorted(p.name for p in cache_dir.iterdir()) == [digest]


def test_fetch_by_url_then_remove(run_module, image, cache_dir):
    digest = hashlib.sha256(image.read_bytes()).hexdigest()
    args = {"sha256": digest, "format": "qcow2", "url": image.as_uri(),
            "cache_dir": str(cache_dir), "verify": True}
    assert run_module("stack_image_cache", args)["action"] == "fetch"
    assert run_module("stack_image_cache", args)["changed"] is False

    absent = {"sha256": digest, "cache_dir": str(cache_dir), "state": "absent"}
    checked = run_module("stack_image_cache", absent, check=True, diff=True)
    assert checked["changed"] is True and (cache_dir / digest).exists()
    assert run_module("stack_image_cache", absent)["changed"] is True
    assert list(cache_dir.iterdir()) == []
    assert run_module("stack_image_cache", absent)["changed"] is False


def test_checksum_mismatch_fails_cleanly(run_module, image, cache_dir):
    args = {"sha256": "0" * 64, "format": "qcow2", "src": str(image), "cache_dir": str(cache_dir)}
    result = run_module("stack_image_cache", args)
    assert result["_status"] == "failed"
    assert "checksum mismatch" in result["msg"] and "Traceback" not in result["msg"]
    assert list(cache_dir.iterdir()) == []


def test_format_mismatch_fails_cleanly(run_module, image, cache_dir):
    digest = hashlib.sha256(image.read_bytes()).hexdigest()
    args = {"sha256": digest, "format": "raw", "src": str(image), "cache_dir": str(cache_dir)}
    result = run_module("stack_image_cache", args)
    assert result["_status"] == "failed" and "format mismatch" in result["msg"]
    assert list(cache_dir.iterdir()) == []


@pytest.mark.parametrize(
    "args, message",
    [
        ({"sha256": "a" * 64, "format": "raw"}, "src, url"),
        ({"sha256": "a" * 64, "src": "/x"}, "format"),
        ({"sha256": "a" * 64, "format": "raw", "src": "/x", "url": "file:///x"},
         "mutually exclusive"),
        ({"sha256": "not-a-sha", "format": "raw", "src": "/x"}, "invalid sha256"),
    ],
)
def test_bad_parameters_are_refused(run_module, cache_dir, args, message):
    result = run_module("stack_image_cache", dict(args, cache_dir=str(cache_dir)))
    assert result["_status"] == "failed" and message in result["msg"]
    assert not cache_dir.exists()
