"""All exporters together hold bounded state: a capped, least-recently-used exporter table,
and caps on template and held-data memory of all exporters."""

from __future__ import annotations

import ipaddress

import numpy as np
import pyarrow as pa

from collectors.flows.decoder import FlowDecoder
from collectors.flows.exporter_table import ExporterLimits, ExporterTable
from collectors.netflow.export_synth import (
    data_set,
    encode_v9,
    synth_template_stream,
    synth_v5_datagrams,
    v9_template_set,
)

SECOND = 1_000_000


def _addr(i: int) -> bytes:
    return ipaddress.IPv6Address(f"::ffff:127.0.{i // 250}.{2 + i % 250}").packed


def test_table_admits_refuses_and_evicts_the_least_recently_used_idle() -> None:
    table = ExporterTable(ExporterLimits(max_exporters=2, idle_seconds=10))
    assert table.admit([b"a", b"b"], [0, 5 * SECOND]) == (set(), [])
    assert table.admit([b"c"], [6 * SECOND]) == ({b"c"}, [])  # nobody idle long enough
    assert table.admit([b"a"], [7 * SECOND]) == (set(), [])  # a is now the most recent
    assert table.admit([b"c"], [15 * SECOND]) == (set(), [b"b"])  # b idle 10 s: evicted
    assert list(table._seen) == [b"a", b"c"]
    assert (table.refused, table.evicted) == (1, 1)
    assert table.restore([b"x", b"a"]) == [b"x"]  # beyond the limit: dropped


def _template_flood(exporter: int, count: int) -> list[bytes]:
    """One v9 datagram defining ``count`` templates, and one of data nobody defined."""
    templates = [(256 + k, [(8, 4), (12, 4), (1, 4), (2, 4)] * 8) for k in range(count)]
    out = [encode_v9([v9_template_set(templates)], source_id=exporter, sequence=0,
                     uptime_ms=1000, unix_secs=1_700_000_000)]  # fmt: skip
    out.append(encode_v9([data_set(60_000, bytes(range(256)) * 4)], source_id=exporter,
                         sequence=1, uptime_ms=1000, unix_secs=1_700_000_000))  # fmt: skip
    return out


def test_spoofed_exporters_cannot_grow_the_decoder_without_bound() -> None:
    limits = {"max_exporters": 16, "exporter_idle_seconds": 60,
              "max_template_bytes": 200_000, "max_pending_bytes": 20_000}  # fmt: skip
    dec = FlowDecoder(**limits)
    legit = _addr(999)
    stream = synth_template_stream("netflow_v9", 40, 10)
    dec.decode_many(stream[:1], [legit], [0])  # the legit exporter's template
    total_refused = 0
    for i in range(200):  # 200 spoofed sources, each a template flood and held data
        flood = _template_flood(i, 60)
        now = (1 + i) * SECOND
        out = dec.decode_many(flood, [_addr(i)] * len(flood), [now] * len(flood))
        total_refused += out.stats.get("malformed:exporter_limit", 0)
        # the legit exporter keeps sending and keeps decoding
        data = stream[1 + i % 39 : 2 + i % 39]
        legit_out = dec.decode_many(data, [legit], [now])
        assert legit_out.flows.num_rows == 10, legit_out.rejected
        session = dec.session
        assert len(dec.exporters) <= 16
        assert session.cache.bytes <= 200_000
        assert session.pending_total <= 20_000
        assert sum(session.pending_bytes.values()) == session.pending_total
    assert total_refused > 0  # datagrams of refused exporters, counted
    assert dec.exporters.refused > 0
    # later, the spoofed sources are idle: newcomers evict them, the legit one stays
    later = 1_000 * SECOND
    out = dec.decode_many(synth_v5_datagrams(1, 5), [_addr(5000)], [later])
    assert out.flows.num_rows == 5
    assert out.stats.get("exporter_evicted", 0) == 1
    assert legit in dec.exporters
    assert dec.decode_many(stream[1:2], [legit], [later]).flows.num_rows == 10


def test_refused_datagrams_are_rejected_not_decoded() -> None:
    dec = FlowDecoder(max_exporters=1, exporter_idle_seconds=3600)
    v5 = synth_v5_datagrams(4, 3)
    first = dec.decode_many(v5[:2], [_addr(1), _addr(1)], [0, 1])
    assert first.flows.num_rows == 6
    mixed = dec.decode_many(v5[2:], [_addr(1), _addr(2)], [2, 3])
    assert mixed.flows.num_rows == 3  # the admitted exporter's datagram only
    assert [(i, reason) for i, reason, _ in mixed.rejected] == [(1, "exporter_limit")]
    assert "127.0.0.4 refused" in mixed.rejected[0][2]
    assert mixed.stats["malformed:exporter_limit"] == 1
    assert dec.sequence.exporters() == {_addr(1)}  # no state for the refused one


def test_saved_state_keeps_within_the_limit() -> None:
    dec = FlowDecoder()
    for i in range(5):
        stream = synth_template_stream("netflow_v9", 1, 2, template_id=300 + i)
        dec.decode_many(stream, [_addr(i)] * len(stream), [i, i])
    restored = FlowDecoder.load_state(dec.save_state(), max_exporters=3)
    assert len(restored.exporters) == 3
    assert len(restored.session.exporters()) == 3
    assert len(restored.sequence.exporters()) <= 3
    keys = np.unique([t.exporter for t in restored.session.cache.templates()])
    assert len(keys) == 3
    assert isinstance(restored.decode_many([], [], []).flows, pa.RecordBatch)
