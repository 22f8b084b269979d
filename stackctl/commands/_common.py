"""What every command shares: settings from the global flags, the App, ``--tenant`` and
``-o`` on leaf commands, rendering, progress and recovery-first."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from stackctl.config import OUTPUTS

if TYPE_CHECKING:
    from stackctl.app import App
    from stackctl.progress import StepProgress
    from stackctl.render import Columns


@dataclass
class Settings:
    """Global flags; the App is built from them on first use."""

    db_url: str | None = None
    inventory: str | None = None
    output: str | None = None
    app: Any = None


def _settings(ctx: click.Context) -> Settings:
    root = ctx.find_root()
    if not isinstance(root.obj, Settings):
        root.obj = Settings()
    return root.obj


def get_app(ctx: click.Context | None = None) -> App:
    """The App for this invocation (configuration loaded once, flags applied)."""
    from pathlib import Path

    from stackctl import config
    from stackctl.app import App

    settings = _settings(ctx or click.get_current_context())
    if settings.app is None:
        cfg = config.load().with_overrides(
            db_url=settings.db_url,
            inventory=Path(settings.inventory).expanduser().absolute()
            if settings.inventory else None,
            tenant=_meta(ctx).get("stackctl.tenant"),
        )
        settings.app = App(cfg)
    return settings.app


def _meta(ctx: click.Context | None) -> dict:
    return (ctx or click.get_current_context()).meta


def tenant_name(ctx: click.Context | None = None) -> str | None:
    """``--tenant``, else STACKCTL_TENANT / the config file (None when none is set)."""
    return get_app(ctx).config.tenant


def _store(key: str) -> Callable:
    def callback(ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
        if value is not None:
            ctx.meta[key] = value
        return value

    return callback


def tenant_option(func: Callable) -> Callable:
    return click.option("--tenant", metavar="NAME", expose_value=False,
                        callback=_store("stackctl.tenant"),
                        help="Tenant (default: STACKCTL_TENANT).")(func)


def output_option(func: Callable) -> Callable:
    return click.option("-o", "--output", type=click.Choice(OUTPUTS), expose_value=False,
                        callback=_store("stackctl.output"),
                        help="Output format: table (default), json or yaml.")(func)


def output_format(ctx: click.Context | None = None) -> str:
    ctx = ctx or click.get_current_context()
    return ctx.meta.get("stackctl.output") or _settings(ctx).output or "table"


def render(data: Any, columns: Columns | None = None) -> None:
    from stackctl.render import emit

    emit(data, output_format(), columns)


def progress(title: str) -> StepProgress:
    from stackctl.progress import StepProgress

    return StepProgress(title)


def recover_first(app: App, ui: StepProgress | None = None) -> None:
    """Finish or roll back operations left by dead processes before doing anything new.

    A recovery that fails (a host down) is reported and retried next time; it does not stop
    the command the user asked for.
    """
    from stackctl.progress import StepProgress

    note = ui.note if ui is not None else StepProgress("").note
    for rec in app.recover_pending(ui.task if ui is not None else None):
        what = f"{rec.kind} {rec.vm or ''}".strip()
        note(f"recovered operation {rec.op_id} ({what}, interrupted at {rec.step}): "
             f"{rec.action}")


def read_text_file(path: str, what: str, limit: int) -> str:
    """Read a small UTF-8 file given on the command line ('-' is stdin)."""
    from stackcore.errors import InvalidInput, NotFound

    try:
        if path == "-":
            data = sys.stdin.buffer.read(limit + 1)
        else:
            with open(path, "rb") as handle:
                data = handle.read(limit + 1)
    except FileNotFoundError:
        raise NotFound(f"{what} file {path} does not exist") from None
    except OSError as exc:
        raise InvalidInput(f"cannot read {what} file {path}: {exc.strerror}") from None
    if len(data) > limit:
        raise InvalidInput(f"{what} file {path} is larger than {limit // 1024} KiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"{what} file {path} is not UTF-8 text") from None
