"""Exporter captures (tests/data/captures): the MANIFEST values, and tshark as an oracle."""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import dpkt
import pyarrow as pa
import pytest
from shared_data import CAPTURES

from collectors.addresses import address_from_bytes, address_to_bytes
from collectors.flows.datagram_files import iter_datagrams_from_pcap
from collectors.flows.decoder import DecodeOutcome, FlowDecoder

SOFT = CAPTURES / "python-netflow-v9-softflowd"
GOFLOW = CAPTURES / "goflow2"
GEN = CAPTURES / "generated"  # made by scripts/make_test_captures.py
EXP = address_to_bytes("192.0.2.50")


def read(*paths: Path) -> list[bytes]:
    """The files' bytes; a missing capture fails the test (it ships with the repository)."""
    return [p.read_bytes() for p in paths]


def feed(datagrams: list[bytes]) -> tuple[FlowDecoder, list[DecodeOutcome]]:
    dec = FlowDecoder()
    return dec, [dec.decode(d, EXP, 0) for d in datagrams]


def addrs(batch: pa.RecordBatch, col: str) -> list[str]:
    return [str(address_from_bytes(v)) for v in batch.column(col).to_pylist()]


def test_netflow_v1_and_v5() -> None:
    v1, v5 = read(SOFT / "packet_v1.bin", SOFT / "packet_v5.bin")
    _, (o1, o5) = feed([v1, v5])
    assert o1.flows.num_rows == 2
    assert set(o1.flows.column("protocol").to_pylist()) == {1}
    assert o5.flows.num_rows == 3
    assert o5.flows.column("protocol").to_pylist()[:2] == [1, 1]
    assert addrs(o5.flows, "dst_addr")[2] == "224.0.0.251"


def test_goflow2_legacy_v5() -> None:
    (dg,) = read(GOFLOW / "netflowlegacy_data.bin")
    _, (out,) = feed([dg])
    assert out.flows.num_rows == 6
    assert set(out.flows.column("source_format").to_pylist()) == {"netflow_v5"}
    assert out.flows.column("input_if")[0].as_py() == 9
    assert addrs(out.flows, "src_addr")[0] == "10.128.2.121"


def test_softflowd_v9_stream() -> None:
    dgs = read(
        SOFT / "packet_v9_template.bin",
        SOFT / "packets_v9_0.bin",
        SOFT / "packets_v9_1.bin",
        SOFT / "packets_v9_2.bin",
    )
    dec, outs = feed(dgs)
    assert [o.flows.num_rows for o in outs] == [8, 12, 12, 12]
    assert sum(o.flows.num_rows for o in outs) == 44
    assert len(dec.session.cache) == 2
    first = outs[0].flows
    src, sport = addrs(first, "src_addr"), first.column("src_port").to_pylist()
    proto, dport = first.column("protocol").to_pylist(), first.column("dst_port").to_pylist()
    assert any(
        s == "127.0.0.1" and p == 80 and pr == 6
        for s, p, pr in zip(src, sport, proto, strict=False)
    )
    assert any(pr == 17 and d == 53 for pr, d in zip(proto, dport, strict=True))


def test_softflowd_v9_data_before_template() -> None:
    template, mixed = read(SOFT / "packet_v9_template.bin", SOFT / "packet_v9_template_mixed.bin")
    _, (want,) = feed([template])
    _, (got,) = feed([mixed])
    assert got.flows.num_rows == 8
    assert got.stats["pending_decoded"] >= 1
    assert got.flows.equals(want.flows)


def test_v9_with_zero_padding_needs_templates_it_lacks() -> None:
    (dg,) = read(SOFT / "packet_v9_with_zeros.bin")
    _, (out,) = feed([dg])
    assert out.rejected == []
    assert out.flows.num_rows == 0
    assert out.stats["unknown_template"] == 5


def test_softflowd_ipfix() -> None:
    dgs = read(SOFT / "packet_ipfix_template.bin", SOFT / "packet_ipfix.bin")
    dec, (tpl_out, data_out) = feed(dgs)
    # 20 records = 19 flows + 1 options record (meteringProcessId 2649).
    assert tpl_out.flows.num_rows == 19
    assert len(dec.session.cache) == 5
    (options,) = dec.session.options_records.values()
    assert options[0]["meteringProcessId"] == 2649
    f = tpl_out.flows
    rows = list(
        zip(
            addrs(f, "dst_addr"),
            f.column("protocol").to_pylist(),
            f.column("src_port").to_pylist(),
            f.column("dst_port").to_pylist(),
            f.column("tcp_flags").to_pylist(),
            strict=True,
        )
    )
    assert ("172.17.0.2", 6, 443, 57766, 0x1B) in rows
    assert data_out.flows.num_rows == 3
    # The IPv6 UDP flow from fde6:6f14:e0f1:9609::affe:affe:affe (in both messages).
    host = address_to_bytes("fde6:6f14:e0f1:9609::affe:affe:affe")
    for batch, proto in ((tpl_out.flows, 17), (data_out.flows, 6)):
        got = [
            p
            for a, p in zip(
                batch.column("src_addr").to_pylist(),
                batch.column("protocol").to_pylist(),
                strict=True,
            )
            if a == host
        ]
        assert proto in got


def test_softflowd_ipfix_with_mac_addresses_and_padding() -> None:
    dgs = read(SOFT / "packet_ipfix_template_ether.bin", SOFT / "packet_ipfix_ether.bin")
    dec, outs = feed(dgs)
    assert sum(o.flows.num_rows for o in outs) == 22  # 23 records = 22 flows + 1 options
    tpl = dec.session.cache.get(EXP, 0, 1024)
    assert tpl is not None
    names = {f.name for f in tpl.fields}  # the template names the MAC elements
    assert {"sourceMacAddress", "postDestinationMacAddress"} <= names
    (pad,) = read(SOFT / "packet_ipfix_padding.bin")
    assert int.from_bytes(pad[2:4], "big") == 448
    _, (out,) = feed([pad])
    assert out.rejected == []
    assert out.flows.num_rows == 2


def test_ether_mac_values() -> None:
    (dg,) = read(SOFT / "packet_ipfix_template_ether.bin")
    dec, _ = feed([dg])
    tpl = dec.session.cache.get(EXP, 0, 1024)
    assert tpl is not None
    # Find the first data set of template 1024 in the message and decode it by reference.
    pos = 16
    while pos < len(dg):
        sid, length = (
            int.from_bytes(dg[pos : pos + 2], "big"),
            int.from_bytes(dg[pos + 2 : pos + 4], "big"),
        )
        if sid == 1024:
            recs = tpl.decode_python(dg[pos + 4 : pos + length])
            break
        pos += length
    macs = {(r["sourceMacAddress"], r["postDestinationMacAddress"]) for r in recs}
    assert (bytes.fromhex("123456affefe"), bytes.fromhex("affeaffeaffe")) in macs


def test_invalid_is_rejected() -> None:
    (dg,) = read(SOFT / "packet_invalid.bin")
    _, (out,) = feed([dg])
    assert out.flows.num_rows == 0
    assert [r for _, r, _ in out.rejected] == ["unsupported_version"]
    assert out.stats["malformed:unsupported_version"] == 1


def test_goflow2_v9_cisco() -> None:
    dgs = read(GOFLOW / "netflow_template.bin", GOFLOW / "netflow_data.bin")
    dec, (t, d) = feed(dgs)
    assert t.flows.num_rows == 0
    assert d.flows.num_rows == 21
    tpl = dec.session.cache.get(EXP, 256, 260)
    assert tpl is not None
    assert len(tpl.fields) == 23
    data = dgs[1]
    assert int.from_bytes(data[2:4], "big") == 21
    assert int.from_bytes(data[4:8], "big") == 3015702147
    assert int.from_bytes(data[8:12], "big") == 1636475816
    seq = dec.sequence.state(EXP, 256, "netflow_v9")
    assert seq is not None
    assert seq.expected == 838987420 + 1
    assert set(d.flows.column("observation_domain").to_pylist()) == {256}


def _decode_pcap(path: Path) -> tuple[FlowDecoder, DecodeOutcome]:
    dec = FlowDecoder()
    payloads, exps, ts = zip(*iter_datagrams_from_pcap(path), strict=True)
    return dec, dec.decode_many(list(payloads), list(exps), list(ts))


def _utc_us(text: str) -> int:
    return int(dt.datetime.fromisoformat(text + "+00:00").timestamp()) * 1_000_000


def test_generated_netflow_v9_pcap() -> None:
    dec, out = _decode_pcap(GEN / "netflowv9.pcap")
    assert out.rejected == []
    assert out.flows.num_rows == 24
    f = out.flows.to_pylist()
    assert {str(address_from_bytes(r["exporter"])) for r in f} == {"192.0.2.11"}
    assert {r["observation_domain"] for r in f} == {7}
    r21 = f[21]
    assert str(address_from_bytes(r21["src_addr"])) == "10.1.2.31"
    assert str(address_from_bytes(r21["dst_addr"])) == "203.0.113.121"
    assert (r21["protocol"], r21["src_port"], r21["dst_port"]) == (17, 42331, 53)
    assert (r21["bytes"], r21["packets"], r21["tos"]) == (306350, 275, 0x28)
    assert (r21["src_as"], r21["dst_as"]) == (64533, 4200000021)
    assert str(address_from_bytes(r21["next_hop"])) == "192.0.2.1"
    # ICMP echo (type 8, code 0) travels in the destination port.
    assert (f[3]["protocol"], f[3]["dst_port"]) == (1, 0x0800)
    # sysUptime wrapped 90 s before the export: record 0 is stamped before the wrap.
    start = out.flows.column("flow_start").cast(pa.int64()).to_pylist()
    end = out.flows.column("flow_end").cast(pa.int64()).to_pylist()
    assert (start[0], end[0]) == (_utc_us("2026-03-02 09:25:00"), _utc_us("2026-03-02 09:26:00"))
    assert (start[21], end[21]) == (_utc_us("2026-03-02 09:28:59"), _utc_us("2026-03-02 09:29:28"))
    tpl = {t.template_id: t for t in dec.session.cache.templates()}
    assert sorted(tpl) == [424, 425, 429]
    assert (len(tpl[424].fields), tpl[424].options) == (21, False)
    assert tpl[425].options
    assert tpl[429].options
    opts = [r for rs in dec.session.options_records.values() for r in rs]
    assert any(r.get("samplingInterval") == 100 and r.get("samplingAlgorithm") == 2 for r in opts)
    assert any(r.get("flowActiveTimeout") == 1800 and r.get("flowIdleTimeout") == 15 for r in opts)
    # The sampling options came before the data, from the same exporter and domain.
    assert set(out.flows.column("sampling_interval").to_pylist()) == {100}


def test_generated_ipfix_pcap() -> None:
    dec, out = _decode_pcap(GEN / "ipfix.pcap")
    assert out.rejected == []
    assert out.flows.num_rows == 4
    assert addrs(out.flows, "src_addr") == ["10.1.3.20", "10.1.3.21", "10.1.3.22", "10.1.3.23"]
    assert out.flows.column("dst_port").to_pylist() == [443, 123, 0x0800, 22]
    # flowStart/EndMilliseconds, not the uptime stamps (no system init time is exported).
    start = out.flows.column("flow_start").cast(pa.int64()).to_pylist()
    end = out.flows.column("flow_end").cast(pa.int64()).to_pylist()
    assert (start[0], end[0]) == (_utc_us("2026-03-02 09:29:00"), _utc_us("2026-03-02 09:30:55"))
    tpl = {t.template_id: t for t in dec.session.cache.templates()}
    assert sorted(tpl) == [307, 308]
    assert (len(tpl[307].fields), tpl[307].options) == (23, False)
    assert (len(tpl[308].fields), tpl[308].scope_count, tpl[308].options) == (3, 1, True)
    ((options,),) = dec.session.options_records.values()
    assert options == {"meteringProcessId": 1, "flowActiveTimeout": 1800, "flowIdleTimeout": 15}
    # No sampling element and no sampler options: not announced, so null (not 1).
    assert set(out.flows.column("sampling_interval").to_pylist()) == {None}


def test_generated_pcaps_are_what_the_script_makes(tmp_path: Path) -> None:
    """The committed pcaps are exactly scripts/make_test_captures.py's output (no hand edits)."""
    script = Path(__file__).resolve().parents[3] / "scripts" / "make_test_captures.py"
    spec = importlib.util.spec_from_file_location("make_test_captures", script)
    assert spec is not None
    assert spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    generator.make_netflow_v9(tmp_path / "netflowv9.pcap")
    generator.make_ipfix(tmp_path / "ipfix.pcap")
    for name in ("netflowv9.pcap", "ipfix.pcap"):
        assert (tmp_path / name).read_bytes() == (GEN / name).read_bytes(), name


# -- tshark as an independent oracle ------------------------------------------------------


def _pcap_of(datagrams: list[bytes], path: Path, port: int) -> Path:
    with open(path, "wb") as fh:
        w = dpkt.pcap.Writer(fh)
        for i, d in enumerate(datagrams):
            udp = dpkt.udp.UDP(sport=40000, dport=port, data=d)
            udp.ulen = 8 + len(d)
            ip = dpkt.ip.IP(src=bytes([192, 0, 2, 50]), dst=bytes([192, 0, 2, 1]), p=17, data=udp)
            ip.len = 20 + udp.ulen
            eth = dpkt.ethernet.Ethernet(type=0x0800, data=ip)
            w.writepkt(bytes(eth), ts=1_700_000_000 + i)
    return path


def _tshark_flows(path: Path, port: int) -> list[dict]:
    raw = subprocess.run(
        ["tshark", "-r", str(path), "-T", "json", "-d", f"udp.port=={port},cflow"],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    flows = []
    for pkt in json.loads(raw):
        cf = pkt["_source"]["layers"].get("cflow", {})
        for key, fs in cf.items():
            if not (key.startswith("FlowSet") or key.startswith("Set")):
                continue
            if isinstance(fs, dict):
                flows.extend(
                    dict(v, _header=cf)
                    for k, v in fs.items()
                    if k.startswith("Flow ") and ("cflow.srcaddr" in v or "cflow.srcaddrv6" in v)
                )
        flows.extend(dict(v, _header=cf) for k, v in cf.items() if k.startswith("pdu "))
    return flows


def _compare(ours: pa.RecordBatch, theirs: list[dict]) -> None:
    assert ours.num_rows == len(theirs) > 0
    o = ours.to_pydict()
    start = ours.column("flow_start").cast(pa.int64()).to_pylist()
    end = ours.column("flow_end").cast(pa.int64()).to_pylist()
    for i, t in enumerate(theirs):
        src = t.get("cflow.srcaddr", t.get("cflow.srcaddrv6"))
        dst = t.get("cflow.dstaddr", t.get("cflow.dstaddrv6"))
        assert str(address_from_bytes(o["src_addr"][i])) == str(
            address_from_bytes(address_to_bytes(src))
        )
        assert str(address_from_bytes(o["dst_addr"][i])) == str(
            address_from_bytes(address_to_bytes(dst))
        )
        assert o["bytes"][i] == int(t["cflow.octets"])
        assert o["packets"][i] == int(t["cflow.packets"])
        for ours_k, k in (
            ("src_port", "cflow.srcport"),
            ("protocol", "cflow.protocol"),
            ("input_if", "cflow.inputint"),
            ("output_if", "cflow.outputint"),
            ("src_as", "cflow.srcas"),
            ("dst_as", "cflow.dstas"),
        ):
            if k in t:
                assert o[ours_k][i] == int(t[k]), (i, k)
        if "cflow.dstport" in t or "cflow.icmp_type_code_ipv4" in t:
            # An ICMP type/code stands in for a missing or zero destination port.
            port = int(t.get("cflow.dstport", 0))
            icmp = int(t.get("cflow.icmp_type_code_ipv4", "0"), 16)
            assert o["dst_port"][i] == (port or icmp), (i, "dst_port")
        if "cflow.tcpflags" in t:
            assert o["tcp_flags"][i] == int(t["cflow.tcpflags"], 16)
        if "cflow.tos" in t:
            assert o["tos"][i] == int(t["cflow.tos"], 16)
        if "cflow.nexthop" in t:
            assert str(address_from_bytes(o["next_hop"][i])) == t["cflow.nexthop"]
        times = t.get("cflow.timedelta_tree", {})
        if "cflow.abstimestart" in times:
            when = dt.datetime.strptime(times["cflow.abstimestart"][:-7], "%b %d, %Y %H:%M:%S.%f")
            assert start[i] == int(when.replace(tzinfo=dt.UTC).timestamp() * 1_000_000)
        elif "cflow.timestart" in times:
            # Relative to sysUptime: the duration must agree; for v9/v5 the absolute too.
            t0, t1 = float(times["cflow.timestart"]), float(times["cflow.timeend"])
            assert end[i] - start[i] == round((t1 - t0) * 1_000_000)
            head = t["_header"]
            if "cflow.sysuptime" in head:
                secs = int(head["cflow.timestamp_tree"]["cflow.unix_secs"])
                nsecs = int(head["cflow.timestamp_tree"].get("cflow.unix_nsecs", 0))
                up = round(float(head["cflow.sysuptime"]) * 1000)
                # tshark subtracts naively; the exporter's uptime may have wrapped.
                d = (up - round(t0 * 1000)) & 0xFFFFFFFF
                d = d - (1 << 32) if d >= 1 << 31 else d
                want = secs * 1_000_000 + nsecs // 1000 - d * 1000
                assert start[i] == want


PEER_CASES = {
    "generated_v9": ([GEN / "netflowv9.pcap"], 2055),
    "generated_ipfix": ([GEN / "ipfix.pcap"], 9995),
    "softflowd_v5": ([SOFT / "packet_v5.bin"], 2055),
    "goflow2_v5": ([GOFLOW / "netflowlegacy_data.bin"], 2055),
    "softflowd_v9": (
        [SOFT / f for f in ("packet_v9_template.bin", "packets_v9_0.bin", "packets_v9_1.bin")],
        2055,
    ),
    "goflow2_v9": ([GOFLOW / "netflow_template.bin", GOFLOW / "netflow_data.bin"], 2055),
    "softflowd_ipfix": ([SOFT / "packet_ipfix_template.bin", SOFT / "packet_ipfix.bin"], 2055),
}


@pytest.mark.peer
@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
@pytest.mark.parametrize("case", sorted(PEER_CASES))
def test_flows_equal_tshark(case: str, tmp_path: Path) -> None:
    files, port = PEER_CASES[case]
    if files[0].suffix == ".pcap":
        pcap = files[0]
    else:
        pcap = _pcap_of(read(*files), tmp_path / "c.pcap", port)
    payloads, exps, ts = zip(*iter_datagrams_from_pcap(pcap), strict=True)
    out = FlowDecoder().decode_many(list(payloads), list(exps), list(ts))
    assert out.rejected == []
    _compare(out.flows, _tshark_flows(pcap, port))


def _tshark_fields(path: Path, port: int, fields: list[str]) -> list[list[str]]:
    """One row per frame: each ``cflow.<field>``'s values joined by '/' ('' when absent)."""
    cmd = ["tshark", "-r", str(path), "-d", f"udp.port=={port},cflow", "-T", "fields"]
    cmd += ["-E", "aggregator=/"] + [a for f in fields for a in ("-e", f"cflow.{f}")]
    out = subprocess.run(cmd, capture_output=True, check=True, timeout=60, text=True).stdout
    return [line.split("\t") for line in out.splitlines()]


@pytest.mark.peer
@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_generated_templates_and_options_equal_tshark() -> None:
    """The generated pcaps' template ids, field counts and options values, read by tshark."""
    fields = ["template_id", "template_field_count", "sampling_interval", "sampling_algorithm",
              "flow_active_timeout", "flow_inactive_timeout", "count"]  # fmt: skip
    rows = _tshark_fields(GEN / "netflowv9.pcap", 2055, fields)
    assert rows == [
        ["424", "21", "", "", "", "", "1"],
        ["425", "", "", "", "", "", "1"],
        ["429", "", "", "", "", "", "1"],
        ["", "", "100", "2", "1800", "15", "2"],
        ["", "", "", "", "", "", "24"],
    ]
    dec, out = _decode_pcap(GEN / "netflowv9.pcap")
    assert {t.template_id: len(t.fields) for t in dec.session.cache.templates()}[424] == 21
    opts = [r for rs in dec.session.options_records.values() for r in rs]
    assert [
        (r["samplingInterval"], r["samplingAlgorithm"]) for r in opts if "samplingInterval" in r
    ] == [(100, 2)]
    assert [
        (r["flowActiveTimeout"], r["flowIdleTimeout"]) for r in opts if "flowActiveTimeout" in r
    ] == [(1800, 15)]
    assert out.flows.num_rows == 24

    fields = ["template_id", "template_field_count", "template_ipfix_total_field_count",
              "template_ipfix_scope_field_count", "flow_active_timeout", "flow_inactive_timeout",
              "od_id"]  # fmt: skip
    rows = _tshark_fields(GEN / "ipfix.pcap", 9995, fields)
    assert rows == [
        ["307", "23", "", "", "", "", "7"],
        ["308", "", "3", "1", "", "", "7"],
        ["", "", "", "", "1800", "15", "7"],
    ]
    dec, out = _decode_pcap(GEN / "ipfix.pcap")
    tpl = {t.template_id: t for t in dec.session.cache.templates()}
    assert (len(tpl[307].fields), len(tpl[308].fields), tpl[308].scope_count) == (23, 3, 1)
    ((options,),) = dec.session.options_records.values()
    assert (options["flowActiveTimeout"], options["flowIdleTimeout"]) == (1800, 15)
    assert set(out.flows.column("observation_domain").to_pylist()) == {7}


def test_pcap_reader_link_layers_and_filtering(tmp_path: Path) -> None:
    """VLAN-tagged IPv4 and IPv6 UDP are read; TCP and non-first fragments are skipped."""

    def udp4(payload: bytes, frag: int = 0) -> dpkt.ip.IP:
        udp = dpkt.udp.UDP(sport=1, dport=2055, data=payload)
        udp.ulen = 8 + len(payload)
        ip = dpkt.ip.IP(src=bytes([10, 0, 0, 9]), dst=bytes([10, 0, 0, 1]), p=17, data=udp)
        ip.offset = frag
        ip.len = 20 + udp.ulen
        return ip

    udp6 = dpkt.udp.UDP(sport=1, dport=4739, data=b"v6")
    udp6.ulen = 10
    ip6 = dpkt.ip6.IP6(
        src=address_to_bytes("2001:db8::9"), dst=address_to_bytes("2001:db8::1"), nxt=17, hlim=64
    )
    ip6.data, ip6.plen = udp6, 10
    tcp = dpkt.ip.IP(src=bytes(4), dst=bytes(4), p=6, data=dpkt.tcp.TCP())
    vlan = b"\x81\x00\x00\x07" + b"\x08\x00"
    frames = [
        b"\x00" * 12 + vlan + bytes(udp4(b"v4")),
        bytes(dpkt.ethernet.Ethernet(type=0x86DD, data=ip6)),
        bytes(dpkt.ethernet.Ethernet(type=0x0800, data=tcp)),
        bytes(dpkt.ethernet.Ethernet(type=0x0800, data=udp4(b"frag", frag=64))),
    ]
    path = tmp_path / "mixed.pcap"
    with open(path, "wb") as fh:
        w = dpkt.pcap.Writer(fh)
        for i, f in enumerate(frames):
            w.writepkt(f, ts=1_700_000_000.25 + i)
    got = list(iter_datagrams_from_pcap(path))
    assert [g[0] for g in got] == [b"v4", b"v6"]
    assert got[0][1] == address_to_bytes("10.0.0.9")
    assert got[1][1] == address_to_bytes("2001:db8::9")
    assert got[0][2] == 1_700_000_000_250_000
