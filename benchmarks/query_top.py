"""Benchmark: ``rating-engine query top`` (bss.analyst.query.top_talkers) vs polars and DuckDB.

    python benchmarks/query_top.py [--flows 3000000] [--repeat 3] [--demo DIR]

Measures the user-facing path - Parquet in, the top-10 with nfdump's percentages of the
window totals out (streamed partials, text addresses) - against a polars lazy scan and
DuckDB SQL computing the same top-10 (renormalised bytes) from the same files, for
``src_ip``, ``dst_port`` and ``conversation``; checks the three agree. The nfdump
comparison is ``benchmarks/topn_vs_peers.py``. With ``--demo DIR`` the demo workspace's
flows are timed too (made with ``rating-engine --workspace DIR demo`` if missing).
Ours is timed with the engine ``top_talkers`` chooses in this process (Numba is not loaded
first, as in a ``query`` command), then with Arrow's grouping and with the Numba kernels
each forced (``arrow_s``, ``kernels_s``). Wall clock, best of ``--repeat`` warm runs (Numba
compiled first). Whole processes: ``benchmarks/query_processes.py``. Last line: JSON.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))

from synthetic_ip_flows import make_flows, make_subscriptions

import bss.analyst.query as query
from bss.analyst.query import top_talkers
from collectors.dataset import write_partitioned
from collectors.workspace import WorkspacePaths

__all__ = ["main"]


def _best(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def _polars(glob: str, by: str) -> list[int]:
    lf = pl.scan_parquet(glob, hive_partitioning=True)
    m = pl.max_horizontal(pl.col("sampling_interval"), pl.lit(1)).cast(pl.UInt64)
    if by == "conversation":
        lf = lf.with_columns(
            pl.min_horizontal("src_addr", "dst_addr").alias("a"),
            pl.max_horizontal("src_addr", "dst_addr").alias("b"),
        )
        keys = ["a", "b"]
    else:
        keys = [{"src_ip": "src_addr"}.get(by, by)]
    out = (
        lf.group_by(keys)
        .agg((pl.col("bytes") * m).sum().alias("bytes"), pl.len().alias("flows"))
        .sort("bytes", descending=True)
        .head(10)
        .collect()
    )
    return [int(v) for v in out["bytes"].to_list()]


def _duckdb(con: duckdb.DuckDBPyConnection, glob: str, by: str) -> list[int]:
    keys = {
        "src_ip": "src_addr",
        "dst_port": "dst_port",
        "conversation": "least(src_addr, dst_addr), greatest(src_addr, dst_addr)",
    }[by]
    rows = con.execute(
        f"SELECT {keys}, sum(bytes * greatest(sampling_interval, 1)) AS b, count(*) "
        f"FROM read_parquet('{glob}', hive_partitioning = true) GROUP BY ALL "
        "ORDER BY b DESC LIMIT 10"
    ).fetchall()
    return [int(r[-2]) for r in rows]


def _measure(paths: WorkspacePaths, rows: int, repeat: int) -> dict[str, Any]:
    glob = str(paths.flows / "**" / "*.parquet")
    con = duckdb.connect()
    out: dict[str, Any] = {"flows": rows}
    for by in ("src_ip", "dst_port", "conversation"):
        t0 = time.perf_counter()
        top_talkers(paths, by, "bytes", 10)
        first = time.perf_counter() - t0
        # the engine top_talkers chooses in this process, then each one forced
        chosen = "kernels" if query._use_kernels(query.BY_KEYS[by]) else "arrow"
        ours_s, ours = _best(lambda by=by: top_talkers(paths, by, "bytes", 10), repeat)
        engines = {}
        for engine in ("arrow", "kernels"):
            query.ENGINE = engine
            top_talkers(paths, by, "bytes", 10)  # kernels: compiled or loaded first
            engines[engine], _ = _best(lambda by=by: top_talkers(paths, by, "bytes", 10), repeat)
        query.ENGINE = None
        pl_s, pl_top = _best(lambda by=by: _polars(glob, by), repeat)
        db_s, db_top = _best(lambda by=by: _duckdb(con, glob, by), repeat)
        ours_top = [int(v) for v in ours.column("bytes").to_pylist()]
        out[by] = {
            "ours_s": round(ours_s, 4),
            "engine": chosen,
            "arrow_s": round(engines["arrow"], 4),
            "kernels_s": round(engines["kernels"], 4),
            "first_run_s": round(first, 3),
            "polars_s": round(pl_s, 4),
            "duckdb_s": round(db_s, 4),
            "ours_flows_per_s": round(rows / ours_s),
            "vs_polars": round(pl_s / ours_s, 2),
            "vs_duckdb": round(db_s / ours_s, 2),
            "same_top10_bytes": ours_top == pl_top == db_top,
        }
        print(f"{rows:>10} flows  {by:<13} ours {ours_s:7.3f}s ({chosen}; arrow "
              f"{engines['arrow']:.3f}s, kernels {engines['kernels']:.3f}s)  polars {pl_s:7.3f}s  "
              f"duckdb {db_s:7.3f}s  agree={out[by]['same_top10_bytes']}")  # fmt: skip
    con.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=3_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--demo", type=Path, default=None, help="demo workspace to time too")
    args = parser.parse_args()

    result: dict[str, Any] = {"benchmark": "query_top"}
    if args.demo is not None:
        if not (args.demo / "flows").exists():
            subprocess.run(
                [sys.executable, "-c", "from bss.cli.main import main; main()",
                 "--workspace", str(args.demo), "--quiet", "demo"],
                check=True,
            )  # fmt: skip
        demo = WorkspacePaths(args.demo)
        n = int(top_talkers(demo, "src_ip", "flows", 1).schema.metadata[b"total_flows"])
        result["demo"] = _measure(demo, n, args.repeat)

    _subs, starts, plens = make_subscriptions(2000)
    flows = make_flows(args.flows, starts, plens, hours=24)
    with tempfile.TemporaryDirectory() as tmp:
        paths = WorkspacePaths(Path(tmp) / "ws").ensure()
        t = time.perf_counter()
        write_partitioned(flows, paths.flows, time_column="flow_start", part_name="b", hourly=True)
        print(f"wrote {args.flows} flows in {time.perf_counter() - t:.1f}s")
        del flows
        result["synthetic"] = _measure(paths, args.flows, args.repeat)
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
