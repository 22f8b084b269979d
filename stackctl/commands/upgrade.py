"""``stackctl upgrade``: a rolling upgrade of the fleet, host by host (playbooks/upgrade.yml)."""

from __future__ import annotations

import click

from stackctl.commands._common import get_app, output_option, progress, recover_first, render

COLUMNS = [("operation", "OPERATION"), ("hosts", "HOSTS"), ("done", "DONE"),
           ("upgraded", "UPGRADED NOW")]


@click.command()
@click.option("--limit", metavar="PATTERN",
              help="Only these hosts: names, groups or globs, comma-separated ('!' excludes).")
@click.option("--resume", is_flag=True,
              help="Continue the last failed or interrupted upgrade from the host it stopped at.")
@output_option
def upgrade(limit: str | None, resume: bool) -> None:
    """Upgrade libvirt/QEMU and Swift one host at a time.

    Each hypervisor is drained (its VMs moved to other hosts) before playbooks/upgrade.yml
    upgrades it, restarts its daemons and checks its health; it is then enabled again. Swift
    hosts are upgraded and checked the same way. The first unhealthy host stops the run:
    `stackctl upgrade --resume` continues from it.
    """
    from stackctl.workflows import upgrade as flow

    app = get_app()
    with progress("upgrade") as ui:
        recover_first(app, ui)  # an upgrade whose process died becomes failed (resumable)
        result = flow.upgrade(app, ui, limit=limit, resume=resume)
    render(result.to_dict(), COLUMNS)
