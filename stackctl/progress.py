"""Progress of long jobs on stderr: a spinner with the current step on a terminal, plain
``stackctl: ...`` lines otherwise. Results go to stdout, never here."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    from stackctl.runner import TaskEvent


class StepProgress:
    """Use as a context manager; ``step()`` names the current step, ``task()`` takes runner
    events (pass ``progress.task`` as a runner's progress callback)."""

    def __init__(self, title: str, enabled: bool = True) -> None:
        self.title = title
        self.enabled = enabled
        self._status = None
        self._step = ""
        self._console = None

    def __enter__(self) -> Self:
        if self.enabled and sys.stderr.isatty():
            from rich.console import Console

            self._console = Console(stderr=True)
            self._status = self._console.status(self.title.replace("[", "\\["),
                                                spinner="dots")
            self._status.start()
        return self

    def __exit__(self, *_exc) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def step(self, text: str) -> None:
        self._step = text
        if self._status is not None:
            from rich.markup import escape

            self._status.update(escape(f"{self.title}: {text}"))
        elif self.enabled:
            print(f"stackctl: {self.title}: {text}", file=sys.stderr, flush=True)

    def task(self, event: TaskEvent) -> None:
        if self._status is not None and event.kind == "start":
            from rich.markup import escape

            self._status.update(f"{escape(self.title)}: {escape(self._step)} "
                                f"[dim]({escape(event.task)} on {escape(event.host)})[/dim]")

    def note(self, text: str) -> None:
        """A line that stays (e.g. what recovery did)."""
        if self._console is not None:
            self._console.print(f"stackctl: {text}", highlight=False, markup=False)
        else:
            print(f"stackctl: {text}", file=sys.stderr, flush=True)
