"""OpenSSH public keys: fingerprints match ssh-keygen, malformed keys are refused."""

import base64
import struct
import subprocess

import pytest
from stackcore.errors import InvalidInput

from stackctl.sshkeys import parse_public_key


def _keygen(tmp_path, kind, bits=None):
    key = tmp_path / f"id_{kind}"
    argv = ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "me@laptop", "-f", str(key)]
    if bits:
        argv += ["-b", str(bits)]
    subprocess.run(argv, check=True)
    line = key.with_suffix(".pub").read_text()
    fingerprint = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", f"{key}.pub"],
                                 capture_output=True, text=True, check=True).stdout.split()[1]
    return line, fingerprint


@pytest.mark.parametrize("kind,bits", [("ed25519", None), ("rsa", 2048), ("ecdsa", 256),
                                       ("ecdsa", 521)])
def test_fingerprint_matches_ssh_keygen(tmp_path, kind, bits):
    line, expected = _keygen(tmp_path, kind, bits)
    key = parse_public_key(line)
    assert key.fingerprint == expected
    assert key.comment == "me@laptop"
    assert key.line == line.strip()


def _wire(*fields: bytes) -> str:
    return base64.b64encode(b"".join(struct.pack(">I", len(f)) + f for f in fields)).decode()


@pytest.mark.parametrize("text,why", [
    ("", "exactly one line"),
    ("ssh-ed25519", "expected"),
    ("ssh-dss AAAAB3NzaC1kc3M= x", "unsupported key type"),
    ('command="rm -rf /" ssh-ed25519 AAAA x', "unsupported key type"),
    ("ssh-ed25519 not*base64", "not valid base64"),
    ("ssh-ed25519 " + _wire(b"ssh-rsa", b"\x01\x00\x01", b"\x00" * 256), "not a ssh-ed25519"),
    ("ssh-ed25519 " + _wire(b"ssh-ed25519", b"short"), "32 bytes"),
    ("ssh-ed25519 " + _wire(b"ssh-ed25519"), "malformed"),
    ("ssh-rsa " + _wire(b"ssh-rsa", b"\x01\x00\x01", b"\x7f" * 64), "at least 2048"),
    ("ssh-ed25519 " + base64.b64encode(b"\x00\x00\x00\xffabc").decode(), "not a ssh-ed25519"),
])
def test_malformed_keys_are_refused_with_the_reason(text, why):
    with pytest.raises(InvalidInput, match=why):
        parse_public_key(text)


def test_two_keys_in_one_file_are_refused(tmp_path):
    first, _ = _keygen(tmp_path, "ed25519")
    with pytest.raises(InvalidInput, match="exactly one line"):
        parse_public_key(first + first)


def test_comment_with_control_characters_is_refused(tmp_path):
    line, _ = _keygen(tmp_path, "ed25519")
    with pytest.raises(InvalidInput, match="control characters"):
        parse_public_key(line.strip() + "\x1b[31m")
