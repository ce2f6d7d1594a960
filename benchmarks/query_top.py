"""Benchmark: ``rating-engine query top`` / ``query buckets`` (bss.analyst.query) vs polars
and DuckDB, in one process.

    python benchmarks/query_top.py [--flows 3000000] [--repeat 5] [--demo DIR]

Measures the user-facing path - Parquet in, the top-10 with nfdump's percentages of the
window totals out (streamed partials, text addresses), or the time buckets - against a
polars lazy scan and DuckDB SQL computing the same sums (flows, and bytes and packets
renormalised, per key: what ``query`` prints; until session 8 the peers summed no packets,
a column ours must read - +15 ms of polars' 73 ms CPU by protocol) from the same files:
top-10 by ``src_ip``, ``dst_port``, ``proto`` and ``conversation``, and
``buckets_dst_port_hour`` (per destination port and hour); checks they agree. The
nfdump comparison is ``benchmarks/topn_vs_peers.py``. With ``--demo DIR`` the demo
workspace's flows are timed too (made with ``rating-engine --workspace DIR demo`` if missing).

Ours runs with the engine ``query`` chooses in this process (Numba is not loaded first;
polars is, as in a notebook, a filtered query or this benchmark's polars peer - a
one-shot ``query`` loads it from ``_POLARS_BYTES`` of Parquet), alternating with the
peers for ``--repeat`` rounds after a warm-up (the order rotates each round: ours, polars,
DuckDB; polars, DuckDB, ours; ...); then
with Arrow's grouping, polars and the Numba kernels each forced (``arrow_s``,
``polars_s_forced``, ``kernels_s``, best of ``--repeat``). Times are wall clock medians;
``vs_*`` = the median of the per-round ratios peer / ours (> 1: ours is faster);
``cpu_s`` = this process's CPU (all threads) per run, median, and ``cpu_vs_duckdb`` their
ratio. The JSON's ``vs_duckdb`` / ``cpu_vs_duckdb`` give every statistic's ratio in one
place. The 1-minute load average is reported before and after. Whole processes:
``benchmarks/query_processes.py``. Last line: JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
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
from bss.analyst.query import flow_buckets, top_talkers
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


_TOP_KEYS = {"src_ip": "src_addr", "dst_port": "dst_port", "proto": "protocol"}
_BUCKETS = "buckets_dst_port_hour"


def _polars(glob: str, by: str) -> list[tuple[int, int]]:
    lf = pl.scan_parquet(glob, hive_partitioning=True)
    m = pl.max_horizontal(pl.col("sampling_interval"), pl.lit(1)).cast(pl.UInt64)
    sums = [(pl.col(c) * m).sum().alias(c) for c in ("bytes", "packets")]
    if by == _BUCKETS:
        out = (
            lf.group_by("dst_port", pl.col("flow_start").dt.truncate("1h").alias("bucket"))
            .agg(*sums, pl.len().alias("flows"))
            .sort("bucket", "dst_port")
            .collect()
        )
        return list(zip(out["bytes"].to_list(), out["packets"].to_list(), strict=True))
    if by == "conversation":
        lf = lf.with_columns(
            pl.min_horizontal("src_addr", "dst_addr").alias("a"),
            pl.max_horizontal("src_addr", "dst_addr").alias("b"),
        )
        keys = ["a", "b"]
    else:
        keys = [_TOP_KEYS[by]]
    out = lf.group_by(keys).agg(*sums, pl.len().alias("flows")).sort("bytes", descending=True)
    out = out.head(10).collect()
    return list(zip(out["bytes"].to_list(), out["packets"].to_list(), strict=True))


_SUMS = (
    "sum(bytes * greatest(sampling_interval, 1)) AS b, "
    "sum(packets * greatest(sampling_interval, 1))"
)


def _duckdb(con: duckdb.DuckDBPyConnection, glob: str, by: str) -> list[tuple[int, int]]:
    source = f"read_parquet('{glob}', hive_partitioning = true)"
    if by == _BUCKETS:
        rows = con.execute(
            f"SELECT dst_port, time_bucket(INTERVAL 1 hour, flow_start) AS bucket, {_SUMS}, "
            f"count(*) FROM {source} GROUP BY ALL ORDER BY bucket, dst_port"
        ).fetchall()
        return [(int(r[2]), int(r[3])) for r in rows]
    keys = _TOP_KEYS.get(by, "least(src_addr, dst_addr), greatest(src_addr, dst_addr)")
    rows = con.execute(
        f"SELECT {keys}, {_SUMS}, count(*) FROM {source} GROUP BY ALL ORDER BY b DESC LIMIT 10"
    ).fetchall()
    return [(int(r[-3]), int(r[-2])) for r in rows]


def _ours(paths: WorkspacePaths, by: str) -> list[tuple[int, int]]:
    if by == _BUCKETS:
        table = flow_buckets(paths, "dst_port", "hour")
    else:
        table = top_talkers(paths, by, "bytes", 10)
    return list(zip(table.column("bytes").to_pylist(), table.column("packets").to_pylist(),
                    strict=True))  # fmt: skip


def _measure(paths: WorkspacePaths, rows: int, repeat: int) -> dict[str, Any]:
    glob = str(paths.flows / "**" / "*.parquet")
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    out: dict[str, Any] = {"flows": rows}
    statistics_ = ("src_ip", "dst_port", "proto", "conversation", _BUCKETS)
    # every statistic as a one-shot query runs it (Numba not loaded) first, alternating
    # with the peers; the engines forced after (forcing the kernels loads Numba)
    for by in statistics_:
        key = query.BY_KEYS["dst_port" if by == _BUCKETS else by]
        runs: dict[str, Callable[[], list[tuple[int, int]]]] = {
            "ours": lambda by=by: _ours(paths, by),
            "polars": lambda by=by: _polars(glob, by),
            "duckdb": lambda by=by: _duckdb(con, glob, by),
        }
        t0 = time.perf_counter()
        answers = {who: fn() for who, fn in runs.items()}  # warm-up round, not counted
        first = time.perf_counter() - t0
        chosen = query._engine(key)
        walls: dict[str, list[float]] = {who: [] for who in runs}
        cpus: dict[str, list[float]] = {who: [] for who in runs}
        order = list(runs)
        for r in range(repeat):
            # each engine takes each place in a round in turn: the run right after another
            # engine's measured 5-10 % slower (caches, freed memory), so no one keeps it
            for who in order[r % 3 :] + order[: r % 3]:
                fn = runs[who]
                t, c = time.perf_counter(), time.process_time()
                fn()
                walls[who].append(time.perf_counter() - t)
                cpus[who].append(time.process_time() - c)
        med = {who: statistics.median(v) for who, v in walls.items()}
        ratio = {
            peer: round(statistics.median(
                [p / o for p, o in zip(walls[peer], walls["ours"], strict=True)]), 2)
            for peer in ("polars", "duckdb")
        }  # fmt: skip
        out[by] = {
            "ours_s": round(med["ours"], 4),
            "engine": chosen,
            "warm_up_round_s": round(first, 3),
            "polars_s": round(med["polars"], 4),
            "duckdb_s": round(med["duckdb"], 4),
            "cpu_s": {who: round(statistics.median(v), 4) for who, v in cpus.items()},
            "ours_flows_per_s": round(rows / med["ours"]),
            "vs_polars": ratio["polars"],
            "vs_duckdb": ratio["duckdb"],
            "cpu_vs_duckdb": round(
                statistics.median(cpus["duckdb"]) / max(statistics.median(cpus["ours"]), 1e-9), 2
            ),
            "agree": answers["ours"] == answers["polars"] == answers["duckdb"],
            "load_1m": round(os.getloadavg()[0], 2),
        }
        print(f"{rows:>10} flows  {by:<22} ours {med['ours']:7.3f}s ({chosen})  polars "
              f"{med['polars']:7.3f}s  duckdb {med['duckdb']:7.3f}s  vs duckdb "
              f"{ratio['duckdb']:.2f}x  load {os.getloadavg()[0]:.1f}  "
              f"agree={out[by]['agree']}", flush=True)  # fmt: skip
    for by in statistics_:
        for engine in ("arrow", "polars", "kernels"):
            query.ENGINE = engine
            _ours(paths, by)  # kernels: compiled or loaded first
            best, _ = _best(lambda by=by: _ours(paths, by), repeat)
            out[by]["polars_s_forced" if engine == "polars" else f"{engine}_s"] = round(best, 4)
        query.ENGINE = None
        print(f"{rows:>10} flows  {by:<22} engines forced: arrow {out[by]['arrow_s']:.3f}s, "
              f"polars {out[by]['polars_s_forced']:.3f}s, kernels {out[by]['kernels_s']:.3f}s",
              flush=True)  # fmt: skip
    con.close()
    for name in ("vs_duckdb", "cpu_vs_duckdb"):
        out[name] = {by: out[by][name] for by in statistics_}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=3_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--demo", type=Path, default=None, help="demo workspace to time too")
    args = parser.parse_args()

    result: dict[str, Any] = {"benchmark": "query_top",
                              "load_average_1m_before": round(os.getloadavg()[0], 2)}  # fmt: skip
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
    result["load_average_1m_after"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
