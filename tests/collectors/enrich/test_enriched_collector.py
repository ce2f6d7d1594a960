"""The UDP collector with enrichment: stored flows carry AS and country; an enrichment failure
mid-stream stores the flows as decoded (counted), never stops collection."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pyarrow as pa
import pytest
from mmdb_files import write_asn_db, write_geo_db

from collectors.dataset import read_dataset
from collectors.enrich.enricher import FlowEnricher
from collectors.netflow.export_synth import synth_v5_datagrams
from collectors.schemas import FLOW_SCHEMA
from collectors.udp.service import CollectorSummary, UdpCollector
from collectors.workspace import WorkspacePaths


def collect(ws: WorkspacePaths, enricher: FlowEnricher, datagrams: list[bytes]) -> CollectorSummary:
    """Run a collector on a loopback port, send, stop (always), return its summary."""
    collector = UdpCollector([("127.0.0.1", 0)], ws, enricher=enricher, stats_interval=0.2)
    stop = threading.Event()
    out: dict[str, CollectorSummary] = {}
    thread = threading.Thread(target=lambda: out.setdefault("s", collector.run(stop)))
    thread.start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for d in datagrams:
                s.sendto(d, collector.addresses[0])
        deadline = 200
        while collector.stats.totals.get("flows", 0) < 30 * len(datagrams) and deadline:
            threading.Event().wait(0.05)
            deadline -= 1
    finally:
        stop.set()
        thread.join(60)
        collector.close()
    assert not thread.is_alive()
    return out["s"]


def test_collected_flows_are_enriched(tmp_path: Path) -> None:
    enricher = FlowEnricher.open(
        asn_db=write_asn_db(tmp_path / "a.mmdb"), geo_db=write_geo_db(tmp_path / "g.mmdb")
    )
    assert enricher is not None
    ws = WorkspacePaths(tmp_path / "w")
    summary = collect(ws, enricher, synth_v5_datagrams(10, 30, seed=9))
    flows = read_dataset(ws.flows, FLOW_SCHEMA)
    assert summary.flows == flows.num_rows == 300
    # synthetic sources are in 10.0.0.0/8: DE below 10.128/9, FR above
    assert flows.column("src_country").null_count == 0
    assert set(flows.column("src_country").to_pylist()) <= {"DE", "FR"}
    assert 0 not in flows.column("src_as").to_pylist()


def test_an_enrichment_failure_stores_the_flows_as_decoded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    enricher = FlowEnricher.open(asn_db=write_asn_db(tmp_path / "a.mmdb"))
    assert enricher is not None

    def broken(batch: pa.RecordBatch) -> pa.RecordBatch:
        raise RuntimeError("a bug in enrichment")

    monkeypatch.setattr(enricher, "enrich", broken)
    ws = WorkspacePaths(tmp_path / "w")
    summary = collect(ws, enricher, synth_v5_datagrams(4, 30, seed=2))
    assert read_dataset(ws.flows, FLOW_SCHEMA).num_rows == summary.flows == 120
    assert summary.stats["enrich_errors"] >= 1


def test_the_warm_up_runs_the_enricher_before_traffic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # with no Numba cache the look-up kernel compiles on its first batch: not on live traffic
    enricher = FlowEnricher.open(asn_db=write_asn_db(tmp_path / "a.mmdb"))
    assert enricher is not None
    seen: list[int] = []
    real = enricher.enrich
    monkeypatch.setattr(enricher, "enrich", lambda b: seen.append(b.num_rows) or real(b))
    collector = UdpCollector([("127.0.0.1", 0)], WorkspacePaths(tmp_path / "w"), enricher=enricher)
    try:
        collector.warm_up()
    finally:
        collector.close()
    assert seen
    assert seen[0] > 0
    # a failing enricher does not stop the start (it is logged and counted on real batches)
    monkeypatch.setattr(enricher, "enrich", lambda b: 1 / 0)
    again = UdpCollector([("127.0.0.1", 0)], WorkspacePaths(tmp_path / "w2"), enricher=enricher)
    try:
        again.warm_up()
    finally:
        again.close()
