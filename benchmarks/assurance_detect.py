"""Benchmark: seasonal detection over traffic series, and one whole assurance run.

    python benchmarks/assurance_detect.py [--series 500] [--days 28] [--run-subs 40]
                                          [--run-days 14] [--repeat 3]

- detection: ``seasonal_detections`` judging one 5-minute window of ``--series``
  subscription series against ``--days`` of hour-of-week history (series rows =
  series x days x 288), plus ``object_names`` for those rows; rows/s and series/s;
- run: ``bss.assurance.run.run_assurance`` end to end (read Parquet flows per day, bucket per
  subscription and exporter, detect, sync alarms and tickets) on a temporary workspace
  with ``--run-subs`` subscriptions sending one flow per 5 minutes for ``--run-days``.
Warm-up (Numba compile, first DuckDB open) is excluded. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "bss" / "assurance"))

from assurance_builders import customers_with_ip_blocks, flow_table

from bss.assurance.run import AssurancePolicy, run_assurance
from bss.db import connect
from collectors.dataset import write_partitioned
from collectors.schemas import TIMESTAMP
from collectors.workspace import WorkspacePaths
from rating_engine.traffic.detections import object_names
from rating_engine.traffic.seasonal import seasonal_detections

FIVE = 300_000_000
DAY = 86_400_000_000
END = datetime(2026, 3, 23, 12, 0, tzinfo=UTC)
END_US = int(END.timestamp()) * 1_000_000


def _best(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _series(n: int, days: int, rng: np.random.Generator) -> pa.Table:
    buckets = np.arange(END_US - days * DAY, END_US, FIVE, dtype=np.int64)
    sid = np.repeat(np.arange(1, n + 1, dtype=np.int64), buckets.size)
    t = np.tile(buckets, n)
    nbytes = rng.integers(500_000, 1_500_000, sid.size).astype(np.uint64)
    return pa.table(
        {
            "subscription_id": sid,
            "bucket_start": pa.array(t).cast(TIMESTAMP),
            "bytes": nbytes,
            "packets": nbytes // 1000,
            "flows": np.ones(sid.size, np.uint64),
        }
    )


def _workspace(root: Path, subs: int, days: int, rng: np.random.Generator) -> WorkspacePaths:
    ws = WorkspacePaths(root / "ws").ensure()
    conn = connect(ws)
    blocks = [f"10.{i // 256}.{i % 256}.0/28" for i in range(subs)]
    customers_with_ip_blocks(conn, blocks)
    conn.close()
    tables = []
    t = np.arange(END_US - days * DAY, END_US + 30 * 60_000_000, FIVE, dtype=np.int64)
    for i in range(subs):
        host = f"10.{i // 256}.{i % 256}.5"
        exporter = f"192.0.2.{1 + i % 4}"
        nbytes = rng.integers(500_000, 1_500_000, t.size)
        tables.append(flow_table(t + 1_000_000, "203.0.113.5", host, nbytes, exporter))
    write_partitioned(pa.concat_tables(tables), ws.flows, time_column="flow_start",
                      part_name="bench")  # fmt: skip
    return ws


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", type=int, default=500)
    ap.add_argument("--days", type=int, default=28)
    ap.add_argument("--run-subs", type=int, default=40)
    ap.add_argument("--run-days", type=int, default=14)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(1)

    series = _series(args.series, args.days, rng)
    rows = series.num_rows
    names_s = _best(lambda: object_names(series, "subscription"), args.repeat)
    objects = object_names(series, "subscription")

    def detect() -> pa.Table:
        return seasonal_detections(series, objects, bucket_us=FIVE, evaluate=(END_US - FIVE,
                                   END_US), history_start=END_US - args.days * DAY)  # fmt: skip

    detect()
    detect_s = _best(detect, args.repeat)

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        ws = _workspace(Path(tmp), args.run_subs, args.run_days, rng)
        setup_s = time.perf_counter() - t0
        conn = connect(ws)
        policy = AssurancePolicy()
        lookback = timedelta(days=args.run_days)
        t0 = time.perf_counter()
        run_assurance(conn, ws, window_end=END - timedelta(minutes=5), lookback=lookback,
                      policy=policy)  # fmt: skip
        warm_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        summary = run_assurance(conn, ws, window_end=END, lookback=lookback, policy=policy)
        run_s = time.perf_counter() - t0
        conn.close()
    result = {
        "benchmark": "assurance_detect",
        "series": args.series,
        "history_days": args.days,
        "series_rows": rows,
        "object_names_rows_per_s": round(rows / names_s),
        "detect_rows_per_s": round(rows / detect_s),
        "detect_series_per_s": round(args.series / detect_s),
        "detect_s": round(detect_s, 4),
        "run_flows": summary.flows_read,
        "run_s": round(run_s, 3),
        "run_flows_per_s": round(summary.flows_read / run_s),
        "run_first_s": round(warm_s, 3),
        "run_setup_s": round(setup_s, 2),
        "run_detections": summary.detections,
    }
    print(f"detection {rows / detect_s / 1e6:.1f} M series rows/s ({args.series} series x "
          f"{args.days} days); run {summary.flows_read} flows in {run_s:.2f} s")  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()
