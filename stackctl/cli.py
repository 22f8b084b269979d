"""The ``stackctl`` command line: a lazily loading click group and the single error boundary.

Subcommand modules (``stackctl.commands.*``) are imported only when invoked, and they import
SQLAlchemy, rich, PyYAML and ansible-runner only inside the commands that use them, so
``stackctl --help`` costs little more than importing click.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback

import click
from stackcore.errors import BackendError, StackError

from stackctl import __version__
from stackctl.config import OUTPUTS

# name -> ("module:attribute", short help shown by --help without importing the module)
COMMANDS: dict[str, tuple[str, str]] = {
    "tenant": ("stackctl.commands.tenant:tenant", "Create, list and delete tenants."),
    "keypair": ("stackctl.commands.keypair:keypair", "Manage a tenant's SSH public keys."),
    "flavor": ("stackctl.commands.flavor:flavor", "Create and list flavors (VM sizes)."),
    "image": ("stackctl.commands.image:image", "Import, list, show and delete images."),
    "vm": ("stackctl.commands.vm:vm", "Create and manage a tenant's VMs."),
    "server-group": ("stackctl.commands.server_group:server_group",
                     "Place a tenant's VMs on one host or on different hosts."),
    "host": ("stackctl.commands.host:host",
             "List, refresh, disable and enable hypervisors."),
    "bucket": ("stackctl.commands.bucket:bucket", "Create, list and delete a tenant's buckets."),
    "credentials": ("stackctl.commands.credentials:credentials",
                    "Issue, rotate and revoke a tenant's S3/Swift keys."),
    "storage": ("stackctl.commands.storage:storage",
                "Object storage status, devices and rebalancing."),
    "deploy": ("stackctl.commands.deploy:deploy", "Deploy the cloud (playbooks/site.yml)."),
    "plan": ("stackctl.commands.plan:plan",
             "What a rollout would change per host (check mode; exit 10 if anything)."),
    "upgrade": ("stackctl.commands.upgrade:upgrade",
                "Rolling upgrade, host by host (playbooks/upgrade.yml); --resume continues."),
    "lab": ("stackctl.commands.lab:lab", "Lab hosts on this machine (namespaces with sshd)."),
    "recover": ("stackctl.commands.recover:recover",
                "Finish or roll back interrupted operations."),
    "backup": ("stackctl.commands.backup:backup",
               "Save the controller's state, secrets and ring builders to one archive."),
    "restore": ("stackctl.commands.backup:restore",
                "Restore a controller from a `stackctl backup` archive."),
    "reconcile": ("stackctl.commands.reconcile:reconcile",
                  "Compare the controller's state with the hosts; --fix repairs drift."),
}

# Errors of these libraries are failures underneath us, reported as BackendError.
_BACKEND_PACKAGES = {"sqlalchemy", "ansible", "ansible_runner", "libvirt", "yaml"}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use (click's documented pattern)."""

    def __init__(self, *args, lazy_subcommands: dict[str, tuple[str, str]] | None = None,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_subcommands = lazy_subcommands or {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_subcommands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy_subcommands:
            module_name, attr = self.lazy_subcommands[cmd_name][0].split(":")
            return getattr(importlib.import_module(module_name), attr)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, self.lazy_subcommands[name][1]) for name in self.list_commands(ctx)
                if name in self.lazy_subcommands]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, lazy_subcommands=COMMANDS,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--db", "db_url", metavar="URL",
              help="Database URL (default: SQLite in STACKCTL_HOME; env STACKCTL_DB_URL).")
@click.option("--inventory", metavar="PATH",
              help="Ansible inventory (default: inventories/aio/hosts.yml; env "
                   "STACKCTL_INVENTORY).")
@click.option("-o", "--output", type=click.Choice(OUTPUTS), default=None,
              help="Output format (default: table).")
@click.version_option(__version__, prog_name="stackctl")
@click.pass_context
def cli(ctx: click.Context, db_url: str | None, inventory: str | None,
        output: str | None) -> None:
    """stackctl: run a small private cloud (VMs on libvirt hosts, deployed with Ansible).

    Tenant-scoped commands take --tenant (default: STACKCTL_TENANT). Long jobs show progress
    on stderr; results go to stdout. STACKCTL_DEBUG=1 shows tracebacks.
    """
    from stackctl.commands._common import Settings

    ctx.obj = Settings(db_url=db_url, inventory=inventory, output=output)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the CLI and turn every error into one line and an exit code."""
    debug = os.environ.get("STACKCTL_DEBUG", "") not in ("", "0")
    try:
        code = cli.main(args=argv, prog_name="stackctl", standalone_mode=False)
    except StackError as exc:
        _fail(exc, exc.exit_code, debug)
    except click.ClickException as exc:  # usage errors: click's own message, exit 2
        exc.show()
        sys.exit(exc.exit_code)
    except (click.Abort, KeyboardInterrupt):
        print("stackctl: interrupted; the next stackctl run finishes or rolls back what was "
              "in progress", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:
        sys.stderr.close()  # e.g. `stackctl vm list | head`
        sys.exit(0)
    except Exception as exc:
        if type(exc).__module__.split(".")[0] in _BACKEND_PACKAGES:
            _fail(exc, BackendError.exit_code, debug)
        if isinstance(exc, OSError):
            where = f": {exc.filename}" if exc.filename else ""
            _fail(OSError(f"{exc.strerror or exc}{where}"), BackendError.exit_code, debug, exc)
        raise
    sys.exit(code if isinstance(code, int) else 0)


def _fail(exc: BaseException, code: int, debug: bool, cause: BaseException | None = None) -> None:
    if debug:
        traceback.print_exception(cause or exc, file=sys.stderr)
    message = " ".join(str(exc).split()) or type(exc).__name__
    print(f"stackctl: error: {message}", file=sys.stderr)
    sys.exit(code)
