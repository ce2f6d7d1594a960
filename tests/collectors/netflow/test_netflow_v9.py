"""NetFlow v9: templates, data before template, options sampling, bad input, persistence."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.addresses import address_to_bytes
from collectors.flows.decoder import FlowDecoder
from collectors.netflow.export_synth import (
    V9_FLOW_TEMPLATE,
    data_set,
    encode_record,
    encode_v9,
    v9_options_template_set,
    v9_template_set,
)

EXP = address_to_bytes("198.51.100.7")
SECS = 1_700_000_000
LENGTHS = [ln for _, ln in V9_FLOW_TEMPLATE]


def _signed32(x: int) -> int:
    x &= 0xFFFFFFFF
    return x - (1 << 32) if x >= 1 << 31 else x


def packet(sets: list[bytes], seq: int = 0, uptime: int = 1_000_000, source_id: int = 3) -> bytes:
    return encode_v9(sets, source_id=source_id, sequence=seq, uptime_ms=uptime, unix_secs=SECS)


TEMPLATE = v9_template_set([(256, V9_FLOW_TEMPLATE)])

record_values = st.tuples(
    *[st.integers(0, (1 << (8 * ln)) - 1) for ln in LENGTHS]
)  # one value per V9_FLOW_TEMPLATE field, full range (reduced sizes are the lengths)


def rows(batch) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    d = batch.to_pydict()
    for k in ("flow_start", "flow_end"):
        d[k] = batch.column(k).cast("int64").to_pylist()
    return [{k: d[k][i] for k in d} for i in range(batch.num_rows)]


@settings(max_examples=80, deadline=None)
@given(recs=st.lists(record_values, min_size=1, max_size=20), uptime=st.integers(0, 2**32 - 1))
def test_records_match_reference(recs, uptime):  # type: ignore[no-untyped-def]
    body = b"".join(encode_record(LENGTHS, list(r)) for r in recs)
    dg = packet([TEMPLATE, data_set(256, body)], uptime=uptime)
    out = FlowDecoder().decode(dg, EXP, 0)
    names = [ie for ie, _ in V9_FLOW_TEMPLATE]
    # No address and no volume: rejected, not a flow (the rest are kept).
    empty = [
        k
        for k, r in enumerate(recs)
        if (v := dict(zip(names, r, strict=True)))[8] == v[12] == v[1] == v[2] == 0
    ]
    assert [(i, reason) for i, reason, _ in out.rejected] == [(0, "empty_record")] * len(empty)
    assert all(f"record {k}:" in m for k, (_, _, m) in zip(empty, out.rejected, strict=True))
    recs = [r for k, r in enumerate(recs) if k not in empty]
    got = rows(out.flows)
    assert len(got) == len(recs)
    for g, r in zip(got, recs, strict=True):
        v = dict(zip(names, r, strict=True))
        assert g["src_addr"] == b"\0" * 10 + b"\xff\xff" + v[8].to_bytes(4, "big")
        assert g["dst_addr"] == b"\0" * 10 + b"\xff\xff" + v[12].to_bytes(4, "big")
        assert g["next_hop"] == b"\0" * 10 + b"\xff\xff" + v[15].to_bytes(4, "big")
        assert (g["src_port"], g["dst_port"], g["protocol"]) == (v[7], v[11], v[4])
        assert (g["tcp_flags"], g["tos"], g["bytes"], g["packets"]) == (v[6], v[5], v[1], v[2])
        assert (g["input_if"], g["output_if"], g["src_as"], g["dst_as"]) == (
            v[10],
            v[14],
            v[16],
            v[17],
        )
        assert g["flow_start"] == SECS * 1_000_000 - _signed32(uptime - v[22]) * 1000
        assert g["flow_end"] == SECS * 1_000_000 - _signed32(uptime - v[21]) * 1000
        assert (g["observation_domain"], g["source_format"]) == (3, "netflow_v9")
        assert g["sampling_interval"] is None  # no rate announced
        assert g["mpls_labels"] is None
        assert g["exporter"] == EXP


def _one_record(**over: int) -> bytes:
    values = {ie: 0 for ie, _ in V9_FLOW_TEMPLATE}
    values.update({8: 0x0A000001, 12: 0x0A000002, 1: 1000, 2: 10, 22: 900_000, 21: 990_000})
    values.update({int(k[2:]): v for k, v in over.items()})
    return encode_record(LENGTHS, [values[ie] for ie, _ in V9_FLOW_TEMPLATE])


def test_data_before_template_is_held_then_decoded() -> None:
    dec = FlowDecoder()
    first = dec.decode(packet([data_set(256, _one_record() * 3)], seq=0), EXP, 0)
    assert first.flows.num_rows == 0
    assert first.stats["unknown_template"] == 1
    second = dec.decode(packet([TEMPLATE, data_set(256, _one_record())], seq=1), EXP, 0)
    assert second.flows.num_rows == 4
    assert second.stats["pending_decoded"] == 1
    seq = dec.sequence.state(EXP, 3, "netflow_v9")
    assert seq is not None
    assert (seq.missing, seq.received) == (0, 2)


def test_pending_buffer_is_bounded() -> None:
    dec = FlowDecoder(max_pending_bytes_per_exporter=300)
    for i in range(5):
        dec.decode(packet([data_set(256, _one_record() * 2)], seq=i), EXP, 0)  # 116 B each
    out = dec.decode(packet([TEMPLATE], seq=5), EXP, 0)
    assert out.flows.num_rows == 4  # only the two newest sets were kept
    assert dec.session.pending_bytes[EXP] == 0


def test_options_sampling_default_and_sampler_table() -> None:
    dec = FlowDecoder()
    opts = v9_options_template_set(300, [(1, 4)], [(34, 4), (35, 1)])
    sampler_opts = v9_options_template_set(301, [(1, 4)], [(48, 1), (49, 1), (50, 4)])
    tpl_with_sampler = v9_template_set([(257, [(8, 4), (12, 4), (1, 4), (48, 1)])])
    dg = packet(
        [
            opts,
            sampler_opts,
            tpl_with_sampler,
            TEMPLATE,
            data_set(300, struct.pack(">IIB", 0, 100, 2)),
            data_set(301, struct.pack(">IBBI", 0, 7, 2, 1000)),
            data_set(257, encode_record([4, 4, 4, 1], [1, 2, 300, 7])),
            data_set(257, encode_record([4, 4, 4, 1], [1, 2, 300, 9])),  # unknown sampler
            data_set(256, _one_record()),
        ]
    )
    out = dec.decode(dg, EXP, 0)
    assert out.rejected == []
    got = rows(out.flows)
    assert [r["sampling_interval"] for r in got] == [1000, 100, 100]
    assert [r["bytes"] for r in got] == [300, 300, 1000]  # raw, not renormalised


def test_template_redefinition_replaces() -> None:
    dec = FlowDecoder()
    dec.decode(packet([TEMPLATE, data_set(256, _one_record())]), EXP, 0)
    new = v9_template_set([(256, [(1, 4), (2, 4)])])
    out = dec.decode(packet([new, data_set(256, struct.pack(">II", 5, 6))], seq=1), EXP, 0)
    assert out.stats["template_replaced"] == 1
    assert rows(out.flows)[0]["bytes"] == 5


def test_template_limit_per_exporter() -> None:
    dec = FlowDecoder(max_templates_per_exporter=2)
    tpls = v9_template_set([(256 + i, [(1, 4)]) for i in range(4)])
    out = dec.decode(packet([tpls]), EXP, 0)
    assert out.stats["template_new"] == 2
    assert out.stats["template_limit"] == 2


def test_trailing_zero_padding_is_accepted() -> None:
    dg = packet([TEMPLATE, data_set(256, _one_record())]) + b"\x00" * 37
    out = FlowDecoder().decode(dg, EXP, 0)
    assert out.rejected == []
    assert out.flows.num_rows == 1


@pytest.mark.parametrize(
    ("datagram", "reason"),
    [
        (packet([])[:12], "truncated"),
        (packet([struct.pack(">HHHH", 0, 8, 256, 0)]), "zero_length_template"),
        (packet([struct.pack(">HHHHHH", 0, 12, 256, 1, 1, 0)]), "zero_length_template"),
        (packet([struct.pack(">HHHHHH", 0, 12, 12, 1, 1, 4)]), "bad_template_id"),
        (packet([struct.pack(">HHHH", 0, 8, 256, 5)]), "template_overrun"),
        (packet([struct.pack(">HHI", 256, 2, 7)]), "set_too_short"),
        (packet([struct.pack(">HHI", 256, 400, 7)]), "set_overrun"),
        (packet([struct.pack(">HHHHH", 1, 10, 256, 3, 0)]), "bad_options_template"),
        (packet([struct.pack(">HHHHH", 1, 10, 256, 0, 0)]), "zero_length_template"),
        (packet([TEMPLATE])[:-3], "set_overrun"),
    ],
)
def test_malformed_packets_are_rejected_with_reason(datagram: bytes, reason: str) -> None:
    ok = packet([TEMPLATE, data_set(256, _one_record())], source_id=99)
    out = FlowDecoder().decode_many([datagram, ok], [EXP, EXP], np.zeros(2, np.int64))
    assert [(i, r) for i, r, _ in out.rejected] == [(0, reason)]
    assert out.stats[f"malformed:{reason}"] == 1
    assert out.flows.num_rows == 1


def test_state_survives_a_restart() -> None:
    dec = FlowDecoder()
    dec.decode(packet([TEMPLATE, v9_options_template_set(300, [(1, 4)], [(34, 4)])]), EXP, 0)
    dec.decode(packet([data_set(300, struct.pack(">II", 0, 64))], seq=1), EXP, 0)
    dec.decode(packet([data_set(999, b"\x01" * 8)], seq=2), EXP, 0)  # held
    blob = dec.save_state()
    again = FlowDecoder.load_state(blob)
    out = again.decode(packet([data_set(256, _one_record())], seq=3), EXP, 0)
    assert out.flows.num_rows == 1
    assert rows(out.flows)[0]["sampling_interval"] == 64
    seq = again.sequence.state(EXP, 3, "netflow_v9")
    assert seq is not None
    assert seq.missing == 0
    assert seq.received == 4
    assert again.session.pending_bytes[EXP] == 8
