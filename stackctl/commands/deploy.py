"""``stackctl deploy``: run playbooks/site.yml with live task progress and a recap table."""

from __future__ import annotations

import sys
from typing import Self

import click

from stackctl.commands._common import get_app, output_format, output_option, recover_first

RECAP = [("host", "HOST"), ("ok", "OK"), ("changed", "CHANGED"),
         ("unreachable", "UNREACHABLE"), ("failed", "FAILED"), ("skipped", "SKIPPED"),
         ("rescued", "RESCUED"), ("ignored", "IGNORED")]
_STYLE = {"ok": "green", "changed": "yellow", "failed": "bold red", "unreachable": "bold red",
          "skipped": "cyan"}


class DeployDisplay:
    """Shows each task as it starts (a spinner) and each host's result as it lands, on stderr."""

    def __init__(self, show_diff: bool = False) -> None:
        from rich.console import Console

        self.show_diff = show_diff
        self.console = Console(stderr=True, highlight=False)
        if not self.console.is_terminal:  # a log file: whole lines, no spinner
            self.console = Console(stderr=True, highlight=False, width=200)
        self.status = self.console.status("starting", spinner="dots") \
            if self.console.is_terminal else None

    def __enter__(self) -> Self:
        if self.status is not None:
            self.status.start()
        return self

    def __exit__(self, *_exc) -> None:
        if self.status is not None:
            self.status.stop()

    def __call__(self, event: dict) -> None:
        from rich.markup import escape

        kind = event.get("event", "")
        data = event.get("event_data") or {}
        if kind == "playbook_on_play_start":
            self.console.print(f"[bold]PLAY[/bold] {escape(data.get('play', ''))}")
        elif kind == "playbook_on_task_start":
            if self.status is not None:
                self.status.update(f"TASK {escape(data.get('task', ''))}")
        elif kind.startswith("runner_on_") and kind != "runner_on_start":
            self._result(kind, data)

    def _result(self, kind: str, data: dict) -> None:
        from rich.markup import escape

        from stackctl.runner import failure_message

        res = data.get("res") or {}
        state = {"runner_on_ok": "changed" if res.get("changed") else "ok",
                 "runner_on_failed": "failed", "runner_on_unreachable": "unreachable",
                 "runner_on_skipped": "skipped"}.get(kind)
        if state is None:
            return
        if state == "failed" and data.get("ignore_errors"):
            state = "ok"
        line = (f"  [{_STYLE[state]}]{state:<11}[/] {escape(data.get('host', ''))}  "
                f"{escape(data.get('task', ''))}")
        if state in ("failed", "unreachable"):
            line += f": {escape(failure_message(res))}"
        self.console.print(line)
        for note in task_notes(data.get("task_action", ""), res):
            self.console.print(f"    [yellow]{escape(note)}[/]")
        if self.show_diff and res.get("diff"):
            for text in render_diffs(res["diff"]):
                self.console.print(escape(text), style="dim")


def task_notes(action: str, res: dict) -> list[str]:
    """What a user must read from a task: module warnings and ``debug`` messages (the roles
    say 'guests run under TCG' that way)."""
    notes = [str(w) for w in res.get("warnings") or []]
    if action.rsplit(".", 1)[-1] == "debug" and res.get("msg"):
        notes.append(str(res["msg"]))
    return notes


def render_diffs(diff) -> list[str]:
    """Unified diffs from a module's ``diff`` (a dict or a list of dicts, Ansible's format)."""
    import difflib

    texts = []
    for item in diff if isinstance(diff, list) else [diff]:
        if not isinstance(item, dict):
            continue
        if item.get("prepared"):
            texts.append(str(item["prepared"]).rstrip())
            continue
        before, after = item.get("before"), item.get("after")
        if before is None and after is None:
            continue
        if not isinstance(before, str) or not isinstance(after, str):
            import json

            before = json.dumps(before, indent=2, sort_keys=True, default=str) + "\n"
            after = json.dumps(after, indent=2, sort_keys=True, default=str) + "\n"
        lines = difflib.unified_diff(
            before.splitlines(keepends=True), after.splitlines(keepends=True),
            fromfile=str(item.get("before_header", "before")),
            tofile=str(item.get("after_header", "after")))
        text = "".join(lines).rstrip()
        if text:
            texts.append(text)
    return texts


@click.command()
@click.option("--check", is_flag=True, help="Predict changes without making them.")
@click.option("--diff", is_flag=True, help="Show what files and settings would change.")
@click.option("--limit", metavar="PATTERN", help="Only these hosts (Ansible host pattern).")
@click.option("--tags", metavar="TAGS", help="Only these roles/tags, comma-separated.")
@output_option
def deploy(check: bool, diff: bool, limit: str | None, tags: str | None) -> None:
    """Deploy or update the cloud: run playbooks/site.yml on the inventory."""
    from stackcore.errors import BackendError

    from stackctl.render import emit
    from stackctl.workflows import hosts

    app = get_app()
    recover_first(app)
    with DeployDisplay(show_diff=diff) as display:
        status, stats = hosts.deploy(app, display, check=check, diff=diff, limit=limit,
                                     tags=tags)
    rows = recap_rows(stats)
    if output_format() == "table":
        print("PLAY RECAP", file=sys.stdout)
    emit(rows, output_format(), RECAP)
    broken = [r["host"] for r in rows if r["failed"] or r["unreachable"]]
    if broken or status != "successful":
        raise BackendError(f"deploy {status}: failed on {', '.join(broken) or 'no host'}")
    if not check:
        from stackctl.workflows import credentials, fleet

        fleet.record(app, fleet.hosts_from_inventory(app.runner))  # the inventory plugin's view

        synced = credentials.sync_if_any(app)  # a new or rebuilt proxy gets the tenants' keys
        if synced:
            print(f"credentials: {synced['credentials']} written to "
                  f"{', '.join(synced['proxies'])}", file=sys.stderr)


def recap_rows(stats: dict[str, dict[str, int]]) -> list[dict]:
    """Per-host counters from a playbook_on_stats event (Ansible's PLAY RECAP)."""
    names = {"ok": "ok", "changed": "changed", "dark": "unreachable", "failures": "failed",
             "skipped": "skipped", "rescued": "rescued", "ignored": "ignored"}
    hosts = sorted({h for counters in stats.values() for h in counters})
    return [{"host": h, **{ours: int(stats.get(theirs, {}).get(h, 0))
                           for theirs, ours in names.items()}} for h in hosts]
