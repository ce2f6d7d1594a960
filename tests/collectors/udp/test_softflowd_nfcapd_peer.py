"""softflowd exports a random capture as NetFlow v5, v9 and IPFIX to our collector and to
nfcapd at the same time; our flows equal nfdump's flow by flow (5-tuple, packets, bytes,
start and end to the millisecond), and the capture itself as a third witness.

Two nfdump 1.7.1 readings of softflowd 1.1 exports are wrong and normalised here, each
checked against the capture instead: for ICMPv6 flows nfdump reports ICMP type/code 0
(the capture has echo requests, 128/0, which we report as 128*256); for IPFIX nfdump
swaps first and last seen (it reports first > last; we and the capture agree), and shows
1970 for a flow starting at uptime 0 (the capture's first packet).

softflowd sends every export datagram to each ``-n`` destination (no ``-l``), so both
collectors see the very same datagrams. With ``-r`` softflowd 1.1 waits on its control
socket; ``softflowctl shutdown`` makes it read the capture, expire every flow, export and
exit. ``-a`` takes flow times from the capture. Everything runs on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw
from scapy.utils import wrpcap

from collectors.addresses import address_from_bytes
from collectors.dataset import read_dataset
from collectors.schemas import FLOW_SCHEMA
from collectors.udp.service import CollectorSummary, run_collector
from collectors.workspace import WorkspacePaths

pytestmark = [
    pytest.mark.peer,
    pytest.mark.skipif(
        any(shutil.which(t) is None for t in ("softflowd", "softflowctl", "nfcapd", "nfdump")),
        reason="softflowd/nfdump not installed",
    ),
]

MAC = {"src": "02:00:00:00:00:01", "dst": "02:00:00:00:00:02"}
T0 = 1_764_100_000.0
Key = tuple[str, str, int, int, int, int, int, int, int]


def random_capture(path: Path, *, seed: int, ipv6: bool, n: int = 300) -> None:
    """A few hundred TCP/UDP/ICMP packets between a handful of hosts (flows repeat)."""
    rng = random.Random(seed)
    packets: list[Packet] = []
    t = T0
    for _ in range(n):
        t += rng.random() * 0.05
        v6 = ipv6 and rng.random() < 0.4
        if v6:
            ip: Packet = IPv6(
                src=f"2001:db8::{rng.randint(1, 4)}", dst=f"2001:db8:1::{rng.randint(1, 4)}"
            )
        else:
            ip = IP(
                src=f"10.0.{rng.randint(0, 2)}.{rng.randint(1, 4)}",
                dst=f"192.168.1.{rng.randint(1, 4)}",
            )
        kind = rng.choice(["tcp", "udp", "icmp"])
        if kind == "tcp":
            l4: Packet = TCP(
                sport=rng.randint(40000, 40003),
                dport=rng.choice([80, 443]),
                flags=rng.choice(["S", "A", "PA", "FA"]),
            )
        elif kind == "udp":
            l4 = UDP(sport=rng.randint(50000, 50003), dport=rng.choice([53, 123]))
        else:
            l4 = ICMPv6EchoRequest() if v6 else ICMP(type=rng.choice([0, 8]))
        pkt = Ether(**MAC) / ip / l4 / Raw(b"x" * rng.randint(0, 400))
        pkt.time = t
        packets.append(pkt)
    wrpcap(str(path), packets)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_bound(port: int, proc: subprocess.Popen[bytes]) -> None:
    """Wait until ``proc`` has bound 127.0.0.1:``port`` (our own bind then fails)."""
    deadline = time.monotonic() + 20
    while True:
        assert proc.poll() is None, "nfcapd exited"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return
        assert time.monotonic() < deadline, "nfcapd did not bind"
        time.sleep(0.05)


def run_softflowd(pcap: Path, version: int, ports: list[int], tmp: Path, packets: int) -> None:
    ctl = tmp / f"sf{version}.ctl"
    dests = ",".join(f"127.0.0.1:{p}" for p in ports)
    cmd = ["softflowd", "-r", str(pcap), "-a", "-v", str(version), "-n", dests]
    cmd += ["-c", str(ctl), "-p", str(tmp / f"sf{version}.pid"), "-6"]
    with subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as proc:
        try:
            deadline = time.monotonic() + 20
            while not ctl.exists():
                assert time.monotonic() < deadline, "softflowd did not open its control socket"
                assert proc.poll() is None, "softflowd exited early"
                time.sleep(0.05)
            # The first control command releases the capture loop; poll until it is read.
            while True:
                stats = subprocess.run(
                    ["softflowctl", "-c", str(ctl), "statistics"],
                    capture_output=True,
                    text=True,
                    timeout=30,
                ).stdout
                if f"Packets processed: {packets}" in stats:
                    break
                assert time.monotonic() < deadline, f"softflowd did not read the capture: {stats}"
                time.sleep(0.1)
            subprocess.run(
                ["softflowctl", "-c", str(ctl), "shutdown"],
                check=False,
                timeout=30,
                capture_output=True,
            )
            assert proc.wait(30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()


def nfdump_flows(folder: Path) -> list[Key]:
    out = subprocess.run(
        ["nfdump", "-R", str(folder), "-o", "json"],
        capture_output=True,
        check=True,
        timeout=60,
        env={**os.environ, "TZ": "UTC"},
        text=True,
    ).stdout
    keys: list[Key] = []
    for rec in json.loads(out):
        src = rec.get("src4_addr") or rec.get("src6_addr")
        dst = rec.get("dst4_addr") or rec.get("dst6_addr")
        proto = int(rec["proto"])
        if proto in (1, 58):
            sport, dport = 0, int(rec.get("icmp_type", 0)) * 256 + int(rec.get("icmp_code", 0))
        else:
            sport, dport = int(rec.get("src_port", 0)), int(rec.get("dst_port", 0))
        keys.append(
            (
                str(src),
                str(dst),
                sport,
                dport,
                proto,
                int(rec["in_packets"]),
                int(rec["in_bytes"]),
                _ms(rec["first"]),
                _ms(rec["last"]),
            )
        )
    return keys


def _ms(text: str) -> int:
    """nfdump's ``YYYY-MM-DDTHH:MM:SS.mmm`` (UTC, as TZ=UTC) -> ms since the epoch."""
    whole, frac = text.split(".")
    secs = time.mktime(time.strptime(whole, "%Y-%m-%dT%H:%M:%S")) - time.timezone
    return int(secs) * 1000 + int(frac)


def our_flows(ws: WorkspacePaths) -> list[Key]:
    table = read_dataset(ws.flows, FLOW_SCHEMA)
    keys: list[Key] = []
    for r in table.to_pylist():
        keys.append(
            (
                str(address_from_bytes(r["src_addr"])),
                str(address_from_bytes(r["dst_addr"])),
                r["src_port"],
                r["dst_port"],
                r["protocol"],
                r["packets"],
                r["bytes"],
                _us_to_ms(r["flow_start"]),
                _us_to_ms(r["flow_end"]),
            )
        )
    return keys


def _us_to_ms(ts: object) -> int:
    import datetime as dt

    assert isinstance(ts, dt.datetime)
    delta = ts - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400_000_000 + delta.seconds * 1_000_000 + delta.microseconds) // 1000


def capture_flows(path: Path) -> dict[tuple[str, str, int, int, int], list[int]]:
    """Ground truth from the capture: 5-tuple -> [packets, IP bytes, first us, last us]."""
    from scapy.utils import rdpcap

    flows: dict[tuple[str, str, int, int, int], list[int]] = {}
    for pkt in rdpcap(str(path)):
        if IP in pkt:
            ip, proto, length = pkt[IP], pkt[IP].proto, pkt[IP].len
        else:
            ip, proto, length = pkt[IPv6], pkt[IPv6].nh, pkt[IPv6].plen + 40
        if TCP in pkt or UDP in pkt:
            sport, dport = int(ip.payload.sport), int(ip.payload.dport)
        else:
            raw = bytes(ip.payload)
            sport, dport = 0, raw[0] * 256 + raw[1]
        key = (str(ip.src), str(ip.dst), sport, dport, int(proto))
        t = round(float(pkt.time) * 1_000_000)
        entry = flows.setdefault(key, [0, 0, t, t])
        entry[0] += 1
        entry[1] += int(length)
        entry[2] = min(entry[2], t)
        entry[3] = max(entry[3], t)
    return flows


@pytest.mark.parametrize(("version", "ipv6"), [(5, False), (9, True), (10, True)])
def test_softflowd_to_us_equals_softflowd_to_nfcapd(
    tmp_path: Path, version: int, ipv6: bool
) -> None:
    pcap = tmp_path / "random.pcap"
    random_capture(pcap, seed=version, ipv6=ipv6)
    nfdir = tmp_path / "nfcapd"
    nfdir.mkdir()
    nf_port = free_udp_port()
    nfcapd = subprocess.Popen(
        ["nfcapd", "-w", str(nfdir), "-b", "127.0.0.1", "-p", str(nf_port), "-t", "3600"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ws = WorkspacePaths(tmp_path / "w")
    stop = threading.Event()
    ready = threading.Event()
    ports: list[int] = []
    result: dict[str, CollectorSummary] = {}

    def on_ready(addresses: list[tuple[str, int]]) -> None:
        ports.append(addresses[0][1])
        ready.set()

    thread = threading.Thread(
        target=lambda: result.update(
            s=run_collector([("127.0.0.1", 0)], ws, stop_event=stop, on_ready=on_ready)
        )
    )
    thread.start()
    try:
        assert ready.wait(30)
        wait_bound(nf_port, nfcapd)
        run_softflowd(pcap, version, [ports[0], nf_port], tmp_path, 300)
        time.sleep(0.5)  # loopback delivery to both collectors
    finally:
        stop.set()
        thread.join(60)
        nfcapd.send_signal(signal.SIGTERM)  # nfcapd writes its file on SIGTERM
        try:
            nfcapd.wait(30)
        finally:
            if nfcapd.poll() is None:
                nfcapd.kill()
    theirs = nfdump_flows(nfdir)
    ours = our_flows(ws)
    assert result["s"].rejected == 0
    assert len(theirs) > 50
    assert sum(k[5] for k in ours) == 300  # every packet of the capture is in some flow

    def normalise(key: Key) -> Key:
        src, dst, sport, dport, proto, pkts, octets, start, end = key
        if proto == 58:
            dport = 0
        if version == 10:
            start, end = min(start, end), max(start, end)
        return (src, dst, sport, dport, proto, pkts, octets, start, end)

    # nfdump shows first/last of 0 (1970) where softflowd's IPFIX start is uptime 0, i.e.
    # the capture's first packet; such flows are matched without their times.
    untimed = {k[:7] for k in theirs if k[7] == 0 or k[8] == 0}
    theirs = [(*k[:7], 0, 0) if k[:7] in untimed else k for k in theirs]
    ours_cmp = [(*k[:7], 0, 0) if k[:7] in untimed else k for k in ours]
    assert len(untimed) <= 1
    only_ours = sorted(
        (Counter(map(normalise, ours_cmp)) - Counter(map(normalise, theirs))).elements()
    )
    only_theirs = sorted(
        (Counter(map(normalise, theirs)) - Counter(map(normalise, ours_cmp))).elements()
    )
    assert (only_ours, only_theirs) == ([], [])

    truth = capture_flows(pcap)
    merged: dict[tuple[str, str, int, int, int], list[int]] = {}
    for src, dst, sport, dport, proto, pkts, octets, start, end in ours:
        assert start <= end
        entry = merged.setdefault((src, dst, sport, dport, proto), [0, 0, start, end])
        entry[0] += pkts
        entry[1] += octets
        entry[2], entry[3] = min(entry[2], start), max(entry[3], end)
    assert set(merged) == set(truth)
    for key, (pkts, octets, start, end) in merged.items():
        t_pkts, t_octets, t_first, t_last = truth[key]
        assert (pkts, octets) == (t_pkts, t_octets), key
        # v5/v9 times are sysUptime offsets from a header clock that v9 (and softflowd's v5)
        # carry in whole seconds: good to the second. IPFIX carries absolute milliseconds.
        slack = 2 if version == 10 else 1000
        assert abs(start - t_first // 1000) <= slack, key
        assert abs(end - t_last // 1000) <= slack, key
    if ipv6:
        assert any(":" in k[0] for k in ours)
