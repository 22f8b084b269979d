"""``stackctl host list|show|refresh|disable|enable|drain|evacuate|decommission``."""

import click

from stackctl.commands._common import get_app, output_option, progress, recover_first, render

COLUMNS = [("name", "NAME"), ("address", "ADDRESS"), ("enabled", "ENABLED"),
           ("disabled_reason", "REASON"),
           ("virt_type", "VIRT"), ("vms", "VMS"), ("vcpus_used", "VCPUS USED"),
           ("vcpus", "VCPUS"), ("ram_used_mb", "RAM USED"), ("ram_mb", "RAM (MiB)"),
           ("disk_used_gb", "DISK USED"), ("disk_gb", "DISK (GiB)"),
           ("refreshed_at", "REFRESHED")]


MOVES = [("vm", "VM"), ("to", "TO"), ("mode", "MODE"), ("result", "RESULT"),
         ("seconds", "SECONDS")]
PLAN = [("vm", "VM"), ("target", "TO"), ("mode", "MODE"), ("reason", "WHY NOT")]


@click.group()
def host() -> None:
    """List hypervisors (the inventory's 'hypervisors' group), refresh what they report,
    disable or enable them for new VMs, and empty them (drain, evacuate, decommission)."""


@host.command("list")
@output_option
def list_() -> None:
    """List known hosts with their capacity and what is allocated on them."""
    from stackctl.workflows import hosts

    render(hosts.list_hosts(get_app()), COLUMNS)


@host.command("show")
@click.argument("name")
@output_option
def show(name: str) -> None:
    """Show host NAME."""
    from stackctl.workflows import hosts

    render(hosts.show_host(get_app(), name))


@host.command("refresh")
@output_option
def refresh() -> None:
    """Ask every hypervisor for its capacity, KVM status and versions (stack_hypervisor_info)."""
    from stackcore.errors import BackendError

    from stackctl.workflows import hosts

    app = get_app()
    with progress("host refresh") as ui:
        recover_first(app, ui)
        ui.step("querying the hypervisors")
        result = hosts.refresh(app, ui.task)
        for name in result.disabled:
            ui.note(f"host {name} is no longer in the inventory: disabled")
        for name in result.enabled:
            ui.note(f"host {name} is back in the inventory: enabled")
        if not result.hosts and not result.failed:
            ui.note(f"no hosts in group 'hypervisors' of {app.config.inventory}")
    render(result.hosts, COLUMNS)
    if result.failed:
        raise BackendError("refresh failed for " + "; ".join(result.failed.values()))


@host.command("disable")
@click.argument("name")
@click.option("--reason", metavar="TEXT", help="Why (shown by 'host list'); kept until "
              "'host enable', whatever 'host refresh' finds.")
@output_option
def disable(name: str, reason: str | None) -> None:
    """Place no new VMs on host NAME; the VMs already there keep running."""
    from stackctl.workflows import hosts

    app = get_app()
    recover_first(app)
    render(hosts.disable(app, name, reason))


@host.command("enable")
@click.argument("name")
@output_option
def enable(name: str) -> None:
    """Let new VMs be placed on host NAME again."""
    from stackctl.workflows import hosts

    app = get_app()
    recover_first(app)
    render(hosts.enable(app, name))


@host.command("drain")
@click.argument("name")
@click.option("--cold", is_flag=True, help="Move running VMs cold (shut down, moved, booted) "
              "instead of live.")
@click.option("--dry-run", is_flag=True, help="Only show where each VM would go.")
@output_option
def drain(name: str, cold: bool, dry_run: bool) -> None:
    """Disable host NAME and move every VM off it (live where possible), keeping server-group
    rules and capacity. Refuses, moving nothing, if any VM cannot go anywhere; stops at the
    first failed move with a report (run it again to carry on)."""
    from dataclasses import asdict

    from stackctl.workflows import drain as workflow

    app = get_app()
    if dry_run:
        render([asdict(m) for m in workflow.plan(app, name, live=not cold)], PLAN)
        return
    with progress(f"host drain {name}") as ui:
        recover_first(app, ui)
        result = workflow.drain(app, name, ui, live=not cold)
    _render_moves(result)


@host.command("evacuate")
@click.argument("name")
@output_option
def evacuate(name: str) -> None:
    """Rebuild the VMs of host NAME, which is down, on other hosts from their images and
    seeds (same name, uuid, MAC, key and user data). Without shared storage their disks stay
    on NAME: what the guests wrote since they were created is lost. Refuses if NAME answers."""
    from stackctl.workflows import drain as workflow

    app = get_app()
    with progress(f"host evacuate {name}") as ui:
        recover_first(app, ui)
        result = workflow.evacuate(app, name, ui)
    _render_moves(result)


@host.command("decommission")
@click.argument("name")
@click.option("--resume", is_flag=True, help="Continue a paused storage decommission.")
@output_option
def decommission(name: str, resume: bool) -> None:
    """Take host NAME out of service for good: drain its VMs, move its Swift data off
    (weights lowered step by step, replication converged), remove it from the rings and
    from stackctl. Then remove it from the inventory."""
    from stackctl.workflows import drain as workflow

    app = get_app()
    with progress(f"host decommission {name}") as ui:
        recover_first(app, ui)
        result = workflow.decommission(app, name, ui, resume=resume)
    if "drain" in result:
        _render_moves(result["drain"])
    storage = (result.get("storage") or {}).get("status", "not a storage node")
    render({"host": name, "storage": storage, "next": result["next"]})


def _render_moves(result: dict) -> None:
    from stackctl.commands._common import output_format

    if output_format() == "table":
        render(result["vms"], MOVES)
    else:
        render(result)
