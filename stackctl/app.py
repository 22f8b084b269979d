"""The application object a command builds once: configuration plus lazily opened database
and runner. Workflows take it as their first argument."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from stackctl.config import Config

if TYPE_CHECKING:
    from stackctl.db import Database
    from stackctl.journal import Recovery
    from stackctl.runner import Progress, Runner
    from stackctl.scheduler import Policy


class App:
    """Configuration, database and runner for one stackctl invocation."""

    def __init__(self, config: Config, runner: Runner | None = None) -> None:
        self.config = config
        if runner is not None:
            self.runner = runner

    @cached_property
    def db(self) -> Database:
        from stackctl.db import Database

        return Database(self.config.db_url)

    @cached_property
    def runner(self) -> Runner:
        from stackctl.runner import AnsibleRunner

        return AnsibleRunner(self.config)

    @property
    def policy(self) -> Policy:
        from stackctl.scheduler import Policy

        c = self.config
        return Policy(c.cpu_allocation_ratio, c.ram_allocation_ratio, c.disk_allocation_ratio,
                      c.weigher)

    def recover_pending(self, progress: Progress | None = None,
                        include_skipped: bool = False) -> list[Recovery]:
        """Run journal recovery; a single cheap query when nothing is pending."""
        from stackctl.journal import pending, recover

        with self.db.read() as session:
            if not pending(session):
                return []
        with self.db.write() as session:
            return recover(session, self.runner, progress, include_skipped=include_skipped,
                           app=self)
