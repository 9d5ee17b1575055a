"""Printing for the CLI: Rich tables for people, ``--json`` for scripts, one-line errors."""

from __future__ import annotations

import dataclasses
import enum
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from loopml.errors import LoopmlError

# Piped output has no terminal width; use a wide one rather than fold every cell.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    return value


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(_plain(value), indent=2, default=str) + "\n")


def fmt_time(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def fmt_value(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def print_table(
    title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], *, caption: str = ""
) -> None:
    table = Table(title=title, caption=caption or None, show_lines=False)
    for c in columns:
        table.add_column(c, overflow="fold")
    for r in rows:
        table.add_row(*(fmt_value(v) for v in r))
    console.print(table)


def print_mapping(title: str, mapping: dict[str, Any]) -> None:
    print_table(title, ["key", "value"], sorted(mapping.items()))


@contextmanager
def clean_errors() -> Iterator[None]:
    """Turn loopml errors into one red line on stderr and exit code 1, never a traceback."""
    try:
        yield
    except LoopmlError as e:
        err_console.print(f"[red]error:[/red] {e.message}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def command(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator for command functions: clean errors."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with clean_errors():
            return fn(*args, **kwargs)

    return wrapper
