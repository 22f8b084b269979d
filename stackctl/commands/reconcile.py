"""``stackctl reconcile [--fix] [--host HOST]``."""

import click

from stackctl.commands._common import (
    get_app,
    output_format,
    output_option,
    progress,
    recover_first,
    render,
)

REPORT_COLUMNS = [("host", "HOST"), ("kind", "KIND"), ("object", "OBJECT"),
                  ("detail", "DETAIL"), ("fix", "FIX")]
FIX_COLUMNS = [("host", "HOST"), ("kind", "KIND"), ("object", "OBJECT"),
               ("detail", "DETAIL"), ("action", "ACTION")]


@click.command()
@click.option("--fix", is_flag=True,
              help="Repair what can be repaired safely (see below); the rest is reported.")
@click.option("--host", metavar="HOST", help="Only this host (default: every host).")
@output_option
def reconcile(fix: bool, host: str | None) -> None:
    """Compare the controller's state with every host and report the drift.

    Kinds: missing-domain (a VM's domain is gone; --fix defines it again on its disk in the
    recorded power state, or marks the VM error when the disk is gone too), power-state (the
    domain is not in the recorded state; --fix records the real one, never starting or
    stopping a VM), unknown-domain (no VM owns it; never fixed), image-cache (an image
    recorded as cached is not; --fix forgets the record), ring-mismatch (a Swift host's ring
    differs from the builder's; --fix copies it), host-unreachable.

    Exits 0 when there is no drift (or --fix repaired it all), 6 when some remains.
    """
    from stackctl.workflows import reconcile as wf

    app = get_app()
    with progress("reconcile") as ui:
        if fix:
            recover_first(app, ui)
        report = wf.reconcile(app, fix=fix, host=host, ui=ui)
        for note in report.notes:
            ui.note(note)
    if not report.items and output_format() == "table":
        click.echo(f"no drift on {', '.join(report.hosts) or 'no host'}")
    else:
        render([item.to_dict() for item in report.items], FIX_COLUMNS if fix else REPORT_COLUMNS)
    remaining = report.remaining
    if remaining:
        fixable = sum(1 for item in remaining if item.fix is not None and item.action is None)
        hint = f" ({fixable} can be fixed with --fix)" if fixable else ""
        raise wf.DriftRemains(f"{len(remaining)} drift item(s) remain{hint}")
