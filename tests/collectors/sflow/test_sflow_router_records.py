"""sFlow from routers (issue #19): gateway local AS, MPLS and VXLAN headers, unannounced rates."""

from __future__ import annotations

import ipaddress
import struct

from scapy.contrib.mpls import MPLS
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.layers.vxlan import VXLAN

from collectors.addresses import address_from_bytes, address_to_bytes
from collectors.flows.decoder import FlowDecoder
from collectors.sflow.datagram import SflowDecoder
from collectors.sflow.records import parse_extended_gateway

EXPORTER = address_to_bytes("192.0.2.1")
MAC = "02:00:00:00:00:01"


def record(fmt: int, body: bytes) -> bytes:
    return struct.pack(">II", fmt, len(body)) + body


def raw_header(frame: bytes, *, proto: int = 1) -> bytes:
    pad = b"\0" * (-len(frame) % 4)
    return record(1, struct.pack(">IIII", proto, len(frame) + 4, 4, len(frame)) + frame + pad)


def flow_sample(records: list[bytes], *, rate: int = 100) -> bytes:
    body = struct.pack(">IIIIIIII", 7, 3, rate, 1000, 0, 1, 2, len(records)) + b"".join(records)
    return struct.pack(">II", 1, len(body)) + body


def datagram(samples: list[bytes]) -> bytes:
    head = struct.pack(">II", 5, 1) + ipaddress.ip_address("10.0.0.9").packed
    return head + struct.pack(">IIII", 2, 5, 1000, len(samples)) + b"".join(samples)


def gateway(router_as: int, src_as: int, path: list[int]) -> bytes:
    """Extended gateway (1003): IPv4 next hop, AS numbers, one AS_SEQUENCE segment, no
    communities, local preference 0."""
    body = struct.pack(">I4sIII", 1, bytes([192, 0, 2, 254]), router_as, src_as, 65000)
    body += struct.pack(">I", 1 if path else 0)
    if path:
        body += struct.pack(">II", 2, len(path)) + struct.pack(f">{len(path)}I", *path)
    return record(1003, body + struct.pack(">II", 0, 0))


TCP_FRAME = bytes(
    Ether(src=MAC, dst=MAC) / IP(src="10.1.0.1", dst="10.2.0.2") / TCP(sport=1, dport=2)
)


def test_gateway_empty_path_and_zero_source_as_mean_the_router_itself() -> None:
    cases = [
        (gateway(64512, 0, []), (64512, 64512)),  # both local
        (gateway(64512, 3356, []), (3356, 64512)),  # destination local
        (gateway(64512, 0, [174, 2914]), (64512, 2914)),  # source local
        (gateway(64512, 3356, [174, 2914]), (3356, 2914)),
    ]
    for rec, want in cases:
        flows, _, _ = SflowDecoder().decode(
            datagram([flow_sample([raw_header(TCP_FRAME), rec])]), EXPORTER, 0
        )
        row = flows.to_pylist()[0]
        assert (row["src_as"], row["dst_as"]) == want
        assert str(address_from_bytes(row["next_hop"])) == "192.0.2.254"
    assert parse_extended_gateway(gateway(64512, 0, [])[8:])[1:] == (64512, 64512)


def test_mpls_header_gives_labels_and_the_inner_flow() -> None:
    frame = bytes(
        Ether(src=MAC, dst=MAC)
        / MPLS(label=16001, s=0)
        / MPLS(label=24005, s=1)
        / IP(src="10.3.0.1", dst="10.4.0.2")
        / UDP(sport=5000, dport=6000)
    )
    flows, _, stats = SflowDecoder().decode(
        datagram([flow_sample([raw_header(frame)])]), EXPORTER, 0
    )
    row = flows.to_pylist()[0]
    assert row["mpls_labels"] == [16001, 24005]
    assert (str(address_from_bytes(row["src_addr"])), row["src_port"], row["protocol"]) == (
        "10.3.0.1",
        5000,
        17,
    )
    assert stats["unparsed_headers"] == 0
    # A header that starts at the label stack (header_protocol 13 = MPLS).
    flows, _, _ = SflowDecoder().decode(
        datagram([flow_sample([raw_header(frame[14:], proto=13)])]), EXPORTER, 0
    )
    assert flows.to_pylist()[0]["src_port"] == 5000


def test_vxlan_decapsulation_is_an_option_of_the_flow_decoder() -> None:
    inner = Ether(src=MAC, dst=MAC) / IP(src="172.16.1.1", dst="172.16.1.2") / TCP(sport=7, dport=8)
    frame = bytes(
        Ether(src=MAC, dst=MAC)
        / IP(src="192.0.2.10", dst="192.0.2.20")
        / UDP(sport=50000, dport=4789)
        / VXLAN(vni=100)
        / inner
    )
    dg = datagram([flow_sample([raw_header(frame)])])
    outer = FlowDecoder().decode(dg, EXPORTER, 0).flows.to_pylist()[0]
    dec = FlowDecoder()
    dec.decapsulate_vxlan = True
    got = dec.decode(dg, EXPORTER, 0).flows.to_pylist()[0]
    assert (str(address_from_bytes(outer["src_addr"])), outer["dst_port"]) == ("192.0.2.10", 4789)
    assert (str(address_from_bytes(got["src_addr"])), got["src_port"], got["dst_port"]) == (
        "172.16.1.1",
        7,
        8,
    )
    assert got["bytes"] == outer["bytes"] == len(frame) - 14  # the outer IP length


def test_rate_zero_is_not_announced() -> None:
    dg = datagram(
        [flow_sample([raw_header(TCP_FRAME)], rate=0), flow_sample([raw_header(TCP_FRAME)])]
    )
    flows, _, _ = SflowDecoder().decode(dg, EXPORTER, 0)
    assert flows.column("sampling_interval").to_pylist() == [None, 100]
    assert flows.column("mpls_labels").to_pylist() == [None, None]
