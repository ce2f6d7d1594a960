"""Generate the NetFlow v9 and IPFIX test captures (deterministic).

    python scripts/make_test_captures.py [--out tests/data/captures/generated]

They stand in for third-party pcaps the project may not ship: one imaginary router
(192.0.2.11) exports to a collector (198.51.100.1). Datagrams are encoded with the
project's own encoders (``collectors.netflow.export_synth``) and framed with scapy.

- ``netflowv9.pcap``: NetFlow v9 on UDP 2055, 5 packets: template 424 (21 fields),
  options template 425 (flow timeouts), options template 429 (sampling interval and
  algorithm), the data of both options templates, then one data set of 24 flow records.
  The router's sysUptime wrapped 90 s before the export: records 0-11 are stamped
  before the wrap, 12-23 after it.
- ``ipfix.pcap``: IPFIX on UDP 9995, 3 packets: template 307 (23 fields: the v9 layout
  plus flowStart/EndMilliseconds), options template 308 (flow timeouts), then its
  options data and a data set of 4 flow records.

``tests/data/captures/MANIFEST.md`` lists the values the tests assert (cross-checked with
tshark); a test checks that this script still makes the committed files byte for byte.
"""

from __future__ import annotations

import argparse
import ipaddress
import struct
from pathlib import Path

from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import PcapWriter

from collectors.netflow.export_synth import (
    data_set,
    encode_ipfix,
    encode_record,
    encode_v9,
    ipfix_options_template_set,
    ipfix_template_set,
    v9_options_template_set,
    v9_template_set,
)

EXPORTER, COLLECTOR = "192.0.2.11", "198.51.100.1"
# Explicit MACs: scapy would otherwise try to resolve them via ARP.
EXPORTER_MAC, COLLECTOR_MAC = "02:00:00:00:0b:01", "02:00:00:00:0b:02"
EXPORT_SECS = 1_772_443_800  # 2026-03-02 09:30:00 UTC
SOURCE_ID = 7  # v9 source id and IPFIX observation domain

#: The v9 flow template 424: (element id, length), a common router layout.
V9_FIELDS: tuple[tuple[int, int], ...] = (
    (8, 4),  # IPV4_SRC_ADDR
    (12, 4),  # IPV4_DST_ADDR
    (5, 1),  # SRC_TOS
    (4, 1),  # PROTOCOL
    (7, 2),  # L4_SRC_PORT
    (11, 2),  # L4_DST_PORT
    (32, 2),  # ICMP_TYPE (type * 256 + code)
    (10, 4),  # INPUT_SNMP
    (16, 4),  # SRC_AS
    (17, 4),  # DST_AS
    (18, 4),  # BGP_IPV4_NEXT_HOP
    (14, 4),  # OUTPUT_SNMP
    (1, 4),  # IN_BYTES
    (2, 4),  # IN_PKTS
    (22, 4),  # FIRST_SWITCHED (sysUptime ms)
    (21, 4),  # LAST_SWITCHED
    (15, 4),  # IPV4_NEXT_HOP
    (9, 1),  # SRC_MASK
    (13, 1),  # DST_MASK
    (6, 1),  # TCP_FLAGS
    (60, 1),  # IP_PROTOCOL_VERSION
)
#: IPFIX template 307: the same layout plus absolute millisecond stamps.
IPFIX_FIELDS = (*V9_FIELDS, (152, 8), (153, 8))
assert len(V9_FIELDS) == 21
assert len(IPFIX_FIELDS) == 23

V9_TEMPLATE, V9_TIMEOUTS, V9_SAMPLING = 424, 425, 429
IPFIX_TEMPLATE, IPFIX_TIMEOUTS = 307, 308
V9_UPTIME_MS = 90_000  # sysUptime at export: 90 s after the 2**32 ms wrap
SAMPLING_INTERVAL, SAMPLING_ALGORITHM = 100, 2  # 1 in 100, random
ACTIVE_TIMEOUT, INACTIVE_TIMEOUT = 1800, 15  # seconds
IPFIX_UPTIME_MS = 3_000_000_000  # system up ~34.7 days at the IPFIX export


def _ip4(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


def v9_flow_times(i: int) -> tuple[int, int]:
    """Milliseconds before the export at which v9 record ``i`` starts and ends.

    Records 0-11 lie wholly before the uptime wrap, 12-23 wholly after (no record
    straddles it, so each record's own duration is plain subtraction).
    """
    if i < 12:
        start = 300_000 - 10_000 * i
        return start, start - 60_000 - 2_000 * i
    start = 88_000 - 3_000 * (i - 12)
    return start, start - 20_000 - 1_000 * (i - 12)


def v9_flow(i: int) -> tuple[int, ...]:
    """Record ``i`` of the v9 data set, in ``V9_FIELDS`` order.

    Kinds cycle through HTTPS, DNS, HTTP and ICMP echo, from 10.1.x.y customers to
    203.0.113.z; counters, AS numbers and interfaces vary with ``i``.
    """
    kind = i % 4
    protocol = (6, 17, 6, 1)[kind]
    packets = 2 + 13 * i
    start_ago, end_ago = v9_flow_times(i)
    return (
        _ip4(f"10.1.{i // 8}.{10 + i}"),
        _ip4(f"203.0.113.{100 + i}"),
        0x28 if i % 3 == 0 else 0,  # every third flow marked AF11
        protocol,
        0 if protocol == 1 else 40_000 + 111 * i,
        (443, 53, 80, 0)[kind],
        0x0800 if protocol == 1 else 0,  # echo request
        3 + i % 2,
        64_512 + i,  # a private 2-byte AS in the 4-byte field
        4_200_000_000 + i,  # a private 4-byte AS
        _ip4("192.0.2.254"),
        17,
        packets * (64 + 50 * i),
        packets,
        (V9_UPTIME_MS - start_ago) & 0xFFFFFFFF,
        (V9_UPTIME_MS - end_ago) & 0xFFFFFFFF,
        _ip4("192.0.2.1"),
        24,
        24,
        0x1B if protocol == 6 else 0,  # FIN SYN PSH ACK
        4,
    )


def ipfix_flow(j: int) -> tuple[int, ...]:
    """Record ``j`` (0-3) of the IPFIX data set, in ``IPFIX_FIELDS`` order.

    HTTPS, NTP, ICMP echo and SSH; uptime stamps agree with the millisecond stamps for
    a system up ``IPFIX_UPTIME_MS`` at the export.
    """
    protocol, sport, dport, icmp = ((6, 51_000, 443, 0), (17, 123, 123, 0), (1, 0, 0, 0x0800),
                                    (6, 52_222, 22, 0))[j]  # fmt: skip
    export_ms = (EXPORT_SECS + 60) * 1000
    start_ms = export_ms - 120_000 + 10_000 * j
    end_ms = export_ms - 5_000 - 1_000 * j
    init_ms = export_ms - IPFIX_UPTIME_MS
    packets = 5 + 40 * j
    return (
        _ip4(f"10.1.3.{20 + j}"),
        _ip4(f"203.0.113.{200 + j}"),
        0,
        protocol,
        sport,
        dport,
        icmp,
        5,
        64_600 + j,
        4_200_000_100 + j,
        _ip4("192.0.2.254"),
        18,
        packets * (80 + 100 * j),
        packets,
        start_ms - init_ms,
        end_ms - init_ms,
        _ip4("192.0.2.2"),
        24,
        28,
        0x1B if protocol == 6 else 0,
        4,
        start_ms,
        end_ms,
    )


def _v9(sets: list[bytes], records: int, sequence: int) -> bytes:
    packet = encode_v9(
        sets, source_id=SOURCE_ID, sequence=sequence, uptime_ms=V9_UPTIME_MS, unix_secs=EXPORT_SECS
    )
    # RFC 3954: the header count is the number of records (templates, options, flows),
    # not of FlowSets as encode_v9 writes it.
    return packet[:2] + struct.pack(">H", records) + packet[4:]


def netflow_v9_datagrams() -> list[bytes]:
    """The five v9 export packets, in capture order."""
    lengths = [length for _, length in V9_FIELDS]
    flows = b"".join(encode_record(lengths, v9_flow(i)) for i in range(24))
    exporter = _ip4(EXPORTER)
    timeouts = encode_record([4, 2, 2], [exporter, ACTIVE_TIMEOUT, INACTIVE_TIMEOUT])
    sampling = encode_record([4, 4, 1], [exporter, SAMPLING_INTERVAL, SAMPLING_ALGORITHM])
    return [
        _v9([v9_template_set([(V9_TEMPLATE, V9_FIELDS)])], 1, 1000),
        _v9([v9_options_template_set(V9_TIMEOUTS, [(1, 4)], [(36, 2), (37, 2)])], 1, 1001),
        _v9([v9_options_template_set(V9_SAMPLING, [(1, 4)], [(34, 4), (35, 1)])], 1, 1002),
        _v9([data_set(V9_TIMEOUTS, timeouts), data_set(V9_SAMPLING, sampling)], 2, 1003),
        _v9([data_set(V9_TEMPLATE, flows)], 24, 1004),
    ]


def ipfix_datagrams() -> list[bytes]:
    """The three IPFIX messages, in capture order."""
    lengths = [length for _, length in IPFIX_FIELDS]
    flows = b"".join(encode_record(lengths, ipfix_flow(j)) for j in range(4))
    fields = [(ie, length, 0) for ie, length in IPFIX_FIELDS]
    options = ipfix_options_template_set(
        IPFIX_TIMEOUTS, [(143, 4, 0)], [(36, 2, 0), (37, 2, 0)], pad=True
    )
    timeouts = encode_record([4, 2, 2], [1, ACTIVE_TIMEOUT, INACTIVE_TIMEOUT])
    seq = 52_000  # data records sent before, in this stream
    return [
        encode_ipfix([ipfix_template_set([(IPFIX_TEMPLATE, fields)])], domain=SOURCE_ID,
                     sequence=seq, export_time=EXPORT_SECS),
        encode_ipfix([options], domain=SOURCE_ID, sequence=seq, export_time=EXPORT_SECS),
        encode_ipfix([data_set(IPFIX_TIMEOUTS, timeouts, pad=False),
                      data_set(IPFIX_TEMPLATE, flows, pad=False)],
                     domain=SOURCE_ID, sequence=seq, export_time=EXPORT_SECS + 60),
    ]  # fmt: skip


def write_pcap(path: Path, datagrams: list[bytes], port: int, times: list[float]) -> None:
    """Ethernet/IPv4/UDP frames from the exporter to the collector, at ``times``."""
    with PcapWriter(str(path), linktype=1, sync=True) as writer:
        for n, (payload, when) in enumerate(zip(datagrams, times, strict=True)):
            frame = (
                Ether(src=EXPORTER_MAC, dst=COLLECTOR_MAC)
                / IP(src=EXPORTER, dst=COLLECTOR, id=n + 1)
                / UDP(sport=50_001, dport=port)
                / Raw(payload)
            )
            frame.time = when
            writer.write(frame)


def make_netflow_v9(path: Path) -> None:
    write_pcap(path, netflow_v9_datagrams(), 2055, [EXPORT_SECS + 0.5 + n / 100 for n in range(5)])


def make_ipfix(path: Path) -> None:
    # The data message leaves a minute after the templates, as its export time says.
    times = [EXPORT_SECS + 0.5, EXPORT_SECS + 0.51, EXPORT_SECS + 60.5]
    write_pcap(path, ipfix_datagrams(), 9995, times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("tests/data/captures/generated"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    make_netflow_v9(args.out / "netflowv9.pcap")
    make_ipfix(args.out / "ipfix.pcap")
    print(f"wrote {args.out / 'netflowv9.pcap'} and {args.out / 'ipfix.pcap'}")


if __name__ == "__main__":
    main()
