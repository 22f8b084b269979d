"""``stackctl host list|show|refresh``."""

import click

from stackctl.commands._common import get_app, output_option, progress, recover_first, render

COLUMNS = [("name", "NAME"), ("address", "ADDRESS"), ("enabled", "ENABLED"),
           ("virt_type", "VIRT"), ("vms", "VMS"), ("vcpus_used", "VCPUS USED"),
           ("vcpus", "VCPUS"), ("ram_used_mb", "RAM USED"), ("ram_mb", "RAM (MiB)"),
           ("disk_used_gb", "DISK USED"), ("disk_gb", "DISK (GiB)"),
           ("refreshed_at", "REFRESHED")]


@click.group()
def host() -> None:
    """List hypervisors (the inventory's 'hypervisors' group) and refresh what they report."""


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
        if not result.hosts and not result.failed:
            ui.note(f"no hosts in group 'hypervisors' of {app.config.inventory}")
    render(result.hosts, COLUMNS)
    if result.failed:
        raise BackendError("refresh failed for " + "; ".join(result.failed.values()))
