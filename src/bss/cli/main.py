"""The ``rating-engine`` command: global options and the one place errors become exit codes."""

from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path
from typing import Annotated

import typer

from bss.cli.assurance import register_assurance
from bss.cli.business import register_business
from bss.cli.data import register_data
from bss.cli.query import register_query
from bss.cli.support import CliState, get_state
from bss.errors import (
    BillingError,
    IllegalTransitionError,
    NotFoundError,
    ValidationError,
    WorkspaceLockedError,
)
from collectors.errors import CollectorError, IngestError, RatingEngineError
from collectors.workspace import WORKSPACE_ENV
from rating_engine.errors import RatingError

__all__ = ["EXIT_CODES", "app", "main"]

app = typer.Typer(
    name="rating-engine",
    help="Flows, packets and CDRs in; exact rated usage and bills out.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# Most specific first: the first match decides the exit code.
EXIT_CODES: list[tuple[type[BaseException], int]] = [
    (WorkspaceLockedError, 4),
    (NotFoundError, 3),
    (ValidationError, 3),
    (IllegalTransitionError, 3),
    (BillingError, 5),
    (IngestError, 6),
    (CollectorError, 6),
    (RatingError, 7),
    (RatingEngineError, 1),
]


@app.callback()
def _root(
    ctx: typer.Context,
    workspace: Annotated[
        Path | None,
        typer.Option("--workspace", "-w", envvar=WORKSPACE_ENV, help="workspace folder"),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress or tables")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="machine-readable last line")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="tracebacks and debug logs")] = False,
) -> None:
    state = get_state(ctx)
    state.workspace_arg = workspace if workspace is not None else state.workspace_arg
    state.quiet = quiet or state.quiet
    state.json = json_out or state.json
    state.debug = debug or state.debug
    logging.basicConfig(
        level=logging.DEBUG if state.debug else logging.WARNING if state.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


register_business(app)
register_data(app)
register_assurance(app)
register_query(app)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app and map errors to one line and an exit code."""
    args = sys.argv[1:] if argv is None else argv
    state = CliState(debug="--debug" in args)
    try:
        # standalone mode: usage errors, --help and Ctrl-C are handled and exit by the CLI
        # framework itself; our own errors come out here.
        app(args=args, prog_name="rating-engine", obj=state)
    except RatingEngineError as exc:
        if state.debug:
            traceback.print_exc()
        code = next(code for kind, code in EXIT_CODES if isinstance(exc, kind))
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(code) from None
