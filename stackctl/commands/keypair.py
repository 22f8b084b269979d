"""``stackctl keypair add|list|show|delete`` (per tenant)."""

import click

from stackctl.commands._common import (
    get_app,
    output_option,
    read_text_file,
    recover_first,
    render,
    tenant_name,
    tenant_option,
)

COLUMNS = [("name", "NAME"), ("type", "TYPE"), ("fingerprint", "FINGERPRINT")]
MAX_KEY_FILE = 16 * 1024


@click.group()
def keypair() -> None:
    """Manage a tenant's SSH public keys (injected into its VMs)."""


@keypair.command("add")
@click.argument("name")
@click.option("--public-key", "public_key", metavar="FILE", required=True,
              help="OpenSSH public key file, e.g. ~/.ssh/id_ed25519.pub ('-' for stdin).")
@tenant_option
@output_option
def add(name: str, public_key: str) -> None:
    """Register the public key in FILE as keypair NAME."""
    from stackctl.workflows import tenants

    app = get_app()
    text = read_text_file(public_key, "public key", MAX_KEY_FILE)
    recover_first(app)
    render(tenants.add_keypair(app, tenant_name(), name, text))


@keypair.command("list")
@tenant_option
@output_option
def list_() -> None:
    """List the tenant's keypairs."""
    from stackctl.workflows import tenants

    render(tenants.list_keypairs(get_app(), tenant_name()), COLUMNS)


@keypair.command("show")
@click.argument("name")
@tenant_option
@output_option
def show(name: str) -> None:
    """Show keypair NAME with its public key."""
    from stackctl.workflows import tenants

    render(tenants.show_keypair(get_app(), tenant_name(), name))


@keypair.command("delete")
@click.argument("name")
@tenant_option
@output_option
def delete(name: str) -> None:
    """Delete keypair NAME (VMs booted with it keep the key)."""
    from stackctl.workflows import tenants

    app = get_app()
    recover_first(app)
    render(tenants.delete_keypair(app, tenant_name(), name))
