"""The ``rating-engine`` command: global options and the one place errors become exit codes.

Global options (``--workspace/-w``, ``--json``, ``--quiet/-q``, ``--debug``) are accepted
before the first command word and after any command or subcommand, as users type them
(``rating-engine bill --period P --json -w W``). The exit codes are listed in
``EXIT_CODES`` and documented in ``docs/cli.md``.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import importlib
import io
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Annotated, Any

import typer
import typer.core

# typer 0.29 (pinned) carries its own copy of click; its usage error is the one raised
from typer._click.exceptions import UsageError

from bss.cli.coercion import quick_converters
from bss.cli.support import CliState, configure_logging, get_state
from bss.errors import (
    BillingError,
    IllegalTransitionError,
    NotFoundError,
    ValidationError,
    WorkspaceLockedError,
)
from collectors.errors import CollectorError, CorruptFileError, IngestError, RatingEngineError
from collectors.workspace import WORKSPACE_ENV
from rating_engine.errors import RatingError

__all__ = ["EXIT_BILLED_WITH_EXCEPTIONS", "EXIT_CODES", "EXIT_STORAGE", "app", "build_cli", "main"]

app = typer.Typer(
    name="rating-engine",
    help="Flows, packets and CDRs in; exact rated usage and bills out.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
)

# Most specific first: the first match decides the exit code. docs/cli.md has the table.
EXIT_CODES: list[tuple[type[BaseException], int]] = [
    (WorkspaceLockedError, 4),
    (NotFoundError, 3),
    (ValidationError, 3),
    (IllegalTransitionError, 3),
    (BillingError, 5),
    (CorruptFileError, 9),
    (IngestError, 6),
    (CollectorError, 6),
    (RatingError, 7),
    (RatingEngineError, 1),
]
EXIT_USAGE = 2  # the CLI framework's own code for a bad command line
EXIT_STORAGE = 8  # the machine's fault: disk full, read-only, permission, I/O error
EXIT_CORRUPT = 9  # a stored file cannot be read back (corrupt DuckDB file or Parquet part)
EXIT_BILLED_WITH_EXCEPTIONS = 10  # bill done, some accounts set aside as billing exceptions

_GLOBAL_NAMES = ("workspace", "quiet", "json_out", "debug")


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version  # slow: only for --version

    try:
        return version("rating-engine")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"rating-engine {_package_version()}")
        raise typer.Exit()


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
    _version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="print the version and exit"
        ),
    ] = False,
) -> None:
    state = get_state(ctx)
    state.workspace_arg = workspace if workspace is not None else state.workspace_arg
    state.quiet = quiet or state.quiet
    state.json = json_out or state.json
    state.debug = debug or state.debug
    configure_logging(state)


#: The modules of bss.cli whose ``register_<module>(app)`` attach the commands, in the order
#: ``--help`` lists them.
COMMAND_MODULES = (
    "workspace", "business", "bills", "data", "assurance", "query", "check", "storage",
    "receivables",
)  # fmt: skip
#: Each command word -> the modules that make it (``bills credit`` is receivables'). A run
#: imports only its command's modules (``query top`` loads neither the billing nor DuckDB);
#: a word not listed here, --help before the command word, or completion loads them all.
#: tests/bss/cli/test_cli_lazy.py checks this table against what the modules register.
COMMANDS: dict[str, tuple[str, ...]] = {
    "init": ("workspace",), "examples": ("workspace",), "tariffs": ("workspace",),
    "load": ("business",), "customers": ("business",), "catalog": ("business",),
    "orders": ("business",), "bill": ("bills",), "bills": ("bills", "receivables"),
    "demo": ("data",), "collect": ("data",), "rate": ("data",), "ingest": ("data",),
    "alarms": ("assurance",), "tickets": ("assurance",), "query": ("query",),
    "check": ("check",), "expire": ("storage",), "compact": ("storage",),
    "payments": ("receivables",), "accounts": ("receivables",),
}  # fmt: skip
_registered: set[str] = set()
_origin: dict[int, int] = {}  # id of a registered command or group -> its module's rank


def register_commands(modules: tuple[str, ...] = COMMAND_MODULES) -> None:
    """Import ``modules`` of bss.cli and attach their commands to ``app`` (each once)."""
    infos: tuple[list[Any], list[Any]] = (app.registered_commands, app.registered_groups)
    for module in sorted(set(modules) - _registered, key=COMMAND_MODULES.index):
        before = [len(held) for held in infos]
        register = getattr(importlib.import_module(f"bss.cli.{module}"), f"register_{module}")
        register(app)
        _registered.add(module)
        for held, n in zip(infos, before, strict=True):
            _origin.update((id(info), COMMAND_MODULES.index(module)) for info in held[n:])
    # --help lists the table's order whichever command was loaded first
    for held in infos:
        held.sort(key=lambda info: _origin.get(id(info), len(COMMAND_MODULES)))


def _set_global(ctx: Any, param: Any, value: Any) -> Any:
    """Callback of a global option given after a command word: it overrides the root's."""
    if value is None or value is False:
        return value
    state = get_state(ctx)
    if param.name == "workspace":
        state.workspace_arg = Path(value)
    elif param.name == "json_out":
        state.json = True
    else:
        setattr(state, param.name, True)
    configure_logging(state)
    return value


def _flags_without_type() -> None:
    """Show flags as flags in --help: typer 0.29 prints ``<bool>`` after every flag."""
    original = typer.core.TyperOption.display_type_rich
    if getattr(original, "_rating_engine", False):
        return

    def display_type_rich(self: typer.core.TyperOption, ctx: Any) -> str | None:
        if self.is_flag and self.metavar is None:
            return None
        return original(self, ctx)

    display_type_rich._rating_engine = True  # type: ignore[attr-defined]
    typer.core.TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


def build_cli(command: str | None = None) -> Any:
    """The click command tree of ``app``, with the global options on every (sub)command;
    with ``command`` (a command word of :data:`COMMANDS`), only the modules that make it
    are imported, and only their commands are in the tree."""
    _flags_without_type()
    quick_converters()  # no pydantic validators for plain option values
    register_commands(COMMANDS.get(command or "", COMMAND_MODULES))
    root = typer.main.get_command(app)
    shared = [p for p in root.params if p.name in _GLOBAL_NAMES]

    def local_copy(param: Any) -> Any:
        # Same names and help; not passed to the command function, no environment lookup
        # (the root already read $RATING_ENGINE_WORKSPACE; a copy must not override -w).
        option = copy.copy(param)
        option.expose_value = False
        option.envvar = None
        option.show_envvar = False
        option.callback = _set_global
        return option

    def attach(command: Any) -> None:
        for sub in getattr(command, "commands", {}).values():
            sub.params.extend(local_copy(p) for p in shared)
            attach(sub)

    attach(root)
    return root


def _command_word(args: list[str]) -> str | None:
    """The command word of a command line (the first word that is neither a global
    option nor its value); None when the whole tree is needed: root --help, shell
    completion, or no command."""
    if any(name.startswith("_") and name.endswith("_COMPLETE") for name in os.environ):
        return None
    i = 0
    while i < len(args):
        word = args[i]
        if (
            word in ("--help", "-h")
            or word.startswith("--install-completion")
            or (word.startswith("--show-completion"))
        ):
            return None
        if not word.startswith("-"):
            return word
        i += 2 if word in ("-w", "--workspace") else 1
    return None


def _storage_message(exc: OSError, state: CliState) -> str:
    where = exc.filename
    if not where:  # a write deep in a library that did not say which file: name the workspace
        try:
            where = f"the workspace {state.workspace.root}"
        except RatingEngineError:
            where = "the workspace"
    if exc.errno == errno.ENOSPC:
        return (
            f"no space left on the device holding {where}: nothing was committed; free space "
            "and run the same command again"
        )
    if exc.errno == errno.EROFS:
        return (
            f"cannot write {where} ({exc.strerror}): the workspace must be writable; choose "
            "another with --workspace or fix its permissions"
        )
    if exc.errno in (errno.EACCES, errno.EPERM):  # a read (a folder not listable) or a write
        return (
            f"cannot use {where} ({exc.strerror}): the workspace must be readable and "
            "writable; choose another with --workspace or fix its permissions"
        )
    return f"storage error on {where}: {exc.strerror or exc}"


#: A reader that stopped reading (``... | head``) ends the command quietly with 1, as rich
#: does when a table meets the closed pipe (and Python's documentation on SIGPIPE advises).
EXIT_PIPE = 1


class OutputError(OSError):
    """Writing standard output failed (the disk behind a redirection full, a pipe whose
    reader left): not the workspace's fault, whatever the errno says."""


class _StdoutRaw(io.RawIOBase):
    """Standard output's descriptor, telling its write errors apart from the workspace's."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def isatty(self) -> bool:
        return os.isatty(self._fd)

    def write(self, data: Any) -> int:
        try:
            return os.write(self._fd, data)
        except OSError as exc:
            raise OutputError(exc.errno, exc.strerror) from None


def _tag_stdout_errors() -> None:
    """Put :class:`_StdoutRaw` under the process's own standard output (not a caller's
    replacement, e.g. a test's capture), buffered and encoded as before."""
    out = sys.stdout
    if out is None or out is not sys.__stdout__ or not isinstance(out, io.TextIOWrapper):
        return
    try:
        out.flush()
        fd = out.fileno()
    except (OSError, ValueError):
        return
    buffered = io.BufferedWriter(_StdoutRaw(fd))
    sys.stdout = io.TextIOWrapper(
        buffered, encoding=out.encoding, errors=out.errors, line_buffering=out.line_buffering
    )


def _stdout_failed(exc: OSError) -> bool:
    """After an OSError: whether standard output is what failed (tagged by its writer, or
    what it holds still cannot be flushed)."""
    if isinstance(exc, OutputError):
        return True
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
    except (OSError, ValueError):
        return True
    return False


def _output_lost(exc: OSError) -> None:
    """End a command whose output could not be written: one line on standard error, not a
    traceback, and not the workspace blamed. The unwritable output is dropped (standard
    output now leads to the null device), so the interpreter's last flush fails no more."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
    if exc.errno == errno.EPIPE:
        raise SystemExit(EXIT_PIPE)  # the reader has all it wanted: nothing to report
    reason = exc.strerror or str(exc)
    with contextlib.suppress(OSError, ValueError):
        print(f"error: cannot write the output to standard output ({reason})", file=sys.stderr)
    raise SystemExit(EXIT_STORAGE)


def _fail(
    state: CliState, code: int, kind: str, message: str, details: dict[str, Any] | None = None
) -> None:
    if state.json:
        error: dict[str, Any] = {"code": code, "kind": kind, "message": message}
        if details:
            error["details"] = details
        try:
            print(json.dumps({"error": error}, default=str), flush=True)
        except OSError as exc:  # standard output itself failed: say it (and why) on stderr
            _output_lost(exc)
    else:
        sys.stdout.flush()  # what the command printed comes before its error line
        print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def _is_corruption(exc: BaseException) -> bool:
    """A stored file that cannot be read back: DuckDB checksum/format, Arrow's or polars'
    Parquet."""
    module = type(exc).__module__ or ""
    text = str(exc).lower()
    if module.startswith("duckdb") or module.startswith("_duckdb"):
        return any(w in text for w in ("corrupt", "checksum", "not a valid duckdb", "serializ"))
    if module.startswith("pyarrow"):
        # "base64": the footer's Arrow schema (ARROW:schema) damaged
        words = ("parquet", "magic", "footer", "corrupt", "thrift", "invalid base64")
        return any(w in text for w in words)
    if module.startswith("polars"):  # its reader: "parquet: File out of specification: ..."
        return (text.startswith("parquet") and "out of specification" in text) or (
            "encoded schema stored in arrow:schema" in text  # the footer's schema damaged
        )
    return False


def _unreadable_parquet(exc: OSError) -> bool:
    """Arrow reports a damaged Parquet part (bad page header, checksum) as a plain OSError
    without an errno: a stored file that cannot be read back, not a fault of the machine."""
    text = str(exc).lower()
    return any(w in text for w in ("parquet", "thrift", "checksum", "magic bytes", "footer"))


def _corrupt_message(exc: BaseException) -> str:
    return (
        f"a stored file cannot be read back: {' '.join(str(exc).split())}; run "
        "`rating-engine check` to find broken parts and `check --quarantine` to move them aside"
    )


#: Command words whose process ends without the interpreter's teardown (:func:`_exit_now`):
#: read-only commands - no file or database open for writing, no temporary folder, no
#: cluster left (a --scheduler client is closed when the command returns).
_NO_TEARDOWN = frozenset({"query"})


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app and map errors to one line and an exit code."""
    args = sys.argv[1:] if argv is None else list(argv)
    word = _command_word(args)
    try:
        _run(args, word)
    except SystemExit as done:
        if argv is None and word in _NO_TEARDOWN:  # the process itself, not a caller's
            _exit_now(done.code)
        raise


def _exit_now(code: object) -> None:
    """End the process with ``code`` once its output is flushed, skipping the interpreter's
    teardown: freeing every module of numpy, pyarrow, polars and typer object by object
    took ~50 ms CPU after a query had printed its answer. Returns (the usual exit then
    follows) for a code that is not a number, an output that cannot be flushed (a closed
    pipe) or a process that used Dask, so those end exactly as before."""
    if code is not None and not isinstance(code, int):
        return
    if "distributed" in sys.modules:  # --scheduler: Dask's own exit hooks end its processes
        return
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:  # None: the descriptor was closed when Python started
                stream.flush()
    except (OSError, ValueError):
        return
    os._exit(code or 0)


def _run(args: list[str], word: str | None) -> None:
    state = CliState(debug="--debug" in args, json="--json" in args)
    _tag_stdout_errors()
    _numba_cache_outside_site_packages()
    _one_blas_thread()
    _batch_allocator(word)
    try:
        # standalone mode: usage errors, --help and Ctrl-C are handled and exit by the CLI
        # framework itself; our own errors and the machine's come out here. Under --json a
        # usage error comes out too, to be one JSON object like every other error.
        code = build_cli(word).main(
            args=args, prog_name="rating-engine", obj=state, standalone_mode=not state.json
        )
        raise SystemExit(code if isinstance(code, int) else 0)
    except UsageError as exc:  # only under --json (standalone mode prints it itself)
        _fail(state, EXIT_USAGE, "UsageError", exc.format_message())
    except typer.Abort:
        _fail(state, 130, "Interrupted", "interrupted")
    except RatingEngineError as exc:
        if state.debug:
            traceback.print_exc()
        code = next(code for kind, code in EXIT_CODES if isinstance(exc, kind))
        _fail(state, code, type(exc).__name__, str(exc), exc.details)
    except OSError as exc:
        if state.debug:
            traceback.print_exc()
        if _stdout_failed(exc):
            _output_lost(exc)
        if exc.errno is None and _unreadable_parquet(exc):  # Arrow's, not the machine's
            _fail(state, EXIT_CORRUPT, "CorruptStorage", _corrupt_message(exc))
        _fail(state, EXIT_STORAGE, "StorageError", _storage_message(exc, state))
    except Exception as exc:
        if not _is_corruption(exc):
            raise
        if state.debug:
            traceback.print_exc()
        _fail(state, EXIT_CORRUPT, "CorruptStorage", _corrupt_message(exc))


def _one_blas_thread() -> None:
    """numpy's OpenBLAS starts a thread per core when numpy is imported (~25 ms CPU of a
    one-shot command, more under load); nothing here calls BLAS (Numba and Arrow do the
    work), so a CLI process asks for one unless the user chose otherwise. Set before the
    command's modules import numpy (importing this module does not)."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


#: Commands that run one batch and end (a billing run, an ingest, rating, the demo).
_BATCH_COMMANDS = frozenset({"bill", "demo", "rate", "ingest"})
#: The allocator setting of their processes (a user's own value wins): pyarrow's mimalloc
#: returned freed pages to the system at once, and the next batch faulted them in again,
#: zeroed - per 10M billed records ~1.4 s of system time; kept, they are reused.
BATCH_ALLOCATOR_ENV = {"MIMALLOC_PURGE_DELAY": "-1"}


def _batch_allocator(word: str | None) -> None:
    """Keep freed memory for reuse in a batch command's process (not in the long-running
    collector, whose memory after a burst should go back). mimalloc reads the setting when
    pyarrow loads, which importing this module does not do."""
    if word in _BATCH_COMMANDS and "pyarrow" not in sys.modules:
        for name, value in BATCH_ALLOCATOR_ENV.items():
            os.environ.setdefault(name, value)


def _numba_cache_outside_site_packages() -> None:
    """Compiled kernels of an installed (non-editable) package go to the user's cache folder.

    Numba caches next to the source by default; an installed package's folder may be
    read-only or shared by users, and ``pip uninstall`` would leave stale caches there.
    """
    if "NUMBA_CACHE_DIR" in os.environ:
        return
    package = Path(__file__).resolve().parents[2]
    if package.name not in ("site-packages", "dist-packages"):
        return  # a source checkout (editable install): cache beside the sources
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    os.environ["NUMBA_CACHE_DIR"] = str(Path(base) / "rating-engine" / "numba")
