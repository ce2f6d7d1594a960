"""Decoder state across restarts, and the collector's writer thread when the disk fails."""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow as pa
import pytest

from collectors.dataset import read_dataset
from collectors.errors import CollectorError
from collectors.flows.decoder import FlowDecoder
from collectors.netflow.export_synth import synth_template_stream
from collectors.schemas import FLOW_SCHEMA
from collectors.udp.decoder_state import load_decoder_state, save_decoder_state
from collectors.udp.outputs import CollectorOutputs
from collectors.workspace import WorkspacePaths

EXPORTER = bytes(15) + b"\x01"


def _decode(decoder: FlowDecoder, datagrams: list[bytes]) -> int:
    out = decoder.decode_many(datagrams, [EXPORTER] * len(datagrams), [0] * len(datagrams))
    return int(out.flows.num_rows)


def test_template_survives_a_restart(tmp_path: Path) -> None:
    template, *data = synth_template_stream("netflow_v9", 2, 5)
    path = tmp_path / "state" / "dec.json"
    first = FlowDecoder()
    assert _decode(first, [template]) == 0
    save_decoder_state(first, path)
    assert not list(path.parent.glob(".*.tmp"))  # the temporary file is renamed away
    assert _decode(load_decoder_state(path), data) == 10
    assert _decode(FlowDecoder(), data) == 0  # without the state the data cannot decode


def test_missing_state_starts_fresh(tmp_path: Path) -> None:
    _template, *data = synth_template_stream("netflow_v9", 1, 5)
    decoder = load_decoder_state(tmp_path / "none.json")
    assert _decode(decoder, data) == 0


def test_unreadable_state_is_kept_aside_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "dec.json"
    path.write_bytes(b"{not json")
    with caplog.at_level(logging.WARNING, logger="collectors.udp.decoder_state"):
        decoder = load_decoder_state(path)
    assert isinstance(decoder, FlowDecoder)
    assert not path.exists()
    assert (tmp_path / "dec.json.bad").read_bytes() == b"{not json"
    assert any("unreadable" in r.getMessage() for r in caplog.records)


def _outputs(ws: WorkspacePaths) -> CollectorOutputs:
    return CollectorOutputs(
        ws.ensure(), "udp-test", rotate_seconds=60, rotate_bytes=1 << 20, stats_interval=10,
        compression="lz4",
    )  # fmt: skip


def _flows(n: int) -> pa.RecordBatch:
    template, *data = synth_template_stream("netflow_v9", 1, n)
    return FlowDecoder().decode_many([template, *data], [EXPORTER] * 2, [0, 0]).flows


def test_writer_thread_writes_flows_on_finish(tmp_path: Path) -> None:
    ws = WorkspacePaths(tmp_path / "w")
    outputs = _outputs(ws)
    outputs.start()
    outputs.write_flows(_flows(7))
    outputs.write_flows(_flows(0))  # empty batches are not queued
    outputs.finish()
    assert outputs.error is None
    assert len(outputs.flows.written) == 1
    assert read_dataset(ws.flows, FLOW_SCHEMA).num_rows == 7


def test_writer_failure_reaches_the_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    outputs = _outputs(WorkspacePaths(tmp_path / "w"))

    def broken(batch: pa.RecordBatch, now: float | None = None) -> list[Path]:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(outputs.flows, "add", broken)
    outputs.start()
    outputs.write_flows(_flows(3))
    outputs.finish()  # returns: the dead writer still drains its queue
    assert isinstance(outputs.error, OSError)
    with pytest.raises(CollectorError, match="writer failed"):
        outputs.write_flows(_flows(3))
