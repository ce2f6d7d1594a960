"""What every CLI command shares: global options, output (rich tables, --json), progress."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from collectors.workspace import WorkspacePaths, resolve_workspace

if TYPE_CHECKING:  # imported where used: a command that needs no database loads no DuckDB,
    # one that prints only JSON no rich
    import duckdb
    from rich.console import Console
    from rich.progress import Progress

_log = logging.getLogger(__name__)

__all__ = [
    "CliState",
    "SchedulerOption",
    "configure_logging",
    "database",
    "emit",
    "get_state",
    "progress",
    "scheduler_client",
    "table",
]


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
        from rich.console import Console

        # Progress and tables go to stderr under --json so stdout's last line stays the JSON.
        return Console(stderr=self.json, quiet=self.quiet)


def get_state(ctx: typer.Context) -> CliState:
    """The global options, found on the root context."""
    root = ctx.find_root()
    if not isinstance(root.obj, CliState):
        root.obj = CliState()
    return root.obj


def configure_logging(state: CliState) -> None:
    """Log to stderr at the level the global options ask for (called again when a global
    option given after a command word changes them)."""
    level = logging.DEBUG if state.debug else logging.WARNING if state.quiet else logging.INFO
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    root.setLevel(level)


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
        # as written: no rich markup read in names and paths ("[...]"), and one line stays
        # one line when piped (rich would wrap at 80 columns off a terminal)
        state.console.print(human, markup=False, highlight=False, soft_wrap=True)


def table(
    state: CliState, title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """A rich table for people (suppressed by --quiet)."""
    from rich.table import Table

    out = Table(title=title)
    for name in columns:
        out.add_column(name, justify="right" if name in ("total", "lines", "amount") else "left")
    for row in rows:
        out.add_row(*("" if v is None else str(v) for v in row))
    state.console.print(out)


@contextmanager
def progress(state: CliState, what: str) -> Iterator[None]:
    """A pulsing bar with elapsed time on long steps (silent with --quiet, on stderr under
    --json); the steps report their own counts when done. The first run of a command
    compiles its Numba kernels: that shows as its own step instead of a silent pause."""
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    bar = Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
        console=state.console, transient=True, disable=state.quiet,
    )  # fmt: skip
    with bar, _compile_notice(state, bar, bar.add_task(what, total=None), what):
        yield


@contextmanager
def _compile_notice(state: CliState, bar: Progress, task: Any, what: str) -> Iterator[None]:
    """While Numba compiles (a cache miss: first run, or a new kernel version), say so."""
    from numba.core import event

    class Notice(event.Listener):
        depth = 0
        started = 0.0
        kernels = 0
        seconds = 0.0

        def on_start(self, ev: event.Event) -> None:
            if self.depth == 0:
                self.started = time.perf_counter()
                name = getattr(ev.data.get("dispatcher"), "__name__", "kernel")
                bar.update(task, description=f"compiling kernels, once ({name}) - {what}")
            self.depth += 1

        def on_end(self, ev: event.Event) -> None:
            self.depth -= 1
            if self.depth == 0:
                seconds = time.perf_counter() - self.started
                self.kernels += 1
                self.seconds += seconds
                name = getattr(ev.data.get("dispatcher"), "__name__", "kernel")
                _log.debug("compiled kernel %s in %.2f s", name, seconds)
                bar.update(task, description=what)

    notice = Notice()
    event.register("numba:compile", notice)  # type: ignore[no-untyped-call]
    try:
        yield
    finally:
        event.unregister("numba:compile", notice)  # type: ignore[no-untyped-call]
        if notice.kernels and not state.quiet:
            import numba

            where = getattr(numba.config, "CACHE_DIR", "") or "beside the package's modules"
            state.console.print(
                f"compiled {notice.kernels} kernels in {notice.seconds:.1f} s, once: "
                f"cached in {where} for the next runs",
                soft_wrap=True,
            )


@contextmanager
def database(state: CliState, *, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """The workspace's database, closed when the command ends; DuckDB's reports of a full
    or read-only disk or a corrupt file become the errors the CLI maps to exit 8 and 9."""
    from bss.db import connect, storage_faults

    workspace = state.workspace
    conn = connect(workspace, read_only=read_only)
    try:
        with storage_faults(workspace.database):
            yield conn
    finally:
        conn.close()


# ``--scheduler``: the per-command option that runs a command's partition steps on Dask:
# ``tcp://HOST:PORT`` (a running ``dask scheduler``), ``local:N`` (a local cluster of N
# worker processes for this command), or ``none``; ``$RATING_ENGINE_SCHEDULER`` is the
# default. Dask is imported only when one is asked for, so commands start as fast as
# before without it.
SchedulerOption = Annotated[
    str | None,
    typer.Option(
        "--scheduler",
        envvar="RATING_ENGINE_SCHEDULER",
        help="run the partition steps on Dask: tcp://HOST:PORT, local:N (N worker "
        "processes started for the command) or none",
        show_default=False,
    ),
]


@contextmanager
def scheduler_client(text: str | None, workspace: WorkspacePaths) -> Iterator[Any | None]:
    """A checked ``dask.distributed.Client`` for ``text``, or None to run in process.

    The scheduler is reached, and every worker checked to import the package and see the
    workspace, before the command writes anything.
    """
    from rating_engine.scale.cluster import parse_scheduler

    spec = parse_scheduler(text)
    if spec is None:
        yield None
        return
    from rating_engine.scale.cluster import open_client

    with open_client(spec, workspace.root) as client:
        yield client
