"""``stackctl image import|list|show|delete``."""

import click

from stackctl.commands._common import (
    get_app,
    output_option,
    progress,
    recover_first,
    render,
    tenant_name,
    tenant_option,
)

COLUMNS = [("name", "NAME"), ("disk_format", "FORMAT"), ("visibility", "VISIBILITY"),
           ("size", "SIZE"), ("kernel", "KERNEL"), ("ramdisk", "RAMDISK"), ("id", "ID")]


@click.group()
def image() -> None:
    """Import, list, show and delete images (public, or private to a tenant)."""


@image.command("import")
@click.argument("name")
@click.argument("source")
@click.option("--disk-format", type=click.Choice(["qcow2", "raw", "aki", "ari"]),
              help="qcow2/raw are detected with qemu-img; aki (kernel) and ari (ramdisk) "
                   "must be given.")
@click.option("--sha256", "sha256", metavar="HEX", help="Expected checksum; a mismatch imports "
              "nothing.")
@click.option("--kernel", metavar="IMAGE", help="Kernel (aki) image for direct kernel boot.")
@click.option("--ramdisk", metavar="IMAGE", help="Ramdisk (ari) image for direct kernel boot.")
@click.option("--cmdline", metavar="ARGS", help="Kernel command line (with --kernel).")
@click.option("--public", is_flag=True, help="Visible to every tenant (else private to "
              "--tenant).")
@tenant_option
@output_option
def import_(name: str, source: str, disk_format: str | None, sha256: str | None,
            kernel: str | None, ramdisk: str | None, cmdline: str | None, public: bool) -> None:
    """Import SOURCE (a local file or an http/https/file URL) as image NAME."""
    from stackctl.workflows import images

    app = get_app()
    request = images.ImportRequest(
        name=name, source=source, tenant=None if public else tenant_name(), public=public,
        disk_format=disk_format, sha256=sha256, kernel=kernel, ramdisk=ramdisk, cmdline=cmdline)
    recover_first(app)
    with progress(f"image import {name}") as ui:
        result = images.import_image(app, request, ui)
    render(result)


@image.command("list")
@tenant_option
@output_option
def list_() -> None:
    """List public images and the tenant's own."""
    from stackctl.workflows import images

    render(images.list_images(get_app(), tenant_name()), COLUMNS)


@image.command("show")
@click.argument("name")
@tenant_option
@output_option
def show(name: str) -> None:
    """Show image NAME."""
    from stackctl.workflows import images

    render(images.show_image(get_app(), tenant_name(), name))


@image.command("delete")
@click.argument("name")
@tenant_option
@output_option
def delete(name: str) -> None:
    """Delete image NAME (refused while a VM or another image uses it)."""
    from stackctl.workflows import images

    app = get_app()
    recover_first(app)
    render(images.delete_image(app, tenant_name(), name))
