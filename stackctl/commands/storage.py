"""``stackctl storage status|rebalance`` and ``stackctl storage device add|set-weight|remove|list``
(OpenStack Swift: recon over HTTP for status, stack_ring and stack_storage_device for changes)."""

from __future__ import annotations

import click

from stackctl.commands._common import get_app, output_format, output_option, progress, render

STATUS_COLUMNS = [("host", "HOST"), ("ip", "IP"), ("devices", "DEVICES"), ("used", "USED"),
                  ("replicated", "REPLICATED"), ("async_pending", "ASYNC"), ("rings", "RINGS"),
                  ("status", "STATUS")]
RING_COLUMNS = [("ring", "RING"), ("changed", "CHANGED"), ("parts_moved", "PARTS MOVED"),
                ("balance", "BALANCE %"), ("note", "NOTE")]
DEVICE_COLUMNS = [("host", "HOST"), ("device", "DEVICE"), ("weight", "WEIGHT"), ("zone", "ZONE"),
                  ("region", "REGION"), ("ip", "IP"), ("port", "PORT"), ("parts", "PARTS")]


@click.group()
def storage() -> None:
    """Object storage (Swift): node status, devices and rebalancing."""


@storage.command("status")
@output_option
def status() -> None:
    """Show the health of each storage node (Swift's recon).

    Per node: devices mounted, disk use, the last object replication pass, async pendings,
    whether its rings match the controller's, and whether every server answered. Exits 0
    even when a node does not answer or its rings differ: the table says so.
    """
    from stackctl.workflows import storage_status

    with progress("storage status") as ui:
        rows, notes = storage_status.status(get_app(), ui=ui)
        for note in notes:
            ui.note(note)
    render(rows, STATUS_COLUMNS)


@storage.command("rebalance")
@output_option
def rebalance() -> None:
    """Rebalance the rings that need it and copy them to the nodes.

    A ring needs it when it holds a change not placed yet, or when min_part_hours held
    partitions back and that time has passed. The rings are copied to every storage node and
    proxy in any case, which also repairs a copy that failed.
    """
    from stackctl.workflows import storage as wf

    with progress("storage rebalance") as ui:
        result = wf.rebalance(get_app(), ui)
        _notes(ui, result)
    _render_change(result)


@storage.group("device")
def device() -> None:
    """Add, reweight, remove and list the rings' devices."""


@device.command("add")
@click.argument("host")
@click.argument("name")
@click.option("--size-gb", type=int, metavar="N",
              help="A loop file of N GiB under swift_loop_dir (the default, 4).")
@click.option("--disk", metavar="PATH", help="A block device instead (formatted only when blank).")
@click.option("--weight", type=float, default=100.0, show_default=True,
              help="Its weight in the rings (0 takes no partitions).")
@output_option
def add(host: str, name: str, size_gb: int | None, disk: str | None, weight: float) -> None:
    """Add device NAME of storage node HOST to the rings.

    The device is prepared first (XFS, mounted under swift_devices_root); partitions then move
    to it as its weight asks, at most once per min_part_hours.
    """
    from stackctl.workflows import storage as wf

    with progress(f"storage device add {host} {name}") as ui:
        result = wf.add_device(get_app(), host, name, weight, size_gb=size_gb, disk=disk, ui=ui)
        _notes(ui, result)
    _render_change(result)


@device.command("set-weight")
@click.argument("host")
@click.argument("name")
@click.argument("weight", type=float)
@output_option
def set_weight(host: str, name: str, weight: float) -> None:
    """Set the WEIGHT of device NAME of HOST in every ring (0 drains it)."""
    from stackctl.workflows import storage as wf

    with progress(f"storage device set-weight {host} {name}") as ui:
        result = wf.set_weight(get_app(), host, name, weight, ui=ui)
        _notes(ui, result)
    _render_change(result)


@device.command("remove")
@click.argument("host")
@click.argument("name")
@click.option("--wipe", is_flag=True, help="Also unmount it and delete its loop file.")
@click.option("--force", is_flag=True,
              help="Even if it still has weight, partitions or Swift data (they are lost from "
                   "it; other replicas remain).")
@output_option
def remove(host: str, name: str, wipe: bool, force: bool) -> None:
    """Take device NAME of HOST out of every ring.

    It must be drained first (weight 0, no partitions, no data left): Swift neither serves
    nor moves data on a device no ring lists. Without --wipe it stays mounted.
    """
    from stackctl.workflows import storage as wf

    with progress(f"storage device remove {host} {name}") as ui:
        result = wf.remove_device(get_app(), host, name, wipe=wipe, force=force, ui=ui)
        _notes(ui, result)
    _render_change(result)


@device.command("list")
@output_option
def list_() -> None:
    """List the object ring's devices with their weight, zone and partitions."""
    from stackctl.workflows import storage as wf

    with progress("storage device list") as ui:
        rows, notes = wf.list_devices(get_app(), ui)
        for note in notes:
            ui.note(note)
    render(rows, DEVICE_COLUMNS)


def _notes(ui, result: dict) -> None:
    for note in result.get("notes") or []:
        ui.note(note)


def _render_change(result: dict) -> None:
    """A table of the rings (what moved) for people; everything for json and yaml."""
    if output_format() == "table":
        render(result["rings"], RING_COLUMNS)
    else:
        render(result)
