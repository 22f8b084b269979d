"""Mount tables as text: /proc/self/mountinfo and blkid output parsed, fstab lines edited.

Pure functions (captured text in, data or text out), shared by ``stack_storage_device`` and,
later, anything else that mounts (Swift's devices)."""

import os
import re
from dataclasses import dataclass

# Options that never show in mountinfo (userspace-only, or kernel defaults it does not print);
# without this list a wish for one of them would look unmet on every run.
_HIDDEN_OPTIONS = {"defaults", "auto", "noauto", "nofail", "user", "users", "nouser", "_netdev",
                   "async", "exec", "suid", "dev", "atime", "diratime", "loop"}


@dataclass(frozen=True)
class Mount:
    """One line of /proc/self/mountinfo (escapes decoded)."""

    device: str  # "major:minor"
    mount_point: str
    options: tuple  # per-mount options (rw, noatime, ...)
    fs_type: str
    source: str
    super_options: tuple


# ---------------------------------------------------------------------------------------------
# Parsers (pure: captured text in, data out)


def _unescape(text):
    """mountinfo and fstab escape space, tab, newline and backslash as octal (\\040)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def _escape(text):
    return "".join(f"\\{ord(c):03o}" if c in " \t\n\\" else c for c in text)


def parse_mountinfo(text):
    """Mounts listed in /proc/self/mountinfo, in order (a later mount on a path is on top)."""
    mounts = []
    for line in text.splitlines():
        fields_ = line.split()
        if "-" not in fields_[6:]:
            continue
        sep = fields_.index("-", 6)
        mounts.append(Mount(
            device=fields_[2],
            mount_point=_unescape(fields_[4]),
            options=tuple(fields_[5].split(",")),
            fs_type=fields_[sep + 1],
            source=_unescape(fields_[sep + 2]),
            super_options=tuple(fields_[sep + 3].split(",")) if len(fields_) > sep + 3 else (),
        ))
    return mounts


def parse_blkid(text):
    """``blkid -o export`` output as a dict (TYPE, UUID, PTTYPE, ...)."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


def fstab_line(source, mount_point, fs_type, options):
    """One fstab line (paths escaped; dump and fsck pass 0: XFS is not fsck'd at boot)."""
    return f"{_escape(source)} {_escape(mount_point)} {fs_type} {','.join(options)} 0 0"


def fstab_entry(text, mount_point):
    """The (first) fstab line that mounts on ``mount_point``, or None."""
    for line in text.splitlines():
        if _fstab_mount_point(line) == mount_point:
            return line
    return None


def set_fstab_entry(text, mount_point, line):
    """``text`` with exactly one line for ``mount_point``: ``line`` (in place of the first one
    found, else appended), or none when ``line`` is None. Other lines are kept as they are."""
    out, placed = [], False
    for old in text.splitlines():
        if _fstab_mount_point(old) != mount_point:
            out.append(old)
        elif line is not None and not placed:
            out.append(line)
            placed = True
    if line is not None and not placed:
        out.append(line)
    return "".join(f"{item}\n" for item in out)


def _fstab_mount_point(line):
    parts = line.split()
    if len(parts) < 2 or parts[0].startswith("#"):
        return None
    return os.path.normpath(_unescape(parts[1]))


def same_fstab_line(a, b):
    """Equal up to whitespace (another tool may align columns)."""
    return a is not None and b is not None and a.split() == b.split()


def missing_options(mount, wanted):
    """The options of ``wanted`` that the mount does not show."""
    shown = set(mount.options) | set(mount.super_options)
    return [o for o in wanted
            if o not in shown and o not in _HIDDEN_OPTIONS and not o.startswith("x-")]
