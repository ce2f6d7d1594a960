"""Benchmark: filter + statistics and filter + listing - ours vs nfdump vs DuckDB SQL.

    python benchmarks/nfdump_filter_vs_peers.py [--flows 5000000] [--repeat 3] [--keep DIR]

The same flows for everyone: synthetic IPv4 flows are replayed as NetFlow v5 over loopback
into a real ``nfcapd`` (uncompressed files, nfdump's fastest to read), and those nfcapd
files are brought into our flows dataset with ``ingest nfcapd`` - so whatever nfcapd
received is exactly what both sides query. Each query runs on
- ours: ``bss.analyst.nfdump_queries.flow_stats`` / ``list_flows`` + ``render_flows``
  (the code behind ``rating-engine query stats|list``; text out, addresses as text);
- nfdump: ``nfdump -R DIR ... 'filter'`` on the nfcapd files (its output read from a pipe);
- DuckDB: the same filter, groups, order and limit as SQL over our Parquet.
Queries: two filtered top-10 statistics (one of them two statistics in one call, as
``-s srcip/bytes -s dstport/flows``), a time-sorted listing of the first 1000 matches
(``-c 1000 -O tstart``) and a full CSV listing of a selective filter. Results are
checked to agree (top-10 byte counts, listed flow counts). Each round runs ours, nfdump
and DuckDB once, one after the other, ``--repeat`` rounds (so a burst of load on the
shared machine falls on all three alike); reported: the best wall clock of each, its
median, and the CPU seconds of the best run, with wall and CPU ratios (the load average
is reported too). Last line: one JSON object with the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from synthetic_ip_flows import make_flows, make_subscriptions
from topn_vs_peers import _cpu, build_nfcapd_files

from bss.analyst.flow_formats import format_columns, render_flows
from bss.analyst.nfdump_queries import flow_stats, list_flows
from collectors.nfcapd.ingest import ingest_nfcapd_files
from collectors.workspace import WorkspacePaths

__all__ = ["main"]

_V4 = "'\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\xFF\\xFF"
#: name -> (nfdump arguments, filter, DuckDB WHERE clause)
QUERIES: dict[str, tuple[list[str], str, str]] = {
    "stats_srcip_bytes": (
        ["-s", "srcip/bytes", "-n", "10"], "proto tcp and dst port 443",
        "protocol = 6 AND dst_port = 443",
    ),
    "stats_two_in_one_pass": (
        ["-s", "srcip/bytes", "-s", "dstport/flows", "-n", "10"],
        "src net 10.0.0.0/8 and bytes > 100k",
        f"src_addr BETWEEN {_V4}\\x0A\\x00\\x00\\x00'::BLOB AND {_V4}\\x0A\\xFF\\xFF\\xFF'::BLOB "
        "AND bytes > 100000",
    ),
    "list_first_1000_by_time": (
        ["-c", "1000", "-O", "tstart", "-o", "csv"], "proto udp and dst port 53",
        "protocol = 17 AND dst_port = 53",
    ),
    "list_all_csv": (
        ["-o", "csv"], "dst port 22 and src net 10.0.0.0/10",
        f"dst_port = 22 AND src_addr BETWEEN {_V4}\\x0A\\x00\\x00\\x00'::BLOB AND "
        f"{_V4}\\x0A\\x3F\\xFF\\xFF'::BLOB",
    ),
}  # fmt: skip


def _nfdump(nf_dir: Path, args: list[str], flt: str) -> str:
    cmd = ["nfdump", "-R", str(nf_dir), "-q", "-N", *args, flt]
    return subprocess.run(cmd, capture_output=True, text=True, check=True,
                          env={**os.environ, "TZ": "UTC"}).stdout  # fmt: skip


_PCT = r"\d+\(\s*[\d.]+\)\s+"
_STAT_LINE = re.compile(rf"^\S+ \S+\s+\S+\s+\S+\s+\S+\s+{_PCT}{_PCT}(\d+)\(")


def _nfdump_top_bytes(out: str) -> list[int]:
    """Byte counts of nfdump's first statistic block (up to the first blank line)."""
    values = []
    for line in out.splitlines():
        if not line.strip():
            if values:
                break
            continue
        m = _STAT_LINE.match(line)
        if m:
            values.append(int(m.group(1)))
    return values


def _duck_stats(con: Any, glob: str, where: str, key: str, order: str) -> list[tuple[Any, ...]]:
    sql = (
        f"SELECT {key}, count(*) AS flows, sum(packets) AS packets, sum(bytes) AS bytes, "
        f"min(flow_start), max(flow_end) FROM read_parquet('{glob}') WHERE {where} "
        f"GROUP BY {key} ORDER BY {order} DESC, {key} LIMIT 10"
    )
    return list(con.sql(sql).fetchall())


def _ours(paths: WorkspacePaths, name: str, flt: str) -> Any:
    if name == "stats_srcip_bytes":
        tables, _ = flow_stats(paths, ["srcip/bytes"], flow_filter=flt, n=10)
        return [int(v) for v in tables[0].column("bytes").to_pylist()]
    if name == "stats_two_in_one_pass":
        tables, _ = flow_stats(paths, ["srcip/bytes", "dstport/flows"], flow_filter=flt, n=10)
        return [int(v) for v in tables[0].column("bytes").to_pylist()]
    limit, order = (1000, "tstart") if name == "list_first_1000_by_time" else (None, None)
    flows = list_flows(paths, flow_filter=flt, order=order, limit=limit,
                       columns=format_columns("csv"))  # fmt: skip
    return render_flows(flows, "csv").count(b"\n") - 1


def _duck(con: Any, glob: str, name: str, where: str) -> Any:
    if name == "stats_srcip_bytes":
        return [int(r[3]) for r in _duck_stats(con, glob, where, "src_addr", "bytes")]
    if name == "stats_two_in_one_pass":
        top = _duck_stats(con, glob, where, "src_addr", "bytes")
        _duck_stats(con, glob, where, "dst_port", "flows")
        return [int(r[3]) for r in top]
    if name == "list_first_1000_by_time":
        rel = con.sql(f"SELECT * FROM read_parquet('{glob}') WHERE {where} "
                      "ORDER BY flow_start LIMIT 1000")  # fmt: skip
        return rel.to_arrow_table().num_rows
    with tempfile.NamedTemporaryFile(suffix=".csv") as out:
        con.sql(f"COPY (SELECT * FROM read_parquet('{glob}') WHERE {where}) TO '{out.name}' "
                "(FORMAT csv)")  # fmt: skip
        return sum(1 for _ in open(out.name, "rb")) - 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flows", type=int, default=5_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--rate", type=float, default=300_000, help="v5 replay flows/s")
    ap.add_argument("--keep", type=Path, default=None, help="work folder to keep and reuse")
    args = ap.parse_args()
    import duckdb

    work = args.keep or Path(tempfile.mkdtemp(prefix="nfdump-filter-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        nf_dir, marker = work / "nfcapd", work / "inputs.json"
        paths = WorkspacePaths(work / "ws")
        if marker.exists() and json.loads(marker.read_text()).get("sent") == args.flows:
            nf = json.loads(marker.read_text())  # --keep folder from an earlier run
        else:
            _subs, starts, plens = make_subscriptions(20_000)
            flows = make_flows(args.flows, starts, plens)
            shutil.rmtree(nf_dir, ignore_errors=True)
            shutil.rmtree(paths.root, ignore_errors=True)
            nf = build_nfcapd_files(flows, nf_dir, args.rate)
            del flows
            marker.write_text(json.dumps(nf))
        if not paths.flows.exists():
            t = time.perf_counter()
            ingest_nfcapd_files([nf_dir], paths)
            nf["ingest_nfcapd_s"] = round(time.perf_counter() - t, 2)
            marker.write_text(json.dumps(nf))
        glob = str(paths.flows / "**" / "*.parquet")
        con = duckdb.connect()
        con.execute("SET threads = 2")
        load_before = round(os.getloadavg()[0], 2)
        result: dict[str, Any] = {
            "benchmark": "nfdump_filter_vs_peers", "flows": nf["received"],
            "nfcapd_sent": nf["sent"], "ingest_nfcapd_s": nf.get("ingest_nfcapd_s"),
            "threads": os.cpu_count(), "queries": {},
        }  # fmt: skip
        for name, (nf_args, flt, where) in QUERIES.items():
            _ours(paths, name, flt)  # warm: polars plans, kernels, part footers
            runs = {"ours": (lambda n=name, f=flt: _ours(paths, n, f)),
                    "nfdump": (lambda a=nf_args, f=flt: _nfdump(nf_dir, a, f)),
                    "duckdb": (lambda n=name, w=where: _duck(con, glob, n, w))}  # fmt: skip
            walls: dict[str, list[float]] = {k: [] for k in runs}
            cpus: dict[str, list[float]] = {k: [] for k in runs}
            out: dict[str, Any] = {}
            for _ in range(args.repeat):  # one round: each side once, alternating
                for side, fn in runs.items():
                    c, t = _cpu(), time.perf_counter()
                    out[side] = fn()
                    walls[side].append(time.perf_counter() - t)
                    cpus[side].append(_cpu() - c)
            best = {k: min(v) for k, v in walls.items()}
            median = {k: sorted(v)[len(v) // 2] for k, v in walls.items()}
            cpu = {k: cpus[k][walls[k].index(best[k])] for k in runs}
            ours_s, nf_s, duck_s = best["ours"], best["nfdump"], best["duckdb"]
            ours, nf_out, duck = out["ours"], out["nfdump"], out["duckdb"]
            if name.startswith("stats"):
                nf_value: Any = _nfdump_top_bytes(nf_out)
            else:
                nf_value = sum(1 for ln in nf_out.splitlines() if ln[:2] == "20")
            result["queries"][name] = {
                "filter": flt, "nfdump_args": " ".join(nf_args),
                "ours_s": round(ours_s, 4), "nfdump_s": round(nf_s, 4),
                "duckdb_s": round(duck_s, 4),
                "ratio_vs_nfdump": round(nf_s / ours_s, 2),
                "ratio_vs_duckdb": round(duck_s / ours_s, 2),
                "median_s": {k: round(v, 4) for k, v in median.items()},
                "median_ratio_vs_nfdump": round(median["nfdump"] / median["ours"], 2),
                "median_ratio_vs_duckdb": round(median["duckdb"] / median["ours"], 2),
                "cpu_s": {k: round(v, 3) for k, v in cpu.items()},
                "cpu_ratio_vs_nfdump": round(cpu["nfdump"] / max(cpu["ours"], 1e-9), 2),
                "cpu_ratio_vs_duckdb": round(cpu["duckdb"] / max(cpu["ours"], 1e-9), 2),
                "agree_duckdb": ours == duck, "agree_nfdump": ours == nf_value,
                "result": ours if isinstance(ours, int) else ours[:3],
            }  # fmt: skip
            q = result["queries"][name]
            print(f"{name:<26} ours {ours_s:7.3f}s  nfdump {nf_s:7.3f}s  duckdb {duck_s:7.3f}s  "
                  f"agree nfdump={q['agree_nfdump']} duckdb={q['agree_duckdb']}")  # fmt: skip
        con.close()
        result["load_average_1m_before"] = load_before
        ratios = list(result["queries"].values())
        result["min_ratio_vs_nfdump"] = min(q["ratio_vs_nfdump"] for q in ratios)
        result["min_ratio_vs_duckdb"] = min(q["ratio_vs_duckdb"] for q in ratios)
        result["min_cpu_ratio_vs_nfdump"] = min(q["cpu_ratio_vs_nfdump"] for q in ratios)
        result["min_cpu_ratio_vs_duckdb"] = min(q["cpu_ratio_vs_duckdb"] for q in ratios)
        result["load_average_1m"] = round(os.getloadavg()[0], 2)
        print(json.dumps(result))
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
