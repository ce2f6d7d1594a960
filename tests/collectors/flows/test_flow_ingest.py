"""Flow-export files (pcap, length-prefixed datagram files, single .bin) through the decoders."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import wrpcap
from shared_data import CAPTURES

from collectors.dataset import dataset_files, read_dataset
from collectors.flows.datagram_files import iter_datagrams_from_pcap
from collectors.flows.decoder import FlowDecoder
from collectors.flows.ingest import (
    detect_flow_file,
    ingest_flow_files,
    iter_flow_file,
    write_datagram_file,
)
from collectors.schemas import FLOW_SCHEMA, REJECT_SCHEMA
from collectors.sflow.datagram import COUNTER_SCHEMA
from collectors.workspace import WorkspacePaths

SOFT = CAPTURES / "python-netflow-v9-softflowd"
V9 = [
    SOFT / "packet_v9_template.bin",
    SOFT / "packets_v9_0.bin",
    SOFT / "packets_v9_1.bin",
    SOFT / "packets_v9_2.bin",
]


def flows_of(ws: WorkspacePaths) -> pa.Table:
    return read_dataset(ws.flows, FLOW_SCHEMA)


def test_single_bin_files_in_order(tmp_path: Path) -> None:
    ws = WorkspacePaths(tmp_path / "w")
    summary = ingest_flow_files(V9, ws)
    assert [f.kind for f in summary.files] == ["single"] * 4
    assert [f.flows for f in summary.files] == [8, 12, 12, 12]
    assert summary.flows == 44 == flows_of(ws).num_rows
    assert (ws.state / "flow_ingest.json").exists()
    for path in dataset_files(ws.flows):
        assert path.name.startswith("part-flowexport-")
        assert path.parent.name.startswith("hour=")


def test_datagram_file_equals_the_decoder(tmp_path: Path) -> None:
    ws = WorkspacePaths(tmp_path / "w")
    data = [p.read_bytes() for p in V9] + [
        (SOFT / "packet_ipfix_template.bin").read_bytes(),
        (SOFT / "packet_ipfix.bin").read_bytes(),
        (CAPTURES / "goflow2" / "netflowlegacy_data.bin").read_bytes(),
    ]
    path = tmp_path / "export.dgrams"
    assert write_datagram_file(path, data) == len(data)
    other = tmp_path / "export.raw"  # no suffix hint: detected by exact framing
    shutil.copy(path, other)
    assert detect_flow_file(path) == detect_flow_file(other) == "datagrams"
    assert [d for d, _, _ in iter_flow_file(path, "datagrams")] == data
    summary = ingest_flow_files([path], ws, decoder_state=None)
    reference = FlowDecoder().decode_many(data, [bytes(16)] * len(data), [0] * len(data))
    assert summary.flows == reference.flows.num_rows == flows_of(ws).num_rows
    got = flows_of(ws).sort_by([("flow_start", "ascending"), ("src_port", "ascending")])
    want = pa.Table.from_batches([reference.flows]).sort_by(
        [("flow_start", "ascending"), ("src_port", "ascending")]
    )
    assert got.to_pylist() == want.to_pylist()
    assert not (ws.state / "flow_ingest.json").exists()


def test_pcaps_of_export_traffic(tmp_path: Path) -> None:
    ws = WorkspacePaths(tmp_path / "w")
    pcaps = [CAPTURES / "generated" / "netflowv9.pcap", CAPTURES / "generated" / "ipfix.pcap"]
    sflow = tmp_path / "sflow.pcap"
    frames = [
        Ether() / IP(src="192.0.2.7", dst="192.0.2.1") / UDP(sport=5000, dport=6343) / Raw(p)
        for p in (
            (CAPTURES / "goflow2" / "sflow_data_1.bin").read_bytes(),
            (CAPTURES / "gopacket" / "gopacket_SFlowTestPacket3.bin").read_bytes(),
        )
    ]
    wrpcap(str(sflow), frames)
    summary = ingest_flow_files([*pcaps, sflow], ws)
    assert [f.kind for f in summary.files] == ["pcap"] * 3
    decoder = FlowDecoder()
    expected = 0
    for p in [*pcaps, sflow]:
        items = list(iter_datagrams_from_pcap(p))
        out = decoder.decode_many(
            [i[0] for i in items], [i[1] for i in items], [i[2] for i in items]
        )
        expected += out.flows.num_rows
    assert summary.flows == expected == flows_of(ws).num_rows
    assert [f.flows for f in summary.files] == [24, 4, 5]  # MANIFEST counts
    assert summary.files[2].counters == 1
    assert read_dataset(ws.counters, COUNTER_SCHEMA).num_rows == 1
    sflow_rows = flows_of(ws).filter(pa.compute.equal(flows_of(ws)["source_format"], "sflow"))
    # sFlow rows take the capture time; the agent address is the exporter
    assert sflow_rows.num_rows == 5


def test_rejects_go_to_quarantine_and_the_rest_goes_on(tmp_path: Path) -> None:
    ws = WorkspacePaths(tmp_path / "w")
    good = (SOFT / "packet_v5.bin").read_bytes()
    invalid = (SOFT / "packet_invalid.bin").read_bytes()
    dgrams = tmp_path / "mixed.dgrams"
    write_datagram_file(dgrams, [good, invalid, good])
    cut = tmp_path / "cut.dgrams"
    cut.write_bytes(dgrams.read_bytes()[:-10])  # last datagram runs past the end
    missing = tmp_path / "missing.bin"
    summary = ingest_flow_files([dgrams, missing, cut], ws, decoder_state=None)
    assert [f.flows for f in summary.files] == [6, 0, 3]
    assert summary.files[1].rejected["unreadable_file"] == 1
    assert summary.files[2].rejected["truncated_file"] == 1
    assert summary.files[0].rejected.total() == 1
    quarantine = read_dataset(ws.quarantine, REJECT_SCHEMA)
    rows = {(r["source_file"], r["record_no"]): r for r in quarantine.to_pylist()}
    assert rows[(str(dgrams), 1)]["raw"] == invalid
    assert (str(missing), None) in rows
    assert summary.to_dict()["flows"] == 9


def test_reingest_replaces_instead_of_adding(tmp_path: Path) -> None:
    ws = WorkspacePaths(tmp_path / "w")
    path = tmp_path / "a.dgrams"
    write_datagram_file(path, [(SOFT / "packet_v5.bin").read_bytes()] * 5)
    ingest_flow_files([path], ws)
    files = dataset_files(ws.flows)
    ingest_flow_files([path], ws)
    assert dataset_files(ws.flows) == files
    assert flows_of(ws).num_rows == 15


def test_state_carries_templates_between_runs(tmp_path: Path) -> None:
    ws = WorkspacePaths(tmp_path / "w")
    assert ingest_flow_files([V9[0]], ws).flows == 8
    assert ingest_flow_files([V9[1]], ws).flows == 12
    fresh = WorkspacePaths(tmp_path / "fresh")
    out = ingest_flow_files([V9[1]], fresh)
    assert out.flows == 0  # no template known: held, not lost or crashed
    assert out.stats.get("unknown_template", 0) >= 1
