"""Rendering results on stdout: ``table`` (rich, imported lazily), ``json`` or ``yaml``.

Commands hand over plain data (dicts and lists of dicts); datetimes become ISO strings.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

Columns = Sequence[tuple[str, str]]  # (key, header)


def emit(data: Any, fmt: str, columns: Columns | None = None) -> None:
    """Print ``data`` (a dict or a list of dicts) in ``fmt``; ``columns`` pick table columns."""
    plain = to_plain(data)
    if fmt == "json":
        sys.stdout.write(json.dumps(plain, indent=2) + "\n")
    elif fmt == "yaml":
        import yaml

        sys.stdout.write(yaml.safe_dump(plain, sort_keys=False, default_flow_style=False))
    elif isinstance(plain, Mapping):
        _print_record(plain, columns)
    else:
        _print_table(plain, columns)


def to_plain(value: Any) -> Any:
    """JSON-compatible copy: datetimes as ISO 8601 strings, tuples as lists."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:  # SQLite returns naive datetimes; we always store UTC
            value = value.replace(tzinfo=dt.UTC)
        return value.isoformat(timespec="seconds")
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    return value


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(_cell(v) for v in value)
    return str(value)


def _print(renderable) -> None:
    from rich.console import Console

    console = Console(highlight=False)
    if console.is_terminal:
        console.print(renderable)
        return
    # Pipes and files: whole lines (no 80-column wrap) without trailing padding.
    console = Console(highlight=False, width=250, color_system=None)
    with console.capture() as captured:
        console.print(renderable)
    sys.stdout.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))


def _print_table(rows: list[Mapping], columns: Columns | None) -> None:
    from rich import box
    from rich.table import Table

    if columns is None:
        keys = list(rows[0]) if rows else []
        columns = [(k, k.upper()) for k in keys]
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for _, header in columns:
        table.add_column(header, overflow="fold")
    for row in rows:
        table.add_row(*(_cell(row.get(key)) for key, _ in columns))
    _print(table)


def _print_record(record: Mapping, columns: Columns | None) -> None:
    from rich import box
    from rich.table import Table

    pairs = columns or [(k, k) for k in record]
    table = Table(box=box.SIMPLE, show_header=False, show_edge=False, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, header in pairs:
        table.add_row(header, _cell(record.get(key)))
    _print(table)
