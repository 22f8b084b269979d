"""Slowest tasks of a playbook run (enable with ANSIBLE_CALLBACKS_ENABLED=stack_profile).

Like ansible.posix's profile_tasks, which ansible-core does not ship: wall time from one task's
start to the next, the ten slowest printed at the end (``STACK_PROFILE_TOP`` changes ten).
"""

from __future__ import annotations

import os
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: stack_profile
type: aggregate
short_description: the slowest tasks of a run
description: Prints the slowest tasks (wall time) at the end of a playbook run.
requirements: [enable in the callbacks_enabled setting]
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "stack_profile"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self._times: dict[str, float] = {}
        self._current: tuple[str, float] | None = None
        self._start = time.monotonic()

    def _close(self) -> None:
        if self._current is not None:
            name, started = self._current
            self._times[name] = self._times.get(name, 0.0) + time.monotonic() - started
            self._current = None

    def v2_playbook_on_task_start(self, task, is_conditional) -> None:
        self._close()
        self._current = (f"{task.get_name()}", time.monotonic())

    v2_playbook_on_handler_task_start = v2_playbook_on_task_start

    def v2_playbook_on_stats(self, stats) -> None:
        self._close()
        top = int(os.environ.get("STACK_PROFILE_TOP", "10"))
        total = time.monotonic() - self._start
        self._display.display(f"slowest tasks (of {total:.1f} s):")
        for name, spent in sorted(self._times.items(), key=lambda kv: -kv[1])[:top]:
            self._display.display(f"  {spent:7.2f} s  {name}")
