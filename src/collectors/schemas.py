"""Canonical Arrow schemas of what the collectors produce: flows, usage (CDRs), rejections.

Every field carries its documentation in the field metadata (key ``doc``), so the
Parquet files describe themselves. Conventions (DESIGN.md): times are
``timestamp[us, UTC]``; addresses are 16 bytes with IPv4 mapped as ``::ffff:a.b.c.d``;
volumes are uint64; ids are int64; phone numbers are E.164 digits without ``+``.
"""

from __future__ import annotations

import pyarrow as pa

__all__ = [
    "FLOW_SCHEMA",
    "MPLS_LABELS",
    "REJECT_SCHEMA",
    "SOURCE_FORMATS",
    "TIMESTAMP",
    "USAGE_PRICE",
    "USAGE_PRICED_SCHEMA",
    "USAGE_SCHEMA",
    "describe",
    "documented_field",
]

TIMESTAMP = pa.timestamp("us", tz="UTC")
ADDRESS = pa.binary(16)
MPLS_LABELS = pa.list_(pa.uint32())

#: Values of ``flow.source_format``.
#: ``nfcapd``: read from an nfcapd file whose record names no NetFlow version.
SOURCE_FORMATS = (
    "netflow_v1", "netflow_v5", "netflow_v7", "netflow_v9", "ipfix", "sflow", "pcap", "nfcapd",
)  # fmt: skip


def documented_field(name: str, type_: pa.DataType, nullable: bool, doc: str) -> pa.Field:
    """An Arrow field whose documentation travels with it (metadata key ``doc``)."""
    return pa.field(name, type_, nullable=nullable, metadata={"doc": doc})


_f = documented_field


_COUNTRY = (
    "ISO 3166-1 alpha-2 country of {} from the --geo-db database; null when not enriched "
    "or the address is not in it"
)
_IF_NAME = "name of {} from the exporter's --interfaces file; null when not described"
_IF_SPEED = "speed of {} in bits/s from the exporter's --interfaces file; null when not given"

FLOW_SCHEMA = pa.schema(
    [
        _f("exporter", ADDRESS, True, "address of the exporting device; null for pcap metering"),
        _f(
            "observation_domain",
            pa.uint32(),
            False,
            "IPFIX observation domain / v9 source id / sFlow sub-agent; 0 where absent",
        ),
        _f("flow_start", TIMESTAMP, False, "first packet of the flow, UTC"),
        _f("flow_end", TIMESTAMP, False, "last packet of the flow, UTC"),
        _f("src_addr", ADDRESS, False, "source address"),
        _f("dst_addr", ADDRESS, False, "destination address"),
        _f("src_port", pa.uint16(), False, "source port; 0 for protocols without ports"),
        _f(
            "dst_port",
            pa.uint16(),
            False,
            "destination port; for ICMP type*256+code as NetFlow exporters put it",
        ),
        _f("protocol", pa.uint8(), False, "IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6)"),
        _f(
            "tcp_flags",
            pa.uint16(),
            False,
            "OR of the TCP flags seen (tcpControlBits); 0 if not TCP",
        ),
        _f("tos", pa.uint8(), False, "IPv4 ToS / IPv6 traffic class of the first packet"),
        _f("bytes", pa.uint64(), False, "bytes at the IP layer as exported (not renormalised)"),
        _f("packets", pa.uint64(), False, "packets as exported (not renormalised)"),
        _f("input_if", pa.uint32(), False, "SNMP ifIndex of the input interface; 0 if unknown"),
        _f("output_if", pa.uint32(), False, "SNMP ifIndex of the output interface; 0 if unknown"),
        _f(
            "src_as",
            pa.uint32(),
            False,
            "source AS number; 0 if unknown (filled from --asn-db where the exporter left 0)",
        ),
        _f(
            "dst_as",
            pa.uint32(),
            False,
            "destination AS number; 0 if unknown (filled from --asn-db where the exporter left 0)",
        ),
        _f("next_hop", ADDRESS, True, "IP next hop; null if not exported"),
        _f("vlan", pa.uint16(), False, "VLAN id (outer tag); 0 if untagged or unknown"),
        _f(
            "sampling_interval",
            pa.uint32(),
            True,
            "1-in-N packet sampling in force for this record; 1 means unsampled; null when "
            "the exporter announced no rate. Renormalised volume is bytes * sampling_interval, "
            "a null (or 0) interval counting as 1: the volume as exported",
        ),
        _f("direction", pa.uint8(), True, "0 ingress, 1 egress (IE 61); null if not exported"),
        _f("source_format", pa.string(), False, "one of " + ", ".join(SOURCE_FORMATS)),
        _f(
            "mpls_labels",
            MPLS_LABELS,
            True,
            "MPLS label stack as 20-bit label values, top first (at most 10); null if none "
            "was exported or seen in a sampled header",
        ),
        # Enrichment (collectors.enrich): filled at collect / ingest time when configured.
        _f("src_country", pa.string(), True, _COUNTRY.format("src_addr")),
        _f("dst_country", pa.string(), True, _COUNTRY.format("dst_addr")),
        _f("input_if_name", pa.string(), True, _IF_NAME.format("input_if")),
        _f("output_if_name", pa.string(), True, _IF_NAME.format("output_if")),
        _f("input_if_speed", pa.uint64(), True, _IF_SPEED.format("input_if")),
        _f("output_if_speed", pa.uint64(), True, _IF_SPEED.format("output_if")),
    ]
)

USAGE_SCHEMA = pa.schema(
    [
        _f(
            "record_id",
            pa.int64(),
            False,
            "stable id: first 8 bytes of BLAKE2b over the record key (source id or key fields); "
            "equal keys are duplicates",
        ),
        _f(
            "record_key",
            pa.string(),
            False,
            "the record's key as text (CDR unique id or composed key)",
        ),
        _f("source_file", pa.string(), False, "name of the file the record came from"),
        _f(
            "source_line",
            pa.int64(),
            False,
            "1-based line of the record in its file (header is line 1)",
        ),
        _f(
            "subscriber_key",
            pa.string(),
            False,
            "who is charged: MSISDN (E.164 digits), IMSI, or IP address text",
        ),
        _f("subscriber_key_type", pa.string(), False, "msisdn, imsi or ip"),
        _f("service", pa.string(), False, "voice, sms or data"),
        _f("start_time", TIMESTAMP, False, "start of the call / session / event, UTC"),
        _f("duration_ms", pa.int64(), False, "duration in milliseconds (0 for events such as SMS)"),
        _f("volume_up", pa.uint64(), False, "bytes sent by the subscriber (data); 0 otherwise"),
        _f(
            "volume_down",
            pa.uint64(),
            False,
            "bytes received by the subscriber (data); 0 otherwise",
        ),
        _f("destination", pa.string(), True, "called number, E.164 digits; null for data"),
        _f("origin", pa.string(), True, "calling number, E.164 digits"),
        _f("location", pa.string(), True, "cell or location id where the CDR has one"),
    ]
)

#: Optional usage column: the price the record carries (roaming partner charge, premium
#: content, wholesale cost), priced by pass-through rates. Written only by sources that have
#: one (a CDR mapping with a ``price`` field), so usage without prices keeps its layout; a
#: part without the column reads as null prices.
USAGE_PRICE = _f(
    "price",
    pa.int64(),
    True,
    "price carried by the record, micro-units (10^-6) of the tariff's currency; null if none",
)
#: USAGE_SCHEMA with the optional price: what the billing partitions read and rate.
USAGE_PRICED_SCHEMA = USAGE_SCHEMA.append(USAGE_PRICE)

REJECT_SCHEMA = pa.schema(
    [
        _f("stage", pa.string(), False, "where it was refused: ingest, decode, rating"),
        _f(
            "source_file",
            pa.string(),
            False,
            "file (or exporter for live input) the record came from",
        ),
        _f("record_no", pa.int64(), True, "line number (CSV), byte offset (pcap, datagram files)"),
        _f("record_id", pa.int64(), True, "usage record id when the record got that far"),
        _f("field", pa.string(), True, "the offending field, when one is to blame"),
        _f("reason", pa.string(), False, "machine-readable reason code, counted per reason"),
        _f("message", pa.string(), False, "explanation for people"),
        _f("raw", pa.binary(), True, "the raw record (CSV line or datagram bytes), kept aside"),
        _f("rejected_at", TIMESTAMP, False, "when it was refused"),
    ]
)


def describe(schema: pa.Schema) -> list[tuple[str, str, bool, str]]:
    """(name, type, nullable, doc) for each field, for docs and ``--help`` output."""
    return [
        (f.name, str(f.type), f.nullable, (f.metadata or {}).get(b"doc", b"").decode())
        for f in schema
    ]
