"""Real sFlow captures (goflow2, gopacket) decode to the MANIFEST values; tshark as an oracle."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import wrpcap
from shared_data import CAPTURES

from collectors.addresses import address_from_bytes, address_to_bytes
from collectors.sflow.datagram import SflowDecoder, datagram_sequence

FULL_FRAMES = {"gopacket_SFlowTestPacket1.bin", "gopacket_SFlowTestPacket2.bin"}
NOW_US = 1_764_000_000_000_000
ALL = sorted((CAPTURES / "goflow2").glob("sflow*.bin")) + sorted(
    (CAPTURES / "gopacket").glob("*.bin")
)


def payload(path: Path) -> bytes:
    """The sFlow UDP payload; the two full-frame files carry Ethernet/IPv4/UDP first."""
    data = path.read_bytes()
    if path.name in FULL_FRAMES:
        frame = Ether(data)
        assert UDP in frame
        assert frame[UDP].dport == 6343
        return bytes(frame[UDP].payload)
    return data


def decode(path: Path) -> tuple:
    return SflowDecoder().decode(payload(path), address_to_bytes("127.0.0.1"), NOW_US)


def test_every_capture_decodes() -> None:
    assert len(ALL) == 19
    for path in ALL:
        flows, _counters, stats = decode(path)
        assert flows.num_rows == stats["flow_samples"], path.name


def test_manifest_values() -> None:
    flows, _, stats = decode(CAPTURES / "goflow2" / "sflow_data.bin")
    assert str(address_from_bytes(flows.column("exporter")[0].as_py())) == "172.16.0.17"
    assert stats["flow_samples"] == 1

    flows, _, stats = decode(CAPTURES / "goflow2" / "sflow_data_1.bin")
    assert stats["samples"] == 5
    assert flows.num_rows == 5
    assert flows.column("sampling_interval").to_pylist() == [16383] * 5
    assert flows.column("vlan").to_pylist() == [30, 23, 1337, 23, 957]

    for name in ("sflow_data_2.bin", "sflow_data_3.bin", "sflow_data_4.bin"):
        flows, counters, stats = decode(CAPTURES / "goflow2" / name)
        assert flows.num_rows == 0
        assert counters is None
        assert stats["skipped_unknown_samples"] == 1

    gp = CAPTURES / "gopacket"
    flows, counters, stats = decode(gp / "gopacket_SFlowTestPacket1.bin")
    assert str(address_from_bytes(flows.column("exporter")[0].as_py())) == "10.1.248.22"
    assert flows.column("observation_domain").to_pylist() == [17] * 6
    assert datagram_sequence(payload(gp / "gopacket_SFlowTestPacket1.bin"))[1:] == (17, 40443)
    assert (stats["flow_samples"], stats["counter_samples"]) == (6, 1)
    assert counters is not None
    assert counters.column("format").to_pylist() == [1, 2]

    flows, _, stats = decode(gp / "gopacket_SFlowTestPacket2.bin")
    assert stats["flow_samples"] == 3
    rows = flows.to_pylist()
    assert {str(address_from_bytes(r["next_hop"])) for r in rows} == {"13.12.11.10"}
    assert [(r["src_as"], r["dst_as"]) for r in rows] == [(123, 999)] * 3

    flows, _, _ = decode(gp / "gopacket_SFlowTestPacket4.bin")
    assert flows.column("vlan").to_pylist() == [3]
    flows, _, _ = decode(gp / "gopacket_SFlowTestPacket5.bin")
    assert str(address_from_bytes(flows.column("next_hop")[0].as_py())) == "192.168.1.33"
    flows, _, _ = decode(gp / "gopacket_SFlowTestPacket8.bin")
    assert str(address_from_bytes(flows.column("next_hop")[0].as_py())) == "2001:db8::"
    flows, _, stats = decode(gp / "gopacket_SFlowEthernetFramePacket.bin")
    assert stats["flow_samples"] == 7
    assert flows.column("bytes").to_pylist() == [16] * 7  # MAC length of the frame record
    _, counters, _ = decode(gp / "gopacket_SFlowTestPacket3.bin")
    assert counters is not None
    assert counters.column("format").to_pylist() == [1001]  # processor information


class _Obj(list):  # type: ignore[type-arg]
    """A JSON object as its (key, value) pairs: tshark repeats keys within one object."""


def _pairs(obj: Any, key: str) -> list[Any]:
    """All values of ``key`` below ``obj``, in document order."""
    found: list[Any] = []
    if isinstance(obj, _Obj):
        for k, v in obj:
            if k == key:
                found.append(v)
            found.extend(_pairs(v, key))
    elif isinstance(obj, list):
        for item in obj:
            found.extend(_pairs(item, key))
    return found


def _first(obj: Any, key: str) -> str | None:
    values = _pairs(obj, key)
    return values[0] if values else None


def tshark_samples(path: Path, tmp: Path) -> list[dict[str, Any]]:
    """Per flow sample: sampling rate, VLAN and the sampled header's 5-tuple per tshark."""
    pcap = tmp / (path.stem + ".pcap")
    pkt = Ether() / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=6343, dport=6343)
    wrpcap(str(pcap), [pkt / Raw(payload(path))])
    out = subprocess.run(
        ["tshark", "-r", str(pcap), "-T", "json", "-d", "udp.port==6343,sflow"],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    doc = json.loads(out, object_pairs_hook=_Obj)
    sflow = _pairs(doc, "sflow")[0]
    samples = []
    for key, sample in sflow:
        if not key.startswith(("Flow sample", "Expanded flow sample")):
            continue
        tree = _first(sample, "sflow_245.header_tree")
        ip = tree and (_first(tree, "ip") or _first(tree, "ipv6"))
        entry: dict[str, Any] = {
            "rate": int(_first(sample, "sflow.flow_sample.sampling_rate") or 0),
            "vlan": _first(sample, "sflow_245.vlan.in"),
        }
        if ip:
            src = _first(ip, "ip.src") or _first(ip, "ipv6.src")
            dst = _first(ip, "ip.dst") or _first(ip, "ipv6.dst")
            l4 = _first(tree, "tcp") or _first(tree, "udp")
            sport = _first(l4, "tcp.srcport") or _first(l4, "udp.srcport") if l4 else None
            dport = _first(l4, "tcp.dstport") or _first(l4, "udp.dstport") if l4 else None
            icmp = _first(tree, "icmp")
            if icmp:  # NetFlow convention: type*256+code in the destination port
                dport = str(
                    int(_first(icmp, "icmp.type") or 0) * 256 + int(_first(icmp, "icmp.code") or 0)
                )
            entry.update(src=src, dst=dst, sport=int(sport or 0), dport=int(dport or 0))
            entry["len"] = int(_first(ip, "ip.len") or 0) or None
        samples.append(entry)
    return samples


@pytest.mark.peer
@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
@pytest.mark.parametrize(
    "name",
    [
        "goflow2/sflow_data.bin",
        "goflow2/sflow_data_1.bin",
        "gopacket/gopacket_SFlowTestPacket1.bin",
        "gopacket/gopacket_SFlowTestPacket2.bin",
        "gopacket/gopacket_SFlowTestPacket4.bin",
    ],
)
def test_flow_samples_match_tshark(name: str, tmp_path: Path) -> None:
    path = CAPTURES / name
    expected = tshark_samples(path, tmp_path)
    flows, _, _ = decode(path)
    rows = flows.to_pylist()
    assert len(rows) == len(expected)
    for row, exp in zip(rows, expected, strict=True):
        assert row["sampling_interval"] == exp["rate"]
        if exp["vlan"] is not None:
            assert row["vlan"] == int(exp["vlan"])
        if "src" in exp:
            assert str(address_from_bytes(row["src_addr"])) == exp["src"]
            assert str(address_from_bytes(row["dst_addr"])) == exp["dst"]
            assert (row["src_port"], row["dst_port"]) == (exp["sport"], exp["dport"])
            if exp["len"] is not None:
                assert row["bytes"] == exp["len"]
