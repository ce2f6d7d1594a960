"""What real routers send (issues #19, #27), from crafted datagrams: both address families
in one template, physical interfaces, packet sections, MPLS labels, PSAMP sampling,
unannounced sampling, empty records, data before its template."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import dpkt
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.addresses import address_from_bytes, address_to_bytes
from collectors.flows.decoder import FlowDecoder
from collectors.netflow.export_synth import (
    V5_DTYPE,
    data_set,
    encode_ipfix,
    encode_record,
    encode_v5,
    encode_v9,
    ipfix_options_template_set,
    ipfix_template_set,
    v9_options_template_set,
    v9_template_set,
)

EXP = address_to_bytes("192.0.2.77")
T = 1_700_000_000
Z16 = bytes(16)
Fields = list[tuple[int, int]]


def a(addr: str) -> bytes:
    """An address as a record field: 4 bytes for IPv4, 16 for IPv6."""
    raw = address_to_bytes(addr)
    return raw[12:] if raw[:12] == b"\0" * 10 + b"\xff\xff" else raw


def msg(sets: list[bytes], *, domain: int = 9, seq: int = 0) -> bytes:
    return encode_ipfix(sets, domain=domain, sequence=seq, export_time=T)


def tpl(tid: int, fields: Fields) -> bytes:
    return ipfix_template_set([(tid, [(ie, ln, 0) for ie, ln in fields])])


def data(tid: int, fields: Fields, *records: list[int | bytes]) -> bytes:
    lengths = [ln for _, ln in fields]
    return data_set(tid, b"".join(encode_record(lengths, list(r)) for r in records), pad=False)


def text(batch: pa.RecordBatch, name: str) -> list[str | None]:
    values = batch.column(name).to_pylist()
    return [None if v is None else str(address_from_bytes(v)) for v in values]


def col(batch: pa.RecordBatch, name: str) -> list[object]:
    return batch.column(name).to_pylist()


# -- both address families in one template (#19.1, #27.1) ------------------------------------
DUAL: Fields = [(8, 4), (12, 4), (15, 4), (27, 16), (28, 16), (62, 16), (1, 8), (2, 8)]
DUAL_V: Fields = [*DUAL, (60, 1)]


def test_ipv6_record_keeps_its_ipv6_addresses_when_ipv4_fields_are_zero() -> None:
    # The #27 case: 116,400 bytes, IE 27 = 2001:db8::16, IE 8 = 0; with and without IE 60.
    v6 = [0, 0, 0, a("2001:db8::16"), a("2001:db8::17"), a("2001:db8::1"), 116_400, 80]
    out = FlowDecoder().decode(
        msg([tpl(300, DUAL), tpl(301, DUAL_V), data(300, DUAL, v6), data(301, DUAL_V, [*v6, 6])]),
        EXP,
        0,
    )
    assert out.rejected == []
    assert text(out.flows, "src_addr") == ["2001:db8::16"] * 2
    assert text(out.flows, "dst_addr") == ["2001:db8::17"] * 2
    assert text(out.flows, "next_hop") == ["2001:db8::1"] * 2
    assert col(out.flows, "bytes") == [116_400] * 2


def test_ipv4_record_keeps_its_ipv4_addresses_when_ipv6_fields_are_zero() -> None:
    # The #19 case: zero IPv6 fields must not overwrite the IPv4 ones (src/dst/next hop).
    v4 = [a("10.1.1.1"), a("10.2.2.2"), a("10.0.0.254"), Z16, Z16, Z16, 1500, 3]
    out = FlowDecoder().decode(
        msg([tpl(300, DUAL), tpl(301, DUAL_V), data(300, DUAL, v4), data(301, DUAL_V, [*v4, 4])]),
        EXP,
        0,
    )
    assert text(out.flows, "src_addr") == ["10.1.1.1"] * 2
    assert text(out.flows, "dst_addr") == ["10.2.2.2"] * 2
    assert text(out.flows, "next_hop") == ["10.0.0.254"] * 2
    assert out.stats.get("address_family_ambiguous", 0) == 0


def test_family_is_chosen_per_record_in_one_set() -> None:
    v4 = [a("10.1.1.1"), a("10.2.2.2"), a("10.0.0.254"), Z16, Z16, Z16, 100, 1]
    v6 = [0, 0, 0, a("2001:db8::a"), a("2001:db8::b"), a("2001:db8::1"), 200, 2]
    out = FlowDecoder().decode(msg([tpl(300, DUAL), data(300, DUAL, v4, v6, v4)]), EXP, 0)
    assert text(out.flows, "src_addr") == ["10.1.1.1", "2001:db8::a", "10.1.1.1"]
    assert col(out.flows, "bytes") == [100, 200, 100]


@pytest.mark.parametrize(
    ("version", "want"),
    [(4, "10.1.1.1"), (6, "2001:db8::a"), (0, "10.1.1.1")],  # 0: no usable IE 60
)
def test_both_families_carry_values_ip_version_decides(version: int, want: str) -> None:
    both = [a("10.1.1.1"), a("10.2.2.2"), 0, a("2001:db8::a"), a("2001:db8::b"), Z16, 9, 1]
    out = FlowDecoder().decode(msg([tpl(301, DUAL_V), data(301, DUAL_V, [*both, version])]), EXP, 0)
    assert text(out.flows, "src_addr") == [want]
    # Without a usable IE 60 both pairs are complete: a tie, settled by the template's first
    # address field (IPv4 here) and counted.
    assert out.stats.get("address_family_ambiguous", 0) == (1 if version == 0 else 0)


def test_without_ip_version_the_complete_pair_wins_and_order_breaks_ties() -> None:
    v6_first: Fields = [(27, 16), (28, 16), (8, 4), (12, 4), (1, 4)]
    half4 = [a("2001:db8::a"), a("2001:db8::b"), a("10.1.1.1"), 0, 5]  # IPv4 carries only a source
    tie = [a("2001:db8::a"), a("2001:db8::b"), a("10.1.1.1"), a("10.2.2.2"), 6]
    none = [Z16, Z16, 0, 0, 7]
    out = FlowDecoder().decode(
        msg([tpl(302, v6_first), data(302, v6_first, half4, tie, none)]), EXP, 0
    )
    assert text(out.flows, "src_addr") == ["2001:db8::a", "2001:db8::a", "::"]
    assert out.stats["address_family_ambiguous"] == 1


def test_ipv4_flow_with_an_ipv6_next_hop() -> None:
    # RFC 5549 / 8950: IPv4 routes over an IPv6 next hop; the IPv4 next-hop field is 0.
    rec = [a("10.1.1.1"), a("10.2.2.2"), 0, Z16, Z16, a("fe80::1"), 10, 1]
    out = FlowDecoder().decode(msg([tpl(300, DUAL), data(300, DUAL, rec)]), EXP, 0)
    assert (text(out.flows, "src_addr"), text(out.flows, "next_hop")) == (["10.1.1.1"], ["fe80::1"])


def test_v9_dual_family_template() -> None:
    fields = [(8, 4), (12, 4), (27, 16), (28, 16), (1, 4), (2, 4)]
    lengths = [ln for _, ln in fields]
    body = encode_record(lengths, [0, 0, a("2001:db8::5"), a("2001:db8::6"), 64, 1])
    body += encode_record(lengths, [a("10.9.9.9"), a("10.8.8.8"), Z16, Z16, 65, 1])
    dg = encode_v9(
        [v9_template_set([(400, fields)]), data_set(400, body)],
        source_id=1,
        sequence=0,
        uptime_ms=1000,
        unix_secs=T,
    )
    out = FlowDecoder().decode(dg, EXP, 0)
    assert text(out.flows, "src_addr") == ["2001:db8::5", "10.9.9.9"]


# -- physical interfaces (#19.2) ---------------------------------------------------------------
def test_physical_interfaces_fill_in_for_missing_snmp_interfaces() -> None:
    phys: Fields = [(8, 4), (12, 4), (1, 4), (252, 4), (253, 4)]
    both: Fields = [(8, 4), (12, 4), (1, 4), (10, 4), (14, 4), (252, 4), (253, 4)]
    out = FlowDecoder().decode(
        msg(
            [
                tpl(310, phys),
                tpl(311, both),
                data(310, phys, [a("10.0.0.1"), a("10.0.0.2"), 5, 501, 502]),
                data(311, both, [a("10.0.0.1"), a("10.0.0.2"), 5, 7, 8, 501, 502]),
            ]
        ),
        EXP,
        0,
    )
    assert (col(out.flows, "input_if"), col(out.flows, "output_if")) == ([501, 7], [502, 8])


# -- packet sections (#19.3) --------------------------------------------------------------------
def _frame(*, vlan: int | None = 120, mpls_labels: tuple[int, ...] = ()) -> bytes:
    """An Ethernet frame: [802.1Q] [MPLS] IPv4 TCP 10.5.0.1:40000 -> 10.6.0.2:443, SYN."""
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0x10, 60, 1, 0, 64, 6, 0, a("10.5.0.1"), a("10.6.0.2"))
    l4 = struct.pack(">HHIIBBHHH", 40000, 443, 1, 0, 0xA0, 0x02, 1000, 0, 0)
    payload, etype = ip + l4, 0x0800
    if mpls_labels:
        stack = b"".join(
            struct.pack(">I", (lab << 12) | ((k == len(mpls_labels) - 1) << 8) | 255)
            for k, lab in enumerate(mpls_labels)
        )
        payload, etype = stack + payload, 0x8847
    head = bytes.fromhex("020000000001020000000002")
    if vlan is not None:
        head += struct.pack(">HH", 0x8100, vlan)
    return head + struct.pack(">H", etype) + payload


JUNIPER: Fields = [(10, 4), (14, 4), (312, 2), (410, 2), (315, 65535)]


def test_juniper_style_data_link_sections_become_flows() -> None:
    frame = _frame(mpls_labels=(299_776, 17))
    out = FlowDecoder().decode(
        msg([tpl(320, JUNIPER), data(320, JUNIPER, [3, 4, 1514, len(frame), frame])]), EXP, 0
    )
    assert out.rejected == []
    (row,) = out.flows.to_pylist()
    assert str(address_from_bytes(row["src_addr"])) == "10.5.0.1"
    assert str(address_from_bytes(row["dst_addr"])) == "10.6.0.2"
    assert (row["protocol"], row["src_port"], row["dst_port"], row["tcp_flags"]) == (
        6,
        40000,
        443,
        2,
    )
    assert (row["tos"], row["vlan"], row["mpls_labels"]) == (0x10, 120, [299_776, 17])
    assert (row["bytes"], row["packets"]) == (1514, 1)  # dataLinkFrameSize, one sampled packet
    assert (row["input_if"], row["output_if"]) == (3, 4)


def test_ip_header_section_without_size_elements_takes_the_ip_length() -> None:
    fields: Fields = [(313, 64)]
    ip_part = _frame(vlan=None)[14:]
    out = FlowDecoder().decode(
        msg([tpl(321, fields), data(321, fields, [ip_part.ljust(64, b"\0")])]), EXP, 0
    )
    (row,) = out.flows.to_pylist()
    assert (row["bytes"], row["packets"], row["src_port"]) == (60, 1, 40000)
    assert row["mpls_labels"] is None


def test_template_fields_win_over_the_section() -> None:
    fields: Fields = [(8, 4), (7, 2), (1, 4), (2, 4), (315, 65535)]
    frame = _frame()
    out = FlowDecoder().decode(
        msg([tpl(322, fields), data(322, fields, [a("172.16.0.9"), 5555, 900, 3, frame])]), EXP, 0
    )
    (row,) = out.flows.to_pylist()
    assert str(address_from_bytes(row["src_addr"])) == "172.16.0.9"  # the record's own
    assert str(address_from_bytes(row["dst_addr"])) == "10.6.0.2"  # from the section
    assert (row["src_port"], row["dst_port"], row["bytes"], row["packets"]) == (5555, 443, 900, 3)


def test_non_ip_section_keeps_its_volume() -> None:
    arp = bytes.fromhex("ffffffffffff020000000002") + b"\x08\x06" + bytes(28)
    out = FlowDecoder().decode(
        msg([tpl(320, JUNIPER), data(320, JUNIPER, [1, 2, 64, 42, arp])]), EXP, 0
    )
    assert out.rejected == []
    (row,) = out.flows.to_pylist()
    assert (row["bytes"], row["packets"], text(out.flows, "src_addr")) == (64, 1, ["::"])


def test_vxlan_sections_decapsulate_on_request() -> None:
    inner = _frame(vlan=None)
    udp = struct.pack(">HHHH", 49152, 4789, 16 + len(inner), 0) + struct.pack(
        ">II", 0x08000000, 77 << 8
    )
    ip = struct.pack(
        ">BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(udp) + len(inner),
        0,
        0,
        64,
        17,
        0,
        a("192.0.2.1"),
        a("192.0.2.2"),
    )
    frame = bytes(12) + b"\x08\x00" + ip + udp + inner
    dg = msg([tpl(320, JUNIPER), data(320, JUNIPER, [1, 2, 200, len(frame), frame])])
    plain = FlowDecoder().decode(dg, EXP, 0).flows
    dec = FlowDecoder()
    dec.decapsulate_vxlan = True
    decap = dec.decode(dg, EXP, 0).flows
    assert (text(plain, "src_addr"), col(plain, "dst_port")) == (["192.0.2.1"], [4789])
    assert (text(decap, "src_addr"), col(decap, "dst_port")) == (["10.5.0.1"], [443])
    assert col(decap, "bytes") == col(plain, "bytes") == [200]


def test_mpls_label_elements_become_the_label_stack() -> None:
    fields: Fields = [(8, 4), (12, 4), (1, 4), (70, 3), (71, 3), (72, 3)]

    def lse(label: int, bottom: bool) -> bytes:
        return ((label << 4) | (2 << 1) | bottom).to_bytes(3, "big")

    recs = [
        [a("10.0.0.1"), a("10.0.0.2"), 10, lse(16001, False), lse(24005, True), lse(0, False)],
        [a("10.0.0.1"), a("10.0.0.2"), 11, lse(3, True), bytes(3), bytes(3)],
        [a("10.0.0.1"), a("10.0.0.2"), 12, bytes(3), bytes(3), bytes(3)],
        [a("10.0.0.1"), a("10.0.0.2"), 13, lse(0, True), bytes(3), bytes(3)],  # explicit null
    ]
    out = FlowDecoder().decode(msg([tpl(323, fields), data(323, fields, *recs)]), EXP, 0)
    assert col(out.flows, "mpls_labels") == [[16001, 24005], [3], None, [0]]


# -- sampling: PSAMP selectors, samplers, nothing announced (#27.2, #19.6) ------------------------
FLOW: Fields = [(8, 4), (12, 4), (1, 4), (302, 4)]
PSAMP_NEW = ipfix_options_template_set(330, [(302, 4, 0)], [(304, 2, 0), (309, 4, 0), (310, 4, 0)])
PSAMP_OLD = ipfix_options_template_set(331, [(302, 4, 0)], [(304, 2, 0), (305, 4, 0), (306, 4, 0)])
PSAMP_RANDOM = ipfix_options_template_set(332, [(302, 4, 0)], [(50, 4, 0)])


def _selector(tid: int, selector: int, *params: int) -> bytes:
    return data_set(tid, struct.pack(">IH" + "I" * len(params), selector, 3, *params), pad=False)


def _flows(*selectors: int) -> bytes:
    return data(340, FLOW, *[[a("10.0.0.1"), a("10.0.0.2"), 100, s] for s in selectors])


def test_psamp_random_n_out_of_n_in_both_spellings() -> None:
    dg = msg(
        [
            PSAMP_NEW,
            PSAMP_OLD,
            PSAMP_RANDOM,
            tpl(340, FLOW),
            _selector(330, 1, 1, 1000),  # samplingSize 1 of samplingPopulation 1000
            _selector(331, 2, 1, 511),  # samplingPacketInterval 1, samplingPacketSpace 511
            data_set(332, struct.pack(">II", 3, 64), pad=False),  # samplerRandomInterval 64
            _selector(330, 4, 3, 1000),  # 3 of 1000: 333.3, rounded
            _flows(1, 2, 3, 4, 5),
        ]
    )
    out = FlowDecoder().decode(dg, EXP, 0)
    assert col(out.flows, "sampling_interval") == [1000, 512, 64, 333, None]  # 5: unknown


def test_psamp_options_after_the_data_apply_within_the_call() -> None:
    same_message = msg([PSAMP_NEW, tpl(340, FLOW), _flows(1), _selector(330, 1, 1, 100)])
    out = FlowDecoder().decode(same_message, EXP, 0)
    assert col(out.flows, "sampling_interval") == [100]
    dec = FlowDecoder()
    later = [msg([PSAMP_OLD, tpl(340, FLOW), _flows(2)]), msg([_selector(331, 2, 1, 99)], seq=2)]
    out = dec.decode_many(later, [EXP, EXP], np.zeros(2, np.int64))
    assert col(out.flows, "sampling_interval") == [100]
    # Data of a later call uses what the state holds by then.
    assert col(dec.decode(msg([_flows(2)], seq=3), EXP, 0).flows, "sampling_interval") == [100]


def test_psamp_selectors_are_per_observation_domain() -> None:
    dec = FlowDecoder()
    dec.decode(msg([tpl(340, FLOW)], domain=3), EXP, 0)
    for domain, population in ((1, 100), (2, 4000)):
        dec.decode(
            msg([PSAMP_NEW, tpl(340, FLOW), _selector(330, 7, 1, population)], domain=domain),
            EXP,
            0,
        )
    got = [
        col(dec.decode(msg([_flows(7)], domain=d, seq=1), EXP, 0).flows, "sampling_interval")
        for d in (1, 2, 3)
    ]
    assert got == [[100], [4000], [None]]  # domain 3 never announced selector 7


def test_v9_sampler_options_with_flow_sampler_id() -> None:
    # Cisco v9: options (scope System) with FLOW_SAMPLER_ID 48, mode 49, random interval 50.
    opts = v9_options_template_set(260, [(1, 4)], [(48, 2), (49, 1), (50, 4)])
    fields = [(8, 4), (12, 4), (1, 4), (48, 2)]
    body = encode_record([4, 4, 4, 2], [a("10.0.0.1"), a("10.0.0.2"), 50, 3])
    body += encode_record([4, 4, 4, 2], [a("10.0.0.1"), a("10.0.0.2"), 50, 4])
    dg = encode_v9(
        [
            opts,
            v9_template_set([(261, fields)]),
            data_set(261, body),
            data_set(260, struct.pack(">IHBI", 0, 3, 2, 250)),
        ],
        source_id=5,
        sequence=0,
        uptime_ms=10,
        unix_secs=T,
    )
    assert col(FlowDecoder().decode(dg, EXP, 0).flows, "sampling_interval") == [250, None]


def test_no_announced_rate_is_null_not_one() -> None:
    fields: Fields = [(8, 4), (12, 4), (1, 4), (34, 4)]
    recs = [[a("10.0.0.1"), a("10.0.0.2"), 5, 0], [a("10.0.0.1"), a("10.0.0.2"), 5, 1]]
    out = FlowDecoder().decode(msg([tpl(350, fields), data(350, fields, *recs)]), EXP, 0)
    assert col(out.flows, "sampling_interval") == [None, 1]  # 0 announces nothing; 1 is unsampled
    assert out.flows.schema.field("sampling_interval").nullable
    v5 = np.zeros(1, V5_DTYPE)
    v5["dOctets"] = 40
    legacy = FlowDecoder().decode(encode_v5(v5, uptime_ms=1, unix_secs=T), EXP, 0).flows
    assert col(legacy, "sampling_interval") == [None]


# -- empty records are rejected, never written (#19 general rule) ------------------------------
def test_records_without_address_and_volume_are_rejected_by_name() -> None:
    fields: Fields = [(8, 4), (12, 4), (1, 4), (2, 4)]
    good = [a("10.0.0.1"), a("10.0.0.2"), 5, 1]
    empty = [0, 0, 0, 0]
    zero_bytes = [a("10.0.0.1"), a("10.0.0.2"), 0, 0]  # an address: kept
    bad = msg([tpl(360, fields), data(360, fields, good, empty, zero_bytes, empty)])
    ok = msg([data(360, fields, good)], seq=4)
    out = FlowDecoder().decode_many([bad, ok], [EXP, EXP], np.zeros(2, np.int64), source="r1.bin")
    assert out.flows.num_rows == 3
    assert [(i, reason) for i, reason, _ in out.rejected] == [(0, "empty_record")] * 2
    first = out.rejected[0][2]
    assert first.startswith("r1.bin: datagram 0: ipfix template 360 (domain 9) record 1:")
    assert "record 3:" in out.rejected[1][2]
    assert (out.stats["malformed:empty_record"], out.stats["rejected"]) == (2, 2)


def test_empty_v5_records_are_rejected_and_the_rest_kept() -> None:
    recs = np.zeros(3, V5_DTYPE)
    recs["srcaddr"][[0, 2]] = 0x0A000001
    recs["dOctets"][[0, 2]] = 100
    out = FlowDecoder().decode(encode_v5(recs, uptime_ms=1, unix_secs=T), EXP, 0, source="v5.bin")
    assert out.flows.num_rows == 2
    assert [(i, r) for i, r, _ in out.rejected] == [(0, "empty_record")]
    assert "NetFlow v5 record 1:" in out.rejected[0][2]


# -- data before its template in the same datagram -----------------------------------------------
def test_data_before_its_template_in_one_datagram_is_held_then_decoded() -> None:
    fields: Fields = [(8, 4), (12, 4), (1, 4), (2, 4)]
    recs = [[a("10.0.0.1"), a("10.0.0.2"), 10 * k, k] for k in range(1, 4)]
    dec = FlowDecoder()
    out = dec.decode(msg([data(370, fields, *recs), tpl(370, fields)], seq=0), EXP, 0)
    assert col(out.flows, "bytes") == [10, 20, 30]
    assert (out.stats["unknown_template"], out.stats["pending_decoded"]) == (1, 1)
    assert (out.stats["template_new"], out.stats["flows"], out.stats["rejected"]) == (1, 3, 0)
    assert dec.session.pending_bytes[EXP] == 0
    seq = dec.sequence.state(EXP, 9, "ipfix")
    assert seq is not None
    later = dec.decode(msg([data(370, fields, recs[0])], seq=3), EXP, 0)
    assert later.flows.num_rows == 1
    # IPFIX sequence numbers count records; a message that held data resyncs the count, so
    # the next message (sequence 3, after the 3 records) shows no loss.
    assert (seq.received, seq.missing) == (1, 0)


# -- tshark as the oracle -------------------------------------------------------------------------
def _pcap(datagrams: list[bytes], path: Path) -> Path:
    with open(path, "wb") as fh:
        writer = dpkt.pcap.Writer(fh)
        for i, d in enumerate(datagrams):
            udp = dpkt.udp.UDP(sport=40000, dport=4739, data=d)
            udp.ulen = 8 + len(d)
            ip = dpkt.ip.IP(src=a("192.0.2.77"), dst=a("192.0.2.1"), p=17, data=udp)
            ip.len = 20 + udp.ulen
            writer.writepkt(bytes(dpkt.ethernet.Ethernet(type=0x0800, data=ip)), ts=T + i)
    return path


def _tshark_records(path: Path) -> list[dict[str, Any]]:
    """Every data record tshark decodes, in order (options records included)."""
    cmd = ["tshark", "-r", str(path), "-d", "udp.port==4739,cflow", "-T", "json"]
    cmd.append("--no-duplicate-keys")  # repeated layers (MPLS labels) as lists
    raw = subprocess.run(cmd, capture_output=True, check=True, timeout=60)
    out = []
    for pkt in json.loads(raw.stdout):
        for key, fs in pkt["_source"]["layers"]["cflow"].items():
            if key.startswith("Set") and isinstance(fs, dict):
                out += [v for k, v in fs.items() if k.startswith("Flow ")]
    return out


def _one(v: Any) -> str:
    return v[0] if isinstance(v, list) else v


def _family_rule(t: dict[str, Any]) -> str:
    """The documented family choice, applied to tshark's decode of the record."""
    v4 = [_one(t.get(f"cflow.{k}", "0.0.0.0")) for k in ("srcaddr", "dstaddr")]
    v6 = [_one(t.get(f"cflow.{k}v6", "::")) for k in ("srcaddr", "dstaddr")]
    c4, c6 = [x != "0.0.0.0" for x in v4], [x != "::" for x in v6]
    version = int(t.get("cflow.ip_version", 0))
    if any(c6) != any(c4):
        return v6[0] if any(c6) else v4[0]
    if version in (4, 6) and any(c4):
        return v6[0] if version == 6 else v4[0]
    if all(c6) != all(c4):
        return v6[0] if all(c6) else v4[0]
    return v6[0] if version == 6 else v4[0]  # the templates here list IPv4 first


@pytest.mark.peer
@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_families_psamp_and_sections_equal_tshark(tmp_path: Path) -> None:
    dual_s: Fields = [*DUAL_V, (302, 4)]
    v4 = [a("10.1.1.1"), a("10.2.2.2"), a("10.0.0.254"), Z16, Z16, Z16, 1500, 3]
    v6 = [0, 0, 0, a("2001:db8::16"), a("2001:db8::17"), a("2001:db8::1"), 116_400, 80]
    both = [a("10.1.1.1"), a("10.2.2.2"), 0, a("2001:db8::a"), a("2001:db8::b"), Z16, 9, 1]
    records = [[*v4, 4, 1], [*v6, 6, 2], [*v6, 0, 1], [*both, 6, 3], [*both, 4, 2], [*v4, 0, 9]]
    frames = [_frame(), _frame(vlan=None, mpls_labels=(16001, 24005)), _frame(vlan=7)[:40]]
    sections = [[5, 6, 1000 + k, len(f), f] for k, f in enumerate(frames)]
    datagrams = [
        msg([PSAMP_NEW, PSAMP_OLD, tpl(301, dual_s), tpl(320, JUNIPER)]),
        msg([_selector(330, 1, 1, 100), _selector(331, 2, 1, 49)], seq=1),
        msg([data(301, dual_s, *records), data(320, JUNIPER, *sections)], seq=3),
    ]
    out = FlowDecoder().decode_many(datagrams, [EXP] * 3, np.zeros(3, np.int64))
    assert out.rejected == []
    theirs = _tshark_records(_pcap(datagrams, tmp_path / "x.pcap"))
    samplers = {}
    for t in theirs:
        if "cflow.selector_algorithm" in t:
            if "cflow.sampling_size" in t:
                n, big_n = int(t["cflow.sampling_size"]), int(t["cflow.sampling_population"])
            else:
                n = int(t["cflow.sampling_packet_interval"])
                big_n = n + int(t["cflow.sampling_packet_space"])
            samplers[int(t["cflow.selector_id"])] = round(big_n / n)
    flows = [t for t in theirs if "cflow.selector_algorithm" not in t]
    assert samplers == {1: 100, 2: 50}
    assert len(flows) == out.flows.num_rows == len(records) + len(sections)
    ours = out.flows.to_pylist()
    for row, t in zip(ours, flows, strict=True):
        src = str(address_from_bytes(row["src_addr"]))
        if "cflow.data_link_frame_section" in t:
            tree = t["cflow.data_link_frame_section_tree"]
            ip, tcp = tree.get("ip", {}), tree.get("tcp", {})
            assert src == ip.get("ip.src", "::")
            assert row["src_port"] == int(tcp.get("tcp.srcport", 0))
            assert row["vlan"] == int(tree.get("vlan", {}).get("vlan.id", 0))
            labels = tree.get("mpls", [])
            labels = [labels] if isinstance(labels, dict) else labels
            assert (row["mpls_labels"] or []) == [int(m["mpls.label"]) for m in labels]
            assert (row["bytes"], row["packets"]) == (int(t["cflow.data_link_frame_size"]), 1)
            assert row["sampling_interval"] is None
        else:
            assert src == _family_rule(t)
            assert row["bytes"] == int(t["cflow.octets"])
            assert row["sampling_interval"] == samplers.get(int(t["cflow.selector_id"]))


def _reference_family(src4: str, dst4: str, src6: str, dst6: str, version: int, first: int) -> str:
    """The documented family rule, record by record (the twin of ``address_family``)."""
    c4, c6 = [x != "0.0.0.0" for x in (src4, dst4)], [x != "::" for x in (src6, dst6)]
    if any(c6) != any(c4):
        return src6 if any(c6) else src4
    if any(c4) and version in (4, 6):
        return src6 if version == 6 else src4
    if any(c4) and all(c6) != all(c4):
        return src6 if all(c6) else src4
    fallback = version if version in (4, 6) else first
    return src6 if fallback == 6 else src4


v4_or_zero = st.sampled_from(["0.0.0.0", "10.0.0.1", "192.0.2.9"])
v6_or_zero = st.sampled_from(["::", "2001:db8::1", "fe80::1"])


@settings(max_examples=150, deadline=None)
@given(
    records=st.lists(
        st.tuples(v4_or_zero, v4_or_zero, v6_or_zero, v6_or_zero, st.sampled_from([0, 4, 6, 9])),
        min_size=1,
        max_size=12,
    ),
    v6_first=st.booleans(),
    with_version=st.booleans(),
)
def test_family_choice_matches_its_reference(
    records: list[tuple[str, str, str, str, int]], v6_first: bool, with_version: bool
) -> None:
    v4f: Fields = [(8, 4), (12, 4)]
    v6f: Fields = [(27, 16), (28, 16)]
    fields: Fields = [*(v6f + v4f if v6_first else v4f + v6f), (1, 4)]
    if with_version:
        fields.append((60, 1))
    rows = []
    for s4, d4, s6, d6, version in records:
        v4v, v6v = [a(s4), a(d4)], [a(s6), a(d6)]
        values: list[int | bytes] = [*(v6v + v4v if v6_first else v4v + v6v), 1]
        rows.append([*values, version] if with_version else values)
    out = FlowDecoder().decode(msg([tpl(380, fields), data(380, fields, *rows)]), EXP, 0)
    want = [
        _reference_family(s4, d4, s6, d6, v if with_version else 0, 6 if v6_first else 4)
        for s4, d4, s6, d6, v in records
    ]
    assert text(out.flows, "src_addr") == want
