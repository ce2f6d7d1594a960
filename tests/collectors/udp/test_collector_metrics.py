"""`collect --metrics`: Prometheus text at /metrics equal to what was stored, /healthz, 404s;
a metrics port in use is an error at start."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from collectors.dataset import read_dataset
from collectors.errors import CollectorError
from collectors.netflow.export_synth import synth_template_stream, synth_v5_datagrams
from collectors.schemas import FLOW_SCHEMA
from collectors.udp.service import CollectorSummary, UdpCollector
from collectors.workspace import WorkspacePaths


@contextmanager
def collector_with_metrics(ws: WorkspacePaths) -> Iterator[tuple[UdpCollector, dict]]:
    """A collector on ephemeral loopback ports in a thread; stopped and joined on exit."""
    collector = UdpCollector([("127.0.0.1", 0)], ws, metrics=("127.0.0.1", 0))
    stop = threading.Event()
    out: dict[str, CollectorSummary] = {}
    thread = threading.Thread(target=lambda: out.setdefault("summary", collector.run(stop)))
    try:
        collector.warm_up()
        thread.start()
        yield collector, out
    finally:
        stop.set()
        if thread.is_alive():
            thread.join(60)
        collector.close()
        assert not thread.is_alive()


def scrape(port: int, path: str = "/metrics") -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def total(values: dict[tuple[str, frozenset], float], name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, lab), v in values.items() if n == name and want <= lab)


def test_scraped_counters_equal_the_stored_flows(tmp_path: Path) -> None:
    ws = WorkspacePaths(tmp_path / "w")
    v5 = synth_v5_datagrams(40, 30, seed=3)
    v5.pop(20)  # a sequence gap: one datagram, 30 flows the exporter numbered, is lost
    v9 = synth_template_stream("netflow_v9", 10, 24, seed=4)
    garbage = b"\x00\x63 not an export"
    sent_flows = 39 * 30 + 10 * 24
    with collector_with_metrics(ws) as (collector, out):
        port = collector.metrics_address[1]
        address = collector.addresses[0]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for i, d in enumerate([*v5, *v9, garbage]):
                s.sendto(d, address)
                if i % 20 == 19:
                    time.sleep(0.01)  # stay inside the socket buffer
        deadline = time.monotonic() + 30
        values: dict = {}
        while time.monotonic() < deadline:
            status, text = scrape(port)
            assert status == 200
            values = samples(text)
            done = total(values, "rating_engine_collector_flows_total") == sent_flows
            if done and total(values, "rating_engine_collector_templates") >= 1:
                break
            time.sleep(0.2)
        health_status, health = scrape(port, "/healthz")
        missing_status, _ = scrape(port, "/nope")
    summary = out["summary"]
    stored = read_dataset(ws.flows, FLOW_SCHEMA).num_rows

    def get(name: str, **labels: str) -> float:
        return total(values, f"rating_engine_collector_{name}", exporter="127.0.0.1", **labels)

    assert get("flows_total") == stored == summary.flows == sent_flows
    assert get("flows_total", format="netflow_v5") == 39 * 30
    assert get("flows_total", format="netflow_v9") == 10 * 24
    assert get("datagrams_total", format="netflow_v5") == 39
    assert get("datagrams_total", format="netflow_v9") == 11
    assert get("datagrams_total", format="unknown") == 1
    assert get("received_bytes_total") == sum(map(len, [*v5, *v9, garbage]))
    assert get("datagrams_rejected_total", format="unknown", reason="unsupported_version") == 1
    assert get("sequence_missing_total", format="netflow_v5") == 30  # the lost datagram
    assert get("templates", format="netflow_v9") == 1
    assert get("last_datagram_timestamp_seconds", format="netflow_v5") > 1e9
    assert ("rating_engine_collector_socket_drops_total",
            frozenset({("listen", f"127.0.0.1:{address[1]}")})) in values  # fmt: skip
    assert health_status == 200
    assert json.loads(health)["status"] == "ok"
    assert missing_status == 404
    # what the writer reported once it flushed at stop
    assert collector.metrics is not None
    written = collector.metrics.copy()["written"]
    assert written[("flows", "rows")] == stored
    assert written[("flows", "bytes")] == sum(p.stat().st_size for p in ws.flows.rglob("*.parquet"))


def test_a_metrics_port_in_use_is_an_error_at_start(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        with pytest.raises(CollectorError, match=rf"--metrics 127\.0\.0\.1:{port}: cannot listen"):
            UdpCollector([("127.0.0.1", 0)], WorkspacePaths(tmp_path / "w"),
                         metrics=("127.0.0.1", port))  # fmt: skip


def test_healthz_reports_a_failed_writer(tmp_path: Path) -> None:
    ws = WorkspacePaths(tmp_path / "w")
    collector = UdpCollector([("127.0.0.1", 0)], ws, metrics=("127.0.0.1", 0))
    try:
        collector.outputs.error = OSError(28, "No space left on device")
        healthy, details = collector._health()
        assert not healthy
        assert "writer failed" in details["problems"][0]  # type: ignore[index]
    finally:
        collector.close()
