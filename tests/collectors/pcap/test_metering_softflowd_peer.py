"""Our metering against softflowd on the same captures (exported v9 -> nfcapd -> nfdump).

softflowd ``-r FILE`` does no idle expiry (flows end at end of file), so we compare
with ``MeteringOptions(expire_by_time=False)``: same flows, packets, bytes, TCP
flags, and start/end (nfdump keeps milliseconds; softflowd derives them from its
uptime clock, so we allow one millisecond). Everything runs on 127.0.0.1 with
timeouts.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pcap_craft import eth, write_pcap
from processes import stop
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import (
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrHopByHop,
)
from scapy.layers.l2 import Dot1AD, Dot1Q
from scapy.packet import Packet, Raw

from collectors.addresses import addresses_to_strings
from collectors.pcap.metering import MeteringOptions, meter_batches
from collectors.pcap.reader import CaptureReader

pytestmark = [
    pytest.mark.peer,
    pytest.mark.skipif(
        not all(shutil.which(t) for t in ("softflowd", "nfcapd", "nfdump")),
        reason="softflowd / nfdump not installed",
    ),
]

FLAG_BITS = {"C": 0x80, "E": 0x40, "U": 0x20, "A": 0x10, "P": 0x08, "R": 0x04, "S": 0x02, "F": 0x01}
Key = tuple[str, str, int, int, int]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def softflowd_flows(pcap: Path, work: Path) -> dict[Key, tuple[int, int, int, int, int]]:
    """softflowd -> nfcapd -> nfdump: key -> (packets, bytes, flags, start ms, end ms)."""
    nfdir = work / "nf"
    nfdir.mkdir()
    port = _free_port()
    collector = subprocess.Popen(
        ["nfcapd", "-w", str(nfdir), "-p", str(port), "-b", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not _port_taken(port):
            assert time.monotonic() < deadline, "nfcapd did not start"
            time.sleep(0.05)
        subprocess.run(
            ["softflowd", "-r", str(pcap), "-a", "-d", "-v", "9", "-n", f"127.0.0.1:{port}"],
            check=True,
            capture_output=True,
            timeout=30,
        )
        time.sleep(0.3)  # let the datagrams reach nfcapd before it flushes
    finally:
        stop(collector, sig=signal.SIGTERM, timeout=15)  # killed if it does not stop
    out = subprocess.run(
        ["nfdump", "-R", str(nfdir), "-o", "json"],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "TZ": "UTC"},
    ).stdout
    flows: dict[Key, tuple[int, int, int, int, int]] = {}
    for rec in json.loads(out or "[]"):
        src = rec.get("src4_addr") or rec.get("src6_addr")
        dst = rec.get("dst4_addr") or rec.get("dst6_addr")
        if "icmp_type" in rec:  # nfdump shows dst port type*256+code as type and code
            ports = (0, rec["icmp_type"] * 256 + rec["icmp_code"])
        else:
            ports = (rec["src_port"], rec["dst_port"])
        key = (src, dst, *ports, rec["proto"])
        flags = sum(FLAG_BITS[c] for c in rec.get("tcp_flags", "") if c != ".")
        _merge(
            flows,
            key,
            (rec["in_packets"], rec["in_bytes"], flags, _ms(rec["first"]), _ms(rec["last"])),
        )
    return flows


def _merge(flows: dict[Key, Any], key: Key, value: tuple[int, int, int, int, int]) -> None:
    """Add a record; ICMPv6 records are merged per address pair (see below)."""
    if key[4] == 58:
        # softflowd's v9 IPv6 template carries no ICMPv6 type/code, so nfdump shows 0
        # and echo requests/replies of one address pair fall together: compare sums.
        key = (key[0], key[1], 0, 0, 58)
    old = flows.get(key)
    if old is not None:
        assert key[4] == 58, f"two records for {key}"
        value = (
            old[0] + value[0],
            old[1] + value[1],
            old[2] | value[2],
            min(old[3], value[3]),
            max(old[4], value[4]),
        )
    flows[key] = value


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000 + 0.5)


def our_flows(pcap: Path) -> dict[Key, tuple[int, int, int, int, int]]:
    table = meter_batches(CaptureReader(pcap).batches(), MeteringOptions(expire_by_time=False))
    srcs = addresses_to_strings(table.column("src_addr"))
    dsts = addresses_to_strings(table.column("dst_addr"))
    starts = table.column("flow_start").cast(pa.int64()).to_pylist()
    ends = table.column("flow_end").cast(pa.int64()).to_pylist()
    flows: dict[Key, tuple[int, int, int, int, int]] = {}
    for i, r in enumerate(table.select(["src_port", "dst_port", "protocol"]).to_pylist()):
        key = (str(srcs[i]), str(dsts[i]), r["src_port"], r["dst_port"], r["protocol"])
        row = table.slice(i, 1).to_pylist()[0]
        value = (
            row["packets"],
            row["bytes"],
            row["tcp_flags"] & 0xFF,
            starts[i] // 1000,
            ends[i] // 1000,
        )
        _merge(flows, key, value)
    return flows


def random_capture(seed: int) -> list[tuple[int, bytes, int]]:
    """IPv4/IPv6 (with extension headers), VLAN tags, TCP/UDP/ICMP/ICMPv6, both directions."""
    rnd = random.Random(seed)
    v4 = ["10.1.0.1", "10.1.0.2", "172.16.5.5", "192.0.2.77"]
    v6 = ["2001:db8::1", "2001:db8::2", "fe80::42"]
    t = 1_700_000_000 * 10**9  # whole second: softflowd -a drops its sub-second part
    out = []
    for _ in range(rnd.randrange(30, 120)):
        t += rnd.choice([0, 1_000, 250_000, 10**7, 10**9, 400 * 10**9, 5000 * 10**9])
        six = rnd.random() < 0.4
        a, b = rnd.sample(v6 if six else v4, 2)
        ip: Packet = IPv6(src=a, dst=b) if six else IP(src=a, dst=b, tos=rnd.choice([0, 0x10]))
        if six and rnd.random() < 0.3:
            ip = ip / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt()
        kind = rnd.choice(["tcp", "udp", "icmp"])
        sport, dport = rnd.choice([1000, 2000]), rnd.choice([53, 80])
        if kind == "tcp":
            l4: Packet = TCP(
                sport=sport, dport=dport, flags=rnd.choice(["S", "SA", "A", "FA", "R", "PA"])
            )
        elif kind == "udp":
            l4 = UDP(sport=sport, dport=dport)
        elif six:
            l4 = rnd.choice([ICMPv6EchoRequest(), ICMPv6EchoReply()])
        else:
            l4 = ICMP(type=rnd.choice([0, 8, 3]), code=rnd.choice([0, 1]))
        frame: Packet = eth()
        if rnd.random() < 0.3:
            frame = frame / Dot1Q(vlan=rnd.choice([10, 20]))
        raw = bytes(frame / ip / l4 / Raw(b"p" * rnd.randrange(0, 200)))
        out.append((t, raw, len(raw)))
    # v9 headers carry whole export seconds only, and softflowd -a exports at the
    # time of the last packet: put that on a whole second so nfdump's times are exact
    t_last, raw, n = out[-1]
    out[-1] = ((t_last // 10**9 + 1) * 10**9, raw, n)
    return out


def _compare(ours: dict[Key, Any], theirs: dict[Key, Any]) -> None:
    assert set(ours) == set(theirs)
    for key, (pk, by, fl, start, end) in ours.items():
        tpk, tby, tfl, tstart, tend = theirs[key]
        assert (pk, by, fl) == (tpk, tby, tfl), key
        if tstart == 0:
            # softflowd -a sets its boot clock to the first packet: a flow starting in
            # that millisecond exports uptime 0, which nfdump shows as 1970
            continue
        assert abs(start - tstart) <= 1, (key, start, tstart)
        assert abs(end - tend) <= 1, (key, end, tend)


@pytest.mark.parametrize("seed", [1, 2, 3, 5, 8])
def test_random_captures_agree_with_softflowd(tmp_path: Path, seed: int) -> None:
    pcap = write_pcap(tmp_path / f"r{seed}.pcap", random_capture(seed))
    ours = our_flows(pcap)
    theirs = softflowd_flows(pcap, tmp_path)
    assert len(ours) > 5
    _compare(ours, theirs)


def test_qinq_frames_are_where_we_differ(tmp_path: Path) -> None:
    """softflowd 1.1 skips double-tagged frames as non-IP; we meter them (outer VLAN)."""
    recs = random_capture(4)
    t_first = recs[0][0]
    qinq = [
        bytes(
            eth() / Dot1AD(vlan=5) / Dot1Q(vlan=6) / IP(src="10.99.0.1", dst="10.99.0.2") / UDP()
        ),
        bytes(eth() / Dot1Q(vlan=5) / Dot1Q(vlan=6) / IP(src="10.99.0.1", dst="10.99.0.3") / UDP()),
    ]
    recs[1:1] = [(t_first + 1000 * (i + 1), f, len(f)) for i, f in enumerate(qinq)]
    pcap = write_pcap(tmp_path / "q.pcap", recs)
    ours = our_flows(pcap)
    theirs = softflowd_flows(pcap, tmp_path)
    extra = {k for k in ours if k[0] == "10.99.0.1"}
    assert len(extra) == 2
    _compare({k: v for k, v in ours.items() if k not in extra}, theirs)
