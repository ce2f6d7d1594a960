"""PacketBatch to and from Arrow, and ``FlowMeter().add(read_packets(path))`` (issue #22)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from pcap_craft import eth, write_pcap
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP

from collectors import FlowMeter, read_packets
from collectors.errors import CollectorError
from collectors.pcap.metering import meter_batches
from collectors.pcap.packet_batch import PacketBatch
from collectors.pcap.packet_kernel import U8_STATUS
from collectors.pcap.reader import CaptureReader

T0 = 1_700_000_000 * 10**9


def _capture(tmp_path: Path) -> Path:
    """Two connections both ways, ICMP, IPv6, a non-IP frame and a runt, over 20 minutes."""
    frames = []
    for i in range(40):
        sport = 40000 + i % 3
        fwd = eth() / IP(src="10.0.0.1", dst="192.0.2.7") / TCP(sport=sport, dport=443, flags="A")
        back = eth() / IP(src="192.0.2.7", dst="10.0.0.1") / TCP(sport=443, dport=sport, flags="A")
        frames += [fwd / (b"x" * i), back]
    frames += [
        eth() / IP(src="10.0.0.2", dst="198.51.100.1") / ICMP(type=8),
        eth() / IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP(sport=53, dport=5353) / b"q",
        eth() / ARP(),
    ]
    records = [(T0 + k * 15 * 10**9 + 123, bytes(f), len(f)) for k, f in enumerate(frames)]
    records.append((T0 + len(frames) * 15 * 10**9, bytes(frames[0])[:20], 80))  # runt
    return write_pcap(tmp_path / "mixed.pcap", records, nanos=True)


def _flows(table: pa.Table) -> list[dict[str, object]]:
    return sorted(table.to_pylist(), key=lambda r: (r["flow_start"], r["src_addr"], r["src_port"]))


def test_meter_add_takes_the_table_read_packets_returns(tmp_path: Path) -> None:
    path = _capture(tmp_path)
    meter = FlowMeter()
    flows = pa.concat_tables([meter.add(read_packets(path)), meter.flush()])
    reference = meter_batches(CaptureReader(path).batches())
    assert flows.num_rows == reference.num_rows >= 6
    assert _flows(flows) == _flows(reference)
    assert meter.packets == 82  # IP packets: the ARP frame and the runt are not metered


def test_record_batches_and_tables_in_pieces_meter_alike(tmp_path: Path) -> None:
    path = _capture(tmp_path)
    packets = read_packets(path)
    meter = FlowMeter()
    parts = [meter.add(b) for b in packets.to_batches(max_chunksize=7)]
    parts.append(meter.flush())
    assert _flows(pa.concat_tables(parts)) == _flows(meter_batches([packets]))


def test_round_trip_through_arrow(tmp_path: Path) -> None:
    path = _capture(tmp_path)
    (batch,) = list(CaptureReader(path).batches())
    back = PacketBatch.from_arrow(batch.to_arrow("mixed.pcap"))
    assert np.array_equal(back.time_us, batch.time_us)
    assert np.array_equal(back.src, batch.src)
    assert np.array_equal(back.dst, batch.dst)
    assert np.array_equal(back.offset, batch.offset)
    assert np.array_equal(
        back.ip_mask, batch.ip_mask
    )  # status: what is IP survives, the rest is not IP
    assert not back.ip_mask[batch.u8c[U8_STATUS] != 0].any()
    assert np.array_equal(back.u16c, batch.u16c)
    others = [r for r in range(batch.u8c.shape[0]) if r != U8_STATUS]
    assert np.array_equal(back.u8c[others], batch.u8c[others])
    assert np.array_equal(back.u32c[:3], batch.u32c[:3])  # lengths; offsets are not in Arrow
    assert batch.time_us[0] == T0 // 1000  # nanosecond captures are floored to microseconds
    assert back.to_arrow("mixed.pcap").equals(batch.to_arrow("mixed.pcap"))


def test_nanosecond_tables_and_empty_tables(tmp_path: Path) -> None:
    packets = read_packets(_capture(tmp_path))
    ns = packets.set_column(0, "time", packets["time"].cast(pa.timestamp("ns", tz="UTC")))
    assert np.array_equal(
        PacketBatch.from_arrow(ns).time_us, PacketBatch.from_arrow(packets).time_us
    )
    empty = PacketBatch.from_arrow(packets.slice(0, 0))
    assert len(empty) == 0
    assert FlowMeter().add(packets.slice(0, 0)).num_rows == 0


def test_a_table_that_is_not_packets_is_refused() -> None:
    with pytest.raises(
        CollectorError, match=r"packet table: missing column\(s\) time, source_file"
    ):
        FlowMeter().add(pa.table({"src_addr": [b"\x00" * 16]}))
