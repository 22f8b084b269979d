"""With object storage deployed, image bits live in Swift (service account) and hosts fetch
them by temp URL, checksum verified; deleting the image removes the object."""

import hashlib
import os
import urllib.error
import urllib.request

import pytest
from stackcore.swift_client import SwiftSession

from stackctl.app import App
from stackctl.config import load
from stackctl.runner import Task
from stackctl.workflows import image_store, storage_env


@pytest.fixture
def app(cli):
    return App(load(cli.env()))


@pytest.fixture
def raw_image(tmp_path):
    data = os.urandom(1024 * 1024)  # whole 512-byte sectors: a valid raw disk
    path = tmp_path / "disk.raw"
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def _get(url):
    with urllib.request.urlopen(url, timeout=30) as resp:
        return resp.read()


def _status(url):
    try:
        _get(url)
    except urllib.error.HTTPError as exc:
        return exc.code
    return 200


def test_image_goes_to_swift_and_a_host_fetches_it_by_temp_url(cli, app, raw_image, tmp_path):
    path, sha = raw_image
    if image_store.backend(app) != "swift":
        pytest.fail("object storage is not deployed: `make test` deploys it")
    image = cli.json("image", "import", "blob", str(path))
    assert image["path"] == f"swift:images/{sha}"
    assert not (cli.home / "images" / sha).exists()  # no copy left on the controller
    env = storage_env.load(app)
    session = SwiftSession(env.endpoint, env.service_user, env.service_key)
    assert session.head_object("stackctl", "images", sha) is not None

    url = image_store.host_source(app, image["path"])["url"]
    assert _get(url) == path.read_bytes()                       # no credential needed
    assert _status(url.replace("temp_url_sig=", "temp_url_sig=0")) == 401  # forged signature
    other = url.replace(sha, "0" * 64)
    assert _status(other) == 401                                # the URL opens one object only
    assert _status(f"{env.endpoint}/v1/AUTH_stackctl/images/{sha}") == 401  # not public

    cache = tmp_path / "cache"
    task = Task("stack_image_cache", {"sha256": sha, "format": "raw", "url": url,
                                      "cache_dir": str(cache), "state": "present"})
    result = app.runner.run_tasks("aio", [task])[0]
    assert result["changed"]
    cached = cache / sha
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == sha

    wrong = Task("stack_image_cache", {"sha256": "1" * 64, "format": "raw", "url": url,
                                       "cache_dir": str(cache), "state": "present"})
    with pytest.raises(Exception, match=r"(?i)checksum|sha256"):
        app.runner.run_tasks("aio", [wrong])
    assert not (cache / ("1" * 64)).exists()

    cli.run("image", "delete", "blob")
    assert session.head_object("stackctl", "images", sha) is None
