"""``stackctl vm migrate`` (attached to the ``vm`` group)."""

import click

from stackctl.commands._common import (
    get_app,
    output_option,
    progress,
    recover_first,
    render,
    tenant_name,
    tenant_option,
)
from stackctl.commands.vm import SHOW, vm

MOVED = [*SHOW[:8], ("moved_from", "moved from"), ("mode", "mode"), ("seconds", "seconds")]


@vm.command("migrate")
@click.argument("name")
@click.option("--to", "to", metavar="HOST", help="Target host (default: the scheduler's choice).")
@click.option("--live", is_flag=True,
              help="Live migration with storage copy: the guest keeps running (default: cold, "
                   "the guest is shut down, moved and booted again).")
@tenant_option
@output_option
def migrate(name: str, to: str | None, live: bool) -> None:
    """Move VM NAME to another hypervisor with its disk.

    Interrupted or failed, the move is finished or undone from where the VM really is (now,
    or by the next stackctl command): the VM always ends on exactly one host."""
    from stackctl.workflows import migrate as workflow

    app = get_app()
    with progress(f"vm migrate {name}") as ui:
        recover_first(app, ui)
        result = workflow.migrate(app, tenant_name(), name, to=to, live=live, ui=ui)
    render(result, MOVED)
