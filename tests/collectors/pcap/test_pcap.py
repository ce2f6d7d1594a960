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
from collectors.pcap.reader import CaptureReader, read_packets

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
    return [int(t) for t in table.column("time").cast(pa.int64()).to_pylist()]


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


FUZZ = """
import sys, numpy as np
from pathlib import Path
from collectors.pcap.packet_kernel import N_U8, N_U16, N_U32, decode_frames
from collectors.pcap.reader import CaptureReader
rng = np.random.default_rng(int(sys.argv[3]))
frames = [np.frombuffer(f, np.uint8) for f in Path(sys.argv[1]).read_bytes().split(b"@@SEP@@")]
n = 64
cols = (np.empty((n, 16), np.uint8), np.empty((n, 16), np.uint8), np.empty((N_U32, n), np.uint32),
        np.empty((N_U16, n), np.uint16), np.empty((N_U8, n), np.uint8))
for lt in (0, 1, 12, 101, 108, 113, 228, 229, 276, 4242):
    for _ in range(40):
        parts = []
        for _ in range(n):
            f = frames[rng.integers(len(frames))].copy()
            for _ in range(rng.integers(0, 4)):
                f[rng.integers(len(f))] = rng.integers(256)
            start = 0 if lt in (1, 113, 276) else rng.choice([0, 14, 18])  # IP first for raw
            parts.append(f[start:][: rng.integers(0, len(f) + 1)])
        lens = np.array([len(p) for p in parts], np.int64)
        offs = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64)
        buf = np.concatenate(parts) if lens.sum() else np.zeros(0, np.uint8)
        decode_frames(buf, offs, lens, lens, lt, *cols)
for name in sys.argv[2].split(","):
    data = np.frombuffer(Path(name).read_bytes(), np.uint8)
    for _ in range(100):
        d = data.copy()
        for _ in range(rng.integers(1, 6)):
            d[rng.integers(len(d))] = rng.integers(256)
        d = d[: rng.integers(len(d) // 2, len(d) + 1)]
        out = Path(name + ".m")
        out.write_bytes(d.tobytes())
        try:
            r = CaptureReader(out, batch_size=7, window_bytes=1 << 16)
        except Exception as exc:
            assert type(exc).__name__ == "IngestError", exc
            continue
        sum(len(b) for b in r.batches())
print("ok")
"""


def test_fuzz_never_reads_out_of_bounds(tmp_path: Path) -> None:
    """Mutated and cut frames and files, with Numba bounds checks compiled in."""
    import os
    import subprocess
    import sys

    from test_packet_kernel import sample_frames

    samples = [bytes(p) for p in sample_frames()]
    (tmp_path / "frames.bin").write_bytes(b"@@SEP@@".join(samples))
    recs = [(T0 + i, f, len(f)) for i, f in enumerate(samples)]
    write_pcap(tmp_path / "a.pcap", recs, big_endian=True)
    ifs = [(1, None, 0), (101, 9, 0)]
    pk = [(0, 10**15, f, len(f)) for f in samples] + [(1, 10**18, bytes(IP() / UDP()), 28)]
    (tmp_path / "b.pcapng").write_bytes(pcapng_bytes(ifs, pk, simple=[(samples[0], 99)]))
    (tmp_path / "c.pcap.gz").write_bytes(gzip.compress(pcap_bytes(recs)))
    files = ",".join(str(tmp_path / n) for n in ("a.pcap", "b.pcapng", "c.pcap.gz"))
    env = {**os.environ, "NUMBA_BOUNDSCHECK": "1", "NUMBA_CACHE_DIR": str(tmp_path / "nc")}
    proc = subprocess.run(
        [sys.executable, "-c", FUZZ, str(tmp_path / "frames.bin"), files, "3"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("ok")


def test_pcapng_obsolete_packet_block(tmp_path: Path) -> None:
    import struct

    frame = bytes(eth() / IP(src="4.4.4.4") / UDP(sport=44, dport=45))
    base = pcapng_bytes([(1, None, 0)], [])
    body = struct.pack("<HHIIII", 0, 0, 395_812, 1_700_000_000_000_001 & 0xFFFFFFFF, len(frame), 90)
    body += frame + b"\0" * ((-len(frame)) % 4)
    block = struct.pack("<II", 2, len(body) + 12) + body + struct.pack("<I", len(body) + 12)
    (tmp_path / "o.pcapng").write_bytes(base + block)
    row = read_packets(tmp_path / "o.pcapng").to_pylist()[0]
    assert row["src_port"] == 44
    assert row["wire_len"] == 90
    ticks = (395_812 << 32) | (1_700_000_000_000_001 & 0xFFFFFFFF)
    assert int(pa.scalar(row["time"]).cast(pa.int64()).as_py()) == ticks


@st.composite
def pcapng_files(draw: st.DrawFn) -> tuple[bytes, list[tuple[int, int, int]]]:
    """Random interfaces (resolution, offset) and packets; expected (time us, cap, wire)."""
    ifs: list[tuple[int, int | None, int]] = []
    for _ in range(draw(st.integers(1, 3))):
        binary = draw(st.booleans())
        exp = draw(st.integers(0, 30)) if binary else draw(st.integers(0, 9))
        ifs.append((1, (0x80 | exp) if binary else exp, draw(st.integers(-1000, 1000))))
    frame = bytes(eth() / IP() / UDP())
    pkts, expected = [], []
    for _ in range(draw(st.integers(0, 12))):
        k = draw(st.integers(0, len(ifs) - 1))
        _, res, offset = ifs[k]
        assert res is not None
        exp = res & 0x7F
        unit = 2**exp if res & 0x80 else 10**exp
        ticks = draw(st.integers(0, 1_800_000_000 * unit))
        cap = draw(st.integers(0, len(frame)))
        wire = draw(st.integers(cap, 9000))
        pkts.append((k, ticks, frame[:cap], wire))
        expected.append((ticks * 10**6 // unit + offset * 10**6, cap, wire))
    data = pcapng_bytes(ifs, pkts, big_endian=draw(st.booleans()))
    return data, expected


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(case=pcapng_files())
def test_pcapng_times_and_lengths_equal_reference(
    tmp_path: Path, case: tuple[bytes, list[tuple[int, int, int]]]
) -> None:
    data, expected = case
    (tmp_path / "r.pcapng").write_bytes(data)
    table = read_packets(tmp_path / "r.pcapng")
    got = list(
        zip(
            times_us(table),
            table.column("cap_len").to_pylist(),
            table.column("wire_len").to_pylist(),
            strict=True,
        )
    )
    assert got == expected
