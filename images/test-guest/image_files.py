"""Turn staged trees into the image's files, reproducibly: a gzip'd cpio
(newc) initramfs written here, an ext4 root filesystem from `mke2fs -d`
converted to qcow2. Owners are always root and times are fixed, so the same
inputs give the same bytes whoever runs the build."""

from __future__ import annotations

import gzip
import os
import stat
import subprocess
import uuid
from pathlib import Path

from apt_packages import BuildError, run


def _cpio_entry(name: str, mode: int, data: bytes, ino: int, mtime: int,
                rdev: tuple[int, int] = (0, 0)) -> bytes:
    encoded = name.encode() + b"\0"
    fields = (ino, mode, 0, 0, 2 if stat.S_ISDIR(mode) else 1, mtime, len(data),
              0, 0, rdev[0], rdev[1], len(encoded), 0)
    header = b"070701" + b"".join(b"%08X" % value for value in fields)
    head = header + encoded
    head += b"\0" * (-len(head) % 4)
    return head + data + b"\0" * (-len(data) % 4)


def write_initramfs(root: Path, dest: Path, mtime: int,
                    char_devices: dict[str, tuple[int, int]]) -> None:
    """Pack root into dest as a gzip'd newc cpio archive, entries sorted,
    owned by root, dated mtime; char_devices adds nodes such as
    dev/console (which an unprivileged build cannot create on disk)."""
    entries = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            entries.append((rel, stat.S_IFLNK | 0o777, os.readlink(path).encode(), (0, 0)))
        elif stat.S_ISDIR(info.st_mode):
            entries.append((rel, stat.S_IFDIR | stat.S_IMODE(info.st_mode), b"", (0, 0)))
        elif stat.S_ISREG(info.st_mode):
            entries.append((rel, stat.S_IFREG | stat.S_IMODE(info.st_mode),
                            path.read_bytes(), (0, 0)))
    for rel, rdev in char_devices.items():
        entries.append((rel, stat.S_IFCHR | 0o600, b"", rdev))
    entries.sort(key=lambda entry: entry[0])
    archive = bytearray()
    for ino, (rel, mode, data, rdev) in enumerate(entries, start=1):
        archive += _cpio_entry(rel, mode, data, ino, mtime, rdev)
    archive += _cpio_entry("TRAILER!!!", 0, b"", 0, 0)
    with open(dest, "wb") as raw, gzip.GzipFile(
            filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as packed:
        packed.write(bytes(archive))


def set_times(root: Path, when: int) -> None:
    """Give every path in root the same atime and mtime."""
    for path in [root, *root.rglob("*")]:
        os.utime(path, (when, when), follow_symlinks=False)


def make_ext4(root: Path, raw: Path, size: str, label: str, seed: str, when: int) -> None:
    """An ext4 filesystem image holding root, built without mounting. The
    UUID and hash seed derive from `seed`; debugfs then sets every inode's
    owner to root and its ctime (which mke2fs copies from the staging files
    and nobody can set) to `when`."""
    fs_uuid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"stackctl-test-guest:{seed}"))
    env = dict(os.environ, E2FSPROGS_FAKE_TIME=str(when))
    argv = [
        "mke2fs", "-q", "-F", "-t", "ext4", "-b", "4096", "-m", "1", "-L", label,
        "-U", fs_uuid, "-E",
        f"hash_seed={fs_uuid},lazy_itable_init=0,lazy_journal_init=0,root_owner=0:0",
        "-d", str(root), str(raw), size,
    ]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BuildError(f"mke2fs failed: {proc.stderr.strip() or proc.stdout.strip()}")
    commands = []
    for path in sorted([root, *root.rglob("*")]):
        inode = "/" + path.relative_to(root).as_posix() if path != root else "/"
        for field, value in (("uid", "0"), ("gid", "0"), ("ctime", f"@{when}"),
                             ("ctime_extra", "0"), ("atime_extra", "0"),
                             ("mtime_extra", "0")):
            commands.append(f"sif {inode} {field} {value}")
    script = raw.with_suffix(".debugfs")
    script.write_text("\n".join(commands) + "\n")
    proc = subprocess.run(["debugfs", "-w", "-f", str(script), str(raw)], env=env,
                          capture_output=True, text=True, check=False)
    script.unlink()
    errors = [line for line in proc.stderr.splitlines() if not line.startswith("debugfs ")]
    if proc.returncode != 0 or errors:
        raise BuildError(f"debugfs failed: {(errors or [proc.stderr.strip()])[0]}")


def to_qcow2(raw: Path, dest: Path) -> None:
    run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(dest)])
