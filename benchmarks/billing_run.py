"""Billing-run benchmark: N accounts, M usage records, wall time and peak memory per size.

    python benchmarks/billing_run.py [--accounts 100000] [--records 2000000,10000000]
    python benchmarks/billing_run.py --accounts 100000 --records 0     # the bills alone
    python benchmarks/billing_run.py --accounts 1000000 --records 100000000 \
        --workdir /big/disk                                            # the large run
    python benchmarks/billing_run.py --records 2000000 --scheduler local:2

Each size runs in a fresh subprocess (so peak RSS is that run's own): a workspace with
`accounts` customers/accounts, one mobile subscription each (MSISDN), the demo mobile
tariff (its allowances run out during the month, so the order of rating counts), and
`records` voice/SMS/data CDRs spread over October 2026, written as usage Parquet. Set-up
is bulk SQL and is not timed; the timed part is `run_billing` for 2026-10: read usage,
rate, charge, write bills and the billed-usage ledger. The run streams, so its peak
memory should not grow with the records (compare 2M and 10M). ``--records 0`` times the
bills alone (recurring charges of every account). ``--scheduler`` runs the partition
steps on Dask (the driver's peak is then the one reported; workers' are their own). The
large run needs ~10 GB of disk. The last line is one JSON object; ``cpu_s`` is the timed
run's CPU (user + system, all threads of the process) and ``load`` the 1-minute load
average at its end: on a shared machine compare CPU, and runs made side by side.
``--phases`` adds where the wall time goes: per step of the run (rating, the ledger's
inserts and the duplicate check on their thread beside the lines, the bills' writes, the
digest; the commit is
the gap before ``_summary``), when it first started and last ended (seconds from the run's
start), how long it was busy and how many calls: what overlaps shows as intervals that do.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from bss.cli.main import BATCH_ALLOCATOR_ENV

# the demo data shipped inside the package
DEMO = Path(str(files("bss") / "data" / "demo"))


def _setup(ws_root: Path, accounts: int, records: int) -> None:
    from bss.db import connect
    from bss.seed import apply_seed, load_seed_file
    from collectors.dataset import write_partitioned
    from collectors.schemas import USAGE_SCHEMA
    from collectors.workspace import WorkspacePaths

    ws = WorkspacePaths(ws_root).ensure()
    shutil.copytree(DEMO / "tariffs", ws.tariffs, dirs_exist_ok=True)
    conn = connect(ws)
    seed = load_seed_file(DEMO / "bss.toml")
    apply_seed(conn, {k: seed[k] for k in ("tax_rate", "specification", "offering")}, "bench")
    conn.execute(
        """
        INSERT INTO customer (id, external_id, name, created_at)
        SELECT i, 'C' || i, 'Customer ' || i, TIMESTAMPTZ '2026-01-01' FROM range(1, $n + 1) t(i);
        INSERT INTO billing_account (id, external_id, customer_id, name, currency,
            tax_jurisdiction, created_at)
        SELECT i, 'A' || i, i, 'Account ' || i, 'EUR', 'DE', TIMESTAMPTZ '2026-01-01'
        FROM range(1, $n + 1) t(i);
        INSERT INTO product (id, account_id, offering_id, status, start_date)
        SELECT i, i, 'mobile-business-m', 'active', TIMESTAMPTZ '2026-09-01'
        FROM range(1, $n + 1) t(i);
        INSERT INTO service_identifier
        SELECT i, 'msisdn', (4915000000000 + i)::VARCHAR, TIMESTAMPTZ '2026-09-01', NULL
        FROM range(1, $n + 1) t(i);
        """.replace("$n", str(accounts))
    )
    conn.close()
    rng = np.random.default_rng(7)
    start = int(datetime(2026, 10, 1, tzinfo=UTC).timestamp() * 1e6)
    chunk = 2_000_000
    for part, lo in enumerate(range(0, records, chunk)):
        n = min(chunk, records - lo)
        ids = np.arange(lo, lo + n, dtype=np.int64)
        service = rng.choice(np.array(["voice", "sms", "data"]), n, p=[0.5, 0.3, 0.2])
        dest_pool = np.array(["4930", "4989", "49151", "49176", "33", "1212", "44"])
        dest = np.char.add(rng.choice(dest_pool, n), rng.integers(1_000_000, 9_999_999, n)
                           .astype(str))  # fmt: skip
        is_data = service == "data"
        table = pa.table(
            {
                "record_id": ids * 2654435761 % (1 << 62),
                "record_key": pa.array(np.char.add("bench-", ids.astype(str))),
                "source_file": pa.array(np.full(n, "bench.csv")),
                "source_line": ids + 2,
                "subscriber_key": pa.array(
                    (4915000000001 + rng.integers(0, accounts, n)).astype(str)
                ),
                "subscriber_key_type": pa.array(np.full(n, "msisdn")),
                "service": pa.array(service),
                "start_time": pa.array(
                    start + rng.integers(0, 31 * 86_400 * 10**6, n), pa.timestamp("us", tz="UTC")
                ),
                "duration_ms": np.where(service == "voice", rng.integers(1_000, 600_000, n), 0),
                "volume_up": np.where(is_data, rng.integers(0, 10**7, n), 0).astype(np.uint64),
                "volume_down": np.where(is_data, rng.integers(0, 10**8, n), 0).astype(np.uint64),
                "destination": pa.array(np.where(is_data, None, dest)),
                "origin": pa.array(np.full(n, None), pa.string()),
                "location": pa.array(np.full(n, None), pa.string()),
            }
        ).cast(USAGE_SCHEMA)
        write_partitioned(table, ws.usage, time_column="start_time", part_name=f"bench-{part}")


#: (module, attribute) of the steps --phases times; a class attribute is "Class.method"
_PHASES = [("bss.billing.run", n) for n in (
    "_start_pass", "product_charges", "_rate", "_labels", "_lines", "_totals", "drop_rows",
    "unrecord_accounts", "plan_rerating", "repeated_ids", "check_repeats", "write_bills",
    "post_pass_bills",
    "bills_digest", "_summary")] + [("bss.billing.ledger", "BilledUsageFeed._take")]  # fmt: skip


def _time_phases(t0: float) -> dict[str, list[float]]:
    """Wrap the steps in _PHASES; returns name -> [first start, last end, busy, calls]."""
    import functools
    import importlib

    seen: dict[str, list[float]] = {}

    def timed(name: str, fn: Any) -> Any:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter() - t0
            try:
                return fn(*args, **kwargs)
            finally:
                end = time.perf_counter() - t0
                entry = seen.setdefault(name, [start, end, 0.0, 0])
                entry[1], entry[2], entry[3] = end, entry[2] + end - start, entry[3] + 1

        return wrapper

    for module, name in _PHASES:
        owner: Any = importlib.import_module(module)
        *path, attr = name.split(".")
        for part in path:
            owner = getattr(owner, part)
        if hasattr(owner, attr):
            setattr(owner, attr, timed(name, getattr(owner, attr)))
    return seen


def _peak_rss(maxrss: int) -> int:
    """This process's peak resident memory: Linux's VmHWM, else ``maxrss`` (getrusage).

    On Linux ru_maxrss outlives exec: a child started by this script begins with the
    high-water mark of the parent it was forked from - the parent that just generated the
    records (~1.3 GB after 10M) - so it reported the parent's peak, not the run's. VmHWM
    is the exec'd program's own."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return maxrss


def _child(ws_root: str, scheduler: str | None, phases: bool = False) -> None:
    """Timed: one billing run; prints its numbers as JSON."""
    from contextlib import nullcontext

    from bss.billing.run import run_billing
    from bss.db import connect
    from collectors.workspace import WorkspacePaths
    from rating_engine.scale.cluster import open_client, parse_scheduler

    ws = WorkspacePaths(Path(ws_root))
    conn = connect(ws)
    spec = parse_scheduler(scheduler)
    with open_client(spec, ws.root) if spec else nullcontext() as client:
        before = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        steps = _time_phases(t0) if phases else {}
        result = run_billing(conn, ws, "2026-10", export=False, client=client)
        elapsed = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_SELF)
    # this process's CPU (all its threads: the kernels', Arrow's and DuckDB's), not the workers'
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    peak = _peak_rss(after.ru_maxrss * 1024)
    print(json.dumps({"seconds": round(elapsed, 2), "cpu_s": round(cpu, 2),
                      "peak_rss_mb": round(peak / 2**20), "bills": result.accounts,
                      "rated": result.rated, "suspense": result.suspense,
                      **({"phases": {k: {"start_s": round(v[0], 2), "end_s": round(v[1], 2),
                                         "busy_s": round(v[2], 2), "calls": int(v[3])}
                                     for k, v in steps.items()}} if phases else {})}))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--records", default="2000000,10000000", help="comma-separated sizes")
    parser.add_argument("--scheduler", help="tcp://HOST:PORT or local:N (default: in process)")
    parser.add_argument("--workdir", help="where the workspaces go (default: the temp folder)")
    parser.add_argument(
        "--phases",
        action="store_true",
        help="time the run's steps (start, end, busy seconds; in the JSON)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.scheduler, args.phases)
        return
    results = []
    for records in (int(x) for x in args.records.split(",")):
        with tempfile.TemporaryDirectory(prefix="bench-billing-", dir=args.workdir) as tmp:
            ws = Path(tmp) / "ws"
            t0 = time.perf_counter()
            _setup(ws, args.accounts, records)
            setup_s = time.perf_counter() - t0
            command = [sys.executable, __file__, "--child", str(ws)]
            if args.scheduler:
                command += ["--scheduler", args.scheduler]
            if args.phases:
                command.append("--phases")
            # the allocator setting `rating-engine bill` gives its process (a value in the
            # environment wins: MIMALLOC_PURGE_DELAY=10, mimalloc's default, to compare)
            env = {**BATCH_ALLOCATOR_ENV, **os.environ}
            out = subprocess.run(command, capture_output=True, text=True, env=env)
            if out.returncode:
                raise SystemExit(f"the run failed:\n{out.stderr[-4000:]}")
            run = json.loads(out.stdout.strip().splitlines()[-1])
            run.update(records=records, accounts=args.accounts, setup_s=round(setup_s, 1),
                       load=round(os.getloadavg()[0], 1),
                       records_per_s=round(records / run["seconds"]),
                       scheduler=args.scheduler or "in-process")  # fmt: skip
            print(f"{records:>11,} records, {args.accounts:,} accounts: {run['seconds']} s "
                  f"(CPU {run['cpu_s']} s), peak {run['peak_rss_mb']} MB, "
                  f"{run['records_per_s']:,} records/s, load {os.getloadavg()[0]:.1f}")  # fmt: skip
            for step, t in run.get("phases", {}).items():
                print(f"    {step:<24} {t['start_s']:7.2f} -> {t['end_s']:7.2f} s, busy "
                      f"{t['busy_s']:6.2f} s in {t['calls']} call(s)")  # fmt: skip
            results.append(run)
    print(json.dumps({"benchmark": "billing_run", "runs": results}))


if __name__ == "__main__":
    main()
