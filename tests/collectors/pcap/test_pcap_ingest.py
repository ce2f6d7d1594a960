"""Capture files into the workspace: flows, packets, rejects, idempotent re-ingest."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pyarrow as pa
import pytest
from pcap_craft import eth, pcap_bytes, write_pcap
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6

from collectors.dataset import dataset_files, read_dataset
from collectors.pcap.ingest import content_part_name, ingest_pcap_files
from collectors.pcap.metering import MeteringOptions
from collectors.pcap.packet_kernel import PACKET_SCHEMA
from collectors.schemas import FLOW_SCHEMA, REJECT_SCHEMA
from collectors.workspace import WorkspacePaths

T0 = 1_700_000_000 * 10**9  # 2023-11-14, ns
DAY = 86_400 * 10**9


def traffic() -> list[tuple[int, bytes, int]]:
    frames = [
        eth() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1000, dport=53),
        eth() / IP(src="10.0.0.2", dst="10.0.0.1") / UDP(sport=53, dport=1000),
        eth() / IPv6(src="2001:db8::1", dst="2001:db8::2") / TCP(sport=5, dport=80, flags="S"),
        eth() / IP(src="10.0.0.3", dst="10.0.0.4") / ICMP(),
        eth() / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1000, dport=53),
    ]
    out = [(T0 + i * 10**9, bytes(f), len(bytes(f))) for i, f in enumerate(frames)]
    late = bytes(eth() / IP(src="10.0.0.7", dst="10.0.0.8") / UDP(sport=7, dport=8))
    out.append((T0 + DAY, late, len(late)))  # next day: a second partition
    return out


@pytest.fixture
def ws(tmp_path: Path) -> WorkspacePaths:
    return WorkspacePaths(tmp_path / "w")


def test_flows_written_and_reingest_replaces(tmp_path: Path, ws: WorkspacePaths) -> None:
    path = write_pcap(tmp_path / "a.pcap", traffic())
    summary = ingest_pcap_files([path], ws)
    assert summary.packets == 6
    assert summary.flows == 5
    assert not summary.rejected
    flows = read_dataset(ws.flows, FLOW_SCHEMA)
    assert flows.num_rows == 5
    assert sum(flows.column("packets").to_pylist()) == 6
    assert set(flows.column("source_format").to_pylist()) == {"pcap"}
    files = dataset_files(ws.flows)
    assert len(files) == 2  # two days
    assert all(content_part_name(path) in f.name for f in files)
    # the same bytes under another name (and compressed differently named) add nothing
    copy = tmp_path / "renamed.pcap"
    shutil.copy(path, copy)
    ingest_pcap_files([path, copy], ws)
    assert read_dataset(ws.flows, FLOW_SCHEMA).num_rows == 5
    assert dataset_files(ws.flows) == files
    d = summary.to_dict()
    assert d["flows"] == 5
    assert d["files"][0]["format"] == "pcap"


def test_reingest_drops_stale_partitions_of_the_same_file(
    tmp_path: Path, ws: WorkspacePaths
) -> None:
    path = write_pcap(tmp_path / "a.pcap", traffic())
    ingest_pcap_files([path], ws)
    part = content_part_name(path)
    stale = ws.flows / "date=2000-01-01" / f"part-{part}.parquet"
    stale.parent.mkdir()
    shutil.copy(dataset_files(ws.flows)[0], stale)  # as if an older run had written that day
    other = ws.flows / "date=2000-01-01" / "part-someone-else.parquet"
    shutil.copy(stale, other)
    ingest_pcap_files([path], ws, options=MeteringOptions(udp_timeout=1))
    assert not stale.exists()
    assert other.exists()  # other files' parts are left alone


def test_packets_dataset(tmp_path: Path, ws: WorkspacePaths) -> None:
    path = tmp_path / "a.pcap.gz"
    path.write_bytes(gzip.compress(pcap_bytes(traffic())))
    ingest_pcap_files([path], ws, write_packets=True)
    ingest_pcap_files([path], ws, write_packets=True)
    packets = read_dataset(ws.packets, PACKET_SCHEMA)
    assert packets.num_rows == 6
    assert packets.column("source_file").to_pylist()[0] == str(path)
    assert sorted(packets.column("offset").to_pylist())[0] == 24


def test_bad_packets_and_truncated_file(tmp_path: Path, ws: WorkspacePaths) -> None:
    good = traffic()
    runt = bytes(eth(type=0x0800)) + b"\x45\x00"  # IPv4 header cut after 2 bytes
    recs = [good[0], (T0 + 5, runt, 60), good[1], good[2]]
    data = pcap_bytes(recs)
    cut = data[:-5]
    (tmp_path / "t.pcap").write_bytes(cut)
    summary = ingest_pcap_files([tmp_path / "t.pcap"], ws)
    f = summary.files[0]
    assert f.packets == 3  # the last, cut packet is gone, the runt is counted
    assert f.ip_packets == 2
    assert dict(f.rejected) == {"truncated_ip_header": 1, "truncated_file": 1}
    assert f.truncated_at == len(data) - (16 + len(good[2][1]))
    assert any("truncated" in w for w in summary.warnings)
    rej = read_dataset(ws.rejected, REJECT_SCHEMA).sort_by("record_no")
    assert rej.column("reason").to_pylist() == ["truncated_ip_header", "truncated_file"]
    runt_offset = 24 + 16 + len(good[0][1])
    assert rej.column("record_no").to_pylist()[0] == runt_offset
    assert rej.column("raw").to_pylist()[0] == runt
    assert set(rej.column("source_file").to_pylist()) == {str(tmp_path / "t.pcap")}
    # re-ingest: rejects replaced, not doubled
    ingest_pcap_files([tmp_path / "t.pcap"], ws)
    assert read_dataset(ws.rejected, REJECT_SCHEMA).num_rows == 2
    assert read_dataset(ws.flows, FLOW_SCHEMA).num_rows == 2


def test_unreadable_files_do_not_stop_the_run(tmp_path: Path, ws: WorkspacePaths) -> None:
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"definitely not a capture")
    good = write_pcap(tmp_path / "g.pcap", traffic())
    summary = ingest_pcap_files([tmp_path / "missing.pcap", junk, good], ws)
    assert [dict(f.rejected) for f in summary.files[:2]] == [
        {"unreadable_file": 1},
        {"unreadable_file": 1},
    ]
    assert summary.files[2].flows == 5
    rej = read_dataset(ws.rejected, REJECT_SCHEMA)
    assert sorted(rej.column("reason").to_pylist()) == ["unreadable_file", "unreadable_file"]
    assert read_dataset(ws.flows, FLOW_SCHEMA).num_rows == 5


def test_many_batches_equal_one(tmp_path: Path, ws: WorkspacePaths) -> None:
    recs = traffic() * 20
    recs = sorted(((t + i, f, n) for i, (t, f, n) in enumerate(recs)), key=lambda r: r[0])
    path = write_pcap(tmp_path / "m.pcap", recs)
    a = ingest_pcap_files([path], ws, batch_size=7)
    other = WorkspacePaths(tmp_path / "w2")
    b = ingest_pcap_files([path], other)
    ta = read_dataset(ws.flows, FLOW_SCHEMA)
    tb = read_dataset(other.flows, FLOW_SCHEMA)
    key = [("flow_start", "ascending"), ("src_addr", "ascending"), ("dst_port", "ascending")]
    assert a.flows == b.flows
    assert ta.sort_by(key).equals(tb.sort_by(key))
    assert isinstance(ta, pa.Table)
