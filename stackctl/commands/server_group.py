"""``stackctl server-group create|list|show|delete`` (per tenant)."""

import click

from stackctl.commands._common import (
    get_app,
    output_format,
    output_option,
    recover_first,
    render,
    tenant_name,
    tenant_option,
)

POLICIES = ("affinity", "anti-affinity")  # models.SERVER_GROUP_POLICIES, without the import
COLUMNS = [("name", "NAME"), ("policy", "POLICY"), ("members", "MEMBERS"), ("hosts", "HOSTS")]
SHOW = [("name", "name"), ("policy", "policy"), ("members", "members"), ("hosts", "hosts"),
        ("tenant", "tenant"), ("created_at", "created")]


@click.group("server-group")
def server_group() -> None:
    """Keep a tenant's VMs on one host (affinity) or on different hosts (anti-affinity)."""


@server_group.command("create")
@click.argument("name")
@click.option("--policy", required=True, type=click.Choice(POLICIES),
              help="affinity: every member on one host; anti-affinity: each on its own host.")
@tenant_option
@output_option
def create(name: str, policy: str) -> None:
    """Create server group NAME; VMs join it with 'vm create --group NAME'."""
    from stackctl.workflows import server_groups

    app = get_app()
    recover_first(app)
    _render(server_groups.create(app, tenant_name(), name, policy), SHOW)


@server_group.command("list")
@tenant_option
@output_option
def list_() -> None:
    """List the tenant's server groups."""
    from stackctl.workflows import server_groups

    _render(server_groups.list_groups(get_app(), tenant_name()), COLUMNS)


@server_group.command("show")
@click.argument("name")
@tenant_option
@output_option
def show(name: str) -> None:
    """Show server group NAME with its members and their hosts."""
    from stackctl.workflows import server_groups

    _render(server_groups.show(get_app(), tenant_name(), name), SHOW)


@server_group.command("delete")
@click.argument("name")
@tenant_option
@output_option
def delete(name: str) -> None:
    """Delete server group NAME (refused while it has members)."""
    from stackctl.workflows import server_groups

    app = get_app()
    recover_first(app)
    render(server_groups.delete(app, tenant_name(), name))


def _render(data, columns) -> None:
    """Tables show each member as "vm (host)"; json and yaml keep the records."""
    if output_format() == "table":
        data = ([_flat(g) for g in data] if isinstance(data, list) else _flat(data))
    render(data, columns)


def _flat(group: dict) -> dict:
    members = [f"{m['name']} ({m['host'] or 'no host'})" for m in group["members"]]
    return dict(group, members=members or None, hosts=group["hosts"] or None)
