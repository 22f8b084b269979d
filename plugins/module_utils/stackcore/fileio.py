"""Files written so a crash never leaves half of one: temp file in the same directory, fsync,
rename over the target, fsync the directory."""

import contextlib
import os
import tempfile


def write_atomic(path, data, mode=0o644, uid=-1, gid=-1):
    """Replace ``path`` by ``data`` (bytes or str) with ``mode`` and, when given, owner/group.

    The temp file is created 0600 and only gets ``mode`` once written, so a secret is never
    readable by others, even for a moment.
    """
    with atomic_path(path, mode, uid, gid) as tmp, open(tmp, "wb") as handle:
        handle.write(data.encode() if isinstance(data, str) else data)
        handle.flush()
        os.fsync(handle.fileno())


@contextlib.contextmanager
def atomic_path(path, mode=0o644, uid=-1, gid=-1):
    """Yield a temp path next to ``path`` for a writer (Swift's builder.save); on success it
    is synced and renamed over ``path``; on any error it is removed."""
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.")
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        if uid != -1 or gid != -1:
            os.chown(tmp, uid, gid)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(directory)


def fsync_dir(directory):
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
