"""``stackctl lab up|down|status``: lab hosts on this machine (see ``stackctl.lab``)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from stackctl.commands._common import output_option, progress, render

DEFAULT_ROOT = "/var/lib/stackctl-lab"
COLUMNS = [("name", "HOST"), ("address", "ADDRESS"), ("sshd_pid", "SSHD PID"), ("ssh", "SSH"),
           ("libvirtd", "LIBVIRTD"), ("guests", "GUESTS"), ("swift", "SWIFT PROCS"),
           ("processes", "PROCS")]


def lab_root() -> Path:
    """Where lab hosts keep their private directories and keys (``STACKCTL_LAB_DIR``)."""
    return Path(os.environ.get("STACKCTL_LAB_DIR", DEFAULT_ROOT))


def inventory_dir() -> Path:
    from stackctl.config import project_root

    return project_root() / "inventories" / "lab"


@click.group()
def lab() -> None:
    """Lab hosts on this machine: namespaces with their own sshd, libvirtd and Swift."""


@lab.command("up")
@click.option("--hosts", "count", type=int, default=3, show_default=True,
              help="How many lab hosts (an existing lab only grows).")
@click.option("--cidr", metavar="CIDR",
              help="The lab bridge's private network (default 10.250.0.0/24).")
@output_option
def up(count: int, cidr: str | None) -> None:
    """Start COUNT lab hosts and write inventories/lab/hosts.yml for them."""
    import sys

    from stackctl.lab import runtime

    with progress(f"lab up --hosts {count}") as ui:
        lab = runtime.up(lab_root(), count, cidr, sys.executable, inventory_dir(), ui.step)
    render(runtime.status_rows(lab.root), COLUMNS)
    print(f"inventory: {inventory_dir() / 'hosts.yml'}  (deploy: STACKCTL_INVENTORY="
          f"{inventory_dir() / 'hosts.yml'} stackctl deploy)", file=sys.stderr)


@lab.command("down")
@output_option
def down() -> None:
    """Remove the lab: processes (guests included), mounts, namespaces, bridge, files."""
    from stackctl.lab import runtime

    with progress("lab down") as ui:
        removed = runtime.down(lab_root(), inventory_dir(), ui.step)
    render(removed)


@lab.command("status")
@output_option
def status() -> None:
    """Show each lab host: sshd, libvirtd, guests and Swift processes."""
    from stackctl.lab import runtime

    render(runtime.status_rows(lab_root()), COLUMNS)
