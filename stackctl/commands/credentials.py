"""``stackctl credentials create|list|rotate|revoke``: a tenant's S3/Swift keys."""

import click

from stackctl.commands._common import (
    get_app,
    output_option,
    recover_first,
    render,
    tenant_name,
    tenant_option,
)

COLUMNS = [("access_key", "ACCESS KEY"), ("tenant", "TENANT"), ("created_at", "CREATED"),
           ("rotated_at", "ROTATED")]


@click.group()
def credentials() -> None:
    """Issue and revoke a tenant's S3/Swift credentials (the secret is shown once)."""


@credentials.command("create")
@tenant_option
@output_option
def create() -> None:
    """Issue a new access key and secret for the tenant."""
    from stackctl.workflows import credentials as wf

    app = get_app()
    recover_first(app)
    render(wf.create(app, tenant_name()))


@credentials.command("list")
@tenant_option
@output_option
def list_() -> None:
    """List the tenant's access keys (never the secrets)."""
    from stackctl.workflows import credentials as wf

    render(wf.list_(get_app(), tenant_name()), COLUMNS)


@credentials.command("rotate")
@click.argument("access_key")
@tenant_option
@output_option
def rotate(access_key: str) -> None:
    """Give ACCESS_KEY a new secret; the old secret stops working at once."""
    from stackctl.workflows import credentials as wf

    render(wf.rotate(get_app(), tenant_name(), access_key))


@credentials.command("revoke")
@click.argument("access_key")
@tenant_option
@output_option
def revoke(access_key: str) -> None:
    """Revoke ACCESS_KEY (S3 requests and Swift tokens made with it fail at once)."""
    from stackctl.workflows import credentials as wf

    render(wf.revoke(get_app(), tenant_name(), access_key))
