"""stackcore.migrate: request checks, the target URI, and the rsync/ssh command lines."""

import shlex

import pytest
from stackcore.errors import InvalidInput
from stackcore.migrate import MigrateRequest, rsync_argv, ssh_command, target_uri, uri_host


@pytest.mark.parametrize(("target", "expected"), [
    ("10.250.0.12", "10.250.0.12"),
    ("lab2", "lab2"),
    ("hv-3.example.org", "hv-3.example.org"),
    ("fd00::12", "[fd00::12]"),
])
def test_uri_host(target, expected):
    assert uri_host(target) == expected


@pytest.mark.parametrize("target", ["", None, "a b", "host;rm -rf /", "-oProxyCommand=x",
                                    "x" * 300])
def test_uri_host_refuses(target):
    with pytest.raises(InvalidInput):
        uri_host(target)


@pytest.mark.parametrize(("changes", "words"), [
    ({"mode": "teleport"}, "invalid mode"),
    ({"target": None}, "target is required"),
    ({"target_user": "root; id"}, "invalid target_user"),
    ({"timeout": 0}, "timeout must be positive"),
    ({"bandwidth_mib": -1}, "bandwidth_mib"),
    ({"name": "../etc"}, "domain name"),
])
def test_request_validation(changes, words):
    base = {"name": "stk-1", "mode": "live", "target": "10.0.0.2"}
    with pytest.raises(InvalidInput, match=words):
        MigrateRequest(**{**base, **changes}).validate()


def test_settle_needs_no_target():
    MigrateRequest(name="stk-1", mode="settle").validate()


def test_target_uri_is_key_only_and_pinned():
    uri = target_uri(MigrateRequest(name="stk-1", mode="live", target="10.0.0.2"))
    assert uri.startswith("qemu+libssh://root@10.0.0.2/system?")
    assert "keyfile=/etc/stackctl/migration/id_ed25519" in uri
    assert "known_hosts=/etc/stackctl/migration/known_hosts" in uri
    assert "known_hosts_verify=normal" in uri and "sshauth=privkey" in uri


def test_rsync_argv_copies_sparse_into_the_instance_dir_over_pinned_ssh():
    req = MigrateRequest(name="stk-1", mode="copy", target="fd00::2")
    argv = rsync_argv(req, ["/i/stk-1/disk.qcow2"], "/i/stk-1")
    assert argv[0] == "rsync" and "--sparse" in argv and "--times" in argv
    assert argv[-2:] == ["/i/stk-1/disk.qcow2", "[fd00::2]:/i/stk-1/"]
    rsh = shlex.split(argv[argv.index("-e") + 1])
    assert rsh == ssh_command(req)
    assert "StrictHostKeyChecking=yes" in rsh and "BatchMode=yes" in rsh
