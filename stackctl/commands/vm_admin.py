"""``stackctl vm resize|rebuild|snapshot|set-state`` (attached to the ``vm`` group)."""

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
from stackctl.commands.vm import SHOW, vm

IMAGE_SHOW = [("name", "name"), ("id", "id"), ("status", "status"),
              ("visibility", "visibility"), ("tenant", "tenant"),
              ("disk_format", "disk_format"), ("size", "size"),
              ("virtual_size", "virtual_size"), ("sha256", "sha256"), ("kernel", "kernel"),
              ("ramdisk", "ramdisk"), ("cmdline", "cmdline"), ("path", "path")]


@vm.command("resize")
@click.argument("name")
@click.argument("flavor")
@tenant_option
@output_option
def resize(name: str, flavor: str) -> None:
    """Give VM NAME the vCPUs, RAM and disk of FLAVOR.

    A running VM is stopped and started again when its vCPUs or RAM change; a disk only
    grows (a smaller one is refused, nothing changed). Refused when the host lacks room.
    """
    from stackctl.workflows import vm_admin

    app = get_app()
    with progress(f"vm resize {name}") as ui:
        recover_first(app, ui)
        result = vm_admin.resize(app, tenant_name(), name, flavor, ui)
    render(result, SHOW)


@vm.command("rebuild")
@click.argument("name")
@click.option("--image", metavar="IMAGE", help="Rebuild from this image (default: the VM's).")
@tenant_option
@output_option
def rebuild(name: str, image: str | None) -> None:
    """Recreate VM NAME's root disk from its image (or --image).

    THE OLD DISK'S DATA IS GONE. The VM keeps its uuid, MAC (and so its address), name,
    keypair and flavor; a stopped VM stays stopped, otherwise it boots the new disk.
    """
    from stackctl.workflows import vm_admin

    app = get_app()
    with progress(f"vm rebuild {name}") as ui:
        recover_first(app, ui)
        result = vm_admin.rebuild(app, tenant_name(), name, image, ui)
    render(result, SHOW)


@vm.command("snapshot")
@click.argument("name")
@click.argument("image_name", metavar="IMAGE")
@tenant_option
@output_option
def snapshot(name: str, image_name: str) -> None:
    """Save VM NAME's disk as IMAGE: a standalone qcow2, private to the tenant, bootable.

    A running VM is stopped while its disk is copied and started again right after (no guest
    agent to freeze its filesystems). The image keeps the kernel, ramdisk and command line of
    the VM's image.
    """
    from stackctl.workflows import vm_snapshot

    app = get_app()
    with progress(f"vm snapshot {name}") as ui:
        recover_first(app, ui)
        result = vm_snapshot.snapshot(app, tenant_name(), name, image_name, ui)
    render(result, IMAGE_SHOW)


@vm.command("set-state")
@click.argument("name")
@click.option("--state", type=click.Choice(["running", "stopped", "error"]),
              help="Record this state: running and stopped clear the fault, error keeps it.")
@click.option("--from-host", is_flag=True,
              help="Record what the VM's host really runs (instead of --state).")
@tenant_option
@output_option
def set_state(name: str, state: str | None, from_host: bool) -> None:
    """Admin fix for VM NAME stuck in building, deleting or error (like nova reset-state).

    Only the record changes, nothing on the host. Refused while another operation on the VM
    is running.
    """
    from stackctl.workflows import vm_admin

    app = get_app()
    with progress(f"vm set-state {name}") as ui:
        recover_first(app, ui)
        result = vm_admin.set_state(app, tenant_name(), name, state, from_host, ui)
    render(result, SHOW)
