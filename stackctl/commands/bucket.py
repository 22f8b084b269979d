"""``stackctl bucket create|list|show|set|delete`` (per tenant, S3 naming rules)."""

import click

from stackctl.commands._common import get_app, output_option, render, tenant_name, tenant_option

COLUMNS = [("name", "NAME"), ("objects", "OBJECTS"), ("bytes", "BYTES"),
           ("last_modified", "LAST MODIFIED")]
ACLS = click.Choice(["private", "public-read"])


def _size(value: str | None) -> int | None:
    if value is None:
        return None
    from stackctl.units import parse_size

    return parse_size(value, "quota")


@click.group()
def bucket() -> None:
    """Manage a tenant's object storage buckets (S3 and Swift API)."""


@bucket.command("create")
@click.argument("name")
@click.option("--acl", type=ACLS, default="private", show_default=True,
              help="public-read lets anyone read objects and list the bucket.")
@click.option("--quota", metavar="SIZE", help="Most bytes the bucket may hold (e.g. 10G).")
@click.option("--versioning/--no-versioning", default=False, help="Keep old object versions.")
@tenant_option
@output_option
def create(name: str, acl: str, quota: str | None, versioning: bool) -> None:
    """Create bucket NAME."""
    from stackctl.workflows import buckets

    render(buckets.create(get_app(), tenant_name(), name, acl=acl,
                          quota_bytes=_size(quota) or 0, versioning=versioning))


@bucket.command("set")
@click.argument("name")
@click.option("--acl", type=ACLS, default=None)
@click.option("--quota", metavar="SIZE", help="New quota; 0 removes it.")
@click.option("--versioning/--no-versioning", default=None,
              help="--no-versioning suspends it (old versions stay).")
@tenant_option
@output_option
def set_(name: str, acl: str | None, quota: str | None, versioning: bool | None) -> None:
    """Change bucket NAME's ACL, quota or versioning."""
    from stackctl.workflows import buckets

    render(buckets.update(get_app(), tenant_name(), name, acl=acl, quota_bytes=_size(quota),
                          versioning=versioning))


@bucket.command("list")
@tenant_option
@output_option
def list_() -> None:
    """List the tenant's buckets."""
    from stackctl.workflows import buckets

    render(buckets.list_(get_app(), tenant_name()), COLUMNS)


@bucket.command("show")
@click.argument("name")
@tenant_option
@output_option
def show(name: str) -> None:
    """Show bucket NAME."""
    from stackctl.workflows import buckets

    render(buckets.show(get_app(), tenant_name(), name))


@bucket.command("delete")
@click.argument("name")
@click.option("--force", is_flag=True, help="Also delete every object (and old version).")
@tenant_option
@output_option
def delete(name: str, force: bool) -> None:
    """Delete bucket NAME (refused while it holds objects, unless --force)."""
    from stackctl.workflows import buckets

    render(buckets.delete(get_app(), tenant_name(), name, force=force))
