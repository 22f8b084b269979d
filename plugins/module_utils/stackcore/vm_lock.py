"""The per-domain lock: one stack_vm at a time works on a domain and its instance dir.

A recovering controller may run ``absent`` while a killed create's module is still running;
both take ``<instance_dir>/.<domain>.lock`` (flock) first. ``absent`` unlinks the lock file
while holding it, so a waiter that opened the old file re-checks after acquiring it and
retries on the new one (otherwise two holders could each lock a different inode).
"""

import contextlib
import fcntl
import os
import time

from .errors import Conflict

POLL_S = 0.2


def lock_path(instance_dir, name):
    return os.path.join(instance_dir, f".{name}.lock")


def _same_file(fd, path):
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    fst = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (fst.st_dev, fst.st_ino)


class DomainLock:
    """Held lock; ``release(remove=True)`` also deletes the lock file (after ``absent``)."""

    def __init__(self, path, fd):
        self.path = path
        self._fd = fd

    def release(self, remove=False):
        if self._fd is None:
            return
        try:
            if remove:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)
        finally:
            os.close(self._fd)  # closing drops the flock
            self._fd = None


def acquire(instance_dir, name, timeout):
    """Take the domain's lock, creating ``instance_dir`` (0755) if needed; Conflict after
    ``timeout`` seconds."""
    os.makedirs(instance_dir, mode=0o755, exist_ok=True)
    path = lock_path(instance_dir, name)
    deadline = time.monotonic() + timeout
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise Conflict(
                            f"domain {name} is busy: another stack_vm holds {path} "
                            f"(waited {timeout:.0f} s)"
                        ) from None
                    time.sleep(POLL_S)
            if _same_file(fd, path):
                return DomainLock(path, fd)
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # the holder removed the file: lock the new one


@contextlib.contextmanager
def domain_lock(instance_dir, name, timeout):
    """Context manager form; yields the DomainLock (call ``release(remove=True)`` to drop
    the file early)."""
    lock = acquire(instance_dir, name, timeout)
    try:
        yield lock
    finally:
        lock.release()
