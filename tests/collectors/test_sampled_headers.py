"""Sampled packet headers: the Numba parser against its reference twin, crafted frames, tshark."""

from __future__ import annotations

import ipaddress
import shutil
import struct
import subprocess
from pathlib import Path

import dpkt
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sampled_header_reference import reference_parse

from collectors.addresses import address_from_bytes
from collectors.sampled_headers import (
    HEADER_ETHERNET,
    HEADER_IP,
    HEADER_IPV4,
    HEADER_IPV6,
    HEADER_MPLS,
    INFO_DECAPSULATED,
    INFO_DEPTH,
    INFO_DST_PORT,
    INFO_IP_LENGTH,
    INFO_IP_VERSION,
    INFO_PARSED,
    INFO_PROTOCOL,
    INFO_SRC_PORT,
    INFO_TCP_FLAGS,
    INFO_TOS,
    INFO_VLAN,
    MAX_LABELS,
    HeaderFields,
    parse_header,
)

V6_SRC = bytes.fromhex("20010db8000000000000000000000001")
V6_DST = bytes.fromhex("20010db8000000000000000000000002")
_INFO = {
    "parsed": INFO_PARSED,
    "ip_version": INFO_IP_VERSION,
    "protocol": INFO_PROTOCOL,
    "tos": INFO_TOS,
    "src_port": INFO_SRC_PORT,
    "dst_port": INFO_DST_PORT,
    "tcp_flags": INFO_TCP_FLAGS,
    "ip_length": INFO_IP_LENGTH,
    "vlan": INFO_VLAN,
    "depth": INFO_DEPTH,
    "decapsulated": INFO_DECAPSULATED,
}


# -- frame builders ---------------------------------------------------------------------------
def eth(ethertype: int, payload: bytes, tags: tuple[tuple[int, int], ...] = ()) -> bytes:
    """Ethernet II; ``tags`` are (TPID, VLAN id), outer first."""
    out = bytes.fromhex("020000000001020000000002")
    types = [t for t, _ in tags] + [ethertype]
    out += struct.pack(">H", types[0])
    for k, (_, vid) in enumerate(tags):
        out += struct.pack(">HH", vid, types[k + 1])
    return out + payload


def ipv4(proto: int, payload: bytes, src: str = "10.0.0.1", dst: str = "10.0.0.2") -> bytes:
    s, d = bytes(map(int, src.split("."))), bytes(map(int, dst.split(".")))
    return (
        struct.pack(">BBHHHBBH4s4s", 0x45, 0x28, 20 + len(payload), 1, 0, 64, proto, 0, s, d)
        + payload
    )


def ipv6(nxt: int, payload: bytes, src: bytes = V6_SRC, dst: bytes = V6_DST) -> bytes:
    first = (6 << 28) | (0xB8 << 20) | 0x12345
    return struct.pack(">IHBB", first, len(payload), nxt, 64) + src + dst + payload


def tcp(sport: int, dport: int, flags: int = 0x18) -> bytes:
    return struct.pack(">HHIIBBHHH", sport, dport, 1, 0, 0x50, flags, 1000, 0, 0)


def udp(sport: int, dport: int, payload: bytes = b"") -> bytes:
    return struct.pack(">HHHH", sport, dport, 8 + len(payload), 0) + payload


def mpls(labels: list[int], payload: bytes) -> bytes:
    entries = [(lab << 12) | ((k == len(labels) - 1) << 8) | 64 for k, lab in enumerate(labels)]
    return b"".join(struct.pack(">I", e) for e in entries) + payload


def srh(nxt: int, segments: list[bytes]) -> bytes:
    """An SRv6 segment routing header (routing type 4)."""
    n = len(segments)
    return struct.pack(">BBBBBBH", nxt, 2 * n, 4, n - 1, n - 1, 0, 0) + b"".join(segments)


def vxlan(vni: int, inner: bytes) -> bytes:
    return struct.pack(">II", 0x08000000, vni << 8) + inner


INNER = eth(0x0800, ipv4(6, tcp(8080, 55555), "192.168.1.1", "192.168.1.2"))
FRAMES: dict[str, bytes] = {
    "vlan_v4_tcp": eth(0x0800, ipv4(6, tcp(443, 50000, 0x12)), ((0x8100, 100),)),
    "qinq_v6_udp": eth(0x86DD, ipv6(17, udp(53, 40000, b"q" * 20)), ((0x88A8, 200), (0x8100, 300))),
    "mpls_v4": eth(0x8847, mpls([16001, 24005], ipv4(17, udp(1000, 2000)))),
    "mpls_cw": eth(0x8847, mpls([16001, 24005], bytes(4) + eth(0x0800, ipv4(6, tcp(22, 6000))))),
    "srv6": eth(0x86DD, ipv6(43, srh(4, [b"\xfc" + bytes(15)]) + ipv4(6, tcp(80, 1234)))),
    "vxlan": eth(0x0800, ipv4(17, udp(49152, 4789, vxlan(5000, INNER)))),
    "icmp": eth(0x0800, ipv4(1, b"\x08\x00\x00\x00\x00\x01\x00\x01")),
}  # fmt: skip


def kernel(kind: int, data: bytes, decap: bool = False) -> dict[str, object]:
    """The kernel's row for one header, in the reference's shape."""
    one = np.zeros(1, np.int64)
    got = HeaderFields.parse(np.frombuffer(data, np.uint8), one, one + len(data), one + kind, decap)
    row: dict[str, object] = {k: int(got.info[0, c]) for k, c in _INFO.items()}
    row["src"], row["dst"] = got.addr[0, 0].tobytes(), got.addr[0, 1].tobytes()
    row["labels"] = got.labels[0, : min(int(got.info[0, INFO_DEPTH]), MAX_LABELS)].tolist()
    return row


# -- known answers ----------------------------------------------------------------------------
def test_crafted_frames_known_answers() -> None:
    v = parse_header(HEADER_ETHERNET, FRAMES["vlan_v4_tcp"])
    assert (str(address_from_bytes(v.src_addr)), v.src_port, v.dst_port) == ("10.0.0.1", 443, 50000)
    assert (v.protocol, v.tcp_flags, v.tos, v.vlan, v.ip_length) == (6, 0x12, 0x28, 100, 40)
    q = parse_header(HEADER_ETHERNET, FRAMES["qinq_v6_udp"])
    assert (q.src_addr, q.dst_addr, q.protocol, q.src_port, q.vlan) == (V6_SRC, V6_DST, 17, 53, 200)
    assert (q.tos, q.ip_length) == (0xB8, 40 + 28)
    m = parse_header(HEADER_ETHERNET, FRAMES["mpls_v4"])
    assert (m.mpls_labels, m.protocol, m.src_port, m.dst_port) == ((16001, 24005), 17, 1000, 2000)
    cw = parse_header(HEADER_ETHERNET, FRAMES["mpls_cw"])
    assert (cw.mpls_labels, cw.protocol, cw.src_port, cw.dst_port) == ((16001, 24005), 6, 22, 6000)
    s = parse_header(HEADER_ETHERNET, FRAMES["srv6"])  # outer header kept: source -> SID
    assert (s.src_addr, s.dst_addr, s.protocol, s.src_port) == (V6_SRC, V6_DST, 4, 0)
    icmp = parse_header(HEADER_ETHERNET, FRAMES["icmp"])
    assert (icmp.protocol, icmp.dst_port) == (1, 0x0800)
    # A header that starts at MPLS (sFlow header_protocol 13) or at IP (IPFIX section 313).
    assert parse_header(HEADER_MPLS, FRAMES["mpls_v4"][14:]).src_port == 1000
    assert parse_header(HEADER_IP, FRAMES["qinq_v6_udp"][22:]).src_addr == V6_SRC
    assert not parse_header(HEADER_ETHERNET, FRAMES["vlan_v4_tcp"][:30]).parsed  # cut short


def test_vxlan_is_decapsulated_only_on_request() -> None:
    outer = parse_header(HEADER_ETHERNET, FRAMES["vxlan"])
    assert (str(address_from_bytes(outer.src_addr)), outer.protocol, outer.dst_port) == (
        "10.0.0.1",
        17,
        4789,
    )
    inner = parse_header(HEADER_ETHERNET, FRAMES["vxlan"], decapsulate_vxlan=True)
    assert (str(address_from_bytes(inner.src_addr)), str(address_from_bytes(inner.dst_addr))) == (
        "192.168.1.1",
        "192.168.1.2",
    )
    assert (inner.protocol, inner.src_port, inner.dst_port) == (6, 8080, 55555)
    assert inner.ip_length == outer.ip_length == len(FRAMES["vxlan"]) - 14  # the wire's volume
    # A cut inner frame keeps the outer key rather than losing the sample.
    cut = parse_header(HEADER_ETHERNET, FRAMES["vxlan"][:60], decapsulate_vxlan=True)
    assert (cut.parsed, cut.dst_port) == (True, 4789)


# -- the kernel against its reference twin ------------------------------------------------------
layer = st.sampled_from(["v4", "v6", "mpls", "mpls_cw", "vlan", "srv6", "vxlan", "frag6"])


@st.composite
def stacked_frames(draw: st.DrawFn) -> bytes:
    """Frames of random layer stacks, then cut at a random length."""
    proto = draw(st.sampled_from([6, 17, 1, 58, 132, 47]))
    sport, dport = draw(st.integers(0, 65535)), draw(st.sampled_from([4789, 53, 443]))
    l4 = tcp(sport, dport, draw(st.integers(0, 255))) if proto == 6 else udp(sport, dport)
    inner = ipv4(proto, l4) if draw(st.booleans()) else ipv6(proto, l4)
    frame = eth(0x0800 if inner[0] >> 4 == 4 else 0x86DD, inner)
    for kind in draw(st.lists(layer, max_size=4)):
        payload, et = frame[14:], struct.unpack(">H", frame[12:14])[0]
        if kind == "vlan":
            frame = eth(et, payload, ((0x8100, draw(st.integers(0, 4095))),))
        elif kind == "mpls" and et in (0x0800, 0x86DD):
            frame = eth(
                0x8847, mpls(draw(st.lists(st.integers(0, 2**20 - 1), min_size=1)), payload)
            )
        elif kind == "mpls_cw":
            frame = eth(0x8847, mpls([draw(st.integers(16, 2**20 - 1))], bytes(4) + frame))
        elif kind == "v4":
            frame = eth(0x0800, ipv4(4 if et == 0x0800 else 41, payload))
        elif kind == "srv6" and et in (0x0800, 0x86DD):
            frame = eth(0x86DD, ipv6(43, srh(4 if et == 0x0800 else 41, [bytes(16)]) + payload))
        elif kind == "frag6":
            frame = eth(
                0x86DD, ipv6(44, struct.pack(">BBHI", 4, 0, draw(st.integers(0, 9)), 1) + payload)
            )
        elif kind == "vxlan":
            frame = eth(0x0800, ipv4(17, udp(1, 4789, vxlan(7, frame))))
    return frame[: draw(st.integers(0, len(frame)))]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(frame=stacked_frames(), decap=st.booleans())
def test_kernel_matches_reference_on_layer_stacks(frame: bytes, decap: bool) -> None:
    assert kernel(HEADER_ETHERNET, frame, decap) == reference_parse(HEADER_ETHERNET, frame, decap)


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from([HEADER_ETHERNET, HEADER_IP, HEADER_IPV4, HEADER_IPV6, HEADER_MPLS, 99]),
    data=st.binary(max_size=200),
    decap=st.booleans(),
)
def test_kernel_matches_reference_on_any_bytes(kind: int, data: bytes, decap: bool) -> None:
    assert kernel(kind, data, decap) == reference_parse(kind, data, decap)


def test_many_headers_in_one_call_equal_one_by_one() -> None:
    frames = list(FRAMES.values())
    buf = np.frombuffer(b"".join(frames), np.uint8)
    lengths = np.array([len(f) for f in frames], np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    got = HeaderFields.parse(buf, offsets, lengths, np.full(len(frames), HEADER_ETHERNET), True)
    for i, f in enumerate(frames):
        one = kernel(HEADER_ETHERNET, f, True)
        assert got.addr[i, 0].tobytes() == one["src"]
        assert [int(got.info[i, c]) for c in _INFO.values()] == [one[k] for k in _INFO]


# -- tshark as the oracle -------------------------------------------------------------------------
def _tshark(frames: list[bytes], tmp: Path, fields: list[str]) -> list[dict[str, list[str]]]:
    path = tmp / "frames.pcap"
    with open(path, "wb") as fh:
        writer = dpkt.pcap.Writer(fh)
        for i, f in enumerate(frames):
            writer.writepkt(f, ts=1_700_000_000 + i)
    cmd = ["tshark", "-r", str(path), "-d", "mpls.label==24005,pwethcw", "-T", "fields"]
    cmd += ["-E", "occurrence=a", "-E", "aggregator=,"] + [a for f in fields for a in ("-e", f)]
    out = subprocess.run(cmd, capture_output=True, check=True, timeout=60, text=True).stdout
    return [
        {f: (v.split(",") if v else []) for f, v in zip(fields, line.split("\t"), strict=True)}
        for line in out.splitlines()
    ]


@pytest.mark.peer
@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_crafted_frames_equal_tshark(tmp_path: Path) -> None:
    fields = ["ieee8021ad.id", "vlan.id", "mpls.label", "ip.src", "ip.dst", "ipv6.src"]
    fields += ["ipv6.dst", "ip.proto", "ip.len", "ipv6.plen", "tcp.srcport", "tcp.dstport"]
    fields += ["udp.srcport", "udp.dstport", "tcp.flags"]
    names = list(FRAMES)
    theirs = _tshark(list(FRAMES.values()), tmp_path, fields)
    assert len(theirs) == len(names)
    for name, t in zip(names, theirs, strict=True):
        for decap in (False, True):
            ours = parse_header(HEADER_ETHERNET, FRAMES[name], decap)
            # tshark dissects every layer; ours is the outer IP header, or with
            # decapsulation the VXLAN packet's inner one (the last in tshark's list).
            pick = -1 if decap and name == "vxlan" else 0
            vlans = t["ieee8021ad.id"] + t["vlan.id"]
            assert ours.vlan == (int(vlans[0]) if vlans else 0), name
            assert list(ours.mpls_labels) == [int(x) for x in t["mpls.label"]], name
            if t["ipv6.src"] and (not t["ip.src"] or name == "srv6"):
                assert (ours.src_addr, ours.dst_addr) == (
                    address_from_bytes_text(t["ipv6.src"][0]),
                    address_from_bytes_text(t["ipv6.dst"][0]),
                ), name
                assert ours.ip_length == int(t["ipv6.plen"][0]) + 40, name
                if name == "srv6":
                    continue  # tshark goes on into the SRv6 payload; we keep the outer header
            else:
                src = str(address_from_bytes(ours.src_addr))
                assert (src, ours.protocol) == (t["ip.src"][pick], int(t["ip.proto"][pick])), name
                assert ours.ip_length == int(t["ip.len"][0]), name  # always the outer length
            ports = t["tcp.srcport"] + t["tcp.dstport"]
            if ours.protocol == 17:
                ports = [t["udp.srcport"][pick], t["udp.dstport"][pick]]
            elif ours.protocol == 6:
                ports = [t["tcp.srcport"][pick], t["tcp.dstport"][pick]]
                assert ours.tcp_flags == int(t["tcp.flags"][pick], 16), name
            if ports:
                assert [ours.src_port, ours.dst_port] == [int(p) for p in ports], name


def address_from_bytes_text(text: str) -> bytes:
    return ipaddress.IPv6Address(text).packed
