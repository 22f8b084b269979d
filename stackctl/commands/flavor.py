"""``stackctl flavor create|list``."""

import click

from stackctl.commands._common import get_app, output_option, recover_first, render

COLUMNS = [("name", "NAME"), ("vcpus", "VCPUS"), ("ram_mb", "RAM (MiB)"),
           ("disk_gb", "DISK (GiB)")]


@click.group()
def flavor() -> None:
    """Create and list flavors (VM sizes)."""


@flavor.command("create")
@click.argument("name")
@click.option("--vcpus", type=int, required=True, help="Virtual CPUs.")
@click.option("--ram", "ram_mb", type=int, required=True, help="Memory in MiB.")
@click.option("--disk", "disk_gb", type=int, required=True, help="Root disk in GiB.")
@output_option
def create(name: str, vcpus: int, ram_mb: int, disk_gb: int) -> None:
    """Create flavor NAME."""
    from stackctl.workflows import flavors

    app = get_app()
    recover_first(app)
    render(flavors.create_flavor(app, name, vcpus, ram_mb, disk_gb))


@flavor.command("list")
@output_option
def list_() -> None:
    """List flavors."""
    from stackctl.workflows import flavors

    render(flavors.list_flavors(get_app()), COLUMNS)
