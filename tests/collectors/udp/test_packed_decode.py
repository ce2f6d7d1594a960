"""Decoding in place from the receive buffers: a chunk's datagrams packed once per run of
adjacent datagrams decode exactly as the same datagrams as bytes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.flows.decoder import FlowDecoder, PackedDatagrams
from collectors.netflow.export_synth import synth_template_stream, synth_v5_datagrams
from collectors.udp.receive import ReceiveChunk

LOCAL = bytes(10) + b"\xff\xff" + bytes([127, 0, 0, 1])
STREAM = (
    synth_v5_datagrams(6, 30, seed=1)
    + synth_template_stream("netflow_v9", 6, 24, seed=2)
    + [b"\x00", b"\x00\x63garbage"]  # truncated, unknown version: rejected by index
    + synth_template_stream("ipfix", 6, 12, seed=3)
    + [synth_v5_datagrams(1, 30, seed=4)[0][:100]]  # cut short: rejected
)


def _chunk(datagrams: list[bytes], gaps: list[int]) -> ReceiveChunk:
    """The datagrams in a buffer with ``gaps[i]`` spare bytes before datagram i (0: adjacent
    to the one before, as in a ring record)."""
    chunk = ReceiveChunk(sum(map(len, datagrams)) + sum(gaps))
    at = 0
    for d, gap in zip(datagrams, gaps, strict=True):
        at += gap
        chunk.buf[at : at + len(d)] = d
        chunk.starts.append(at)
        chunk.lengths.append(len(d))
        at += len(d)
    return chunk


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from([0, 0, 0, 1, 7, 64]), min_size=len(STREAM), max_size=len(STREAM)))
def test_packed_chunk_holds_the_datagrams(gaps: list[int]) -> None:
    chunk = _chunk(STREAM, gaps)
    packed = chunk.packed()
    assert len(packed) == len(STREAM)
    assert list(packed) == chunk.datagrams() == STREAM
    assert packed[-1] == STREAM[-1]
    assert packed[1:3] == STREAM[1:3]
    assert packed.buf.tobytes() == b"".join(STREAM)  # a copy: nothing points into the chunk


def test_an_empty_chunk_packs_to_nothing() -> None:
    packed = ReceiveChunk(16).packed()
    assert len(packed) == 0
    assert list(packed) == []


def test_decoding_in_place_equals_decoding_bytes() -> None:
    n = len(STREAM)
    exporters, times = [LOCAL] * n, list(range(n))
    expected = FlowDecoder().decode_many(STREAM, exporters, times)
    packed = _chunk(STREAM, [3 * (i % 2) for i in range(n)]).packed()
    got = FlowDecoder().decode_many(packed, exporters, times)
    assert expected.flows.num_rows > 0
    assert expected.rejected
    assert got.flows.equals(expected.flows)
    assert got.rejected == expected.rejected
    assert got.stats == expected.stats


def test_packed_datagrams_refuse_other_arrays() -> None:
    with pytest.raises(ValueError, match="uint8"):
        PackedDatagrams(np.zeros(4, np.int32), np.zeros(2, np.int64))
    with pytest.raises(IndexError):
        PackedDatagrams(np.zeros(4, np.uint8), np.array([0, 4], np.int64))[1]
