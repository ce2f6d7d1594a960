"""IPFIX: variable-length and enterprise elements, reduced size, biflows, times, sampling."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.addresses import address_to_bytes
from collectors.flows.decoder import FlowDecoder
from collectors.netflow.export_synth import (
    data_set,
    encode_ipfix,
    encode_record,
    ipfix_options_template_set,
    ipfix_template_set,
)
from collectors.netflow.template_flows import NTP_EPOCH_OFFSET

EXP = address_to_bytes("2001:db8::7")
T = 1_700_000_000


def msg(sets: list[bytes], seq: int = 0, domain: int = 5, export: int = T) -> bytes:
    return encode_ipfix(sets, domain=domain, sequence=seq, export_time=export)


def rows(batch) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    d = batch.to_pydict()
    for k in ("flow_start", "flow_end"):
        d[k] = batch.column(k).cast("int64").to_pylist()
    return [{k: d[k][i] for k in d} for i in range(batch.num_rows)]


def test_variable_enterprise_and_reduced_size() -> None:
    fields = [
        (27, 16, 0),  # sourceIPv6Address
        (28, 16, 0),
        (1, 4, 0),  # octetDeltaCount, reduced to 4 bytes
        (2, 2, 0),  # packetDeltaCount, reduced to 2 bytes
        (82, 65535, 0),  # interfaceName, variable
        (100, 65535, 4242),  # an enterprise element, variable
        (7, 2, 0),
        (11, 2, 0),
        (4, 1, 0),
        (61, 1, 0),  # flowDirection
        (243, 2, 0),  # dot1qVlanId
        (152, 8, 0),
        (153, 8, 0),
    ]
    lengths = [f[1] for f in fields]
    src, dst = address_to_bytes("2001:db8::1"), address_to_bytes("2001:db8::2")
    rec1 = encode_record(
        lengths,
        [src, dst, 1500, 3, b"eth0", b"z" * 400, 443, 50000, 6, 1, 100, T * 1000, T * 1000 + 5],
    )
    rec2 = encode_record(lengths, [dst, src, 2**32 - 1, 65535, b"", b"", 53, 53, 17, 0, 4095, 1, 2])
    body = rec1 + rec2
    out = FlowDecoder().decode(
        msg([ipfix_template_set([(300, fields)]), data_set(300, body)]), EXP, 0
    )
    assert out.rejected == []
    r1, r2 = rows(out.flows)
    assert (r1["src_addr"], r1["dst_addr"]) == (src, dst)
    assert (r1["bytes"], r1["packets"], r1["src_port"], r1["dst_port"]) == (1500, 3, 443, 50000)
    assert (r1["direction"], r1["vlan"], r1["protocol"]) == (1, 100, 6)
    assert (r1["flow_start"], r1["flow_end"]) == (T * 1_000_000, T * 1_000_000 + 5000)
    assert (r2["bytes"], r2["packets"], r2["direction"], r2["vlan"]) == (2**32 - 1, 65535, 0, 4095)
    assert r1["next_hop"] is None
    assert r1["source_format"] == "ipfix"
    assert r1["observation_domain"] == 5


def test_rfc5103_biflow_yields_the_reverse_flow() -> None:
    fields = [(8, 4, 0), (12, 4, 0), (7, 2, 0), (11, 2, 0), (4, 1, 0), (1, 8, 0), (2, 8, 0)]
    fields += [(1, 8, 29305), (2, 8, 29305), (6, 1, 29305), (10, 4, 0), (14, 4, 0)]
    lengths = [f[1] for f in fields]
    body = encode_record(
        lengths, [0x0A000001, 0x0A000002, 1234, 80, 6, 500, 5, 9000, 7, 0x12, 1, 2]
    )
    body += encode_record(lengths, [0x0A000003, 0x0A000004, 5, 6, 17, 10, 1, 0, 0, 0, 3, 4])
    out = FlowDecoder().decode(
        msg([ipfix_template_set([(301, fields)]), data_set(301, body)]), EXP, 0
    )
    got = rows(out.flows)
    assert len(got) == 3  # two forward, one reverse (the second record has no reverse traffic)
    rev = got[2]
    assert rev["src_addr"][-4:] == bytes([10, 0, 0, 2])
    assert rev["dst_addr"][-4:] == bytes([10, 0, 0, 1])
    assert (rev["src_port"], rev["dst_port"], rev["bytes"], rev["packets"]) == (80, 1234, 9000, 7)
    assert (rev["tcp_flags"], rev["input_if"], rev["output_if"]) == (0x12, 2, 1)


def _ntp(us: int, nanos: bool = False) -> int:
    secs, frac_us = divmod(us, 1_000_000)
    return ((secs + NTP_EPOCH_OFFSET) << 32) | ((frac_us << 32) // 1_000_000 + (1 if nanos else 0))


@pytest.mark.parametrize(
    ("fields", "values", "start", "end"),
    [
        ([(150, 4), (151, 4)], [T - 10, T - 1], (T - 10) * 10**6, (T - 1) * 10**6),
        ([(152, 8), (161, 4)], [T * 1000 - 1500, 700], T * 10**6 - 1_500_000, T * 10**6 - 800_000),
        (
            [(154, 8), (155, 8)],
            [_ntp(T * 10**6 - 250), _ntp(T * 10**6 - 5)],
            T * 10**6 - 250,
            T * 10**6 - 5,
        ),
        (
            [(156, 8), (157, 8)],
            [_ntp(T * 10**6 - 9, True), _ntp(T * 10**6, True)],
            T * 10**6 - 9,
            T * 10**6,
        ),
        ([(158, 4), (159, 4)], [3_000_000, 1_000], T * 10**6 - 3_000_000, T * 10**6 - 1_000),
        (
            [(160, 8), (22, 4), (21, 4)],
            [T * 1000 - 100_000, 40_000, 90_000],
            (T * 1000 - 60_000) * 1000,
            (T * 1000 - 10_000) * 1000,
        ),
        ([(1, 4)], [1], T * 10**6, T * 10**6),
    ],
)
def test_time_elements(fields, values, start, end) -> None:  # type: ignore[no-untyped-def]
    # A byte count, so the record is a flow (no address and no volume would be rejected).
    fields, values = [*fields, (2, 4)], [*values, 1]
    spec = [(ie, ln, 0) for ie, ln in fields]
    body = encode_record([ln for _, ln in fields], values)
    out = FlowDecoder().decode(
        msg([ipfix_template_set([(302, spec)]), data_set(302, body)]), EXP, 0
    )
    (r,) = rows(out.flows)
    assert (r["flow_start"], r["flow_end"]) == (start, end)


@settings(max_examples=60, deadline=None)
@given(
    init=st.integers(0, 1_800_000_000_000),
    first=st.integers(0, 2**32 - 1),
    wraps=st.integers(0, 3),
    age=st.integers(0, 10**7),
)
def test_sysuptime_stamps_are_wrap_safe(init, first, wraps, age):  # type: ignore[no-untyped-def]
    # The flow starts ``first`` ms after system init, after the uint32 uptime counter
    # wrapped ``wraps`` times, and is exported ``age`` ms later (whole seconds only).
    start_ms = init + first + wraps * 2**32
    export_s = (start_ms + age) // 1000
    opt = ipfix_options_template_set(400, [(149, 4, 0)], [(160, 8, 0)])
    opt_data = data_set(400, struct.pack(">IQ", 5, init))
    spec = [(22, 4, 0), (1, 4, 0)]
    body = encode_record([4, 4], [first, 1])
    dg = msg(
        [opt, opt_data, ipfix_template_set([(303, spec)]), data_set(303, body)], export=export_s
    )
    (r,) = rows(FlowDecoder().decode(dg, EXP, 0).flows)
    assert r["flow_start"] == start_ms * 1000


def test_withdrawal_over_udp_is_ignored_and_options_sampler_applies() -> None:
    dec = FlowDecoder()
    opts = ipfix_options_template_set(500, [(302, 4, 0)], [(305, 4, 0), (306, 4, 0)])
    tpl = ipfix_template_set([(501, [(8, 4, 0), (1, 4, 0), (302, 4, 0)])])
    sampled = data_set(500, struct.pack(">III", 77, 1, 99))  # 1 of every 100
    dec.decode(msg([opts, tpl, sampled]), EXP, 0)
    withdrawal = data_set(2, struct.pack(">HH", 501, 0))
    body = encode_record([4, 4, 4], [1, 10, 77]) + encode_record([4, 4, 4], [1, 10, 78])
    out = dec.decode(msg([withdrawal, data_set(501, body)], seq=1), EXP, 0)
    assert out.stats["template_withdrawal_ignored"] == 1
    assert [r["sampling_interval"] for r in rows(out.flows)] == [100, None]  # 78: unknown


def test_padding_after_sets_and_records_is_accepted() -> None:
    tpl = ipfix_template_set([(600, [(8, 4, 0), (1, 2, 0)])])
    dg = msg([tpl, data_set(600, b"\x0a\x00\x00\x01\x00\x07" * 2 + b"\x00\x00\x00")])
    out = FlowDecoder().decode(dg, EXP, 0)
    assert out.rejected == []
    assert [r["bytes"] for r in rows(out.flows)] == [7, 7]


def test_sequence_counts_data_records() -> None:
    dec = FlowDecoder()
    tpl = ipfix_template_set([(700, [(1, 4, 0)])])
    dec.decode(msg([tpl, data_set(700, struct.pack(">III", 1, 2, 3))], seq=0), EXP, 0)
    dec.decode(msg([data_set(700, struct.pack(">II", 1, 2))], seq=3), EXP, 0)
    dec.decode(msg([data_set(700, struct.pack(">I", 1))], seq=10), EXP, 0)
    st_ = dec.sequence.state(EXP, 5, "ipfix")
    assert st_ is not None
    assert (st_.received, st_.missing) == (6, 5)


@pytest.mark.parametrize(
    ("datagram", "reason"),
    [
        (msg([])[:-1] + b"", "truncated"),
        (struct.pack(">HHIII", 10, 12, T, 0, 0), "bad_length"),
        (struct.pack(">HHIII", 10, 400, T, 0, 0) + bytes(20), "truncated"),
        (msg([struct.pack(">HHI", 300, 3, 1)]), "set_too_short"),
        (msg([struct.pack(">HHHHHHHH", 3, 16, 256, 2, 0, 1, 4, 0)]), "bad_options_template"),
        (msg([struct.pack(">HHHHHH", 2, 12, 256, 1, 0x8001, 4)]), "template_overrun"),
        (msg([struct.pack(">HHHHHH", 2, 12, 256, 1, 1, 0)]), "zero_length_template"),
        (msg([struct.pack(">HHHHHH", 2, 12, 100, 1, 1, 4)]), "bad_template_id"),
    ],
)
def test_malformed_messages(datagram: bytes, reason: str) -> None:
    ok = msg([ipfix_template_set([(800, [(1, 4, 0)])]), data_set(800, b"\x00\x00\x00\x01")])
    out = FlowDecoder().decode_many([ok, datagram], [EXP, EXP], np.zeros(2, np.int64))
    assert [(i, r) for i, r, _ in out.rejected] == [(1, reason)]
    assert out.flows.num_rows == 1
