"""What every CLI command shares: global options, output (rich tables, --json), progress."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from bss.db import connect
from collectors.workspace import WorkspacePaths, resolve_workspace

__all__ = ["CliState", "database", "emit", "get_state", "progress", "table"]


@dataclass
class CliState:
    workspace_arg: Path | None = None
    quiet: bool = False
    json: bool = False
    debug: bool = False

    @property
    def workspace(self) -> WorkspacePaths:
        return resolve_workspace(self.workspace_arg)

    @property
    def console(self) -> Console:
        # Progress and tables go to stderr under --json so stdout's last line stays the JSON.
        return Console(stderr=self.json, quiet=self.quiet)


def get_state(ctx: typer.Context) -> CliState:
    """The global options, found on the root context."""
    root = ctx.find_root()
    if not isinstance(root.obj, CliState):
        root.obj = CliState()
    return root.obj


def _default(value: Any) -> Any:
    if isinstance(value, Decimal | Path):
        return str(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def emit(state: CliState, payload: dict[str, Any], human: str | None = None) -> None:
    """One JSON line on stdout under --json, else the human text (unless --quiet)."""
    if state.json:
        typer.echo(json.dumps(payload, default=_default, sort_keys=True))
    elif human is not None and not state.quiet:
        state.console.print(human)


def table(
    state: CliState, title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """A rich table for people (suppressed by --quiet)."""
    out = Table(title=title)
    for name in columns:
        out.add_column(name, justify="right" if name in ("total", "lines", "amount") else "left")
    for row in rows:
        out.add_row(*("" if v is None else str(v) for v in row))
    state.console.print(out)


@contextmanager
def progress(state: CliState, what: str) -> Iterator[None]:
    """A pulsing bar with elapsed time on long steps (silent with --quiet, on stderr under
    --json); the steps report their own counts when done."""
    bar = Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
        console=state.console, transient=True, disable=state.quiet,
    )  # fmt: skip
    with bar:
        bar.add_task(what, total=None)
        yield


@contextmanager
def database(state: CliState, *, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """The workspace's database, closed when the command ends."""
    conn = connect(state.workspace, read_only=read_only)
    try:
        yield conn
    finally:
        conn.close()
