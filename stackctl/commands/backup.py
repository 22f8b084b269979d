"""``stackctl backup`` and ``stackctl restore``: the controller's state in one archive."""

from __future__ import annotations

import datetime as dt

import click

from stackctl.commands._common import get_app, output_format, output_option, progress, render

COLUMNS = [("what", "WHAT"), ("items", "ITEMS"), ("bytes", "BYTES"), ("where", "WHERE")]


def default_name() -> str:
    return f"stackctl-backup-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}.tar.gz"


@click.command()
@click.argument("archive", required=False, type=click.Path(dir_okay=False))
@output_option
def backup(archive: str | None) -> None:
    """Save the database, storage secrets, ring builders and local images to ARCHIVE.

    ARCHIVE (default ./stackctl-backup-<UTC time>.tar.gz; a name ending in .tar is not
    compressed) is created 0600 and never replaces a file. It holds secrets: keep it safe.
    """
    from pathlib import Path

    from stackctl.workflows import backup as wf

    app = get_app()
    with progress("backup") as ui:
        result = wf.backup(app, Path(archive or default_name()), ui)
    _show(result, f"archive: {result['archive']} ({result['bytes']} bytes, mode 0600)")


@click.command()
@click.argument("archive", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True,
              help="Replace a database with rows and files with other contents.")
@click.option("--check", is_flag=True, help="Verify the archive and say what would be "
              "replaced; change nothing.")
@output_option
def restore(archive: str, force: bool, check: bool) -> None:
    """Restore a controller from ARCHIVE (written by `stackctl backup`).

    Every checksum is verified before anything changes. A controller that already has state
    (a database with rows, other secrets or builders) is left alone unless --force.
    """
    from pathlib import Path

    from stackctl.workflows import backup as wf

    app = get_app()
    with progress("restore") as ui:
        result = wf.restore(app, Path(archive), force=force, check=check, ui=ui)
    if check:
        problems = result["conflicts"]
        tail = ("would replace: " + "; ".join(problems) + " (needs --force)") if problems \
            else "nothing would be replaced"
        _show(result, f"verified: every checksum matches; {tail}")
    else:
        _show(result, f"restored from {result['archive']} (made {result['created_at']})\n"
                      f"next: {result['next_step']}")


def _show(result: dict, footer: str) -> None:
    if output_format() != "table":
        render(result)
        return
    render(result["items"], COLUMNS)
    click.echo(footer)
