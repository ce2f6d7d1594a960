"""sFlow v5 decoder: hand-built datagrams, scapy as the reference for header parsing, fuzzing."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Raw
from shared_data import CAPTURES

from collectors.addresses import address_from_bytes, address_to_bytes
from collectors.errors import DecodeError
from collectors.schemas import FLOW_SCHEMA
from collectors.sflow.datagram import COUNTER_SCHEMA, SflowDecoder, datagram_sequence

NOW_US = 1_764_000_000_123_456
EXPORTER = address_to_bytes("192.0.2.1")
MAC = "02:00:00:00:00:01"  # explicit MACs: scapy would otherwise resolve them via ARP


def record(fmt: int, body: bytes, enterprise: int = 0) -> bytes:
    return struct.pack(">II", (enterprise << 12) | fmt, len(body)) + body


def raw_header(frame: bytes, *, proto: int = 1, stripped: int = 4) -> bytes:
    pad = b"\0" * (-len(frame) % 4)
    body = struct.pack(">IIII", proto, len(frame) + stripped, stripped, len(frame)) + frame + pad
    return record(1, body)


def flow_sample(
    records: list[bytes],
    *,
    rate: int = 100,
    input_if: int = 1,
    output_if: int = 2,
    expanded: bool = False,
) -> bytes:
    if expanded:
        head = struct.pack(">IIIIIIIIIII", 7, 0, 3, rate, 1000, 0, 0, input_if, 0, output_if, 0)
        head = head[:-4] + struct.pack(">I", len(records))
        fmt = 3
    else:
        head = struct.pack(">IIIIIIII", 7, 3, rate, 1000, 0, input_if, output_if, len(records))
        fmt = 1
    body = head + b"".join(records)
    return struct.pack(">II", fmt, len(body)) + body


def datagram(samples: list[bytes], *, agent: str = "10.0.0.9", seq: int = 5, sub: int = 2) -> bytes:
    ip = ipaddress.ip_address(agent)
    head = struct.pack(">II", 5, 1 if ip.version == 4 else 2) + ip.packed
    return head + struct.pack(">IIII", sub, seq, 1000, len(samples)) + b"".join(samples)


def decode(dgram: bytes) -> tuple:
    return SflowDecoder().decode(dgram, EXPORTER, NOW_US)


def test_tcp_over_vlan_with_extended_switch_and_router() -> None:
    frame = bytes(
        Ether(src=MAC, dst=MAC)
        / Dot1Q(vlan=77)
        / IP(src="10.1.2.3", dst="10.4.5.6", tos=0x20)
        / TCP(sport=1234, dport=443, flags="SA")
        / (b"x" * 100)
    )
    switch = record(1001, struct.pack(">IIII", 88, 0, 99, 0))
    router = record(1002, struct.pack(">I4sII", 1, bytes([192, 0, 2, 254]), 24, 16))
    dgram = datagram([flow_sample([raw_header(frame[:64]), switch, router], rate=512)])
    flows, counters, stats = decode(dgram)
    assert counters is None
    assert flows.schema == FLOW_SCHEMA
    row = flows.to_pylist()[0]
    assert str(address_from_bytes(row["src_addr"])) == "10.1.2.3"
    assert str(address_from_bytes(row["dst_addr"])) == "10.4.5.6"
    assert (row["src_port"], row["dst_port"], row["protocol"]) == (1234, 443, 6)
    assert row["tcp_flags"] == 0x12
    assert row["tos"] == 0x20
    assert row["bytes"] == 20 + 20 + 100  # IP total length, not the frame length
    assert row["packets"] == 1
    assert row["sampling_interval"] == 512
    assert row["vlan"] == 88  # extended switch wins over the 802.1Q tag
    assert str(address_from_bytes(row["next_hop"])) == "192.0.2.254"
    assert (row["input_if"], row["output_if"]) == (1, 2)
    assert row["exporter"] == address_to_bytes("10.0.0.9")
    assert row["observation_domain"] == 2
    assert row["flow_start"] == row["flow_end"]
    assert int(row["flow_start"].timestamp() * 1_000_000) == NOW_US
    assert row["source_format"] == "sflow"
    assert row["direction"] is None
    assert stats["flows"] == stats["flow_samples"] == 1
    assert datagram_sequence(dgram) == (address_to_bytes("10.0.0.9"), 2, 5)


def test_ipv6_udp_expanded_sample_and_icmp() -> None:
    v6 = bytes(
        Ether(src=MAC, dst=MAC)
        / IPv6(src="2001:db8::1", dst="2001:db8::2", tc=7)
        / UDP(sport=53, dport=9)
    )
    icmp = bytes(
        Ether(src=MAC, dst=MAC)
        / Dot1Q(vlan=12)
        / IP(src="1.1.1.1", dst="2.2.2.2")
        / ICMP(type=3, code=1)
    )
    dgram = datagram(
        [
            flow_sample([raw_header(v6)], expanded=True, rate=7, input_if=1000, output_if=2000),
            flow_sample([raw_header(icmp)], output_if=(2 << 30) | 5),  # "multiple" output
        ],
        agent="2001:db8::99",
    )
    flows, _, stats = decode(dgram)
    rows = flows.to_pylist()
    assert str(address_from_bytes(rows[0]["src_addr"])) == "2001:db8::1"
    assert (rows[0]["src_port"], rows[0]["dst_port"], rows[0]["protocol"]) == (53, 9, 17)
    assert rows[0]["tos"] == 7
    assert rows[0]["bytes"] == 48
    assert (rows[0]["input_if"], rows[0]["output_if"], rows[0]["sampling_interval"]) == (
        1000,
        2000,
        7,
    )
    assert rows[0]["exporter"] == address_to_bytes("2001:db8::99")
    assert (rows[1]["protocol"], rows[1]["dst_port"], rows[1]["vlan"]) == (1, 3 * 256 + 1, 12)
    assert rows[1]["output_if"] == 0
    assert stats["flow_samples"] == 2


def test_sampled_ipv4_record_and_unknown_records_counted() -> None:
    ipv4 = record(3, struct.pack(">II4s4sIIII", 600, 17, b"\x0a\0\0\1", b"\x0a\0\0\2", 5, 6, 0, 3))
    vendor = record(1, b"\xde\xad\xbe\xef", enterprise=4413)
    url = record(1005, struct.pack(">II", 1, 0))
    unknown_sample = struct.pack(">II", (9 << 12) | 1, 4) + b"\0\0\0\0"
    flows, _, stats = decode(datagram([flow_sample([vendor, url, ipv4]), unknown_sample]))
    row = flows.to_pylist()[0]
    assert (row["bytes"], row["src_port"], row["dst_port"], row["tos"]) == (600, 5, 6, 3)
    assert stats["skipped_unknown_records"] == 2
    assert stats["skipped_unknown_samples"] == 1


def test_counter_sample_generic_interface() -> None:
    values = [3, 6, 10**9, 1, 3, 123456789012, 1, 2, 3, 4, 5, 6, 98765, 7, 8, 9, 10, 11, 0]
    generic = record(1, struct.pack(">IIQIIQIIIIIIQIIIIII", *values))
    ethernet = record(2, b"\0" * 52)
    body = struct.pack(">III", 41, 3, 2) + generic + ethernet
    sample = struct.pack(">II", 2, len(body)) + body
    flows, counters, stats = decode(datagram([sample]))
    assert flows.num_rows == 0
    assert counters is not None
    assert counters.schema == COUNTER_SCHEMA
    rows = counters.to_pylist()
    assert rows[0]["if_speed"] == 10**9
    assert rows[0]["in_octets"] == 123456789012
    assert rows[0]["out_errors"] == 11
    assert rows[0]["sample_sequence"] == 41
    assert rows[1]["format"] == 2
    assert rows[1]["if_index"] is None
    assert len(rows[1]["raw"]) == 52
    assert stats["counter_records"] == 2


def test_sample_without_packet_record_keeps_volume_row() -> None:
    eth = record(2, struct.pack(">I8s8sI", 1500, b"\0" * 8, b"\0" * 8, 0x0800))
    flows, _, stats = decode(datagram([flow_sample([eth], rate=1000)]))
    row = flows.to_pylist()[0]
    assert row["src_addr"] == bytes(16)
    assert row["bytes"] == 1500
    assert stats["unparsed_headers"] == 1


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: d[:6], "truncated"),
        (lambda d: struct.pack(">I", 4) + d[4:], "unknown_version"),
        (lambda d: d[:4] + struct.pack(">I", 7) + d[8:], "bad_address_type"),
        (lambda d: d[:-3], "length_overrun"),
        (lambda d: d[:24] + struct.pack(">I", 9) + d[28:], "truncated"),
    ],
)
def test_malformed_datagrams_raise_decode_error(mutate, reason: str) -> None:  # type: ignore[no-untyped-def]
    frame = bytes(Ether(src=MAC, dst=MAC) / IP() / UDP())
    good = datagram([flow_sample([raw_header(frame)])])
    with pytest.raises(DecodeError) as info:
        decode(mutate(good))
    assert info.value.reason == reason


# --- scapy as the reference for the sampled-header parser ----------------------------------

ipv4s = st.ip_addresses(v=4).map(str)
ipv6s = st.ip_addresses(v=6).map(str)
ports = st.integers(0, 65535)


@st.composite
def packets(draw: st.DrawFn) -> Ether:
    v6 = draw(st.booleans())
    ip = (
        IPv6(src=draw(ipv6s), dst=draw(ipv6s), tc=draw(st.integers(0, 255)))
        if v6
        else IP(src=draw(ipv4s), dst=draw(ipv4s), tos=draw(st.integers(0, 255)))
    )
    kind = draw(st.sampled_from(["tcp", "udp", "icmp"]))
    if kind == "tcp":
        l4 = TCP(sport=draw(ports), dport=draw(ports), flags=draw(st.integers(0, 255)))
    elif kind == "udp":
        l4 = UDP(sport=draw(ports), dport=draw(ports))
    elif v6:  # ICMPv6 header start: type, code, checksum
        ip.nh = 58
        l4 = Raw(bytes([draw(st.integers(0, 255)), draw(st.integers(0, 255)), 0, 0]))
    else:
        l4 = ICMP(type=draw(st.integers(0, 255)), code=draw(st.integers(0, 255)))
    eth = Ether(src=MAC, dst=MAC)
    vlan = draw(st.one_of(st.none(), st.integers(1, 4094)))
    if vlan is not None:
        eth = eth / Dot1Q(vlan=vlan)
    return eth / ip / l4 / (b"p" * draw(st.integers(0, 300)))


@settings(max_examples=200, deadline=None)
@given(pkt=packets(), snap=st.integers(80, 256))
def test_header_parse_matches_scapy(pkt: Ether, snap: int) -> None:
    frame = bytes(pkt)
    flows, _, _ = decode(datagram([flow_sample([raw_header(frame[:snap])])]))
    row = flows.to_pylist()[0]
    parsed = Ether(frame)
    ip = parsed[IP] if IP in parsed else parsed[IPv6]
    assert row["src_addr"] == address_to_bytes(ip.src)
    assert row["dst_addr"] == address_to_bytes(ip.dst)
    assert row["vlan"] == (parsed[Dot1Q].vlan if Dot1Q in parsed else 0)
    if IP in parsed:
        assert (row["tos"], row["bytes"]) == (ip.tos, ip.len)
    else:
        assert (row["tos"], row["bytes"]) == (ip.tc, ip.plen + 40)
    if TCP in parsed:
        assert (row["protocol"], row["src_port"], row["dst_port"]) == (6, ip.sport, ip.dport)
        assert row["tcp_flags"] == int(parsed[TCP].flags)
    elif UDP in parsed:
        assert (row["protocol"], row["src_port"], row["dst_port"]) == (17, ip.sport, ip.dport)
    elif ICMP in parsed:
        icmp = parsed[ICMP]
        assert (row["protocol"], row["dst_port"]) == (1, icmp.type * 256 + icmp.code)
    else:
        icmp6 = bytes(parsed[IPv6].payload)
        assert (row["protocol"], row["dst_port"]) == (58, icmp6[0] * 256 + icmp6[1])


# --- fuzzing: the only outcomes are batches or DecodeError -----------------------------------


def _seeds() -> list[bytes]:
    seeds = []
    for path in sorted((CAPTURES / "goflow2").glob("sflow*.bin")):
        seeds.append(path.read_bytes())
    for path in sorted((CAPTURES / "gopacket").glob("*.bin")):
        data = path.read_bytes()
        seeds.append(
            data[42:]
            if path.name in {"gopacket_SFlowTestPacket1.bin", "gopacket_SFlowTestPacket2.bin"}
            else data
        )
    return seeds


SEEDS = _seeds()
REASONS = {"truncated", "unknown_version", "bad_address_type", "length_overrun"}


def _check(data: bytes) -> None:
    try:
        flows, counters, stats = decode(data)
    except DecodeError as exc:
        reason = exc.reason
        assert reason in REASONS
        return
    assert flows.schema == FLOW_SCHEMA
    assert flows.num_rows == stats["flows"]
    if counters is not None:
        assert counters.schema == COUNTER_SCHEMA


@settings(max_examples=6000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.sampled_from(SEEDS),
    edits=st.lists(st.tuples(st.integers(0, 4095), st.integers(0, 255)), max_size=8),
    cut=st.integers(0, 4096),
)
def test_fuzz_mutated_captures(seed: bytes, edits: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(seed)
    for pos, value in edits:
        data[pos % len(data)] = value
    _check(bytes(data[: max(cut, 0)] if cut < len(data) else data))


@settings(max_examples=4000, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=300),
        st.binary(max_size=300).map(lambda b: struct.pack(">II", 5, 1) + b),
    )
)
def test_fuzz_random_datagrams(data: bytes) -> None:
    _check(data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    picks=st.lists(
        st.tuples(st.sampled_from(SEEDS), st.integers(0, 4096), st.integers(0, 255)), max_size=12
    )
)
def test_decode_many_equals_decode_one_by_one(picks: list[tuple[bytes, int, int]]) -> None:
    datagrams = []
    for seed, pos, value in picks:
        data = bytearray(seed)
        if pos < 2 * len(data):  # about half the datagrams mutated, some of them broken
            data[pos % len(data)] = value
        datagrams.append(bytes(data))
    times = [NOW_US + i for i in range(len(datagrams))]
    dec = SflowDecoder()
    flows, counters, stats, rejected = dec.decode_many(
        datagrams, [EXPORTER] * len(datagrams), times
    )
    want_flows, want_counters, want_rejected = [], [], []
    want_stats: dict[str, int] = {}
    for i, (d, t) in enumerate(zip(datagrams, times, strict=True)):
        try:
            f, c, st_ = dec.decode(d, EXPORTER, t)
        except DecodeError as exc:
            want_rejected.append((i, exc.reason))
            continue
        want_flows += f.to_pylist()
        want_counters += c.to_pylist() if c is not None else []
        for k, v in st_.items():
            want_stats[k] = want_stats.get(k, 0) + v
    assert flows.to_pylist() == want_flows
    assert (counters.to_pylist() if counters is not None else []) == want_counters
    assert [(i, r) for i, r, _ in rejected] == want_rejected
    assert {k: v for k, v in stats.items() if v} == {k: v for k, v in want_stats.items() if v}


@pytest.mark.slow
@settings(max_examples=30000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.sampled_from(SEEDS),
    edits=st.lists(st.tuples(st.integers(0, 4095), st.integers(0, 255)), max_size=16),
)
def test_fuzz_mutated_captures_slow(seed: bytes, edits: list[tuple[int, int]]) -> None:
    data = bytearray(seed)
    for pos, value in edits:
        data[pos % len(data)] = value
    _check(bytes(data))
