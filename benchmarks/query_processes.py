"""Benchmark: ``rating-engine query`` as a user runs it - one whole process per query - vs
DuckDB as a user runs it, on the same Parquet.

    python benchmarks/query_processes.py [--flows 5000000] [--runs 5] [--keep DIR]
                                         [--duckdb-cli PATH] [--only top_src_ip,...]

The flows of ``benchmarks/topn_vs_peers.py`` (same generator, same size) are written as a
workspace's flows dataset. Each statistic is then run as three commands, in turn
(ours, DuckDB's Python one-liner, the ``duckdb`` CLI - A B C A B C ...) ``--runs`` times
after one warm-up round that is not counted:

- ours: the ``rating-engine`` console script beside this Python (``query top ... --json``);
- ``python -c 'import duckdb; ...'``: the same answer in SQL over the same files;
- the ``duckdb`` command-line shell (``--duckdb-cli``, default: ``duckdb`` on PATH; the
  pip ``duckdb`` package ships no shell, the ``duckdb-cli`` package does): same SQL.

The SQL computes what ``query`` prints: the top 10 with flows, packets and bytes
(renormalised by the sampling interval), each with its share of the totals, bytes per
packet and the address as text (``query top``); the same with first and last seen, packets
and bits per second (``query stats -s dstport/bytes``); the time buckets (dst_port x hour)
with their sums (``query buckets``); the first 1000 flows by start time, every column, the
addresses as text (``query list -c 1000 -O tstart``). Each command's answer is checked
against ours (``startup``: the start-up alone, see ``_STARTUP``). Times are whole-process
wall clock, start-up included (interpreter, imports from compiled bytecode as an installed
package's, kernels loaded from Numba's cache), and the CPU seconds (user + system) of each
child; medians over the runs, ratios = peer / ours (> 1: ours is faster). The load average
is reported beside them. Last line: one JSON object.
"""

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
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

#: Address text in SQL: IPv4-mapped addresses as dotted quads, others as 8 hex groups
#: (the synthetic flows are IPv4; the agreement check compares the IPv4 ones).
_V4 = "concat_ws('.', {})".format(
    ", ".join(f"('0x' || substr(hex({{col}}), {25 + 2 * i}, 2))::INT" for i in range(4))
)
_TEXT = (
    "CASE WHEN substr(hex({col}), 1, 24) = '00000000000000000000FFFF' THEN " + _V4 + " ELSE "
    "lower(concat_ws(':', " + ", ".join(f"substr(hex({{col}}), {1 + 4 * i}, 4)" for i in range(8))
    + ")) END"
)  # fmt: skip
_MULT = "greatest(coalesce(sampling_interval, 1), 1)"

#: statistic -> (our query arguments, SQL over {glob}, key columns for the agreement check)
STATISTICS: dict[str, tuple[list[str], str]] = {
    "top_src_ip": (
        ["top", "--by", "src_ip", "--metric", "bytes", "-n", "10"],
        "WITH g AS (SELECT src_addr, count(*) AS flows, sum(packets * {mult}) AS packets, "
        "sum(bytes * {mult}) AS bytes FROM read_parquet('{glob}', hive_partitioning = true) "
        "GROUP BY ALL), t AS (SELECT sum(flows) AS tf, sum(packets) AS tp, sum(bytes) AS tb "
        "FROM g) SELECT row_number() OVER (ORDER BY bytes DESC, src_addr) AS rank, "
        + _TEXT.format(col="src_addr")
        + " AS src_addr, flows, 100.0 * flows / tf AS "
        "flows_pct, packets, 100.0 * packets / tp AS packets_pct, bytes, 100.0 * bytes / tb "
        "AS bytes_pct, bytes // greatest(packets, 1) AS bpp FROM g, t "
        "ORDER BY bytes DESC, g.src_addr LIMIT 10",
    ),
    "top_dst_port": (
        ["top", "--by", "dst_port", "--metric", "bytes", "-n", "10"],
        "WITH g AS (SELECT dst_port, count(*) AS flows, sum(packets * {mult}) AS packets, "
        "sum(bytes * {mult}) AS bytes FROM read_parquet('{glob}', hive_partitioning = true) "
        "GROUP BY ALL), t AS (SELECT sum(flows) AS tf, sum(packets) AS tp, sum(bytes) AS tb "
        "FROM g) SELECT row_number() OVER (ORDER BY bytes DESC, dst_port) AS rank, dst_port, "
        "flows, 100.0 * flows / tf AS flows_pct, packets, 100.0 * packets / tp AS "
        "packets_pct, bytes, 100.0 * bytes / tb AS bytes_pct, bytes // greatest(packets, 1) "
        "AS bpp FROM g, t ORDER BY bytes DESC, dst_port LIMIT 10",
    ),
    "stats_dst_port": (
        ["stats", "-s", "dstport/bytes", "-n", "10"],
        "WITH g AS (SELECT dst_port, count(*) AS flows, sum(packets * {mult}) AS packets, "
        "sum(bytes * {mult}) AS bytes, min(flow_start) AS first, max(flow_end) AS last "
        "FROM read_parquet('{glob}', hive_partitioning = true) GROUP BY ALL), "
        "t AS (SELECT sum(flows) AS tf, sum(packets) AS tp, sum(bytes) AS tb FROM g), "
        "d AS (SELECT *, greatest(epoch(last) - epoch(first), 0.001) AS secs FROM g) "
        "SELECT row_number() OVER (ORDER BY bytes DESC, dst_port) AS rank, dst_port, first, "
        "last, flows, 100.0 * flows / tf AS flows_pct, packets, 100.0 * packets / tp AS "
        "packets_pct, bytes, 100.0 * bytes / tb AS bytes_pct, (packets / secs)::BIGINT AS pps, "
        "(8 * bytes / secs)::BIGINT AS bps, bytes // greatest(packets, 1) AS bpp FROM d, t "
        "ORDER BY bytes DESC, dst_port LIMIT 10",
    ),
    "list_first_1000": (
        ["list", "-c", "1000", "-O", "tstart"],
        "SELECT * EXCLUDE (date) REPLACE ("
        + ", ".join(f"{_TEXT.format(col=c)} AS {c}" for c in ("src_addr", "dst_addr", "exporter"))
        + ", CASE WHEN next_hop IS NULL THEN NULL ELSE "
        + _TEXT.format(col="next_hop")
        + " END AS next_hop) FROM read_parquet('{glob}', hive_partitioning = true) "
        "ORDER BY flow_start LIMIT 1000",
    ),
    "buckets_dst_port_hour": (
        ["buckets", "--by", "dst_port", "--bucket", "hour"],
        "SELECT dst_port, time_bucket(INTERVAL 1 hour, flow_start) AS bucket_start, "
        "sum(bytes * {mult}) AS bytes, sum(packets * {mult}) AS packets, count(*) AS flows "
        "FROM read_parquet('{glob}', hive_partitioning = true) GROUP BY ALL "
        "ORDER BY bucket_start, dst_port",
    ),
}

#: Start-up alone (``startup`` in the JSON): the interpreter with the modules a one-shot
#: ``query top`` grouped by polars imports before it reads a row (the CLI, numpy, pyarrow,
#: polars; one OpenBLAS thread, as the CLI asks) vs ``import duckdb`` + ``SELECT 1`` and the
#: duckdb shell's ``SELECT 1``: what no query work can win back on a small statistic.
_STARTUP = {
    "ours": ["-c", "import os; os.environ.setdefault('OPENBLAS_NUM_THREADS', '1'); "
             "import bss.cli.main, bss.cli.query, bss.analyst.query, "
             "rating_engine.traffic.flow_stats"],
    "duckdb_py": ["-c", "import duckdb; duckdb.connect().execute('SELECT 1').fetchall()"],
}  # fmt: skip

_PY_PEER = (
    "import json, sys, duckdb\n"
    "con = duckdb.connect()\n"
    "con.execute(\"SET TimeZone = 'UTC'\")\n"
    "con.execute('SET enable_progress_bar = false')  # it would print on stdout\n"
    "cur = con.execute(sys.argv[1])\n"
    "names = [d[0] for d in cur.description]\n"
    "print(json.dumps([dict(zip(names, r)) for r in cur.fetchall()], default=str))\n"
)


#: The children's environment: as an installed package runs, from compiled bytecode. Without
#: PYTHONDONTWRITEBYTECODE (set in some shells) the warm-up round writes the bytecode of
#: every module it imports; with it, every run would compile again each module edited since
#: its last bytecode (~0.1 s in a work tree), a cost an installed wheel never pays.
_CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _ours_command(ws: Path, args: list[str]) -> list[str]:
    script = Path(sys.executable).parent / "rating-engine"
    head = [str(script)] if script.exists() else [
        sys.executable, "-c", "from bss.cli.main import main; main()"
    ]  # fmt: skip
    return [*head, "-w", str(ws), "query", *args, "--json"]


def _run(cmd: list[str]) -> tuple[float, float, str]:
    """(wall s, CPU s of the child, stdout) of one whole process, reaped with its rusage."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=_CHILD_ENV)  # fmt: skip
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stdout.close()
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd[:6])} ... exited {proc.returncode}")
    return wall, usage.ru_utime + usage.ru_stime, out


def _rows(name: str, out: str) -> list[tuple[Any, ...]]:
    """The rows' key and integer columns, comparable across engines."""
    try:  # the duckdb shell's -json spreads its array over lines; ours is the last line
        data = json.loads(out or "[]")
    except json.JSONDecodeError:
        data = json.loads(out.strip().splitlines()[-1])
    if isinstance(data, dict):  # ours: rows of top/buckets, the statistic's, the flows
        rows = data["stats"][0]["rows"] if "stats" in data else data.get("flows", data.get("rows"))
    else:
        rows = data
    if name.startswith("stats_"):
        return [(rank, int(r["dst_port"]), int(r["flows"]), int(r["packets"]), int(r["bytes"]),
                 int(r["bpp"])) for rank, r in enumerate(rows, 1)]  # fmt: skip
    if name.startswith("list_"):  # the same flows (order among equal start times aside)
        return sorted((str(r["flow_start"])[:19].replace("T", " "), str(r["src_addr"]),
                       str(r["dst_addr"]), int(r["bytes"]), int(r["packets"]))
                      for r in rows)  # fmt: skip
    if name.startswith("top_"):
        key = "src_addr" if name == "top_src_ip" else "dst_port"
        return [(int(r["rank"]), str(r[key]), int(r["flows"]), int(r["packets"]),
                 int(r["bytes"]), int(r["bpp"])) for r in rows]  # fmt: skip
    return [(int(r["dst_port"]), str(r["bucket_start"])[:19].replace("T", " "), int(r["bytes"]),
             int(r["packets"]), int(r["flows"])) for r in rows]  # fmt: skip


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 4)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flows", type=int, default=5_000_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--keep", type=Path, default=None, help="work folder to keep and reuse")
    ap.add_argument("--duckdb-cli", default=shutil.which("duckdb"), help="duckdb shell")
    ap.add_argument("--only", default=",".join(STATISTICS), help="statistics to run")
    args = ap.parse_args()

    work = args.keep or Path(tempfile.mkdtemp(prefix="query-processes-"))
    ws = work / "ws"
    marker = work / "flows.json"
    try:
        if not (marker.exists() and json.loads(marker.read_text()).get("flows") == args.flows):
            from synthetic_ip_flows import make_flows, make_subscriptions

            from collectors.dataset import write_partitioned
            from collectors.workspace import WorkspacePaths

            paths = WorkspacePaths(ws).ensure()
            shutil.rmtree(paths.flows, ignore_errors=True)
            _subs, starts, plens = make_subscriptions(20_000)
            flows = make_flows(args.flows, starts, plens)
            write_partitioned(flows, paths.flows, time_column="flow_start", part_name="bench")
            del flows
            marker.write_text(json.dumps({"flows": args.flows}))
        glob = str(ws / "flows" / "**" / "*.parquet")
        result: dict[str, Any] = {
            "benchmark": "query_processes",
            "flows": args.flows,
            "runs": args.runs,
            "cpus": os.cpu_count(),
            "duckdb_cli": bool(args.duckdb_cli),
            "load_average_1m_before": round(os.getloadavg()[0], 2),
        }
        starts = {k: [sys.executable, *v] for k, v in _STARTUP.items()}
        if args.duckdb_cli:
            starts["duckdb_cli"] = [args.duckdb_cli, "-c", "SELECT 1"]
        runs = [[_run(cmd)[:2] for cmd in starts.values()] for _ in range(args.runs + 1)][1:]
        result["startup"] = {
            "wall_s": {k: _median([r[i][0] for r in runs]) for i, k in enumerate(starts)},
            "cpu_s": {k: _median([r[i][1] for r in runs]) for i, k in enumerate(starts)},
        }
        print("startup", json.dumps(result["startup"], sort_keys=True), flush=True)
        for name in args.only.split(","):
            query, sql = STATISTICS[name]
            sql = sql.format(glob=glob, mult=_MULT)
            commands = {"ours": _ours_command(ws, query),
                        "duckdb_py": [sys.executable, "-c", _PY_PEER, sql]}  # fmt: skip
            if args.duckdb_cli:
                commands["duckdb_cli"] = [args.duckdb_cli, "-json", "-c",
                                          "SET TimeZone = 'UTC'; " + sql]  # fmt: skip
            walls: dict[str, list[float]] = {k: [] for k in commands}
            cpus: dict[str, list[float]] = {k: [] for k in commands}
            answers: dict[str, list[tuple[Any, ...]]] = {}
            for run in range(args.runs + 1):  # round 0: warm-up, not counted
                for who, cmd in commands.items():
                    wall, cpu, out = _run(cmd)
                    if run == 0:
                        answers[who] = _rows(name, out)
                    else:
                        walls[who].append(wall)
                        cpus[who].append(cpu)
            entry: dict[str, Any] = {
                "wall_s": {k: _median(v) for k, v in walls.items()},
                "cpu_s": {k: _median(v) for k, v in cpus.items()},
                "agree": {k: answers[k] == answers["ours"] for k in commands if k != "ours"},
            }
            for peer in commands:
                if peer != "ours":
                    ratios = [p / o for p, o in zip(walls[peer], walls["ours"], strict=True)]
                    entry[f"ratio_vs_{peer}"] = round(statistics.median(ratios), 2)
                    entry[f"cpu_ratio_vs_{peer}"] = round(
                        statistics.median(cpus[peer]) / statistics.median(cpus["ours"]), 2
                    )
            result[name] = entry
            print(name, json.dumps(entry, sort_keys=True), flush=True)
        result["load_average_1m_after"] = round(os.getloadavg()[0], 2)
        print(json.dumps(result, sort_keys=True))
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
