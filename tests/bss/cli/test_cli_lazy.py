"""A command imports only the CLI modules that make it: ``query top --json`` starts without
the billing, DuckDB, polars, Numba, rich or pydantic; the command table matches what the modules
register."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from bss.cli.main import COMMAND_MODULES, COMMANDS, _command_word, build_cli
from collectors.dataset import write_partitioned
from collectors.schemas import FLOW_SCHEMA
from collectors.workspace import WorkspacePaths

# Each module's registrations into a fresh app, in a child: registering into the shared
# sub-apps a second time would leave duplicates in this process.
_REGISTERED = """
import json, importlib, typer
from bss.cli import bills
out = {}
for module in %r:
    app = typer.Typer()
    credit = len(bills.bills_app.registered_commands)
    getattr(importlib.import_module("bss.cli." + module), "register_" + module)(app)
    names = [c.name for c in app.registered_commands] + [g.name for g in app.registered_groups]
    if len(bills.bills_app.registered_commands) > credit:  # a subcommand of `bills`
        names.append("bills")
    out[module] = names
print(json.dumps(out))
"""

_QUERY_RUN = """
import json, os, sys
from bss.cli.main import build_cli, main
first = sorted(m for m in ("numpy", "pyarrow", "polars", "duckdb") if m in sys.modules)
try:
    main(["-w", sys.argv[1], *sys.argv[2:]])
except SystemExit as done:
    assert done.code in (0, None), done.code
loaded = sorted(m.split(".")[0] if not m.startswith(("bss.", "numpy.ma")) else m
                for m in sys.modules)
order = list(build_cli().commands)
blas = os.environ.get("OPENBLAS_NUM_THREADS")
print(json.dumps({"modules": loaded, "order": order, "blas": blas, "first": first}))
"""


def _flows(n: int) -> pa.Table:
    """``n`` flows over 7 destination ports (non-null columns filled, the others null)."""
    rng = np.random.default_rng(3)
    filled = {
        "flow_start": pa.array(1_790_000_000_000_000 + rng.integers(0, 3_600_000_000, n)),
        "src_addr": pa.array([bytes(15) + bytes([i % 9]) for i in range(n)], pa.binary(16)),
        "dst_port": pa.array(rng.integers(0, 7, n).astype(np.uint16)),
        "bytes": pa.array(rng.integers(40, 1500, n).astype(np.uint64)),
        "packets": pa.array(np.ones(n, np.uint64)),
        "source_format": pa.array(["ipfix"] * n),
    }
    columns = []
    for field in FLOW_SCHEMA:
        if field.name in filled:
            columns.append(filled[field.name].cast(field.type))
        elif field.name == "flow_end":
            columns.append(filled["flow_start"].cast(field.type))
        elif field.nullable:
            columns.append(pa.nulls(n, field.type))
        elif pa.types.is_fixed_size_binary(field.type):
            columns.append(pa.array([bytes(16)] * n, field.type))
        else:
            columns.append(pa.array(np.zeros(n, np.int64)).cast(field.type))
    return pa.table(columns, schema=FLOW_SCHEMA)


def _child(code: str, *args: str) -> str:
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          check=True)  # fmt: skip
    return done.stdout.strip().splitlines()[-1]


def test_command_table_matches_the_modules() -> None:
    registered = json.loads(_child(_REGISTERED % (COMMAND_MODULES,)))
    made_by: dict[str, set[str]] = {}
    for module, names in registered.items():
        assert names, f"bss.cli.{module} registers nothing"
        for name in names:
            made_by.setdefault(name, set()).add(module)
    assert {name: set(modules) for name, modules in COMMANDS.items()} == made_by


@pytest.mark.parametrize(
    ("argv", "word"),
    [
        (["-w", "ws", "query", "top"], "query"),
        (["--workspace=ws", "--json", "-q", "bill", "--period", "2026-10"], "bill"),
        (["--debug", "query", "--help"], "query"),
        (["--help", "query"], None),
        (["-w", "ws", "--help"], None),
        (["--install-completion"], None),
        ([], None),
        (["-w"], None),
    ],
)
def test_command_word(argv: list[str], word: str | None) -> None:
    assert _command_word(argv) == word


def test_query_top_process_loads_no_billing_duckdb_polars_or_numba(tmp_path: Path) -> None:
    paths = WorkspacePaths(tmp_path / "ws").ensure()
    write_partitioned(_flows(200), paths.flows, time_column="flow_start", part_name="t")
    out = json.loads(_child(_QUERY_RUN, str(paths.root), "query", "top", "--by", "dst_port",
                            "--json"))  # fmt: skip
    loaded = set(out["modules"])
    # numpy.ma: pa.array(ndarray) imports it (~14 ms) to ask whether the array is masked
    # pydantic: typer's option converters (bss.cli.coercion converts plain values itself)
    for heavy in ("duckdb", "polars", "numba", "bss.billing.run", "bss.cli.bills", "rich",
                  "numpy.ma", "pydantic"):  # fmt: skip
        assert heavy not in loaded, f"query top imported {heavy}"
    # importing the CLI loads no numpy: main() asks for one OpenBLAS thread before it does
    assert (out["first"], out["blas"]) == ([], "1")
    # --help after it lists every command, in the order of a run that loaded them all
    everything = list(build_cli().commands)
    assert out["order"] == everything
    assert set(everything) == set(COMMANDS)


_POLARS_TOP_RUN = """
import json, sys
from rating_engine.traffic import flow_query
flow_query._POLARS_BYTES = 0  # as a window of more than 16 MiB: polars groups
from bss.cli.main import main
try:
    main(["-w", sys.argv[1], "query", "top", "--by", "dst_port", "--json"])
except SystemExit as done:
    assert done.code in (0, None), done.code
print(json.dumps(sorted(sys.modules)))
"""


def test_query_top_by_polars_loads_no_arrow_dataset(tmp_path: Path) -> None:
    """Where polars groups, the Arrow dataset scanner (pyarrow.dataset, ~20 ms CPU to
    import) and the IPv6 text module are not loaded: only the Arrow path and IPv6
    addresses need them."""
    paths = WorkspacePaths(tmp_path / "ws").ensure()
    write_partitioned(_flows(200), paths.flows, time_column="flow_start", part_name="t")
    loaded = set(json.loads(_child(_POLARS_TOP_RUN, str(paths.root))))
    assert "polars" in loaded
    for module in ("pyarrow.dataset", "collectors.dataset", "collectors.addresses"):
        assert module not in loaded, f"query top by polars imported {module}"


def test_query_stats_process_loads_no_duckdb_numba_rich_or_pydantic(tmp_path: Path) -> None:
    paths = WorkspacePaths(tmp_path / "ws").ensure()
    flows = _flows(200)  # IPv4 sources (IPv6 ones are written as text through numpy.ma)
    v4 = pa.array([bytes(10) + b"\xff\xff\x0a\x00\x00" + bytes([i % 9]) for i in range(200)],
                  pa.binary(16))  # fmt: skip
    flows = flows.set_column(flows.schema.get_field_index("src_addr"), "src_addr", v4)
    write_partitioned(flows, paths.flows, time_column="flow_start", part_name="t")
    out = json.loads(_child(_QUERY_RUN, str(paths.root), "query", "stats", "-s",
                            "dstport/bytes", "-s", "srcip/flows", "--json"))  # fmt: skip
    loaded = set(out["modules"])
    for heavy in ("duckdb", "numba", "bss.billing.run", "rich", "numpy.ma", "pydantic"):
        assert heavy not in loaded, f"query stats imported {heavy}"


_HELP_RUN = """
import json, sys
from bss.cli.main import main
try:
    main(["--help"])
except SystemExit as done:
    assert done.code in (0, None), done.code
print(json.dumps(sorted(sys.modules)))
"""


def test_help_loads_no_numpy_pyarrow_duckdb_or_numba() -> None:
    """``--help`` imports every command module: they load their engines in the commands."""
    loaded = set(json.loads(_child(_HELP_RUN)))
    for heavy in ("numpy", "pyarrow", "duckdb", "polars", "numba", "pydantic", "bss.billing.run"):
        assert heavy not in loaded, f"--help imported {heavy}"


_CONSOLE_RUN = """
import atexit, sys
atexit.register(lambda: print("teardown", file=sys.stderr))
from bss.cli.main import main
sys.argv[1:] = sys.argv[2:]  # as the console script: main() reads sys.argv
if "--dask-loaded" in sys.argv:  # as after a --scheduler run (a stand-in for the module)
    sys.argv.remove("--dask-loaded")
    sys.modules["distributed"] = type(sys)("distributed")
main()
"""


def test_query_process_ends_without_teardown_after_its_whole_output(tmp_path: Path) -> None:
    paths = WorkspacePaths(tmp_path / "ws").ensure()
    write_partitioned(_flows(200), paths.flows, time_column="flow_start", part_name="t")

    def console(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", _CONSOLE_RUN, "-", *argv],
                              capture_output=True, text=True)  # fmt: skip

    listing = console("-w", str(paths.root), "query", "list", "-o", "csv", "-c", "200")
    assert (listing.returncode, len(listing.stdout.splitlines())) == (0, 201)
    assert "teardown" not in listing.stderr  # the atexit hooks were skipped
    refused = console("-w", str(paths.root), "query", "top", "-n", "0", "--json")
    assert (refused.returncode, "teardown" in refused.stderr) == (2, False)
    assert json.loads(refused.stdout)["error"]["kind"] == "UsageError"
    dask = console("-w", str(paths.root), "--dask-loaded", "query", "top", "--json")
    assert (dask.returncode, "teardown" in dask.stderr) == (0, True)  # Dask's hooks run
    other = console("--version")  # not a query: the interpreter's usual exit
    assert (other.returncode, "teardown" in other.stderr) == (0, True)


def test_query_process_with_its_output_closed_ends_as_before(tmp_path: Path) -> None:
    # started with descriptor 1 closed (cron, daemons), Python has no sys.stdout at all
    paths = WorkspacePaths(tmp_path / "ws").ensure()
    write_partitioned(_flows(50), paths.flows, time_column="flow_start", part_name="t")
    run = subprocess.run([sys.executable, "-c", _CONSOLE_RUN, "-", "-w", str(paths.root),
                          "query", "top", "-n", "2"], stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: os.close(1))  # fmt: skip
    assert (run.returncode, "Traceback" in run.stderr) == (0, False), run.stderr


_ALLOCATOR_RUN = """
import atexit, os, sys
atexit.register(lambda: print(os.environ.get("MIMALLOC_PURGE_DELAY"), "pyarrow" in sys.modules))
from bss.cli.main import main
main(sys.argv[2:])
"""


@pytest.mark.parametrize(
    ("argv", "preset", "want"),
    [(["ingest", "--help"], None, "-1"), (["bill", "--help"], None, "-1"),
     (["bill", "--help"], "10", "10"), (["collect", "--help"], None, "None"),
     (["query", "--help"], None, "None")],
)  # fmt: skip
def test_batch_commands_keep_freed_memory_unless_the_user_says(
    argv: list[str], preset: str | None, want: str
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MIMALLOC_PURGE_DELAY"}
    if preset is not None:
        env["MIMALLOC_PURGE_DELAY"] = preset
    run = subprocess.run([sys.executable, "-c", _ALLOCATOR_RUN, "-", *argv],
                         capture_output=True, text=True, env=env)  # fmt: skip
    # set before pyarrow (whose mimalloc reads it when it loads) was imported
    assert run.stdout.splitlines()[-1].split() == [want, "False"], run.stderr
