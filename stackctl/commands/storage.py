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


# ---------------------------------------------------------------------------------------------
# Day two: decommission a node, replace a failed device (stackctl.workflows.storage_ops)

STEP_COLUMNS = [("step", "STEP"), ("weights", "WEIGHTS"), ("parts_moved", "PARTS MOVED"),
                ("parts_left", "PARTS LEFT"), ("converged_s", "CONVERGED (S)")]


def _steps_option(func):
    return click.option("--steps", "fractions", default="0.5,0.25,0", show_default=True,
                        metavar="F,F,...",
                        help="Fractions of the original weights, one rebalance each.")(func)


def _resumable_options(func):
    func = click.option("--resume", is_flag=True,
                        help="Continue the paused or interrupted operation (running the "
                             "same command again does too).")(func)
    func = click.option("--cancel", is_flag=True,
                        help="Drop the paused operation; the rings stay as they are.")(func)
    return click.option("--timeout", type=click.IntRange(min=10), default=3600,
                        show_default=True, metavar="SECONDS",
                        help="How long one replication convergence may take before the "
                             "operation pauses.")(func)


@storage.command("decommission")
@click.argument("host")
@_steps_option
@_resumable_options
@output_option
def decommission(host: str, fractions: str, resume: bool, cancel: bool, timeout: int) -> None:
    """Drain storage node HOST and take it out of the rings; no object is lost.

    Its devices' weights go down step by step; after each step the rings are rebalanced and
    copied to every node, and replication must converge before the next. Once it holds
    nothing its devices leave the rings. min_part_hours pauses it with the time to continue
    (--resume). Refused when the rings would keep fewer devices or zones than replicas.
    """
    from stackcore.drain_plan import parse_fractions

    from stackctl.workflows import storage_ops as ops

    if cancel:
        render(ops.cancel(get_app(), ops.DECOMMISSION, host))
        return
    with progress(f"storage decommission {host}") as ui:
        result = ops.decommission_storage(get_app(), host, ui, fractions=parse_fractions(
            fractions), resume=resume, timeout=timeout)
        _notes(ui, result)
    _render_steps(result)


@device.command("replace")
@click.argument("host")
@click.argument("name")
@click.option("--size-gb", type=int, metavar="N",
              help="The new loop file's size in GiB (default: the inventory's, else 4).")
@click.option("--disk", metavar="PATH", help="The new block device (formatted when blank).")
@_resumable_options
@output_option
def replace(host: str, name: str, size_gb: int | None, disk: str | None, resume: bool,
            cancel: bool, timeout: int) -> None:
    """Replace failed device NAME of HOST by a new one of the same name and weight.

    The failed device leaves the rings (its partitions get their replicas elsewhere), a new
    one is prepared and mounted (a new loop file, or --disk), added back with the original
    weight, zone and region, and replication fills it. Objects stay readable throughout.
    """
    from stackctl.workflows import storage_ops as ops

    if cancel:
        render(ops.cancel(get_app(), ops.REPLACE, f"{host} {name}"))
        return
    with progress(f"storage device replace {host} {name}") as ui:
        result = ops.replace_device(get_app(), host, name, ui, size_gb=size_gb, disk=disk,
                                    resume=resume, timeout=timeout)
        _notes(ui, result)
    _render_steps(result)


def _render_steps(result: dict) -> None:
    if output_format() == "table":
        render(result["steps"], STEP_COLUMNS)
    else:
        render(result)
