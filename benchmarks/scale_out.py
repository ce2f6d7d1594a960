"""Scale-out benchmark: one billing job in process and on Dask LocalClusters of 1 and 2 workers.

    python benchmarks/scale_out.py [--accounts 20000] [--records 2000000] [--workers 1,2]

The same workspace (billing_run.py's: mobile accounts whose allowances run out during
the month, CDRs spread over October 2026) is billed once per mode, each in a fresh
process on a fresh copy: in process, then with ``--scheduler local:N``. Reported per
mode: wall time of ``run_billing`` (the cluster's start is timed apart), records/s, the
driver's peak memory, and the bills' SHA-256, which must be equal in every mode. The
task overhead is measured on each cluster as the round trip of 200 empty tasks. The
last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from billing_run import _setup


def _noop(i: int) -> int:
    return i


def _child(ws_root: str, scheduler: str | None) -> None:
    from contextlib import nullcontext

    from bss.billing.run import run_billing
    from bss.db import connect
    from collectors.workspace import WorkspacePaths
    from rating_engine.scale.cluster import open_client, parse_scheduler

    ws = WorkspacePaths(Path(ws_root))
    conn = connect(ws)
    spec = parse_scheduler(scheduler)
    t0 = time.perf_counter()
    with open_client(spec, ws.root) if spec else nullcontext() as client:
        started = time.perf_counter() - t0
        overhead_ms = None
        if client is not None:
            client.gather(client.map(_noop, range(20), pure=False))  # warm
            t1 = time.perf_counter()
            client.gather(client.map(_noop, range(200), pure=False))
            overhead_ms = (time.perf_counter() - t1) / 200 * 1000
        t2 = time.perf_counter()
        result = run_billing(conn, ws, "2026-10", export=False, client=client)
        seconds = time.perf_counter() - t2
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"seconds": round(seconds, 2), "cluster_start_s": round(started, 2),
                      "task_overhead_ms": None if overhead_ms is None else round(overhead_ms, 2),
                      "peak_rss_mb": round(peak / 2**20), "bills": result.accounts,
                      "rated": result.rated, "bills_sha256": result.bills_sha256}))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=20_000)
    parser.add_argument("--records", type=int, default=2_000_000)
    parser.add_argument("--workers", default="1,2", help="LocalCluster sizes to compare")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--scheduler", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.scheduler)
        return
    modes: list[str | None] = [None, *(f"local:{n}" for n in args.workers.split(","))]
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        template = Path(tmp) / "template"
        _setup(template, args.accounts, args.records)
        for mode in modes:
            ws = Path(tmp) / "ws"
            shutil.rmtree(ws, ignore_errors=True)
            shutil.copytree(template, ws)
            command = [sys.executable, __file__, "--child", str(ws)]
            if mode:
                command += ["--scheduler", mode]
            out = subprocess.run(command, capture_output=True, text=True, check=True)
            run = json.loads(out.stdout.strip().splitlines()[-1])
            run.update(
                mode=mode or "in-process", records_per_s=round(args.records / run["seconds"])
            )
            overhead = run["task_overhead_ms"]
            print(f"{run['mode']:>10}: {run['seconds']} s, {run['records_per_s']:,} records/s, "
                  f"peak {run['peak_rss_mb']} MB"
                  + (f", cluster start {run['cluster_start_s']} s, {overhead} ms a task"
                     if mode else ""))  # fmt: skip
            runs.append(run)
    equal = len({r["bills_sha256"] for r in runs}) == 1
    print(f"bills equal in every mode: {equal}")
    print(json.dumps({"benchmark": "scale_out", "accounts": args.accounts,
                      "records": args.records, "bills_equal": equal, "runs": runs}))  # fmt: skip
    if not equal:
        raise SystemExit("the modes' bills differ")


if __name__ == "__main__":
    main()
