"""Run a daemon with a pid file where the host has no systemd (containers, this lab).

A process counts as ours only if the pid file names a live process whose command line
matches; a stale pid file (reboot, crash, reused pid) is treated as "not running".
"""

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass

from .errors import BackendError, InvalidInput


@dataclass(frozen=True)
class DaemonSpec:
    """What to run: ``argv`` (a list, never a shell string), its pid file and a match word."""

    name: str
    argv: tuple
    pidfile: str
    match: str = ""
    daemonize: bool = False  # True: the program stays in the foreground; we detach it
    log_file: str = ""
    wait_for: str = ""  # a path (socket, file) that exists once the daemon is ready
    timeout: float = 15.0
    env: tuple = ()  # extra environment as (name, value) pairs, e.g. PYTHONPATH

    def __post_init__(self):
        if not self.argv or not all(isinstance(a, str) and a for a in self.argv):
            raise InvalidInput(f"daemon {self.name}: argv must be a non-empty list of strings")
        if not os.path.isabs(self.pidfile):
            raise InvalidInput(f"daemon {self.name}: pidfile must be an absolute path")

    @property
    def match_word(self):
        return self.match or os.path.basename(self.argv[0])


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def running_pid(spec):
    """The pid of the live daemon the pid file names, or None."""
    try:
        with open(spec.pidfile) as handle:
            pid = int(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    cmdline = _cmdline(pid)
    return pid if cmdline and spec.match_word in cmdline else None


def plan(spec, state, pid):
    """Pure: what to do to reach ``state`` given the current pid. Returns a list of actions."""
    if state == "started":
        return [] if pid else ["start"]
    if state == "stopped":
        return ["stop"] if pid else []
    if state == "restarted":
        return ["stop", "start"] if pid else ["start"]
    raise InvalidInput(f"daemon {spec.name}: unknown state {state!r}")


def start(spec):
    """Start the daemon and wait until its pid file (and ``wait_for`` path) show it ready."""
    os.makedirs(os.path.dirname(spec.pidfile), exist_ok=True)
    env = dict(os.environ, **dict(spec.env)) if spec.env else None
    if spec.daemonize:
        log = open(spec.log_file or os.devnull, "ab")  # noqa: SIM115 - handed to the child
        try:
            proc = subprocess.Popen(
                list(spec.argv), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True, close_fds=True, env=env,
            )
        finally:
            log.close()
        with open(spec.pidfile, "w") as handle:
            handle.write(f"{proc.pid}\n")
    else:
        result = subprocess.run(list(spec.argv), capture_output=True, text=True, check=False,
                                env=env)
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()
            reason = detail[-1] if detail else result.returncode
            raise BackendError(f"{spec.name} failed to start: {reason}")
    _wait(spec, lambda: running_pid(spec) and (not spec.wait_for or os.path.exists(spec.wait_for)),
          "to start")
    return running_pid(spec)


def stop(spec, pid):
    """SIGTERM, wait, then SIGKILL; removes the pid file."""
    try:
        os.kill(pid, signal.SIGTERM)
        _wait(spec, lambda: not _alive(pid), "to stop", raise_on_timeout=False)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
            _wait(spec, lambda: not _alive(pid), "to stop after SIGKILL")
    except ProcessLookupError:
        pass
    with contextlib.suppress(FileNotFoundError):
        os.unlink(spec.pidfile)


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _wait(spec, condition, what, raise_on_timeout=True):
    deadline = time.monotonic() + spec.timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    if raise_on_timeout:
        raise BackendError(f"{spec.name} did not come {what} within {spec.timeout:g} s")


def ensure(spec, state, check_mode=False):
    """Reconcile: returns (changed, actions, pid)."""
    pid = running_pid(spec)
    actions = plan(spec, state, pid)
    if not actions or check_mode:
        return bool(actions), actions, pid
    for action in actions:
        if action == "stop":
            stop(spec, pid)
            pid = None
        else:
            pid = start(spec)
    return True, actions, pid
