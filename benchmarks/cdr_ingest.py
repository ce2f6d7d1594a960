"""CDR ingest benchmark: generated generic-layout CSV -> W/usage Parquet, rows per second.

    python benchmarks/cdr_ingest.py [--rows N] [--bad-every K] [--repeat R] [--keep DIR]
                                    [--compare OTHER_WS]

Generates N rows in the layout of the shipped mapping `generic` (national, international and
'+' numbers; local ISO times in Europe/Berlin; voice/sms/data), then times
``ingest_cdr_files`` end to end: hashing, CSV parsing, transforms, record ids, de-duplication,
Parquet (LZ4) staging and publishing. For reference it also times pyarrow's CSV reader alone
on the same file. Numba compilation is warmed up on a small file first and reported apart.
With ``--repeat R`` the bare parse and the ingest (into a fresh workspace) alternate R times
and the medians are compared (the machine is shared: one run is noise); CPU seconds (all
threads, user + system) are reported beside wall seconds, and their ratio too.
``--compare OTHER_WS`` checks that this version ingests the same content as another one
(run it with ``--keep DIR``; its workspace is ``DIR/ws``): the same usage rows, ids, values
and schema, the same rejected rows (but their time) and the same ledger counts.
The peak resident memory of a fresh process ingesting the file is measured last (its
VmHWM). Prints a few lines for people; the last line is one JSON object.
"""

# ruff: noqa: E402  (pyarrow is imported once the allocator is set, below)
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.resources import files
from pathlib import Path

from bss.cli.main import BATCH_ALLOCATOR_ENV

# the allocator setting `rating-engine ingest` gives its process, before pyarrow loads (the
# bare parse runs under it too; a value in the environment wins, e.g. mimalloc's default 10)
for _name, _value in BATCH_ALLOCATOR_ENV.items():
    os.environ.setdefault(_name, _value)

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.dataset as pads

from collectors.cdr.ingest import ingest_cdr_files
from collectors.cdr.ledger import LEDGER_NAME
from collectors.cdr.mapping import load_mapping
from collectors.workspace import WorkspacePaths

MAPPING = Path(str(files("collectors.cdr") / "mappings" / "generic.toml"))


def generate(path: Path, rows: int, *, seed: int = 7, bad_every: int = 0, days: int = 3) -> None:
    """Write ``rows`` generic-layout CDRs to ``path`` (vectorised, in 1M-row slices)."""
    rng = np.random.default_rng(seed)
    services = np.array(["voice", "sms", "data"])
    start0 = 1_774_000_000  # March 2026
    schema = pa.schema([(c, pa.string()) for c in _COLUMNS])
    with pacsv.CSVWriter(
        path,
        schema,
        write_options=pacsv.WriteOptions(quoting_style="needed"),
    ) as writer:
        for lo in range(0, rows, 1_000_000):
            n = min(1_000_000, rows - lo)
            ids = pa.array(np.char.add("c", np.arange(lo, lo + n).astype(str)))
            subs = rng.integers(1_500_000_000, 1_799_999_999, n).astype(str)
            style = rng.integers(0, 3, n)
            msisdn = np.where(
                style == 0,
                np.char.add("0", subs),
                np.where(style == 1, np.char.add("+49", subs), np.char.add("0049", subs)),
            )
            svc = services[rng.integers(0, 3, n)]
            # a switch writes its CDRs in time order; the file spans `days` days
            span = days * 86_400
            secs = (
                start0 + lo * span // rows + np.sort(rng.integers(0, max(1, n * span // rows), n))
            )
            start = pc.strftime(
                pa.array(secs * 1_000_000, pa.timestamp("us")), format="%Y-%m-%dT%H:%M:%S"
            )
            duration = rng.integers(0, 3_600, n).astype(str)
            up = np.where(svc == "data", rng.integers(0, 10**7, n).astype(str), "")
            down = np.where(svc == "data", rng.integers(0, 10**8, n).astype(str), "")
            dest = np.where(
                svc == "data", "", np.char.add("0", rng.integers(10**8, 10**9, n).astype(str))
            )
            cell = np.char.add("26201-", rng.integers(1000, 9999, n).astype(str))
            cols = [ids, msisdn, svc, start, duration, up, down, dest, msisdn, cell]
            arrays = [c if isinstance(c, pa.Array) else pa.array(c) for c in cols]
            if bad_every:
                bad = np.arange(lo, lo + n) % bad_every == bad_every - 1
                arrays[4] = pc.if_else(pa.array(bad), "-1", arrays[4])
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema))


_COLUMNS = (
    "id",
    "msisdn",
    "service",
    "start",
    "duration",
    "bytes_up",
    "bytes_down",
    "destination",
    "origin",
    "cell",
)


def _same_content(ours: Path, theirs: Path) -> bool:
    """Whether two workspaces hold the same ingested content (see the module docstring)."""
    same = True
    for name, key in (("usage", ["source_line"]), ("rejected", ["record_no", "reason"])):
        tables = []
        for root in (ours, theirs):
            files = sorted(str(f) for f in (root / name).rglob("*.parquet"))
            if not files:  # nothing of this kind (no rejected row): an empty stand-in
                tables.append(pa.table({}))
                continue
            table = (
                pads.dataset(files, format="parquet")
                .to_table()
                .sort_by([(k, "ascending") for k in key])
            )
            tables.append(table.drop_columns(["rejected_at"]) if name == "rejected" else table)
        equal = tables[0].schema.equals(tables[1].schema, check_metadata=True) and tables[0].equals(
            tables[1]
        )
        print(f"{name}: {tables[0].num_rows} rows here, {tables[1].num_rows} there, "
              f"{'the same' if equal else 'DIFFERENT'}")  # fmt: skip
        same = same and equal
    counted = ("file_name", "mapping", "rows_read", "rows", "duplicates", "rejected", "skipped")
    ledgers = [
        sorted(
            tuple((k, json.dumps(e[k], sort_keys=True)) for k in counted)
            for e in json.loads((root / "state" / LEDGER_NAME).read_text())["files"].values()
        )
        for root in (ours, theirs)
    ]
    print(f"ledger: {'the same' if ledgers[0] == ledgers[1] else 'DIFFERENT'}")
    return same and ledgers[0] == ledgers[1]


def _child_peak_rss_mb(csv_path: Path, workspace: Path) -> float:
    """Peak resident memory (MB) of a fresh process that ingests ``csv_path`` into
    ``workspace`` (its own VmHWM: this process holds the generator's arrays)."""
    shutil.rmtree(workspace, ignore_errors=True)
    code = (
        "import sys, os\n"
        "from pathlib import Path\n"
        "from collectors.cdr.ingest import ingest_cdr_files\n"
        "from collectors.cdr.mapping import load_mapping\n"
        "from collectors.workspace import WorkspacePaths\n"
        "ingest_cdr_files([Path(sys.argv[1])], load_mapping(Path(sys.argv[2])), "
        "WorkspacePaths(Path(sys.argv[3])))\n"
        "peak = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
        "print(int(peak.split()[1]) / 1024)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(csv_path), str(MAPPING), str(workspace)],
        check=True, capture_output=True, text=True, env=os.environ.copy(),
    )  # fmt: skip
    return float(out.stdout.split()[-1])


def _cpu() -> float:
    """CPU seconds of this process, all threads, user + system."""
    t = os.times()
    return t.user + t.system


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--bad-every", type=int, default=0, help="every K-th row negative")
    parser.add_argument("--repeat", type=int, default=1, help="alternating runs (medians)")
    parser.add_argument("--keep", type=Path, default=None, help="work folder to keep")
    parser.add_argument("--compare", type=Path, default=None, help="workspace of another run")
    args = parser.parse_args(argv)
    mapping = load_mapping(MAPPING)
    with tempfile.TemporaryDirectory(prefix="cdr-bench-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        warm = work / "warm.csv"
        generate(warm, 1_000, seed=1)
        ingest_cdr_files([warm], mapping, WorkspacePaths(work / "warm-ws"))
        warmup_s = time.perf_counter() - t0

        csv_path = work / "cdr.csv"
        t0 = time.perf_counter()
        generate(csv_path, args.rows, bad_every=args.bad_every)
        gen_s = time.perf_counter() - t0
        size = os.path.getsize(csv_path)

        parse_runs, parse_cpu_runs, ingest_runs, ingest_cpu_runs = [], [], [], []
        for _ in range(max(1, args.repeat)):
            t0, c0 = time.perf_counter(), _cpu()
            reader = pacsv.open_csv(
                csv_path,
                read_options=pacsv.ReadOptions(use_threads=False, block_size=1 << 20),
                convert_options=pacsv.ConvertOptions(
                    column_types={c: pa.string() for c in _COLUMNS}
                ),
            )
            parsed = sum(b.num_rows for b in reader)
            parse_runs.append(time.perf_counter() - t0)
            parse_cpu_runs.append(_cpu() - c0)

            ws = WorkspacePaths(work / "ws")
            shutil.rmtree(ws.root, ignore_errors=True)
            t0, c0 = time.perf_counter(), _cpu()
            summary = ingest_cdr_files([csv_path], mapping, ws)
            ingest_runs.append(time.perf_counter() - t0)
            ingest_cpu_runs.append(_cpu() - c0)  # all threads (transforms, writers, hashing)
        parse_s, parse_cpu_s = statistics.median(parse_runs), statistics.median(parse_cpu_runs)
        ingest_s = statistics.median(ingest_runs)
        ingest_cpu_s = statistics.median(ingest_cpu_runs)
        t0 = time.perf_counter()
        again = ingest_cdr_files([csv_path], mapping, ws)
        refuse_s = time.perf_counter() - t0
        same = None if args.compare is None else _same_content(ws.root, args.compare)
        peak_mb = _child_peak_rss_mb(csv_path, work / "rss-ws")
    assert parsed == args.rows
    assert summary.ingested + sum(summary.rejected_by_reason().values()) == args.rows
    assert again.ingested == 0
    assert again.refused
    result = {
        "benchmark": "cdr_ingest",
        "rows": args.rows,
        "csv_mb": round(size / 1e6, 1),
        "ingested": summary.ingested,
        "rejected": summary.rejected_by_reason(),
        "ingest_s": round(ingest_s, 3),
        "rows_per_s": round(args.rows / ingest_s),
        "mb_per_s": round(size / 1e6 / ingest_s, 1),
        "ingest_cpu_s": round(ingest_cpu_s, 3),
        "rows_per_cpu_s": round(args.rows / ingest_cpu_s),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "mimalloc_purge_delay": os.environ.get("MIMALLOC_PURGE_DELAY"),
        "pyarrow_csv_parse_rows_per_s": round(args.rows / parse_s),
        "ingest_vs_parse_only": round(parse_s / ingest_s, 3),
        "ingest_vs_parse_only_best": round(min(parse_runs) / min(ingest_runs), 3),
        "ingest_vs_parse_only_cpu": round(parse_cpu_s / ingest_cpu_s, 3),
        "repeat": len(ingest_runs),
        "ingest_s_runs": [round(x, 3) for x in ingest_runs],
        "parse_s_runs": [round(x, 3) for x in parse_runs],
        "target_vs_parse_only": 0.4,
        "refuse_again_s": round(refuse_s, 3),
        "ingest_process_peak_rss_mb": round(peak_mb),
        "warmup_incl_numba_compile_s": round(warmup_s, 2),
        "generate_s": round(gen_s, 1),
        "target_rows_per_s": 2_000_000,
        "cpus": os.cpu_count(),
        "same_content_as_compared": same,
    }
    print(f"generated {args.rows} rows ({size / 1e6:.0f} MB) in {gen_s:.1f} s")
    print(f"pyarrow CSV parse only: {args.rows / parse_s:,.0f} rows/s (CPU {parse_cpu_s:.2f} s)")
    print(f"ingest: {args.rows / ingest_s:,.0f} rows/s ({ingest_s:.2f} s)")
    print(f"ingest CPU: {ingest_cpu_s:.2f} s, {args.rows / ingest_cpu_s:,.0f} rows per CPU-second")
    print(
        f"ingest vs parse only: {parse_s / ingest_s:.3f} wall, "
        f"{parse_cpu_s / ingest_cpu_s:.3f} CPU (target 0.40 wall)"
    )
    print(f"second ingest of the same file refused in {refuse_s:.2f} s")
    print(f"peak RSS of a process ingesting the file: {peak_mb:,.0f} MB")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
