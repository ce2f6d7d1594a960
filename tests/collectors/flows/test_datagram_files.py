"""Export datagrams from captures: the project's reader against dpkt, the test-only peer.

``iter_datagrams_from_pcap`` reads with :class:`collectors.pcap.reader.CaptureReader` (no
dpkt at run time); dpkt reads the same files here as the reference: random mixes of
IPv4/IPv6 UDP (VLAN-tagged or not, whole, first and later fragments, padded runts), TCP
and non-IP frames, as pcap or pcapng, plain or gzip-compressed.
"""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import dpkt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shared_data import CAPTURES

from collectors.dataset import read_dataset
from collectors.errors import IngestError
from collectors.flows.datagram_files import iter_datagrams_from_pcap
from collectors.flows.ingest import detect_flow_file, ingest_flow_files
from collectors.schemas import FLOW_SCHEMA
from collectors.workspace import WorkspacePaths

V4_PREFIX = b"\x00" * 10 + b"\xff\xff"
T0 = 1_700_000_000


def dpkt_datagrams(path: Path) -> list[tuple[bytes, bytes, int]]:
    """The reference: (payload, sender, time us) of every UDP packet dpkt decodes."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    fh = io.BytesIO(raw)
    reader: dpkt.pcap.Reader | dpkt.pcapng.Reader
    reader = dpkt.pcapng.Reader(fh) if raw[:4] == b"\n\r\r\n" else dpkt.pcap.Reader(fh)
    link = reader.datalink()
    out = []
    for ts, frame in reader:
        if link == dpkt.pcap.DLT_EN10MB:
            ip = dpkt.ethernet.Ethernet(frame).data
        elif link == dpkt.pcap.DLT_LINUX_SLL:
            ip = dpkt.sll.SLL(frame).data
        else:
            ip = dpkt.ip.IP(frame) if frame[0] >> 4 == 4 else dpkt.ip6.IP6(frame)
        if isinstance(ip, dpkt.ip.IP) and not ip.offset and isinstance(ip.data, dpkt.udp.UDP):
            out.append((bytes(ip.data.data), V4_PREFIX + ip.src, round(ts * 1_000_000)))
        elif isinstance(ip, dpkt.ip6.IP6) and isinstance(ip.data, dpkt.udp.UDP):
            out.append((bytes(ip.data.data), ip.src, round(ts * 1_000_000)))
    return out


def udp4(src: bytes, payload: bytes, frag: str) -> bytes:
    """An IPv4 UDP packet; ``first`` keeps half the payload (MF set), ``later`` an offset."""
    ulen = 8 + len(payload)
    udp = dpkt.udp.UDP(sport=40000, dport=2055, ulen=ulen, data=payload)
    body = bytes(udp)
    if frag == "first":
        body = body[: 8 + len(payload) // 2]
    ip = dpkt.ip.IP(src=src, dst=bytes([192, 0, 2, 1]), p=17, data=body)
    ip.len = 20 + len(body)
    ip.mf = int(frag == "first")
    ip.offset = 64 if frag == "later" else 0
    return bytes(ip)


def udp6(src: bytes, payload: bytes) -> bytes:
    udp = dpkt.udp.UDP(sport=40000, dport=4739, ulen=8 + len(payload), data=payload)
    ip6 = dpkt.ip6.IP6(src=src, dst=bytes(15) + b"\x01", nxt=17, hlim=64)
    ip6.data, ip6.plen = udp, 8 + len(payload)
    return bytes(ip6)


def tcp4(src: bytes) -> bytes:
    return bytes(dpkt.ip.IP(src=src, dst=bytes(4), p=6, data=dpkt.tcp.TCP()))


packets = st.one_of(
    st.tuples(
        st.just("v4"),
        st.binary(min_size=4, max_size=4),
        st.binary(max_size=300),
        st.sampled_from(["none", "none", "first", "later"]),
        st.booleans(),
    ),
    st.tuples(
        st.just("v6"),
        st.binary(min_size=16, max_size=16),
        st.binary(max_size=300),
        st.just("none"),
        st.booleans(),
    ),
    st.tuples(
        st.just("tcp"),
        st.binary(min_size=4, max_size=4),
        st.just(b""),
        st.just("none"),
        st.booleans(),
    ),
    st.tuples(st.just("arp"), st.just(b""), st.just(b""), st.just("none"), st.booleans()),
)


def frame(link: int, kind: str, src: bytes, payload: bytes, frag: str, vlan: bool) -> bytes:
    ip = {
        "v4": lambda: udp4(src, payload, frag),
        "v6": lambda: udp6(src, payload),
        "tcp": lambda: tcp4(src),
        "arp": lambda: b"\x00\x01\x08\x00\x06\x04\x00\x01" + bytes(20),
    }[kind]()
    etype = {"v6": b"\x86\xdd", "arp": b"\x08\x06"}.get(kind, b"\x08\x00")
    if link == dpkt.pcap.DLT_RAW:
        return ip if kind != "arp" else udp4(bytes(4), b"raw", "none")
    if link == dpkt.pcap.DLT_LINUX_SLL:
        return b"\x00\x00\x00\x01\x00\x06" + bytes(8) + etype + ip
    tag = b"\x81\x00\x00\x07" if vlan else b""
    eth = bytes(6) + b"\x02" + bytes(5) + tag + etype + ip
    return eth + bytes(max(0, 60 - len(eth)))  # runts are padded on the wire


def write_capture(path: Path, frames: list[bytes], link: int, ng: bool, gz: bool) -> None:
    fh = io.BytesIO()
    writer = dpkt.pcapng.Writer(fh, linktype=link) if ng else dpkt.pcap.Writer(fh, linktype=link)
    for i, f in enumerate(frames):
        writer.writepkt(f, ts=T0 + i * 0.25)
    data = fh.getvalue()
    path.write_bytes(gzip.compress(data) if gz else data)


@settings(max_examples=60, deadline=None)
@given(
    pkts=st.lists(packets, max_size=25),
    link=st.sampled_from([dpkt.pcap.DLT_EN10MB, dpkt.pcap.DLT_LINUX_SLL, dpkt.pcap.DLT_RAW]),
    ng=st.booleans(),
    gz=st.booleans(),
)
def test_datagrams_equal_dpkt(
    tmp_path_factory: pytest.TempPathFactory, pkts: list, link: int, ng: bool, gz: bool
) -> None:
    path = tmp_path_factory.mktemp("cap") / ("c.pcapng" if ng else "c.pcap")
    write_capture(path, [frame(link, *p) for p in pkts], link, ng, gz)
    assert list(iter_datagrams_from_pcap(path)) == dpkt_datagrams(path)


@pytest.mark.parametrize("name", ["generated/netflowv9.pcap", "generated/ipfix.pcap"])
def test_real_export_captures_equal_dpkt(name: str) -> None:
    got = list(iter_datagrams_from_pcap(CAPTURES / name))
    assert got == dpkt_datagrams(CAPTURES / name)
    assert len(got) >= 3


def test_gzip_capture_ingests_like_the_plain_one(tmp_path: Path) -> None:
    plain = CAPTURES / "generated" / "netflowv9.pcap"
    packed = tmp_path / "exports.pcap.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert detect_flow_file(packed) == "pcap"
    flows = []
    for i, path in enumerate([plain, packed]):
        ws = WorkspacePaths(tmp_path / f"w{i}")
        summary = ingest_flow_files([path], ws, decoder_state=None)
        assert summary.files[0].kind == "pcap"
        assert summary.rejected == {}
        flows.append(read_dataset(ws.flows, FLOW_SCHEMA).sort_by("flow_start"))
    assert flows[0].num_rows == 24
    assert flows[0].equals(flows[1])


def test_truncated_capture_keeps_whole_datagrams_then_fails(tmp_path: Path) -> None:
    whole = (CAPTURES / "generated" / "ipfix.pcap").read_bytes()
    expected = list(iter_datagrams_from_pcap(CAPTURES / "generated" / "ipfix.pcap"))
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(whole[:-10])
    got: list[tuple[bytes, bytes, int]] = []
    with pytest.raises(IngestError, match=r"cut\.pcap: file is truncated at offset \d+"):
        got.extend(iter_datagrams_from_pcap(cut))
    assert got == expected[:-1]
    summary = ingest_flow_files([cut], WorkspacePaths(tmp_path / "w"), decoder_state=None)
    assert summary.files[0].rejected == {"truncated_file": 1}
    assert summary.files[0].datagrams == len(expected) - 1


def test_gzip_that_is_not_a_capture_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.gz"
    path.write_bytes(gzip.compress(b"not a capture at all"))
    with pytest.raises(IngestError, match=r"notes\.gz: gzip-compressed, but not a pcap"):
        detect_flow_file(path)
    summary = ingest_flow_files([path], WorkspacePaths(tmp_path / "w"), decoder_state=None)
    assert summary.files[0].rejected == {"unreadable_file": 1}
    assert "gzip-compressed" in summary.files[0].warnings[0]


def test_not_a_capture_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "x.pcap"
    path.write_bytes(b"\x00" * 40)
    with pytest.raises(IngestError, match=r"x\.pcap is not a pcap or pcapng capture"):
        list(iter_datagrams_from_pcap(path))
