"""NetFlow v1/v5/v7 bulk decoding against a pure-Python struct reference."""

from __future__ import annotations

import struct

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.addresses import address_to_bytes
from collectors.flows.decoder import FlowDecoder
from collectors.netflow.export_synth import V5_DTYPE, encode_v5, synth_v5_datagrams

EXP = address_to_bytes("192.0.2.1")


def _signed32(x: int) -> int:
    x &= 0xFFFFFFFF
    return x - (1 << 32) if x >= 1 << 31 else x


def reference_v5(datagram: bytes) -> tuple[list[dict[str, object]], list[int]]:
    """Pure-Python v5 decode, the twin of the Numba kernel: (flows, empty records)."""
    _, count, uptime, secs, nsecs, _, etype, eid, samp = struct.unpack_from(">HHIIIIBBH", datagram)
    export_us = secs * 1_000_000 + nsecs // 1000
    sampling = (samp & 0x3FFF) or None  # 0: no rate announced
    out = []
    empty = []
    for i in range(count):
        f = struct.unpack_from(">4s4s4sHHIIIIHHBBBBHHBBH", datagram, 24 + 48 * i)
        if f[0] == f[1] == bytes(4) and f[5] == f[6] == 0:
            empty.append(i)  # no address and no volume: not a flow
            continue
        out.append(
            {
                "src_addr": b"\0" * 10 + b"\xff\xff" + f[0],
                "dst_addr": b"\0" * 10 + b"\xff\xff" + f[1],
                "next_hop": b"\0" * 10 + b"\xff\xff" + f[2],
                "input_if": f[3],
                "output_if": f[4],
                "packets": f[5],
                "bytes": f[6],
                "flow_start": export_us - _signed32(uptime - f[7]) * 1000,
                "flow_end": export_us - _signed32(uptime - f[8]) * 1000,
                "src_port": f[9],
                "dst_port": f[10],
                "tcp_flags": f[12],
                "protocol": f[13],
                "tos": f[14],
                "src_as": f[15],
                "dst_as": f[16],
                "observation_domain": (etype << 8) | eid,
                "sampling_interval": sampling,
                "source_format": "netflow_v5",
            }
        )
    return out, empty


def _rows(batch) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    cols = batch.to_pydict()
    ts = {k: batch.column(k).cast("int64").to_pylist() for k in ("flow_start", "flow_end")}
    cols.update(ts)
    return [{k: cols[k][i] for k in cols} for i in range(batch.num_rows)]


records = st.lists(st.binary(min_size=48, max_size=48), min_size=0, max_size=30)


@settings(max_examples=150, deadline=None)
@given(
    recs=records,
    uptime=st.integers(0, 2**32 - 1),
    secs=st.integers(0, 2**32 - 1),
    nsecs=st.integers(0, 999_999_999),
    seq=st.integers(0, 2**32 - 1),
    engine=st.tuples(st.integers(0, 255), st.integers(0, 255)),
    sampling=st.integers(0, 0xFFFF),
)
def test_v5_matches_reference(recs, uptime, secs, nsecs, seq, engine, sampling):  # type: ignore[no-untyped-def]
    arr = np.frombuffer(b"".join(recs), V5_DTYPE) if recs else np.zeros(0, V5_DTYPE)
    dg = encode_v5(
        arr,
        uptime_ms=uptime,
        unix_secs=secs,
        unix_nsecs=nsecs,
        sequence=seq,
        engine_type=engine[0],
        engine_id=engine[1],
        sampling=sampling,
    )
    out = FlowDecoder().decode(dg, EXP, 0)
    want, empty = reference_v5(dg)
    assert [(i, r) for i, r, _ in out.rejected] == [(0, "empty_record")] * len(empty)
    for k, (_, _, message) in zip(empty, out.rejected, strict=True):
        assert f"NetFlow v5 record {k}:" in message
    assert out.stats.get("malformed:empty_record", 0) == len(empty)
    got = _rows(out.flows)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        for k, v in w.items():
            assert g[k] == v, k
        assert g["exporter"] == EXP
        assert g["direction"] is None


def test_uptime_wrap_gives_a_start_just_before_export() -> None:
    rec = np.zeros(1, V5_DTYPE)
    rec["dOctets"] = 1
    rec["first"] = 2**32 - 5000  # stamped before the 2**32 ms uptime wrap
    rec["last"] = 500
    dg = encode_v5(rec, uptime_ms=1000, unix_secs=1_700_000_000)
    row = _rows(FlowDecoder().decode(dg, EXP, 0).flows)[0]
    assert row["flow_start"] == 1_700_000_000_000_000 - 6_000_000
    assert row["flow_end"] == 1_700_000_000_000_000 - 500_000


def test_v1_and_v7_layouts() -> None:
    v1_head = struct.pack(">HHIII", 1, 1, 10_000, 1_600_000_000, 0)
    v1_rec = struct.pack(
        ">4s4s4sHHIIIIHHHBBBBBB4x",
        bytes([10, 0, 0, 1]),
        bytes([10, 0, 0, 2]),
        bytes(4),
        3,
        4,
        7,
        700,
        9_000,
        9_500,
        1234,
        80,
        0,
        6,
        0x10,
        0x12,
        0,
        0,
        0,
    )
    v7_head = struct.pack(">HHIIIII", 7, 1, 10_000, 1_600_000_000, 0, 42, 0)
    v7_rec = struct.pack(
        ">4s4s4sHHIIIIHHBBBBHHBBHI",
        bytes([10, 0, 0, 3]),
        bytes([10, 0, 0, 4]),
        bytes(4),
        1,
        2,
        5,
        500,
        9_000,
        10_000,
        53,
        5353,
        0,
        0x02,
        17,
        0,
        65001,
        65002,
        24,
        24,
        0,
        0,
    )
    out = FlowDecoder().decode_many([v1_head + v1_rec, v7_head + v7_rec], [EXP, EXP], [0, 0])
    assert out.rejected == []
    rows = _rows(out.flows)
    assert [r["source_format"] for r in rows] == ["netflow_v1", "netflow_v7"]
    v1, v7 = rows
    assert (v1["protocol"], v1["tos"], v1["tcp_flags"], v1["bytes"]) == (6, 0x10, 0x12, 700)
    assert v1["flow_start"] == 1_600_000_000_000_000 - 1_000_000
    assert (v7["src_as"], v7["dst_as"], v7["protocol"], v7["src_port"]) == (65001, 65002, 17, 53)


def test_bad_datagrams_are_rejected_and_the_rest_decoded() -> None:
    good = synth_v5_datagrams(2, 30)
    truncated = good[0][:100]  # count says 30 records
    short = good[0][:10]
    unknown = b"\x00\x06" + good[0][2:]
    out = FlowDecoder().decode_many(
        [good[0], truncated, short, unknown, good[1]], [EXP] * 5, [0] * 5
    )
    assert out.flows.num_rows == 60
    assert [(i, r) for i, r, _ in out.rejected] == [
        (1, "bad_length"),
        (2, "truncated"),
        (3, "unsupported_version"),
    ]
    assert out.stats["malformed:bad_length"] == 1
    assert out.stats["rejected"] == 3


def test_many_datagrams_sequence_accounting() -> None:
    dgs = synth_v5_datagrams(10, 30)
    dec = FlowDecoder()
    dec.decode_many(dgs[:4] + dgs[6:], [EXP] * 8, np.zeros(8, np.int64))
    st_ = dec.sequence.state(EXP, 1, "netflow_v5")
    assert st_ is not None
    assert (st_.missing, st_.received) == (60, 240)
    dec.decode_many(dgs[4:5], [EXP], [0])  # late
    assert (st_.missing, st_.out_of_order) == (30, 1)
