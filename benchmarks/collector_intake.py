"""Collector intake over loopback: the highest replay rate each collector takes without loss.

A replayer (this process) sends recorded export datagrams - synthetic NetFlow v5 with 30
flows each, NetFlow v9 and IPFIX (template first, then data with 24 flows each) - to
127.0.0.1 at rising rates, a bounded number per step. Each step starts a fresh
collector process: ours (``collectors.udp.service.run_collector``, writing Parquet
to a temporary workspace) or nfcapd (``-B`` the same socket buffer); both are stopped
with SIGTERM after the step and report how many flows they took. A step is lossless
when every flow sent was received. Both collectors get the same receive buffer
(``--rcvbuf``, default 4 MiB = this host's rmem_max), so a collector that falls behind
for longer than the buffer lasts loses data.

The sender is one Python process sending a burst every 0.25 ms with one ``sendmmsg``
call, the sequence numbers carried on over each pass of the recording (as a real
exporter's); where it cannot reach a target rate the step reports the rate achieved, and
the search stops there (the limit is then the replayer's; a lossless try sent short is
tried again while tries are left). A rate counts as lossless when
one of ``--trials`` tries (default 2, both collectors alike) loses nothing: on a shared
machine a burst of other work makes single steps lose at random, and the load average
(printed) still moves the numbers.

    .venv/bin/python benchmarks/collector_intake.py            # ~2-4 minutes
    .venv/bin/python benchmarks/collector_intake.py --rates 1e6,2e6,4e6,8e6 --step-seconds 4
    .venv/bin/python benchmarks/collector_intake.py --repeat 3 --formats v9   # medians

CPU per flow is the steadier figure on a shared machine: ``cpu_us_per_flow_marginal``
(microseconds a flow = CPU seconds per million flows, the slope over the steps, without
each step's start and stop) and ``cpu_s_per_million_flows`` (every step's CPU over every
flow taken), both for ours and nfcapd and as ``..._ours_over_nfcapd`` (how many times
nfcapd's CPU ours takes). With ``--repeat N`` the ``medians`` object holds each figure's
median over the runs (ratios: the median of each run's ratio, the runs' values beside it).
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import itertools
import json
import os
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from typing import Any

from collectors.flows.decoder import FlowDecoder
from collectors.netflow.export_synth import synth_template_stream, synth_v5_datagrams
from collectors.udp.receive import _IoVec, _MMsgHdr  # recvmmsg's structs serve sendmmsg

OUR_COLLECTOR = """
import json, sys
from pathlib import Path
from collectors.udp.service import run_collector
from collectors.workspace import WorkspacePaths

def ready(addresses):
    print(addresses[0][1], flush=True)

summary = run_collector(
    [("127.0.0.1", 0)], WorkspacePaths(Path(sys.argv[1])), on_ready=ready,
    stats_interval=3600, rcvbuf=int(sys.argv[2]), compression=sys.argv[3],
)
print(json.dumps(summary.to_dict()), flush=True)
"""


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) from /proc; 0 elsewhere."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _stop_and_reap(proc: subprocess.Popen[str], cpu_at_ready: float) -> tuple[str, float]:
    """SIGTERM, read its output, reap it: (output, CPU seconds since ready incl. the flush)."""
    proc.send_signal(signal.SIGTERM)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return out, usage.ru_utime + usage.ru_stime - cpu_at_ready


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_bound(port: int, proc: subprocess.Popen[str], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError("collector exited at start")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing bound 127.0.0.1:{port}")
        time.sleep(0.05)


_SEQUENCE_AT = {5: 16, 9: 12, 10: 8}  # header offset of the sequence number, by version


def _sendmmsg() -> Any:
    """libc's sendmmsg(2), or None where there is none (then one sendto per datagram)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    fn = getattr(ctypes.CDLL(name, use_errno=True), "sendmmsg", None)
    if fn is not None:
        fn.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
        fn.restype = ctypes.c_int
    return fn


class _Stream:
    """The data datagrams as mutable buffers, and their sequence numbers carried on.

    A real exporter's sequence numbers never repeat: each pass over the recording adds
    the span of one pass to every datagram's number (v5 counts flows, v9 packets, IPFIX
    records), so the collectors see one long in-order stream, not a restart or
    duplicates every ``len(data)`` datagrams.
    """

    def __init__(self, data: list[bytes]) -> None:
        self.bufs = [bytearray(d) for d in data]
        version = int.from_bytes(data[0][:2], "big")
        self.at = _SEQUENCE_AT[version]
        seqs = [int.from_bytes(d[self.at : self.at + 4], "big") for d in data]
        stride = seqs[1] - seqs[0] if len(seqs) > 1 else 1
        if any(b - a != stride for a, b in itertools.pairwise(seqs)):
            raise ValueError("the recording's sequence numbers do not step evenly")
        self.base = seqs
        self.span = stride * len(seqs)
        self.lap = 0
        self.msgs = (_MMsgHdr * len(data))()
        self._iov = (_IoVec * len(data))()
        self._keep = [(ctypes.c_char * len(b)).from_buffer(b) for b in self.bufs]
        for i, raw in enumerate(self._keep):
            self._iov[i].iov_base = ctypes.addressof(raw)
            self._iov[i].iov_len = len(self.bufs[i])
            self.msgs[i].msg_hdr.msg_iov = ctypes.pointer(self._iov[i])
            self.msgs[i].msg_hdr.msg_iovlen = 1

    def next_lap(self) -> None:
        self.lap += 1
        shift = self.lap * self.span
        for buf, seq in zip(self.bufs, self.base, strict=True):
            struct.pack_into(">I", buf, self.at, (seq + shift) & 0xFFFFFFFF)


def replay(
    port: int, preamble: list[bytes], data: list[bytes], rate_dps: float, count: int
) -> float:
    """Send ``preamble``, then ``count`` datagrams cycling ``data`` at ``rate_dps``; rate made.

    Datagrams go out in bursts every 0.25 ms, a burst with one ``sendmmsg`` call where
    libc has it, so the replayer's own cost per datagram stays far below a collector's.
    """
    stream = _Stream(data)
    sendmmsg = _sendmmsg()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
        sock.connect(("127.0.0.1", port))
        for d in preamble:
            sock.send(d)
        time.sleep(0.05)  # templates first
        burst = max(1, int(rate_dps / 4000))  # a burst every 0.25 ms
        n = len(data)
        fd = sock.fileno()
        base = ctypes.addressof(stream.msgs)
        size = ctypes.sizeof(_MMsgHdr)
        start = time.perf_counter()
        i = 0
        while i < count:
            due = start + i / rate_dps
            now = time.perf_counter()
            if due > now + 0.0005:
                time.sleep(due - now - 0.0003)
            stop = min(i + burst, count)
            while i < stop:
                k = i % n
                if k == 0 and i:
                    stream.next_lap()
                want = min(stop - i, n - k)
                if sendmmsg is not None:
                    sent = sendmmsg(fd, base + k * size, want, 0)
                    if sent < 0:
                        if ctypes.get_errno() in (11, 111):  # EAGAIN, ECONNREFUSED
                            continue
                        raise OSError(ctypes.get_errno(), "sendmmsg")
                    i += sent
                else:
                    try:
                        sock.send(stream.bufs[k])
                    except (BlockingIOError, ConnectionRefusedError):
                        continue
                    i += 1
        elapsed = time.perf_counter() - start
    return count / elapsed if elapsed > 0 else float("inf")


COMPRESSION = ["lz4"]
REPORTED_DROPS: list[int] = []  # our collector's own count of kernel drops, per step
BUFFER_PEAKS: list[int] = []  # most bytes our collector held received but not yet decoded


def run_ours(
    preamble: list[bytes], data: list[bytes], rate_dps: float, count: int, rcvbuf: int
) -> tuple[int, float, float]:
    """Flows our collector took, the send rate achieved, its CPU seconds during the step."""
    ws = tempfile.mkdtemp(prefix="intake-ours-")
    try:
        with subprocess.Popen(
            [sys.executable, "-c", OUR_COLLECTOR, ws, str(rcvbuf), COMPRESSION[0]],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        ) as proc:
            assert proc.stdout is not None
            port = int(proc.stdout.readline())
            cpu0 = _cpu_seconds(proc.pid)
            sent_rate = replay(port, preamble, data, rate_dps, count)
            time.sleep(0.3)
            out, cpu = _stop_and_reap(proc, cpu0)
        summary = json.loads(out.strip().splitlines()[-1])
        REPORTED_DROPS.append(int(summary.get("socket_drops", 0)))
        BUFFER_PEAKS.append(int(summary.get("buffer_peak_bytes", 0)))
        return int(summary["flows"]), sent_rate, cpu
    finally:
        shutil.rmtree(ws, ignore_errors=True)


def run_nfcapd(
    preamble: list[bytes], data: list[bytes], rate_dps: float, count: int, rcvbuf: int
) -> tuple[int, float, float]:
    """Flows nfcapd took (its exit statistics line), the send rate, its CPU seconds."""
    folder = tempfile.mkdtemp(prefix="intake-nfcapd-")
    port = _free_port()
    try:
        cmd = ["nfcapd", "-w", folder, "-b", "127.0.0.1", "-p", str(port), "-B", str(rcvbuf)]
        with subprocess.Popen(
            [*cmd, "-t", "3600"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        ) as proc:
            _wait_bound(port, proc)
            cpu0 = _cpu_seconds(proc.pid)
            sent_rate = replay(port, preamble, data, rate_dps, count)
            time.sleep(0.3)
            out, cpu = _stop_and_reap(proc, cpu0)
        match = re.search(r"Flows: (\d+)", out)
        if match is None:
            raise RuntimeError(f"nfcapd printed no statistics: {out[-500:]}")
        return int(match.group(1)), sent_rate, cpu
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def search(
    name: str,
    runner: Any,
    preamble: list[bytes],
    data: list[bytes],
    flows_per: int,
    preamble_flows: int,
    rates: list[float],
    step_seconds: float,
    max_datagrams: int,
    rcvbuf: int,
    trials: int = 1,
) -> dict[str, Any]:
    """Rising rates until a rate loses in every one of ``trials`` tries (or the replayer's
    limit)."""
    steps = []
    best = 0.0
    for rate in rates:
        dps = rate / flows_per
        count = int(min(dps * step_seconds, max_datagrams))
        for trial in range(max(trials, 1)):
            REPORTED_DROPS.clear()
            BUFFER_PEAKS.clear()
            got, sent_dps, cpu = runner(preamble, data, dps, count, rcvbuf)
            expected = count * flows_per + preamble_flows
            sent_fps = sent_dps * flows_per
            lossless = got == expected
            steps.append(
                {
                    "target_flows_per_s": rate,
                    "trial": trial + 1,
                    "sent_flows_per_s": round(sent_fps),
                    "flows_sent": expected,
                    "flows_received": got,
                    "lost": expected - got,
                    "cpu_s": round(cpu, 2),
                    "cpu_us_per_flow": round(cpu * 1e6 / got, 3) if got else None,
                }
            )
            if REPORTED_DROPS:  # ours says how many datagrams the kernel dropped
                steps[-1]["datagrams_dropped_reported"] = REPORTED_DROPS[0]
            if BUFFER_PEAKS:  # a burst above the decoding rate waits in the receive ring
                steps[-1]["buffer_peak_mb"] = round(BUFFER_PEAKS[0] / 1e6, 1)
            print(
                f"{name:>16}: target {rate / 1e6:5.2f}M flows/s sent {sent_fps / 1e6:5.2f}M "
                f"received {got}/{expected} {'lossless' if lossless else 'LOSS'} "
                f"cpu {cpu:.2f}s",
                flush=True,
            )
            if lossless:
                best = max(best, sent_fps)
                # a lossless try the replayer sent short of the rate (the machine was
                # busy) is tried again while tries are left: the search must not stop at
                # the replayer's bad moment for one collector and not for the other
                if sent_fps >= 0.9 * rate:
                    break
        if not any(s["lost"] == 0 for s in steps if s["target_flows_per_s"] == rate):
            break
        if best < 0.9 * rate:  # no lossless try reached this rate: the replayer's limit
            print(f"{name:>16}: replayer limit reached", flush=True)
            break
    # CPU per flow changes less with the machine's load than the lossless rate does. The
    # CPU is counted from "ready" to the process's exit, so each step also pays a fixed
    # cost (final flush, state save, interpreter exit): a least-squares line through
    # (flows, CPU seconds) of the steps separates the two; 1e6 / slope is what one idle
    # core would sustain (receive + decode + write Parquet for us, receive + store for
    # nfcapd).
    slope, fixed = _line([s["flows_received"] for s in steps], [s["cpu_s"] for s in steps])
    received = sum(s["flows_received"] for s in steps)
    return {
        "max_lossless_flows_per_s": round(best),
        # every step's CPU (fixed costs included) over every flow taken: the plain figure
        "cpu_s_per_million_flows": (
            round(sum(s["cpu_s"] for s in steps) * 1e6 / received, 3) if received else None
        ),
        "cpu_us_per_flow_marginal": round(slope * 1e6, 3) if slope else None,
        "cpu_s_fixed_per_step": round(fixed, 2) if slope else None,
        "one_core_cpu_bound_flows_per_s": round(1 / slope) if slope and slope > 0 else None,
        "steps": steps,
    }


def _templates_first(stream: list[bytes]) -> int:
    """How many datagrams at the start of a v9/IPFIX stream carry templates only (no flows)."""
    decoder = FlowDecoder()
    for i, datagram in enumerate(stream):
        if decoder.decode_many([datagram], [bytes(16)], [0]).flows.num_rows:
            return i
    return len(stream)


def _line(xs: list[int], ys: list[float]) -> tuple[float, float]:
    """Least-squares slope and intercept; (0, 0) with fewer than two distinct x."""
    n = len(xs)
    if n < 2 or len(set(xs)) < 2:
        return 0.0, 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    return slope, my - slope * mx


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def one_run(
    formats: dict[str, tuple[list[bytes], list[bytes], int, int]],
    rates: list[float],
    args: argparse.Namespace,
    have_nfcapd: bool,
) -> dict[str, Any]:
    """One search per format, ours then nfcapd: their lossless rates, CPU and ratios."""
    result: dict[str, Any] = {"loadavg_at_start": [round(x, 2) for x in os.getloadavg()]}
    for fmt, (preamble, data, per, pre_flows) in formats.items():
        common = (preamble, data, per, pre_flows, rates, args.step_seconds, args.max_datagrams)
        ours = search(f"ours {fmt}", run_ours, *common, args.rcvbuf, args.trials)
        result[f"ours_{fmt}"] = ours
        if not have_nfcapd:
            continue
        theirs = search(f"nfcapd {fmt}", run_nfcapd, *common, args.rcvbuf, args.trials)
        result[f"nfcapd_{fmt}"] = theirs
        if theirs["max_lossless_flows_per_s"]:
            result[f"ratio_{fmt}_ours_vs_nfcapd"] = round(
                ours["max_lossless_flows_per_s"] / theirs["max_lossless_flows_per_s"], 3
            )
        for kind in ("cpu_us_per_flow_marginal", "cpu_s_per_million_flows"):
            if ours[kind] and theirs[kind]:  # CPU a flow: how many times nfcapd's
                result[f"{kind}_{fmt}_ours_over_nfcapd"] = round(ours[kind] / theirs[kind], 2)
    result["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return result


def summarise(runs: list[dict[str, Any]], formats: list[str]) -> dict[str, Any]:
    """Medians over the runs (each run's own ratio, then their median) per format."""
    out: dict[str, Any] = {}
    for fmt in formats:
        row: dict[str, Any] = {}
        for who in ("ours", "nfcapd"):
            for key in (
                "max_lossless_flows_per_s",
                "cpu_us_per_flow_marginal",
                "cpu_s_per_million_flows",
            ):
                values = [r[f"{who}_{fmt}"][key] for r in runs if f"{who}_{fmt}" in r]
                row[f"{who}_{key}"] = _median([v for v in values if v is not None])
        for key in (
            f"ratio_{fmt}_ours_vs_nfcapd",
            f"cpu_us_per_flow_marginal_{fmt}_ours_over_nfcapd",
            f"cpu_s_per_million_flows_{fmt}_ours_over_nfcapd",
        ):
            values = [r[key] for r in runs if key in r]
            row[key.replace(f"_{fmt}", "")] = _median(values)
            row[key.replace(f"_{fmt}", "") + "_runs"] = values
        out[fmt] = row
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rates", default="5e5,1e6,1.5e6,2e6,3e6,4e6,6e6,8e6,1e7,1.2e7", help="flows/s steps"
    )
    parser.add_argument("--step-seconds", type=float, default=1.5)
    parser.add_argument("--trials", type=int, default=2, help="tries per rate, both")
    parser.add_argument("--compression", default="lz4", help="our Parquet compression")
    parser.add_argument("--max-datagrams", type=int, default=300_000, help="cap per step")
    parser.add_argument("--rcvbuf", type=int, default=4 << 20, help="socket buffer, both")
    parser.add_argument("--formats", default="v5,v9,ipfix", help="streams to replay")
    parser.add_argument("--repeat", type=int, default=1, help="whole runs; medians over them")
    parser.add_argument("--no-nfcapd", action="store_true")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    COMPRESSION[0] = args.compression
    v5 = synth_v5_datagrams(2000, 30, seed=1)
    v9 = synth_template_stream("netflow_v9", 2000, 24, seed=2)
    ipfix = synth_template_stream("ipfix", 2000, 24, seed=3)
    nv9, nipfix = _templates_first(v9), _templates_first(ipfix)
    streams = {
        "v5": ([], v5, 30, 0),
        "v9": (v9[:nv9], v9[nv9:], 24, 0),
        "ipfix": (ipfix[:nipfix], ipfix[nipfix:], 24, 0),
    }
    wanted = [f.strip() for f in args.formats.split(",") if f.strip()]
    unknown = sorted(set(wanted) - set(streams))
    if unknown:
        parser.error(f"unknown formats {unknown}; choose from {sorted(streams)}")
    formats = {f: streams[f] for f in wanted}
    started = time.perf_counter()
    result: dict[str, Any] = {
        "benchmark": "collector_intake",
        "cpus": os.cpu_count(),
        "rcvbuf": args.rcvbuf,
        "step_seconds": args.step_seconds,
        "trials": args.trials,
        "repeat": args.repeat,
        "target_flows_per_s": 1_000_000,
        "compression": args.compression,
    }
    have_nfcapd = shutil.which("nfcapd") is not None and not args.no_nfcapd
    runs = []
    for k in range(max(args.repeat, 1)):
        if args.repeat > 1:
            print(f"--- run {k + 1} of {args.repeat}", flush=True)
        runs.append(one_run(formats, rates, args, have_nfcapd))
    if len(runs) == 1:
        result.update(runs[0])
    else:
        result["runs"] = runs
    result["medians"] = summary = summarise(runs, list(formats))
    if "v5" in formats:
        result["meets_target_v5"] = (summary["v5"]["ours_max_lossless_flows_per_s"] or 0) >= 1e6
    ratios = [r["ratio_ours_vs_nfcapd"] for r in summary.values() if r["ratio_ours_vs_nfcapd"]]
    if ratios:
        result["min_ratio_ours_vs_nfcapd"] = min(ratios)
    for fmt, row in summary.items():
        print(
            f"{fmt:>6}: lossless ours {(row['ours_max_lossless_flows_per_s'] or 0) / 1e6:.2f}M "
            f"nfcapd {(row['nfcapd_max_lossless_flows_per_s'] or 0) / 1e6:.2f}M flows/s, "
            f"ratio {row['ratio_ours_vs_nfcapd']} (runs {row['ratio_ours_vs_nfcapd_runs']}); "
            f"CPU s per 1M flows ours {row['ours_cpu_us_per_flow_marginal']} / nfcapd "
            f"{row['nfcapd_cpu_us_per_flow_marginal']} marginal, "
            f"{row['ours_cpu_s_per_million_flows']} / {row['nfcapd_cpu_s_per_million_flows']} "
            "with each step's fixed cost",
            flush=True,
        )
    result["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    result["elapsed_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
