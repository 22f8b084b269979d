"""``stackctl tenant create|list|show|delete``."""

import click

from stackctl.commands._common import get_app, output_option, recover_first, render

COLUMNS = [("name", "NAME"), ("vms", "VMS"), ("created_at", "CREATED")]


@click.group()
def tenant() -> None:
    """Create, list and delete tenants."""


@tenant.command("create")
@click.argument("name")
@output_option
def create(name: str) -> None:
    """Create tenant NAME."""
    from stackctl.workflows import tenants

    app = get_app()
    recover_first(app)
    render(tenants.create_tenant(app, name))


@tenant.command("list")
@output_option
def list_() -> None:
    """List tenants."""
    from stackctl.workflows import tenants

    render(tenants.list_tenants(get_app()), COLUMNS)


@tenant.command("show")
@click.argument("name")
@output_option
def show(name: str) -> None:
    """Show tenant NAME."""
    from stackctl.workflows import tenants

    render(tenants.show_tenant(get_app(), name))


@tenant.command("delete")
@click.argument("name")
@output_option
def delete(name: str) -> None:
    """Delete tenant NAME and its keypairs (refused while it has VMs or private images)."""
    from stackctl.workflows import tenants

    app = get_app()
    recover_first(app)
    render(tenants.delete_tenant(app, name))
