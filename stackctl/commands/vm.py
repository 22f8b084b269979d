"""``stackctl vm create|list|show|start|stop|reboot|delete|console-log`` (per tenant)."""

import click

from stackctl.commands._common import (
    get_app,
    output_option,
    progress,
    read_text_file,
    recover_first,
    render,
    tenant_name,
    tenant_option,
)

COLUMNS = [("name", "NAME"), ("state", "STATE"), ("address", "ADDRESS"), ("host", "HOST"),
           ("flavor", "FLAVOR"), ("image", "IMAGE"), ("uuid", "UUID")]
SHOW = [("name", "name"), ("uuid", "uuid"), ("state", "state"), ("fault", "fault"),
        ("address", "address"), ("mac", "mac"), ("host", "host"), ("domain", "domain"),
        ("flavor", "flavor"), ("vcpus", "vcpus"), ("ram_mb", "ram_mb"), ("disk_gb", "disk_gb"),
        ("image", "image"), ("keypair", "keypair"), ("server_group", "server group"),
        ("moving_to", "moving to"), ("tenant", "tenant"),
        ("created_at", "created"), ("updated_at", "updated")]


@click.group()
def vm() -> None:
    """Create and manage a tenant's VMs."""


@vm.command("create")
@click.argument("name")
@click.option("--image", required=True, metavar="IMAGE", help="Disk image to boot.")
@click.option("--flavor", required=True, metavar="FLAVOR", help="Size (see 'flavor list').")
@click.option("--key", required=True, metavar="KEYPAIR", help="Keypair for root's SSH login.")
@click.option("--user-data", "user_data", metavar="FILE",
              help="cloud-init user-data (a #cloud-config or a #! script; at most 64 KiB).")
@click.option("--group", metavar="GROUP",
              help="Server group to join: placed with its members (affinity) or away from "
                   "them (anti-affinity).")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Wait for the guest's DHCP address ('vm start' on a running VM waits "
                   "later).")
@tenant_option
@output_option
def create(name: str, image: str, flavor: str, key: str, user_data: str | None,
           group: str | None, wait: bool) -> None:
    """Create VM NAME (its hostname) and boot it."""
    from stackctl.workflows import vm as workflow

    app = get_app()
    data = read_text_file(user_data, "user data", workflow.MAX_USER_DATA) if user_data else None
    request = workflow.CreateRequest(tenant=tenant_name(), name=name, image=image,
                                     flavor=flavor, key=key, user_data=data, group=group,
                                     wait=wait)
    with progress(f"vm create {name}") as ui:
        recover_first(app, ui)
        result = workflow.create(app, request, ui)
    render(result, SHOW)


@vm.command("list")
@tenant_option
@output_option
def list_() -> None:
    """List the tenant's VMs."""
    from stackctl.workflows import vm as workflow

    app = get_app()
    recover_first(app)
    render(workflow.list_vms(app, tenant_name()), COLUMNS)


@vm.command("show")
@click.argument("name")
@tenant_option
@output_option
def show(name: str) -> None:
    """Show VM NAME."""
    from stackctl.workflows import vm as workflow

    app = get_app()
    recover_first(app)
    render(workflow.show(app, tenant_name(), name), SHOW)


def _power_command(action: str, summary: str):
    @vm.command(action)
    @click.argument("name")
    @tenant_option
    @output_option
    def command(name: str) -> None:
        from stackctl.workflows import vm as workflow

        app = get_app()
        with progress(f"vm {action} {name}") as ui:
            recover_first(app, ui)
            result = getattr(workflow, action)(app, tenant_name(), name, ui)
        render(result, SHOW)

    command.__doc__ = summary
    command.help = summary
    return command


start = _power_command("start", "Start VM NAME and wait for its address.")
stop = _power_command("stop", "Stop VM NAME: ACPI shutdown, forced off after a timeout.")
reboot = _power_command("reboot", "Stop VM NAME, then start it again.")


@vm.command("delete")
@click.argument("name")
@tenant_option
@output_option
def delete(name: str) -> None:
    """Delete VM NAME: its domain, disk, seed and row."""
    from stackctl.workflows import vm as workflow

    app = get_app()
    with progress(f"vm delete {name}") as ui:
        recover_first(app, ui)
        result = workflow.delete(app, tenant_name(), name, ui)
    render(result)


@vm.command("console-log")
@click.argument("name")
@click.option("--tail", type=click.IntRange(min=1), metavar="N", help="Only the last N lines.")
@tenant_option
def console_log(name: str, tail: int | None) -> None:
    """Print the serial console log of VM NAME."""
    import sys

    from stackctl.workflows import vm as workflow

    text = workflow.console_log(get_app(), tenant_name(), name)
    if tail:
        text = "".join(text.splitlines(keepends=True)[-tail:])
    sys.stdout.write(text)


# More VM commands live in their own modules and attach themselves to the group above.
from stackctl.commands import vm_admin, vm_move  # noqa: E402, F401
