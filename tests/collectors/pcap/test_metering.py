"""Flow metering kernel against a pure-Python twin of softflowd's rules."""

from __future__ import annotations

import ipaddress
import itertools
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.addresses import address_to_bytes
from collectors.errors import CollectorError
from collectors.pcap.metering import FlowMeter, MeteringOptions, meter_batches
from collectors.pcap.packet_kernel import (
    N_U8,
    N_U16,
    N_U32,
    U8_ICMP_CODE,
    U8_ICMP_TYPE,
    U8_IP_VERSION,
    U8_PROTOCOL,
    U8_STATUS,
    U8_TOS,
    U16_DST_PORT,
    U16_SRC_PORT,
    U16_TCP_FLAGS,
    U16_VLAN,
    U32_IP_LEN,
)
from collectors.pcap.reader import PacketBatch
from collectors.schemas import FLOW_SCHEMA

US = 1_000_000


@dataclass
class Pkt:
    t: int
    src: str
    dst: str
    proto: int
    sport: int = 0
    dport: int = 0
    flags: int = 0
    tos: int = 0
    length: int = 100
    vlan: int = 0
    icmp: tuple[int, int] = (0, 0)
    status: int = 0


def batch_of(pkts: list[Pkt]) -> PacketBatch:
    n = len(pkts)
    b = PacketBatch(
        np.array([p.t for p in pkts], np.int64),
        np.arange(n, dtype=np.int64),
        np.zeros((n, 16), np.uint8),
        np.zeros((n, 16), np.uint8),
        np.zeros((N_U32, n), np.uint32),
        np.zeros((N_U16, n), np.uint16),
        np.zeros((N_U8, n), np.uint8),
    )
    for i, p in enumerate(pkts):
        b.src[i] = np.frombuffer(address_to_bytes(p.src), np.uint8)
        b.dst[i] = np.frombuffer(address_to_bytes(p.dst), np.uint8)
        b.u8c[U8_IP_VERSION, i] = ipaddress.ip_address(p.src).version
        b.u8c[U8_PROTOCOL, i] = p.proto
        b.u8c[U8_TOS, i] = p.tos
        b.u8c[U8_STATUS, i] = p.status
        b.u8c[U8_ICMP_TYPE, i], b.u8c[U8_ICMP_CODE, i] = p.icmp
        b.u16c[U16_SRC_PORT, i] = p.sport
        b.u16c[U16_DST_PORT, i] = p.dport
        b.u16c[U16_TCP_FLAGS, i] = p.flags
        b.u16c[U16_VLAN, i] = p.vlan
        b.u32c[U32_IP_LEN, i] = p.length
    return b


# ---------------------------------------------------------------- reference twin
@dataclass
class _Entry:
    addr: tuple[bytes, bytes]
    ports: tuple[int, int]
    proto: int
    af: int
    vlan: int
    start: int
    seq: int
    last: int = 0
    exp: int = 0
    pk: list[int] = field(default_factory=lambda: [0, 0])
    by: list[int] = field(default_factory=lambda: [0, 0])
    fl: list[int] = field(default_factory=lambda: [0, 0])
    tos: list[int] = field(default_factory=lambda: [0, 0])
    first: list[int] = field(default_factory=lambda: [0, 0])
    lastd: list[int] = field(default_factory=lambda: [0, 0])


def reference_meter(pkts: list[Pkt], o: MeteringOptions) -> list[tuple[Any, ...]]:
    """Plain-Python softflowd rules (module doc of collectors.pcap.metering), no sweeps."""
    table: dict[tuple[Any, ...], _Entry] = {}
    out: list[tuple[Any, ...]] = []
    seq = 0

    def emit(e: _Entry) -> None:
        for d in (0, 1):
            if e.pk[d]:
                times = (e.start, e.last) if o.shared_times else (e.first[d], e.lastd[d])
                out.append(
                    (
                        *times,
                        e.addr[d],
                        e.addr[1 - d],
                        e.ports[d],
                        e.ports[1 - d],
                        e.proto,
                        e.fl[d],
                        e.tos[d],
                        e.by[d],
                        e.pk[d],
                        e.vlan,
                    )
                )

    for p in pkts:
        if p.status:
            continue
        s, d_ = address_to_bytes(p.src), address_to_bytes(p.dst)
        af = ipaddress.ip_address(p.src).version
        ndx = 1 if s > d_ else 0
        sp, dp = (p.sport, p.dport) if p.proto in (6, 17) else (0, 0)
        if p.proto in (1, 58):
            dp = p.icmp[0] * 256 + p.icmp[1]
        addr = (s, d_) if ndx == 0 else (d_, s)
        ports = (sp, dp) if ndx == 0 else (dp, sp)
        key = (af, addr, ports, p.proto, p.vlan if o.track_vlan else 0)
        e = table.get(key)
        if e is not None and o.expire_by_time and p.t > e.exp:
            emit(e)
            del table[key]
            e = None
        if e is None:
            e = _Entry(addr, ports, p.proto, af, p.vlan, p.t, seq)
            seq += 1
            table[key] = e
        if e.pk[ndx] == 0:
            e.tos[ndx] = p.tos
            e.first[ndx] = p.t
        e.pk[ndx] += 1
        e.by[ndx] += p.length
        e.fl[ndx] |= p.flags
        e.lastd[ndx] = p.t
        e.last = p.t
        maxlife = o.max_lifetime * US
        if (o.max_flow_bytes and max(e.by) > o.max_flow_bytes) or (
            maxlife and e.last - e.start > maxlife
        ):
            emit(e)
            del table[key]
            continue
        fl = e.fl[0] | e.fl[1]
        timeout = None
        if p.proto == 6:
            if o.tcp_rst_timeout and fl & 4:
                timeout = o.tcp_rst_timeout
            elif o.tcp_fin_timeout and e.fl[0] & 1 and e.fl[1] & 1:
                timeout = o.tcp_fin_timeout
            elif o.tcp_timeout:
                timeout = o.tcp_timeout
        if timeout is None and p.proto == 17 and o.udp_timeout:
            timeout = o.udp_timeout
        if timeout is None and o.icmp_timeout and (af, p.proto) in ((4, 1), (6, 58)):
            timeout = o.icmp_timeout
        if timeout is None:
            timeout = o.general_timeout
        e.exp = e.last + timeout * US
        if maxlife:
            e.exp = min(e.exp, e.start + maxlife)
    for e in sorted(table.values(), key=lambda x: x.seq):
        emit(e)
    return out


def as_tuples(table: pa.Table) -> list[tuple[Any, ...]]:
    cols = [
        table.column("flow_start").cast(pa.int64()).to_pylist(),
        table.column("flow_end").cast(pa.int64()).to_pylist(),
        *(
            table.column(c).to_pylist()
            for c in (
                "src_addr",
                "dst_addr",
                "src_port",
                "dst_port",
                "protocol",
                "tcp_flags",
                "tos",
                "bytes",
                "packets",
                "vlan",
            )
        ),
    ]
    return list(zip(*cols, strict=True))


# ---------------------------------------------------------------- examples
def test_softflowd_defaults() -> None:
    o = MeteringOptions()
    assert (o.tcp_timeout, o.tcp_rst_timeout, o.tcp_fin_timeout) == (3600, 120, 300)
    assert (o.udp_timeout, o.icmp_timeout, o.general_timeout) == (300, 300, 3600)
    assert (o.max_lifetime, o.sweep_interval, o.max_flow_bytes) == (604800, 60, 1 << 31)
    with pytest.raises(CollectorError, match="general_timeout"):
        replace(o, general_timeout=0).params()


def test_connection_gives_two_records_with_shared_times() -> None:
    pkts = [
        Pkt(0, "10.0.0.1", "10.0.0.2", 6, 1000, 80, flags=2, tos=8, length=60),
        Pkt(US, "10.0.0.2", "10.0.0.1", 6, 80, 1000, flags=18, length=60),
        Pkt(2 * US, "10.0.0.1", "10.0.0.2", 6, 1000, 80, flags=16, length=40),
    ]
    flows = meter_batches([batch_of(pkts)])
    assert flows.schema == FLOW_SCHEMA
    rows = sorted(flows.to_pylist(), key=lambda r: r["src_port"])
    assert [(r["src_port"], r["packets"], r["bytes"], r["tcp_flags"]) for r in rows] == [
        (80, 1, 60, 18),
        (1000, 2, 100, 18),
    ]
    assert rows[1]["tos"] == 8
    assert all(r["source_format"] == "pcap" and r["exporter"] is None for r in rows)
    starts = {r["flow_start"] for r in rows}
    assert len(starts) == 1  # both directions carry the connection's start
    split = meter_batches([batch_of(pkts)], MeteringOptions(shared_times=False))
    assert sorted(split.column("flow_start").cast(pa.int64()).to_pylist()) == [0, US]


def test_icmp_type_code_in_dst_port() -> None:
    pkts = [
        Pkt(0, "10.0.0.1", "10.0.0.2", 1, icmp=(8, 0)),
        Pkt(1, "10.0.0.2", "10.0.0.1", 1, icmp=(0, 0)),
        Pkt(2, "2001:db8::1", "2001:db8::2", 58, icmp=(1, 4)),
    ]
    rows = meter_batches([batch_of(pkts)]).to_pylist()
    assert sorted((r["src_port"], r["dst_port"]) for r in rows) == [(0, 0), (0, 260), (0, 2048)]


def test_idle_rst_fin_and_lifetime_expiry() -> None:
    a, b = "10.0.0.1", "10.0.0.2"
    udp = [Pkt(0, a, b, 17, 1, 2), Pkt(300 * US, a, b, 17, 1, 2), Pkt(601 * US, a, b, 17, 1, 2)]
    assert meter_batches([batch_of(udp)]).column("packets").to_pylist() == [2, 1]
    rst = [Pkt(0, a, b, 6, 1, 2, flags=4), Pkt(121 * US, a, b, 6, 1, 2, flags=16)]
    assert meter_batches([batch_of(rst)]).column("packets").to_pylist() == [1, 1]
    fin = [
        Pkt(0, a, b, 6, 1, 2, flags=1),
        Pkt(1, b, a, 6, 2, 1, flags=1),
        Pkt(302 * US, a, b, 6, 1, 2, flags=16),
    ]
    assert len(meter_batches([batch_of(fin)])) == 3
    life = [Pkt(i * 200 * US, a, b, 17, 1, 2) for i in range(6)]
    got = meter_batches([batch_of(life)], MeteringOptions(max_lifetime=500))
    assert got.column("packets").to_pylist() == [3, 3]  # ends at start + 500 s
    file_mode = MeteringOptions(max_lifetime=500, expire_by_time=False)
    got = meter_batches([batch_of(life)], file_mode)
    assert got.column("packets").to_pylist() == [4, 2]  # the packet past 500 s is the last
    # softflowd -r: no idle expiry at all
    same = meter_batches([batch_of(udp)], MeteringOptions(expire_by_time=False))
    assert same.column("packets").to_pylist() == [3]


def test_vlan_tracking_and_non_ip_rows() -> None:
    a, b = "10.0.0.1", "10.0.0.2"
    pkts = [
        Pkt(0, a, b, 17, 1, 2, vlan=10),
        Pkt(1, a, b, 17, 1, 2, vlan=20),
        Pkt(2, a, b, 17, 1, 2, status=1),
    ]
    assert len(meter_batches([batch_of(pkts)])) == 1
    tracked = meter_batches([batch_of(pkts)], MeteringOptions(track_vlan=True))
    assert sorted(tracked.column("vlan").to_pylist()) == [10, 20]


def test_expire_and_flush_empty_the_table() -> None:
    meter = FlowMeter()
    meter.add(batch_of([Pkt(0, "1.1.1.1", "2.2.2.2", 17, 1, 2)]))
    assert meter.active == 1
    assert len(meter.expire(100 * US)) == 0
    assert len(meter.expire(301 * US)) == 1
    assert meter.active == 0
    assert len(meter.flush()) == 0


# ---------------------------------------------------------------- properties
HOSTS = ["10.0.0.1", "10.0.0.2", "192.168.1.1", "2001:db8::1", "2001:db8::2", "fe80::9"]
GAPS = [0, 1, 999, US, 61 * US, 130 * US, 310 * US, 700 * US, 4000 * US]


@st.composite
def packet_lists(draw: st.DrawFn) -> list[Pkt]:
    t = 1_700_000_000 * US
    out = []
    for _ in range(draw(st.integers(0, 60))):
        t += draw(st.sampled_from(GAPS))
        v6 = draw(st.booleans())
        pool = HOSTS[3:] if v6 else HOSTS[:3]
        src, dst = draw(st.sampled_from(pool)), draw(st.sampled_from(pool))
        proto = draw(st.sampled_from([6, 17, 58 if v6 else 1, 47]))
        out.append(
            Pkt(
                t,
                src,
                dst,
                proto,
                draw(st.sampled_from([53, 80, 1000])),
                draw(st.sampled_from([53, 80, 1000])),
                flags=draw(st.sampled_from([0, 1, 2, 4, 16, 17, 18, 20])) if proto == 6 else 0,
                tos=draw(st.integers(0, 3)),
                length=draw(st.integers(20, 1500)),
                vlan=draw(st.sampled_from([0, 7])),
                icmp=(draw(st.sampled_from([0, 8])), draw(st.integers(0, 1))),
                status=draw(st.sampled_from([0] * 9 + [1])),
            )
        )
    return out


options = st.builds(
    MeteringOptions,
    tcp_timeout=st.sampled_from([0, 300, 3600]),
    tcp_rst_timeout=st.sampled_from([0, 120]),
    tcp_fin_timeout=st.sampled_from([0, 300]),
    udp_timeout=st.sampled_from([0, 60, 300]),
    icmp_timeout=st.sampled_from([0, 300]),
    general_timeout=st.sampled_from([100, 3600]),
    max_lifetime=st.sampled_from([0, 1000, 604800]),
    max_flow_bytes=st.sampled_from([0, 5000, 1 << 31]),
    expire_by_time=st.booleans(),
    track_vlan=st.booleans(),
    shared_times=st.booleans(),
    sweep_interval=st.sampled_from([1, 60]),
)


@settings(max_examples=300, deadline=None)
@given(pkts=packet_lists(), opts=options, cuts=st.lists(st.integers(0, 60), max_size=4))
def test_kernel_equals_reference_twin(
    pkts: list[Pkt], opts: MeteringOptions, cuts: list[int]
) -> None:
    """Any batching, table growth and output-buffer size give the twin's flows."""
    meter = FlowMeter(opts, capacity=2)
    meter._min_out = 4
    bounds = sorted({0, len(pkts), *(c for c in cuts if c < len(pkts))})
    parts = [meter.add(batch_of(pkts[a:b])) for a, b in itertools.pairwise(bounds)]
    parts.append(meter.flush())
    got = sorted(as_tuples(pa.concat_tables(parts)))
    assert got == sorted(reference_meter(pkts, opts))
    assert meter.packets == sum(1 for p in pkts if p.status == 0)
