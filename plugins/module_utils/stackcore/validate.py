"""Input validation shared by modules and controller: run before anything touches a host."""

import re

from .errors import InvalidInput

_HOSTNAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

MAX_VCPUS = 64
MAX_RAM_MB = 256 * 1024
MAX_DISK_GB = 4096


def vm_name(value):
    """A VM name becomes the guest's hostname: RFC 1123 label, lower case, 1-63 chars."""
    if not isinstance(value, str) or not _HOSTNAME.match(value):
        raise InvalidInput(
            f"invalid VM name {value!r}: use 1-63 lower-case letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return value


def resource_name(value, kind="name"):
    """Tenant, keypair, flavor and image names: letters, digits, '.', '_', '-'; no '..'."""
    if not isinstance(value, str) or not _NAME.match(value) or ".." in value:
        raise InvalidInput(
            f"invalid {kind} {value!r}: use 1-63 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit, without '..'"
        )
    return value


def sha256(value):
    if not isinstance(value, str) or not _SHA256.match(value):
        raise InvalidInput(f"invalid sha256 {value!r}: expected 64 lower-case hex digits")
    return value


def bounded_int(value, kind, low, high):
    """An integer in [low, high]; ``kind`` names it in the error."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"invalid {kind} {value!r}: expected a whole number") from None
    if isinstance(value, bool) or (number != value and not isinstance(value, str)):
        raise InvalidInput(f"invalid {kind} {value!r}: expected a whole number")
    if not low <= number <= high:
        raise InvalidInput(f"invalid {kind} {number}: must be between {low} and {high}")
    return number


def vcpus(value):
    return bounded_int(value, "vCPU count", 1, MAX_VCPUS)


def ram_mb(value):
    return bounded_int(value, "RAM (MiB)", 64, MAX_RAM_MB)


def disk_gb(value):
    return bounded_int(value, "disk size (GiB)", 1, MAX_DISK_GB)
