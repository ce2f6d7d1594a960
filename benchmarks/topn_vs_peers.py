"""Benchmark: top-N source addresses by bytes - ours vs nfdump vs DuckDB vs polars;
time buckets (bytes/packets/flows per destination port and hour) - ours vs DuckDB.

    python benchmarks/topn_vs_peers.py [--flows 5000000] [--repeat 3] [--keep DIR]

The same synthetic IPv4 flows are
- written as the project's flows dataset (``collectors.dataset.write_partitioned``,
  Parquet + zstd) and queried by ``rating_engine.traffic.flow_query.top_n_dataset`` (ours),
  by DuckDB SQL and by polars (lazy scan), each from that Parquet;
- sent as NetFlow v5 datagrams over loopback to a real ``nfcapd``, which writes its own
  files (uncompressed, its fastest to read); then ``nfdump -R dir -s srcip/bytes -n 10``.
The received flow count is checked against what was sent, and the top-10 lists of all
engines are compared. Ours is the library call (``top_n_dataset`` /
``bucket_traffic_dataset``) with the engine it chooses in this process (polars is loaded
here, as the peer: plain keys are summed by one polars scan). After one warm-up round
the engines run in turn (ours, nfdump, DuckDB, polars, ours, ...) for ``--repeat``
rounds; times are wall clock medians, ratios the median of the per-round ratios peer /
ours (> 1: ours is faster), CPU seconds medians too (the wall clock depends on the
shared machine's load, reported before and after). ``vs_duckdb`` gives each
statistic's ratio. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))

from synthetic_ip_flows import T0_US, make_flows, make_subscriptions

from collectors.dataset import write_partitioned
from rating_engine.traffic.flow_query import bucket_traffic_dataset as bucket_dataset
from rating_engine.traffic.flow_query import top_n_dataset

V5_HEADER = np.dtype(
    [("version", ">u2"), ("count", ">u2"), ("uptime", ">u4"), ("secs", ">u4"),
     ("nsecs", ">u4"), ("seq", ">u4"), ("etype", "u1"), ("eid", "u1"), ("sampling", ">u2")]
)  # fmt: skip
V5_RECORD = np.dtype(
    [("src", ">u4"), ("dst", ">u4"), ("nexthop", ">u4"), ("input", ">u2"), ("output", ">u2"),
     ("packets", ">u4"), ("octets", ">u4"), ("first", ">u4"), ("last", ">u4"),
     ("sport", ">u2"), ("dport", ">u2"), ("pad1", "u1"), ("flags", "u1"), ("proto", "u1"),
     ("tos", "u1"), ("src_as", ">u2"), ("dst_as", ">u2"), ("src_mask", "u1"),
     ("dst_mask", "u1"), ("pad2", ">u2")]
)  # fmt: skip
PER_DATAGRAM = 30


def _v4(column: pa.ChunkedArray) -> np.ndarray:
    raw = np.frombuffer(column.combine_chunks().buffers()[1], dtype=np.uint8)
    return raw.reshape(-1, 16)[:, 12:16].copy().view(">u4").reshape(-1)


def v5_datagrams(flows: pa.Table) -> list[bytes]:
    """NetFlow v5 datagrams (30 records each) carrying ``flows``."""
    n = flows.num_rows
    start_ms = flows.column("flow_start").cast(pa.int64()).to_numpy() // 1000
    end_ms = flows.column("flow_end").cast(pa.int64()).to_numpy() // 1000
    export_s = T0_US // 1_000_000 + 2 * 86_400
    uptime = 200_000_000  # ms; every flow starts after boot
    boot_ms = export_s * 1000 - uptime
    rec = np.zeros(n, dtype=V5_RECORD)
    rec["src"] = _v4(flows.column("src_addr"))
    rec["dst"] = _v4(flows.column("dst_addr"))
    rec["input"] = flows.column("input_if").to_numpy()
    rec["output"] = flows.column("output_if").to_numpy()
    rec["packets"] = flows.column("packets").to_numpy()
    rec["octets"] = flows.column("bytes").to_numpy()
    rec["first"] = start_ms - boot_ms
    rec["last"] = end_ms - boot_ms
    rec["sport"] = flows.column("src_port").to_numpy()
    rec["dport"] = flows.column("dst_port").to_numpy()
    rec["flags"] = flows.column("tcp_flags").to_numpy().astype(np.uint8)
    rec["proto"] = flows.column("protocol").to_numpy()
    out = []
    for i in range(0, n, PER_DATAGRAM):
        part = rec[i : i + PER_DATAGRAM]
        hdr = np.zeros(1, dtype=V5_HEADER)
        hdr["version"], hdr["count"], hdr["uptime"] = 5, part.shape[0], uptime
        hdr["secs"], hdr["seq"] = export_s, i
        out.append(hdr.tobytes() + part.tobytes())
    return out


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _nfdump_summary(nfdir: Path) -> dict[str, int]:
    out = subprocess.run(
        ["nfdump", "-R", str(nfdir), "-s", "srcip/bytes", "-n", "1", "-o", "csv"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    lines = [ln for ln in out.splitlines() if ln.strip()]
    head = lines.index(next(ln for ln in lines if ln.startswith("flows,bytes,packets")))
    flows_, bytes_, packets = lines[head + 1].split(",")[:3]
    return {"flows": int(flows_), "bytes": int(bytes_), "packets": int(packets)}


def build_nfcapd_files(flows: pa.Table, nfdir: Path, rate: float) -> dict[str, Any]:
    """Replay ``flows`` as v5 over loopback into nfcapd at about ``rate`` flows/s."""
    datagrams = v5_datagrams(flows)
    nfdir.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    proc = subprocess.Popen(
        ["nfcapd", "-b", "127.0.0.1", "-p", str(port), "-w", str(nfdir), "-B", "4194304",
         "-t", "3600"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        time.sleep(1.0)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        burst = 100
        pause = burst * PER_DATAGRAM / rate
        t = time.perf_counter()
        for i in range(0, len(datagrams), burst):
            for d in datagrams[i : i + burst]:
                sock.sendto(d, ("127.0.0.1", port))
            due = t + (i + burst) * PER_DATAGRAM / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(min(delay, pause))
        send_s = time.perf_counter() - t
        sock.close()
        time.sleep(2.0)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    summary = _nfdump_summary(nfdir)
    return {"sent": flows.num_rows, "received": summary["flows"], "send_s": send_s, **summary}


def _cpu() -> float:
    """CPU seconds of this process and its finished children (nfdump runs as a child)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _alternate(
    runs: dict[str, Callable[[], Any]], repeat: int
) -> tuple[dict[str, float], dict[str, Any], dict[str, float], dict[str, float]]:
    """Each of ``runs`` once to warm up, then in turn for ``repeat`` rounds: (median wall
    seconds, last results, median CPU seconds, median per-round ratio to ``ours``)."""
    results = {who: fn() for who, fn in runs.items()}
    walls: dict[str, list[float]] = {who: [] for who in runs}
    cpus: dict[str, list[float]] = {who: [] for who in runs}
    for _ in range(repeat):
        for who, fn in runs.items():
            c, t = _cpu(), time.perf_counter()
            results[who] = fn()
            walls[who].append(time.perf_counter() - t)
            cpus[who].append(_cpu() - c)
    med = {who: statistics.median(v) for who, v in walls.items()}
    cpu = {who: statistics.median(v) for who, v in cpus.items()}
    ratio = {who: statistics.median([p / o for p, o in zip(v, walls["ours"], strict=True)])
             for who, v in walls.items()}  # fmt: skip
    return med, results, cpu, ratio


def _ip(b: bytes) -> str:
    return ".".join(str(x) for x in b[12:16])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--flows", type=int, default=5_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--rate", type=float, default=400_000, help="v5 replay flows/s")
    ap.add_argument("--keep", type=Path, default=None, help="work folder to keep")
    args = ap.parse_args()

    import duckdb
    import polars as pl

    work = args.keep or Path(tempfile.mkdtemp(prefix="topn-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        pq_dir = work / "flows"
        nf_dir = work / "nfcapd"
        marker = work / "inputs.json"
        if marker.exists() and json.loads(marker.read_text()).get("sent") == args.flows:
            nf = json.loads(marker.read_text())  # --keep folder from an earlier run
        else:
            _subs, starts, plens = make_subscriptions(20_000)
            flows = make_flows(args.flows, starts, plens)
            shutil.rmtree(pq_dir, ignore_errors=True)
            write_partitioned(flows, pq_dir, time_column="flow_start", part_name="bench")
            shutil.rmtree(nf_dir, ignore_errors=True)
            nf = build_nfcapd_files(flows, nf_dir, args.rate)
            marker.write_text(json.dumps(nf))
            del flows

        load_before = round(os.getloadavg()[0], 2)
        t = time.perf_counter()
        top_n_dataset(pq_dir, "src_addr", "bytes", 10)
        warm_s = time.perf_counter() - t

        nf_cmd = ["nfdump", "-R", str(nf_dir), "-s", "srcip/bytes", "-n", "10", "-o", "csv"]
        glob = str(pq_dir / "**" / "*.parquet")
        con = duckdb.connect()
        con.execute("SET threads = 2")
        con.execute("SET TimeZone = 'UTC'")
        sql = (
            f"SELECT src_addr, sum(bytes)::UBIGINT AS b FROM read_parquet('{glob}', "
            "hive_partitioning = true) GROUP BY src_addr ORDER BY b DESC, src_addr LIMIT 10"
        )
        lazy = (
            pl.scan_parquet(glob, hive_partitioning=True)
            .group_by("src_addr")
            .agg(pl.col("bytes").sum())
            .sort(["bytes", "src_addr"], descending=[True, False])
            .head(10)
        )
        med, got, cpu, ratio = _alternate(
            {
                "ours": lambda: top_n_dataset(pq_dir, "src_addr", "bytes", 10),
                "nfdump": lambda: (
                    subprocess.run(nf_cmd, capture_output=True, text=True, check=True).stdout
                ),
                "duckdb": lambda: con.execute(sql).fetchall(),
                "polars": lambda: lazy.collect(),
            },
            args.repeat,
        )
        ours_s, nf_s, duck_s, pol_s = (med[w] for w in ("ours", "nfdump", "duckdb", "polars"))
        ours_top = [(_ip(r["src_addr"]), r["bytes"]) for r in got["ours"].to_pylist()]
        nf_top = []
        for line in got["nfdump"].splitlines():
            parts = line.split(",")
            # csv stat lines: ts,te,td,pr,val,fl,flP,ipkt,ipktP,ibyt,ibytP,...
            if len(parts) > 10 and parts[4].count(".") == 3:
                nf_top.append((parts[4], int(parts[9])))
        duck_top = [(_ip(bytes(a)), int(b)) for a, b in got["duckdb"]]
        pol_top = [(_ip(a), int(b)) for a, b in got["polars"].iter_rows()]

        # time buckets: bytes, packets and flows per destination port and hour (epoch
        # hours, UTC), renormalised, ordered by bucket then key - `query buckets` vs SQL
        mult = "greatest(coalesce(sampling_interval, 1), 1)"
        bucket_sql = (
            f"SELECT dst_port, time_bucket(INTERVAL 1 hour, flow_start) AS h, "
            f"sum(bytes * {mult})::UBIGINT, sum(packets * {mult})::UBIGINT, count(*) "
            f"FROM read_parquet('{glob}', hive_partitioning = true) GROUP BY ALL "
            "ORDER BY h, dst_port"
        )
        med_b, got_b, cpu_b, ratio_b = _alternate(
            {"ours": lambda: bucket_dataset(pq_dir, "dst_port", "hour"),
             "duckdb": lambda: con.execute(bucket_sql).fetchall()},
            args.repeat,
        )  # fmt: skip
        ours_b_s, duck_b_s = med_b["ours"], med_b["duckdb"]
        ours_rows = [(r["dst_port"], r["bucket_start"], r["bytes"], r["packets"], r["flows"])
                     for r in got_b["ours"].to_pylist()]  # fmt: skip
        duck_rows = [(p, h, int(b), int(k), int(f)) for p, h, b, k, f in got_b["duckdb"]]

        n = args.flows
        agree = ours_top == duck_top == pol_top
        result = {
            "benchmark": "topn_vs_peers",
            "flows": n,
            "threads": os.cpu_count(),
            "nfcapd_sent": nf["sent"],
            "nfcapd_received": nf["received"],
            "nfdump_same_flows": nf["received"] == n,
            "ours_flows_per_s": round(n / ours_s),
            "nfdump_flows_per_s": round(n / nf_s),
            "duckdb_flows_per_s": round(n / duck_s),
            "polars_flows_per_s": round(n / pol_s),
            "ratio_vs_nfdump": round(ratio["nfdump"], 2),
            "ratio_vs_duckdb": round(ratio["duckdb"], 2),
            "ratio_vs_polars": round(ratio["polars"], 2),
            "target_ratio_vs_nfdump": 2.0,
            "buckets_ours_flows_per_s": round(n / ours_b_s),
            "buckets_duckdb_flows_per_s": round(n / duck_b_s),
            "buckets_ratio_vs_duckdb": round(ratio_b["duckdb"], 2),
            "buckets_cpu_s": {"ours": round(cpu_b["ours"], 3), "duckdb": round(cpu_b["duckdb"], 3)},
            "buckets_agree_duckdb": ours_rows == duck_rows,
            "vs_duckdb": {
                "top_src_ip": round(ratio["duckdb"], 2),
                "buckets_dst_port_hour": round(ratio_b["duckdb"], 2),
            },
            "load_average_1m_before": load_before,
            "load_average_1m": round(os.getloadavg()[0], 2),
            "cpu_s": {who: round(v, 3) for who, v in cpu.items()},
            "cpu_ratio_vs_nfdump": round(cpu["nfdump"] / cpu["ours"], 2),
            "cpu_ratio_vs_duckdb": round(cpu["duckdb"] / cpu["ours"], 2),
            "top_agree_ours_duckdb_polars": agree,
            "top_agree_nfdump": nf_top == ours_top,
            "ours_first_run_s": round(warm_s, 3),
        }
        for name, top in (("ours", ours_top), ("nfdump", nf_top), ("duckdb", duck_top)):
            print(name, top[:3])
        print(json.dumps(result))
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
