"""OpenSSH public keys: validate one ``authorized_keys``-style line and fingerprint it.

Only the plain form ``<type> <base64 blob> [comment]`` is accepted (no ``command=...``
options: the key ends up in a guest's authorized_keys through cloud-init). The fingerprint is
what ``ssh-keygen -l`` prints: ``SHA256:`` + unpadded base64 of the blob's SHA-256.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
from dataclasses import dataclass

from stackcore.errors import InvalidInput

# key type -> number of SSH wire-format fields after the type name
_KEY_FIELDS = {
    "ssh-ed25519": 1,
    "ssh-rsa": 2,
    "ecdsa-sha2-nistp256": 2,
    "ecdsa-sha2-nistp384": 2,
    "ecdsa-sha2-nistp521": 2,
    "sk-ssh-ed25519@openssh.com": 2,
    "sk-ecdsa-sha2-nistp256@openssh.com": 3,
}
_MIN_RSA_BITS = 2048
_COMMENT = re.compile(r"^[^\x00-\x1f\x7f]*$")


@dataclass(frozen=True)
class PublicKey:
    key_type: str
    blob: bytes
    comment: str

    @property
    def fingerprint(self) -> str:
        digest = hashlib.sha256(self.blob).digest()
        return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")

    @property
    def line(self) -> str:
        """The normalised authorized_keys line."""
        text = f"{self.key_type} {base64.b64encode(self.blob).decode()}"
        return f"{text} {self.comment}" if self.comment else text


def parse_public_key(text: str) -> PublicKey:
    """Parse and validate one OpenSSH public key; raise InvalidInput saying what is wrong."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if len(lines) != 1:
        raise InvalidInput("invalid public key: expected exactly one line "
                           "'<type> <base64> [comment]'")
    parts = lines[0].strip().split(None, 2)
    if len(parts) < 2:
        raise InvalidInput("invalid public key: expected '<type> <base64> [comment]'")
    key_type, encoded = parts[0], parts[1]
    comment = parts[2].strip() if len(parts) == 3 else ""
    if key_type not in _KEY_FIELDS:
        raise InvalidInput(f"invalid public key: unsupported key type {key_type[:40]!r} "
                           f"(use one of {', '.join(sorted(_KEY_FIELDS))})")
    try:
        blob = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("invalid public key: the key data is not valid base64") from None
    fields = _split_wire(blob)
    if not fields or fields[0] != key_type.encode():
        raise InvalidInput(f"invalid public key: the key data is not a {key_type} key")
    if len(fields) != 1 + _KEY_FIELDS[key_type]:
        raise InvalidInput(f"invalid public key: malformed {key_type} key data")
    _check_key_material(key_type, fields[1:])
    if not _COMMENT.match(comment) or len(comment) > 255:
        raise InvalidInput("invalid public key: the comment has control characters or is too long")
    return PublicKey(key_type, blob, comment)


def _split_wire(blob: bytes) -> list[bytes] | None:
    """Split SSH wire format (uint32 length + bytes, repeated); None when malformed."""
    fields, offset = [], 0
    while offset < len(blob):
        if offset + 4 > len(blob):
            return None
        (length,) = struct.unpack(">I", blob[offset:offset + 4])
        offset += 4
        if offset + length > len(blob):
            return None
        fields.append(blob[offset:offset + length])
        offset += length
    return fields


def _check_key_material(key_type: str, fields: list[bytes]) -> None:
    if key_type in ("ssh-ed25519", "sk-ssh-ed25519@openssh.com") and len(fields[0]) != 32:
        raise InvalidInput("invalid public key: an ed25519 key is 32 bytes")
    if key_type == "ssh-rsa":
        bits = int.from_bytes(fields[1], "big").bit_length()
        if bits < _MIN_RSA_BITS:
            raise InvalidInput(f"invalid public key: RSA key of {bits} bits, "
                               f"at least {_MIN_RSA_BITS} are required")
    if key_type.startswith("ecdsa-") and fields[0].decode(errors="replace") != key_type[11:]:
        raise InvalidInput(f"invalid public key: curve does not match {key_type}")
