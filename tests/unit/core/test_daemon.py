"""stackcore.daemon: the plan table, and real processes started, found, and stopped."""

import os
from pathlib import Path

import pytest
from stackcore.daemon import DaemonSpec, ensure, plan, running_pid
from stackcore.errors import InvalidInput


@pytest.mark.parametrize("state, pid, expected", [
    ("started", None, ["start"]),
    ("started", 42, []),
    ("stopped", 42, ["stop"]),
    ("stopped", None, []),
    ("restarted", 42, ["stop", "start"]),
    ("restarted", None, ["start"]),
])
def test_plan_table(state, pid, expected):
    spec = DaemonSpec(name="d", argv=("sleep", "1"), pidfile="/run/d.pid")
    assert plan(spec, state, pid) == expected


@pytest.mark.parametrize("kwargs", [{"argv": ()}, {"argv": ("",)}, {"pidfile": "rel.pid"}])
def test_bad_spec_is_refused(kwargs):
    with pytest.raises(InvalidInput):
        DaemonSpec(**{"name": "d", "argv": ("sleep", "1"), "pidfile": "/run/d.pid", **kwargs})


@pytest.fixture
def sleeper(tmp_path):
    spec = DaemonSpec(name="sleeper", argv=("sleep", "300"), pidfile=str(tmp_path / "s.pid"),
                      daemonize=True, timeout=5)
    yield spec
    pid = running_pid(spec)
    if pid:
        os.kill(pid, 9)


def test_start_then_second_run_is_a_no_op_then_stop(sleeper):
    assert ensure(sleeper, "started", check_mode=True)[:2] == (True, ["start"])
    assert running_pid(sleeper) is None  # check mode started nothing
    changed, actions, pid = ensure(sleeper, "started")
    assert changed and actions == ["start"] and running_pid(sleeper) == pid
    assert ensure(sleeper, "started") == (False, [], pid)
    changed, actions, _ = ensure(sleeper, "stopped")
    assert changed and actions == ["stop"]
    assert (not os.path.exists(f"/proc/{pid}")
            or Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z")
    assert not os.path.exists(sleeper.pidfile)


def test_stale_pid_file_naming_another_process_counts_as_stopped(sleeper):
    with open(sleeper.pidfile, "w") as handle:
        handle.write(f"{os.getpid()}\n")  # a live pid, but not a `sleep`
    assert running_pid(sleeper) is None
    assert ensure(sleeper, "started", check_mode=True)[1] == ["start"]


def test_a_program_that_fails_to_start_gives_one_clear_error(tmp_path):
    from stackcore.errors import BackendError
    spec = DaemonSpec(name="broken", argv=("false",), pidfile=str(tmp_path / "b.pid"), timeout=1)
    with pytest.raises(BackendError, match="broken failed to start"):
        ensure(spec, "started")
