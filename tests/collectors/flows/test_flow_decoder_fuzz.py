"""Fuzzing every flow decoder: random and mutated datagrams give flows or counted rejections.

Mutations start from the captures in tests/data/captures so they reach deep into
template, options and data parsing. The default run (``make test``) does ``FUZZ_EXAMPLES``
(10,000) per decoder, as the flow-collector issue asks; ``-m slow`` runs ``SLOW_EXAMPLES``
(20,000) per decoder. Both can be set
with the environment variables FLOW_FUZZ_EXAMPLES and FLOW_FUZZ_SLOW_EXAMPLES.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shared_data import CAPTURES

from collectors.flows.datagram_files import iter_datagrams_from_pcap
from collectors.flows.decoder import DecodeOutcome, FlowDecoder
from collectors.netflow.export_synth import synth_template_stream, synth_v5_datagrams
from collectors.schemas import FLOW_SCHEMA

EXP = b"\x00" * 10 + b"\xff\xff" + bytes([203, 0, 113, 5])
FUZZ_EXAMPLES = int(os.environ.get("FLOW_FUZZ_EXAMPLES", "10000"))
SLOW_EXAMPLES = int(os.environ.get("FLOW_FUZZ_SLOW_EXAMPLES", "20000"))
KNOWN_REASONS = {
    "truncated",
    "unsupported_version",
    "bad_length",
    "set_too_short",
    "set_overrun",
    "bad_template_id",
    "zero_length_template",
    "template_overrun",
    "bad_options_template",
    "empty_record",  # a record with no address and no volume (the rest are kept)
}


def _read(*names: str) -> list[bytes]:
    """The captures' bytes; a missing file fails collection (they ship with the repository)."""
    return [(CAPTURES / name).read_bytes() for name in names]


def _pcap(name: str) -> list[bytes]:
    """The export datagrams of a pcap (the generated ones carry v9 options templates)."""
    return [payload for payload, _, _ in iter_datagrams_from_pcap(CAPTURES / name)]


SOFT = "python-netflow-v9-softflowd/"
SEEDS: dict[str, list[bytes]] = {
    "v5": _read(SOFT + "packet_v5.bin", SOFT + "packet_v1.bin", "goflow2/netflowlegacy_data.bin")
    + synth_v5_datagrams(2, 5),
    "v9": _read(
        SOFT + "packet_v9_template.bin",
        SOFT + "packets_v9_0.bin",
        SOFT + "packet_v9_template_mixed.bin",
        SOFT + "packet_v9_with_zeros.bin",
        "goflow2/netflow_template.bin",
        "goflow2/netflow_data.bin",
    )
    + _pcap("generated/netflowv9.pcap")
    + synth_template_stream("netflow_v9", 2, 3),
    "ipfix": _read(
        SOFT + "packet_ipfix_template.bin",
        SOFT + "packet_ipfix.bin",
        SOFT + "packet_ipfix_padding.bin",
        SOFT + "packet_ipfix_template_ether.bin",
    )
    + _pcap("generated/ipfix.pcap")
    + synth_template_stream("ipfix", 2, 3),
}
VERSION_PREFIX = {
    "v5": (b"\x00\x05", b"\x00\x01", b"\x00\x07"),
    "v9": (b"\x00\x09",),
    "ipfix": (b"\x00\x0a",),
}


def _primed(kind: str) -> FlowDecoder:
    """A decoder that has seen the seed templates, so mutated data reaches the kernels."""
    dec = FlowDecoder(max_templates_per_exporter=64, max_pending_bytes_per_exporter=1 << 14)
    dec.decode_many(SEEDS[kind], [EXP] * len(SEEDS[kind]), np.zeros(len(SEEDS[kind]), np.int64))
    return dec


DECODERS = {kind: _primed(kind) for kind in SEEDS}


@st.composite
def mutated(draw: st.DrawFn, kind: str) -> bytes:
    if draw(st.booleans()) or not SEEDS[kind]:
        prefix = draw(st.sampled_from(VERSION_PREFIX[kind]))
        return prefix + draw(st.binary(max_size=600))
    data = bytearray(draw(st.sampled_from(SEEDS[kind])))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.integers(0, 3))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == 0 and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == 1:
            del data[draw(st.integers(0, len(data))) :]
        elif op == 2:
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif data:
            data[pos : pos + 2] = draw(st.integers(0, 0xFFFF)).to_bytes(2, "big")
    return bytes(data)


def _check(out: DecodeOutcome, batch: list[bytes]) -> None:
    n = len(batch)
    assert out.flows.schema.equals(FLOW_SCHEMA, check_metadata=True)
    assert out.stats["datagrams"] == n
    assert out.stats["rejected"] == len(out.rejected)
    for index, reason, message in out.rejected:
        assert 0 <= index < n
        if batch[index][:4] == b"\x00\x00\x00\x05":
            continue  # mutated into sFlow v5: the sFlow decoder's own reason codes
        assert reason in KNOWN_REASONS, (reason, message)
        assert out.stats[f"malformed:{reason}"] >= 1
    assert out.flows.num_rows == out.stats["flows"]


def _fuzz(kind: str, examples: int) -> None:
    dec = DECODERS[kind]

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(batch=st.lists(mutated(kind), min_size=1, max_size=4))
    def run(batch: list[bytes]) -> None:
        out = dec.decode_many(batch, [EXP] * len(batch), np.zeros(len(batch), np.int64))
        _check(out, batch)

    run()


@pytest.mark.parametrize("kind", sorted(SEEDS))
def test_fuzz(kind: str) -> None:
    _fuzz(kind, FUZZ_EXAMPLES)


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(SEEDS))
def test_fuzz_slow(kind: str) -> None:
    _fuzz(kind, SLOW_EXAMPLES)


@settings(max_examples=FUZZ_EXAMPLES // 4, deadline=None, database=None)
@given(batch=st.lists(st.binary(max_size=200), min_size=1, max_size=6))
def test_fuzz_dispatcher_with_garbage(batch: list[bytes]) -> None:
    out = DECODERS["v9"].decode_many(batch, [EXP] * len(batch), np.zeros(len(batch), np.int64))
    assert out.stats["datagrams"] == len(batch)
    # sFlow-looking garbage goes to the sFlow decoder (another module): it must not escape.
    for _, reason, message in out.rejected:
        assert reason != "internal_error" or message.startswith("udp: datagram"), message


def test_state_after_fuzzing_still_decodes() -> None:
    dec = DECODERS["ipfix"]
    blob = dec.save_state()
    again = FlowDecoder.load_state(blob)
    good = synth_template_stream("ipfix", 1, 5, template_id=900)
    out = again.decode_many(good, [EXP] * len(good), [0] * len(good))
    assert out.flows.num_rows == 5
