"""Flow decode throughput on one core: ours vs the ``netflow`` package, scapy and nfdump.

Same synthetic datagrams for everyone: NetFlow v5 with 30 records each, NetFlow v9 and
IPFIX with a fixed-length 16-field IPv4 template and 24 records each. Rates are flows
per second of CPU time of this process (the machine is shared, so wall-clock rates are
printed too). Numba warm-up is not measured; the first call's time is reported.

nfdump: the v5 and v9 datagrams are replayed over loopback into ``nfcapd``; then
``nfdump -r FILE -q -s srcip/bytes`` is timed (CPU time of the child, and wall) on the
flows nfcapd stored.

``--enrich`` also decodes each stream with AS and country enrichment from two databases
the size of GeoLite2's (``enrichment_databases.py``, built once into ``--enrich-dir``) and
reports the rate and its ratio to plain decoding (goal: less than 20% slower, as the
median of ``--enrich-rounds`` runs); the two are timed alternately (which goes first
alternating too) so the shared machine's load falls on both alike, and the load average
is printed beside them. ``--enrich-only`` measures just that.

Usage: python benchmarks/flow_decode_vs_peers.py [--scale 1.0] [--no-nfdump] [--enrich]
       [--enrich-only] [--enrich-rounds 9]
The last line of output is one JSON object with the rates and ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from collectors.flows.decoder import FlowDecoder
from collectors.netflow.export_synth import synth_template_stream, synth_v5_datagrams

EXP = b"\x00" * 10 + b"\xff\xff" + bytes([127, 0, 0, 1])


def _timed(fn: Callable[[], int], repeat: int = 3) -> tuple[float, float, int]:
    """Best (cpu seconds, wall seconds, flows) over ``repeat`` runs."""
    best_cpu, best_wall, flows = float("inf"), float("inf"), 0
    for _ in range(repeat):
        c0, w0 = time.process_time(), time.perf_counter()
        flows = fn()
        best_cpu = min(best_cpu, time.process_time() - c0)
        best_wall = min(best_wall, time.perf_counter() - w0)
    return best_cpu, best_wall, flows


def ours(datagrams: list[bytes], chunk: int, enricher: Any = None) -> Callable[[], int]:
    """Decode ``datagrams[1:]`` in chunks (the first one, a template for v9/IPFIX, is primed);
    with ``enricher``, each decoded batch is enriched as the collector does."""
    received = np.zeros(chunk, np.int64)
    exps = [EXP] * chunk

    def run() -> int:
        dec = FlowDecoder()
        dec.decode(datagrams[0], EXP, 0)
        n = 0
        body = datagrams[1:]
        for i in range(0, len(body), chunk):
            part = body[i : i + chunk]
            out = dec.decode_many(part, exps[: len(part)], received[: len(part)])
            flows = out.flows if enricher is None else enricher.enrich(out.flows)
            n += flows.num_rows
        return n

    return run


def enrichment_cost(
    streams: dict[str, list[bytes]], chunk: int, folder: Path, rounds: int = 9
) -> dict[str, dict[str, float]]:
    """Plain and enriched decode rates per stream: CPU time of ``rounds`` alternating runs
    (plain, enriched, plain...), so the shared machine's load falls on both alike; the
    slowdown from the best run of each, and from their medians."""
    from enrichment_databases import build_databases

    from collectors.enrich.enricher import FlowEnricher

    c0 = time.perf_counter()
    asn, geo = build_databases(folder)
    built = time.perf_counter() - c0
    c0 = time.perf_counter()
    enricher = FlowEnricher.open(asn_db=asn, geo_db=geo)
    loaded = time.perf_counter() - c0
    print(
        f"enrichment databases: built/found in {built:.1f} s, read in {loaded:.1f} s: "
        f"{enricher.describe() if enricher else None}"
    )
    out: dict[str, dict[str, float]] = {}
    load_before = os.getloadavg()[0]
    for name, ds in streams.items():
        plain, rich = ours(ds, chunk), ours(ds, chunk, enricher)
        rich()  # warm-up: the look-up kernel's compile or cache load
        times: dict[str, list[float]] = {"plain": [], "enriched": []}
        flows = 0
        for r in range(rounds):
            # plain first in even rounds, enriched first in odd ones: neither gains from
            # always following the other (caches, the machine's frequency)
            order = (("plain", plain), ("enriched", rich))
            for kind, fn in order if r % 2 == 0 else order[::-1]:
                c, _, flows = _timed(fn, repeat=1)
                times[kind].append(c)
        best = {k: min(v) for k, v in times.items()}
        median = {k: float(np.median(v)) for k, v in times.items()}
        out[name] = {
            "plain": flows / best["plain"],
            "enriched": flows / best["enriched"],
            "slowdown": best["enriched"] / best["plain"] - 1,
            "slowdown_median": median["enriched"] / median["plain"] - 1,
            "ns_per_flow": (median["enriched"] - median["plain"]) / flows * 1e9,
        }
        print(
            f"enrich  {name:6s} plain {out[name]['plain'] / 1e6:6.2f} M/s  enriched "
            f"{out[name]['enriched'] / 1e6:6.2f} M/s  ({out[name]['slowdown']:+.0%} best, "
            f"{out[name]['slowdown_median']:+.0%} median of {rounds}, "
            f"{out[name]['ns_per_flow']:.1f} ns a flow)"
        )
    out["_load_s"] = {"asn_and_geo": loaded}
    # the machine is shared: the 1-minute load average before and after the rounds
    out["_load_average"] = {"before": load_before, "after": os.getloadavg()[0]}
    print(f"load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after")
    return out


def netflow_pkg(datagrams: list[bytes]) -> Callable[[], int]:
    import netflow

    def run() -> int:
        templates: dict = {"netflow": {}, "ipfix": {}}
        netflow.parse_packet(datagrams[0], templates)
        return sum(len(netflow.parse_packet(d, templates).flows) for d in datagrams[1:])

    return run


def scapy_peer(datagrams: list[bytes], version: int) -> Callable[[], int]:
    from scapy.layers.netflow import NetflowHeader, netflowv9_defragment

    def run() -> int:
        pkts = [NetflowHeader(d) for d in datagrams]
        if version == 5:
            return sum(int(p.payload.count) for p in pkts[1:])
        pkts = netflowv9_defragment(pkts)
        n = 0
        for p in pkts[1:]:
            layer = p
            while layer:
                if layer.__class__.__name__ == "NetflowDataflowsetV9":
                    n += len(layer.records)
                layer = layer.payload
        return n

    return run


def nfdump_peer(datagrams: list[bytes], workdir: Path) -> dict[str, float] | None:
    """Replay into nfcapd over loopback, then time ``nfdump -r`` on the stored flows."""
    if not (shutil.which("nfcapd") and shutil.which("nfdump")):
        return None
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    proc = subprocess.Popen(
        ["nfcapd", "-w", str(workdir), "-p", str(port), "-b", "127.0.0.1", "-B", "8000000"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(1.0)
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for i, d in enumerate(datagrams):
            tx.sendto(d, ("127.0.0.1", port))
            if i % 100 == 99:
                time.sleep(0.003)  # stay well under what nfcapd can take: lossless replay
        tx.close()
        time.sleep(1.0)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    files = sorted(p for p in workdir.rglob("nfcapd.*") if not p.name.startswith("nfcapd.current"))
    if not files:
        return None
    path = files[-1]
    info = subprocess.run(["nfdump", "-r", str(path), "-I"], capture_output=True, text=True)
    flows = 0
    for line in info.stdout.splitlines():
        if line.startswith("Flows:"):
            flows = int(line.split(":")[1])
    best_cpu, best_wall = float("inf"), float("inf")
    for _ in range(3):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        w0 = time.perf_counter()
        subprocess.run(
            ["nfdump", "-r", str(path), "-q", "-s", "srcip/bytes"],
            stdout=subprocess.DEVNULL,
            check=True,
        )
        wall = time.perf_counter() - w0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        best_cpu, best_wall = min(best_cpu, cpu), min(best_wall, wall)
    return {
        "flows_stored": flows,
        "flows_sent": 0,
        "rate_cpu": flows / best_cpu if best_cpu else 0.0,
        "rate_wall": flows / best_wall,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0, help="multiply the sample sizes")
    ap.add_argument("--chunk", type=int, default=2000, help="datagrams per decode_many call")
    ap.add_argument("--no-nfdump", action="store_true")
    ap.add_argument("--enrich", action="store_true", help="measure AS + country enrichment")
    ap.add_argument(
        "--enrich-only", action="store_true", help="only the enrichment cost (no peers)"
    )
    ap.add_argument("--enrich-rounds", type=int, default=9, help="alternating runs per stream")
    ap.add_argument(
        "--enrich-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "re-mmdb",
        help="where the synthetic databases are built (kept for the next run)",
    )
    args = ap.parse_args()
    args.enrich = args.enrich or args.enrich_only
    s = args.scale
    streams = {
        "v5": synth_v5_datagrams(int(20_000 * s) + 1, 30, seed=1),
        "v9": synth_template_stream("netflow_v9", int(10_000 * s), 24, seed=2),
        "ipfix": synth_template_stream("ipfix", int(10_000 * s), 24, seed=3),
    }
    # Warm-up: the first call compiles (or loads cached) Numba kernels.
    c0 = time.perf_counter()
    for ds in streams.values():
        FlowDecoder().decode_many(ds[:3], [EXP] * 3, [0, 0, 0])
    first_call = time.perf_counter() - c0
    print(f"first calls (Numba compile or cache load): {first_call:.2f} s")

    result: dict[str, dict[str, float]] = {"ours": {}, "ours_wall": {}, "netflow": {}, "scapy": {}}
    peer_n = {"v5": int(300 * s) + 1, "v9": int(200 * s) + 1, "ipfix": int(40 * s) + 1}
    for name, ds in {} if args.enrich_only else streams.items():
        cpu, wall, flows = _timed(ours(ds, args.chunk))
        result["ours"][name] = flows / cpu
        result["ours_wall"][name] = flows / wall
        print(
            f"ours    {name:6s} {flows:9d} flows  {flows / cpu / 1e6:8.2f} M/s cpu  "
            f"{flows / wall / 1e6:8.2f} M/s wall"
        )
        sample = ds[: peer_n[name]]
        cpu, wall, flows = _timed(netflow_pkg(sample), repeat=3)
        result["netflow"][name] = flows / cpu
        print(f"netflow {name:6s} {flows:9d} flows  {flows / cpu / 1e3:8.1f} k/s cpu")
        sample = ds[: max(peer_n[name] // 4, 11)]
        cpu, wall, flows = _timed(scapy_peer(sample, 5 if name == "v5" else 9), repeat=1)
        result["scapy"][name] = flows / cpu if flows else 0.0
        print(f"scapy   {name:6s} {flows:9d} flows  {flows / cpu / 1e3:8.1f} k/s cpu")

    nfdump: dict[str, dict[str, float]] = {}
    if not (args.no_nfdump or args.enrich_only):
        for name in ("v5", "v9"):
            ds = streams[name][: int(20_000 * s) + 1]
            with tempfile.TemporaryDirectory() as tmp:
                got = nfdump_peer(ds, Path(tmp))
            if got is None:
                print(f"nfdump  {name}: not available")
                continue
            got["flows_sent"] = (
                sum(int.from_bytes(d[2:4], "big") for d in ds)
                if name == "v5"
                else 24 * (len(ds) - 1)
            )
            nfdump[name] = got
            print(
                f"nfdump  {name:6s} {int(got['flows_stored']):9d} flows stored of "
                f"{int(got['flows_sent'])} sent; -s srcip/bytes "
                f"{got['rate_cpu'] / 1e6:8.2f} M/s cpu  {got['rate_wall'] / 1e6:8.2f} M/s wall"
            )

    ratios: dict[str, float] = {}
    for name in streams:
        for peer in ("netflow", "scapy"):
            if result[peer].get(name):
                ratios[f"{name}_vs_{peer}"] = result["ours"][name] / result[peer][name]
        if name in nfdump and nfdump[name]["rate_cpu"]:
            ratios[f"{name}_vs_nfdump"] = result["ours"][name] / nfdump[name]["rate_cpu"]
    targets = (
        {}
        if args.enrich_only
        else {
            "v5_20M": result["ours"].get("v5", 0) >= 20e6,
            "v9_5M": result["ours"].get("v9", 0) >= 5e6,
            "ipfix_5M": result["ours"].get("ipfix", 0) >= 5e6,
            "all_50x_netflow": all(ratios.get(f"{n}_vs_netflow", 0) >= 50 for n in streams),
        }
    )
    enrich = (
        enrichment_cost(streams, args.chunk, args.enrich_dir, args.enrich_rounds)
        if args.enrich
        else {}
    )
    if enrich:
        targets["enrich_20pct"] = all(
            v["slowdown_median"] < 0.20 for k, v in enrich.items() if not k.startswith("_")
        )
    summary = {
        "benchmark": "flow_decode_vs_peers",
        "enrichment": {k: {kk: round(vv, 3) for kk, vv in v.items()} for k, v in enrich.items()},
        "unit": "flows/s (cpu time, one core)",
        "first_call_s": round(first_call, 3),
        "pid": os.getpid(),
        "ours": {k: round(v) for k, v in result["ours"].items()},
        "ours_wall": {k: round(v) for k, v in result["ours_wall"].items()},
        "netflow": {k: round(v) for k, v in result["netflow"].items()},
        "scapy": {k: round(v) for k, v in result["scapy"].items()},
        "nfdump": {k: {kk: round(vv) for kk, vv in v.items()} for k, v in nfdump.items()},
        "ratios": {k: round(v, 1) for k, v in ratios.items()},
        "targets_met": targets,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
