"""Packet columns from the Numba decode equal scapy's decode of the same frames."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pcap_craft import eth, scapy_fields, write_pcap
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import (
    ICMPv6DestUnreach,
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
)
from scapy.layers.l2 import ARP, CookedLinux, Dot1AD, Dot1Q, Ether
from scapy.packet import Packet, Raw

from collectors.pcap.reader import read_packets

FIELDS = [
    "vlan",
    "ip_version",
    "src_addr",
    "dst_addr",
    "protocol",
    "tos",
    "ip_len",
    "src_port",
    "dst_port",
    "tcp_flags",
    "icmp_type",
    "icmp_code",
]
T0 = 1_700_000_000_000_000_000


def sample_frames() -> list[Packet]:
    """One frame of each shape the decoder handles."""
    return [
        eth() / IP(src="10.0.0.1", dst="10.0.0.2", tos=0xB8) / TCP(sport=1, dport=2, flags="S"),
        eth() / IP(src="10.0.0.2", dst="10.0.0.1") / TCP(sport=2, dport=1, flags="FPAU"),
        eth() / IP() / TCP(flags=0x1FF),  # every flag including NS
        eth() / IP(src="192.0.2.9", dst="198.51.100.7") / UDP(sport=53, dport=5353) / Raw(b"q"),
        eth() / Dot1Q(vlan=42) / IP(src="1.1.1.1", dst="2.2.2.2") / UDP(sport=9, dport=10),
        eth() / Dot1AD(vlan=7) / Dot1Q(vlan=8) / IP() / ICMP(type=8, code=0),
        eth() / Dot1Q(vlan=4095) / Dot1Q(vlan=3) / IP() / UDP(),
        eth() / IP() / ICMP(type=3, code=13),
        eth() / IP(flags="MF", frag=0) / UDP(sport=7, dport=8) / Raw(b"x" * 30),
        eth() / IP(frag=185, proto=17) / Raw(b"y" * 16),  # later fragment: no ports
        eth() / IP(options=b"\x01\x01\x01\x00") / TCP(sport=80, dport=81, flags="R"),
        eth() / IPv6(src="2001:db8::1", dst="2001:db8::2", tc=0xA1) / TCP(sport=443, dport=999),
        eth()
        / IPv6(src="fe80::1", dst="ff02::1")
        / IPv6ExtHdrHopByHop()
        / IPv6ExtHdrRouting()
        / IPv6ExtHdrDestOpt()
        / UDP(sport=546, dport=547),
        eth() / IPv6() / IPv6ExtHdrFragment(offset=0, m=1) / UDP(sport=3, dport=4) / Raw(b"z"),
        eth() / IPv6() / IPv6ExtHdrFragment(offset=10, nh=17) / Raw(b"w" * 8),
        eth() / IPv6() / ICMPv6EchoRequest(),
        eth() / IPv6() / ICMPv6EchoReply(),
        eth() / Dot1Q(vlan=5) / IPv6() / ICMPv6DestUnreach(code=4),
        eth() / ARP(),
    ]


def decode_and_compare(tmp_path: Path, frames: list[bytes], linktype: int = 1) -> None:
    records = [(T0 + i * 1000, f, len(f)) for i, f in enumerate(frames)]
    path = write_pcap(tmp_path / "k.pcap", records, linktype=linktype)
    rows = read_packets(path).to_pylist()
    assert len(rows) == len(frames)
    for i, (row, frame) in enumerate(zip(rows, frames, strict=True)):
        want = scapy_fields(frame, linktype)
        got = {k: row[k] for k in FIELDS}
        assert got == want, f"frame {i}: {Ether(frame).summary() if linktype == 1 else i}"
        assert row["wire_len"] == len(frame)
        assert row["cap_len"] == len(frame)


def test_sample_frames_equal_scapy(tmp_path: Path) -> None:
    decode_and_compare(tmp_path, [bytes(p) for p in sample_frames()])


def test_fragment_and_non_ip_markers(tmp_path: Path) -> None:
    frames = [bytes(p) for p in sample_frames()]
    rows = read_packets(write_pcap(tmp_path / "f.pcap", [(T0, f, len(f)) for f in frames]))
    frag = rows.column("fragment").to_pylist()
    assert [frag[8], frag[9], frag[13], frag[14]] == [1, 2, 1, 2]
    assert rows.column("ip_version").to_pylist()[-1] == 0  # ARP is counted, not decoded


def test_linux_cooked_and_raw_ip(tmp_path: Path) -> None:
    sll = [
        bytes(CookedLinux(proto=0x0800) / IP(src="9.9.9.9") / UDP(sport=1, dport=2)),
        bytes(CookedLinux(proto=0x86DD) / IPv6() / TCP(sport=5, dport=6, flags="A")),
    ]
    decode_and_compare(tmp_path, sll, linktype=113)
    raw = [bytes(IP(dst="8.8.8.8") / ICMP()), bytes(IPv6() / UDP(sport=11, dport=12))]
    decode_and_compare(tmp_path, raw, linktype=101)


def test_bad_packets_get_a_status(tmp_path: Path) -> None:
    good = bytes(eth() / IP() / UDP())
    frames = [
        good[:10],  # shorter than an Ethernet header
        good[:20],  # Ethernet + 6 bytes of IPv4
        bytes(eth(type=0x0800)) + b"\x65" + bytes(19),  # IPv4 ethertype, version 6
        bytes(eth(type=0x0800)) + b"\x43" + bytes(IP())[1:],  # IHL 3
        good,
    ]
    path = write_pcap(tmp_path / "b.pcap", [(T0, f, len(f)) for f in frames])
    from collectors.pcap.reader import CaptureReader

    batches = list(CaptureReader(path).batches())
    status = batches[0].status.tolist()
    assert status == [2, 3, 4, 5, 0]
    assert sorted(batches[0].rejected) == [0, 1, 2, 3]
    assert batches[0].rejected[0] == good[:10]


def test_snaplen_cut_transport(tmp_path: Path) -> None:
    full = bytes(eth() / IP() / TCP(sport=1000, dport=2000, flags="S"))
    cut = full[: 14 + 20 + 6]  # ports but not flags
    path = write_pcap(tmp_path / "s.pcap", [(T0, cut, len(full))], snaplen=40)
    row = read_packets(path).to_pylist()[0]
    assert (row["src_port"], row["dst_port"], row["tcp_flags"]) == (1000, 2000, 0)
    assert row["l4_truncated"] == 1
    assert (row["ip_len"], row["wire_len"], row["cap_len"]) == (40, len(full), 40)


_v4 = st.ip_addresses(v=4).map(str)
_v6 = st.ip_addresses(v=6).map(str)
_port = st.integers(0, 65535)


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    v6 = draw(st.booleans())
    ip: Packet
    if v6:
        ip = IPv6(src=draw(_v6), dst=draw(_v6), tc=draw(st.integers(0, 255)))
        for ext in draw(
            st.lists(st.sampled_from([IPv6ExtHdrHopByHop, IPv6ExtHdrRouting, IPv6ExtHdrDestOpt]))
        ):
            ip = ip / ext()
    else:
        ip = IP(src=draw(_v4), dst=draw(_v4), tos=draw(st.integers(0, 255)))
    kind = draw(st.sampled_from(["tcp", "udp", "icmp"]))
    if kind == "tcp":
        l4: Packet = TCP(sport=draw(_port), dport=draw(_port), flags=draw(st.integers(0, 0x1FF)))
    elif kind == "udp":
        l4 = UDP(sport=draw(_port), dport=draw(_port))
    elif v6:
        l4 = ICMPv6EchoRequest() if draw(st.booleans()) else ICMPv6DestUnreach(code=3)
    else:
        l4 = ICMP(type=draw(st.integers(0, 255)), code=draw(st.integers(0, 255)))
    pkt: Packet = eth()
    for vid in draw(st.lists(st.integers(0, 4095), max_size=2)):
        pkt = pkt / Dot1Q(vlan=vid)
    payload = Raw(draw(st.binary(max_size=20)))
    return bytes(pkt / ip / l4 / payload)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(frames(), min_size=1, max_size=8))
def test_random_frames_equal_scapy(tmp_path: Path, batch: list[bytes]) -> None:
    decode_and_compare(tmp_path, batch)


@pytest.mark.parametrize("linktype", [1, 113, 101])
def test_empty_frames_are_rejected_not_fatal(tmp_path: Path, linktype: int) -> None:
    path = write_pcap(tmp_path / "e.pcap", [(T0, b"", 60)], linktype=linktype)
    rows = read_packets(path)
    assert rows.num_rows == 1
    assert rows.column("ip_version").to_pylist() == [0]


@pytest.mark.parametrize(
    ("linktype", "v4_header", "v6_header"),
    [
        (276, b"\x08\x00" + bytes(18), b"\x86\xdd" + bytes(18)),  # Linux SLL2
        (0, (2).to_bytes(4, "little"), (10).to_bytes(4, "little")),  # BSD null, host order
        (0, (2).to_bytes(4, "big"), (30).to_bytes(4, "big")),
        (108, (2).to_bytes(4, "big"), (24).to_bytes(4, "big")),  # OpenBSD loop
        (228, b"", None),  # bare IPv4
        (229, None, b""),  # bare IPv6
    ],
)
def test_other_link_types_equal_raw_ip(
    tmp_path: Path, linktype: int, v4_header: bytes | None, v6_header: bytes | None
) -> None:
    packets = []
    if v4_header is not None:
        packets.append((v4_header, bytes(IP(src="3.3.3.3", tos=4) / TCP(sport=7, flags="PA"))))
    if v6_header is not None:
        packets.append((v6_header, bytes(IPv6(src="::3") / IPv6ExtHdrHopByHop() / UDP(dport=9))))
    recs = [(T0, h + ip, len(h) + len(ip)) for h, ip in packets]
    rows = read_packets(write_pcap(tmp_path / "l.pcap", recs, linktype=linktype)).to_pylist()
    for row, (_, ip) in zip(rows, packets, strict=True):
        assert {k: row[k] for k in FIELDS} == scapy_fields(ip, 101)


@pytest.mark.parametrize("variant", ["big_endian", "nanos", "pcapng", "pcapng_be", "gzip"])
def test_every_container_equals_scapy(tmp_path: Path, variant: str) -> None:
    """The same frames in each container decode to scapy's fields."""
    import gzip

    from pcap_craft import pcap_bytes, pcapng_bytes

    frames = [bytes(p) for p in sample_frames()]
    recs = [(T0 + i * 1001, f, len(f)) for i, f in enumerate(frames)]
    if variant.startswith("pcapng"):
        pkts = [(0, t // 1000, f, n) for t, f, n in recs]
        data = pcapng_bytes([(1, None, 0)], pkts, big_endian=variant.endswith("be"))
    elif variant == "gzip":
        data = gzip.compress(pcap_bytes(recs))
    else:
        data = pcap_bytes(recs, **{variant: True})
    path = tmp_path / f"v.{variant}"
    path.write_bytes(data)
    rows = read_packets(path).to_pylist()
    for row, frame in zip(rows, frames, strict=True):
        assert {k: row[k] for k in FIELDS} == scapy_fields(frame)
