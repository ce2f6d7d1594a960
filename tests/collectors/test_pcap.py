"""Capture containers: pcap byte orders and resolutions, pcapng, gzip, cuts, windows."""

from __future__ import annotations

import gzip
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pcap_craft import eth, pcap_bytes, pcapng_bytes, write_pcap
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap

from collectors.errors import IngestError
from collectors.pcap import CaptureReader, read_packets

T0 = 1_700_000_000_123_456_789  # ns


def frames(n: int) -> list[bytes]:
    out = []
    for i in range(n):
        if i % 3 == 2:
            p = eth() / IPv6(src=f"2001:db8::{i + 1:x}", dst="2001:db8::ffff") / UDP(dport=i)
        else:
            p = eth() / IP(src=f"10.0.{i // 250}.{i % 250}", dst="10.9.9.9") / TCP(sport=i)
        out.append(bytes(p))
    return out


def records(n: int) -> list[tuple[int, bytes, int]]:
    return [(T0 + i * 1_000_003, f, len(f)) for i, f in enumerate(frames(n))]


def times_us(table: pa.Table) -> list[int]:
    return table.column("time").cast(pa.int64()).to_pylist()


@pytest.mark.parametrize("big_endian", [False, True])
@pytest.mark.parametrize("nanos", [False, True])
def test_byte_orders_and_resolutions(tmp_path: Path, big_endian: bool, nanos: bool) -> None:
    recs = records(7)
    path = write_pcap(tmp_path / "a.pcap", recs, big_endian=big_endian, nanos=nanos)
    table = read_packets(path)
    assert times_us(table) == [t // 1000 for t, _, _ in recs]
    assert table.column("wire_len").to_pylist() == [len(f) for _, f, _ in recs]
    reader = CaptureReader(path)
    assert (reader.big_endian, reader.nanos, reader.format) == (big_endian, nanos, "pcap")


def test_scapy_written_pcap_and_pcapng_agree(tmp_path: Path) -> None:
    pkts = [Ether(f) for f in frames(5)]
    for i, p in enumerate(pkts):
        p.time = 1_700_000_000 + i / 4
    wrpcap(str(tmp_path / "s.pcap"), pkts)
    from scapy.utils import wrpcapng

    wrpcapng(str(tmp_path / "s.pcapng"), pkts)
    a = read_packets(tmp_path / "s.pcap").drop(["offset", "source_file"])
    b = read_packets(tmp_path / "s.pcapng").drop(["offset", "source_file"])
    assert a.equals(b)
    assert times_us(a) == [1_700_000_000_000_000 + i * 250_000 for i in range(5)]


@pytest.mark.parametrize("big_endian", [False, True])
def test_pcapng_interfaces_resolutions_and_simple_blocks(tmp_path: Path, big_endian: bool) -> None:
    frame = bytes(eth() / IP(src="1.2.3.4") / UDP(sport=1, dport=2))
    raw = bytes(IP(src="5.6.7.8") / UDP(sport=3, dport=4))
    sec = 1_700_000_000
    ifs = [(1, None, 0), (101, 9, 0), (1, 0x80 | 20, 100)]  # us, ns, 2^-20 s + 100 s offset
    pkts = [
        (0, sec * 10**6 + 5, frame, len(frame)),
        (1, sec * 10**9 + 123_456_789, raw, len(raw)),
        (2, (sec << 20) + (1 << 19), frame, len(frame)),  # half a second
    ]
    data = pcapng_bytes(ifs, pkts, big_endian=big_endian, simple=[(frame, len(frame))])
    (tmp_path / "m.pcapng").write_bytes(data)
    table = read_packets(tmp_path / "m.pcapng")
    us = sec * 10**6
    assert times_us(table) == [us + 5, us + 123_456, us + 100_500_000, us + 100_500_000]
    srcs = [b[12:] for b in table.column("src_addr").to_pylist()]
    a, b = bytes([1, 2, 3, 4]), bytes([5, 6, 7, 8])
    assert srcs == [a, b, a, a]
    assert table.column("src_port").to_pylist() == [1, 3, 1, 1]


def test_gzip_equals_plain(tmp_path: Path) -> None:
    plain = pcap_bytes(records(50))
    (tmp_path / "p.pcap").write_bytes(plain)
    (tmp_path / "p.pcap.gz").write_bytes(gzip.compress(plain))
    a = read_packets(tmp_path / "p.pcap").drop(["source_file"])
    b = read_packets(tmp_path / "p.pcap.gz").drop(["source_file"])
    assert a.equals(b)
    assert CaptureReader(tmp_path / "p.pcap.gz").compressed


@pytest.mark.parametrize("compress", [False, True])
def test_truncated_file_keeps_whole_packets(tmp_path: Path, compress: bool) -> None:
    recs = records(10)
    data = pcap_bytes(recs)
    cut = len(data) - 7  # inside the last packet
    body = data[:cut]
    path = tmp_path / ("t.pcap.gz" if compress else "t.pcap")
    path.write_bytes(gzip.compress(body) if compress else body)
    reader = CaptureReader(path)
    n = sum(len(b) for b in reader.batches())
    assert n == 9
    last_start = len(data) - (16 + len(recs[-1][1]))
    assert reader.truncated_at == last_start
    assert any("truncated" in w for w in reader.warnings)


def test_truncated_gzip_stream(tmp_path: Path) -> None:
    data = gzip.compress(pcap_bytes(records(200)))
    path = tmp_path / "g.pcap.gz"
    path.write_bytes(data[: len(data) // 2])
    reader = CaptureReader(path)
    n = sum(len(b) for b in reader.batches())
    assert 0 < n < 200
    assert reader.truncated_at is not None
    assert any("compressed stream ends early" in w for w in reader.warnings)


def test_corrupt_record_stops_with_warning(tmp_path: Path) -> None:
    data = bytearray(pcap_bytes(records(5)))
    second = 24 + 16 + len(frames(1)[0])
    data[second + 8 : second + 12] = (50_000_000).to_bytes(4, "little")
    (tmp_path / "c.pcap").write_bytes(bytes(data))
    reader = CaptureReader(tmp_path / "c.pcap")
    assert sum(len(b) for b in reader.batches()) == 1
    assert reader.corrupt_at == second
    assert reader.warnings


def test_not_a_capture(tmp_path: Path) -> None:
    (tmp_path / "x.pcap").write_bytes(b"hello world, not a capture at all")
    with pytest.raises(IngestError, match="not a pcap"):
        CaptureReader(tmp_path / "x.pcap")
    with pytest.raises(IngestError, match="cannot read"):
        CaptureReader(tmp_path / "missing.pcap")


def test_empty_capture(tmp_path: Path) -> None:
    path = write_pcap(tmp_path / "e.pcap", [])
    assert read_packets(path).num_rows == 0


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    n=st.integers(0, 300),
    batch=st.integers(1, 64),
    window=st.sampled_from([1 << 16, 1 << 17]),
    nanos=st.booleans(),
)
def test_windows_and_batches_do_not_change_the_result(
    tmp_path: Path, n: int, batch: int, window: int, nanos: bool
) -> None:
    """Small windows (record straddling a window edge) and batches equal one pass."""
    filler = bytes(eth() / IP() / UDP()) + bytes(1400)
    recs = [(T0 + i, filler, len(filler)) for i in range(n)] + records(5)
    path = write_pcap(tmp_path / "w.pcap", recs, nanos=nanos)
    whole = read_packets(path)
    reader = CaptureReader(path, batch_size=batch, window_bytes=window)
    parts = [b.to_arrow(path.name) for b in reader.batches()]
    assert all(len(p) <= batch for p in parts)
    got = pa.concat_tables(parts) if parts else whole.schema.empty_table()
    assert got.equals(whole)
    assert reader.truncated_at is None
    assert not reader.warnings
