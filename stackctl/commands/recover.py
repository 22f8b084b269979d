"""``stackctl recover``."""

import click

from stackctl.commands._common import get_app, output_format, output_option, progress, render

COLUMNS = [("operation", "OP"), ("kind", "KIND"), ("vm", "VM"), ("step", "STEP"),
           ("action", "ACTION"), ("status", "STATUS")]


@click.command()
@output_option
def recover() -> None:
    """Finish or roll back operations whose stackctl process died.

    A vm create is rolled back (domain, disk, seed and row removed, its capacity freed), a vm
    delete is finished, a start/stop/reboot records the VM's real state. Operations still
    owned by a live process are left alone (and listed).
    """
    from stackcore.errors import BackendError

    app = get_app()
    with progress("recover") as ui:
        ui.step("looking for interrupted operations")
        done = app.recover_pending(ui.task, include_skipped=True)
    if not done and output_format() == "table":
        click.echo("nothing to recover")
        return
    render([r.to_dict() for r in done], COLUMNS)
    failed = [r for r in done if r.action.startswith("failed")]
    if failed:
        raise BackendError(f"{len(failed)} operation(s) could not be recovered yet: "
                           + "; ".join(f"{r.op_id}: {r.action}" for r in failed))
