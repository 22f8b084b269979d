"""``stackctl host list|show|refresh|disable|enable``."""

import click

from stackctl.commands._common import get_app, output_option, progress, recover_first, render

COLUMNS = [("name", "NAME"), ("address", "ADDRESS"), ("enabled", "ENABLED"),
           ("disabled_reason", "REASON"),
           ("virt_type", "VIRT"), ("vms", "VMS"), ("vcpus_used", "VCPUS USED"),
           ("vcpus", "VCPUS"), ("ram_used_mb", "RAM USED"), ("ram_mb", "RAM (MiB)"),
           ("disk_used_gb", "DISK USED"), ("disk_gb", "DISK (GiB)"),
           ("refreshed_at", "REFRESHED")]


@click.group()
def host() -> None:
    """List hypervisors (the inventory's 'hypervisors' group), refresh what they report, and
    disable or enable them for new VMs."""


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
