"""sFlow v5 datagrams (sflow_version_5.txt) decoded into flow rows and counter rows.

Choices where sFlow differs from NetFlow (documented here, relied on by callers):

* **One row per flow sample.** A flow sample describes one sampled packet; its row has
  ``packets = 1`` and ``sampling_interval`` = the sample's sampling rate (null if the
  agent sent 0, i.e. announced none), so the renormalised volume is
  ``bytes * sampling_interval`` as for every other source.
* **bytes** is the IP-layer length: the IPv4 total length / IPv6 payload length + 40 read
  from the sampled header (this ignores Ethernet padding and the FCS); from the length
  field of a sampled IPv4/IPv6 record (formats 3/4); failing both, the frame length minus
  the stripped bytes of the raw header record, or the MAC length of an Ethernet frame
  record (format 2).
* **Times**: sFlow carries no flow timestamps, so ``flow_start = flow_end`` = the time
  the datagram was received.
* **exporter** is the sFlow *agent address* from the datagram (the device, even behind a
  relay or NAT), ``observation_domain`` the sub-agent id. The datagram sequence number,
  per (agent, sub-agent), is given by :func:`datagram_sequence` for loss accounting (the
  stats hold only counts, so callers may sum them).
* A flow sample with no packet-describing record (only extended records, say) still
  gives its row, with the unspecified address ``::`` and zero ports, so sampled volume
  is never lost; ``unparsed_headers`` counts them.
* Interfaces: input/output ifIndex; the "unknown" value 0x3FFFFFFF, "discarded" and
  "multiple interfaces" encodings become 0. VLAN: the extended switch record's incoming
  VLAN, else the outer 802.1Q tag of the sampled header. Next hop from the extended
  router record, else the extended gateway record, which also gives src/dst AS (the
  router's own AS where the source AS is 0 or the destination AS path is empty: the
  agent's way of saying "local"). MPLS labels come from the sampled header.
  Router mask lengths have no column in the flow schema and are not kept.
* VXLAN: with ``decapsulate_vxlan`` the sampled header's inner packet gives the key
  (see :mod:`collectors.sampled_headers`); the volume stays the outer packet's.
* Unknown sample types (e.g. drop notifications) and flow/counter records we do not
  interpret are skipped and counted; structural faults (truncation, a length that
  overruns its container, a version other than 5) raise :class:`DecodeError`.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import pyarrow as pa

from collectors.errors import DecodeError
from collectors.schemas import TIMESTAMP
from collectors.sflow.records import (
    SampledPacket,
    parse_extended_gateway,
    parse_extended_router,
    parse_sampled_header,
    parse_sampled_ip,
)

__all__ = ["COUNTER_SCHEMA", "GENERIC_INTERFACE_FIELDS", "SflowDecoder", "datagram_sequence"]

_ADDRESS = pa.binary(16)
_V4_PREFIX = b"\x00" * 10 + b"\xff\xff"
_UNKNOWN_IF = 0x3FFFFFFF


def _f(name: str, type_: pa.DataType, nullable: bool, doc: str) -> pa.Field:
    return pa.field(name, type_, nullable=nullable, metadata={"doc": doc})


#: Generic interface counters (counter record format 1) in record order: (name, struct code).
GENERIC_INTERFACE_FIELDS: tuple[tuple[str, str], ...] = (
    ("if_index", "I"),
    ("if_type", "I"),
    ("if_speed", "Q"),
    ("if_direction", "I"),
    ("if_status", "I"),
    ("in_octets", "Q"),
    ("in_ucast_pkts", "I"),
    ("in_multicast_pkts", "I"),
    ("in_broadcast_pkts", "I"),
    ("in_discards", "I"),
    ("in_errors", "I"),
    ("in_unknown_protos", "I"),
    ("out_octets", "Q"),
    ("out_ucast_pkts", "I"),
    ("out_multicast_pkts", "I"),
    ("out_broadcast_pkts", "I"),
    ("out_discards", "I"),
    ("out_errors", "I"),
    ("promiscuous_mode", "I"),
)
_GENERIC = struct.Struct(">" + "".join(code for _, code in GENERIC_INTERFACE_FIELDS))

#: One row per counter record of a counter sample (compact or expanded). The generic
#: interface counters (format 1) are spread into typed columns; every record, of any
#: format, keeps its body in ``raw`` so nothing is lost for formats not spread out.
COUNTER_SCHEMA = pa.schema(
    [
        _f("exporter", _ADDRESS, False, "sFlow agent address"),
        _f("observation_domain", pa.uint32(), False, "sFlow sub-agent id"),
        _f("received_at", TIMESTAMP, False, "when the datagram was received, UTC"),
        _f("sample_sequence", pa.uint32(), False, "counter sample sequence number"),
        _f("source_id_type", pa.uint32(), False, "0 ifIndex, 1 smonVlanDataSource, 2 entPhysical"),
        _f("source_id_index", pa.uint32(), False, "index of the data source"),
        _f("enterprise", pa.uint32(), False, "record enterprise (0 = sFlow.org standard)"),
        _f("format", pa.uint32(), False, "record format (1 generic interface, 2 ethernet, ...)"),
        _f("raw", pa.binary(), False, "the record body as received (XDR, big-endian)"),
    ]
    + [
        _f(
            name,
            pa.uint64() if code == "Q" else pa.uint32(),
            True,
            f"generic interface counter {name}; null for other record formats",
        )
        for name, code in GENERIC_INTERFACE_FIELDS
    ]
)

_FLOW_TYPES = {
    "exporter": _ADDRESS,
    "observation_domain": pa.uint32(),
    "flow_start": TIMESTAMP,
    "flow_end": TIMESTAMP,
    "src_addr": _ADDRESS,
    "dst_addr": _ADDRESS,
    "src_port": pa.uint16(),
    "dst_port": pa.uint16(),
    "protocol": pa.uint8(),
    "tcp_flags": pa.uint16(),
    "tos": pa.uint8(),
    "bytes": pa.uint64(),
    "packets": pa.uint64(),
    "input_if": pa.uint32(),
    "output_if": pa.uint32(),
    "src_as": pa.uint32(),
    "dst_as": pa.uint32(),
    "next_hop": _ADDRESS,
    "vlan": pa.uint16(),
    "sampling_interval": pa.uint32(),
    "mpls_labels": pa.list_(pa.uint32()),
}
_VARYING = (
    "src_addr",
    "dst_addr",
    "src_port",
    "dst_port",
    "protocol",
    "tcp_flags",
    "tos",
    "bytes",
    "input_if",
    "output_if",
    "src_as",
    "dst_as",
    "next_hop",
    "vlan",
    "sampling_interval",
    "mpls_labels",
)
_PER_DATAGRAM = ("exporter", "observation_domain", "received_at")
_STAT_KEYS = (
    "datagrams",
    "samples",
    "flow_samples",
    "counter_samples",
    "flow_records",
    "counter_records",
    "flows",
    "skipped_unknown_records",
    "skipped_unknown_samples",
    "unparsed_headers",
    "sample_length_mismatch",
)


def _header(datagram: bytes) -> tuple[bytes, int, int, int, int]:
    """(agent address 16 bytes, sub-agent, sequence, sample count, offset of first sample)."""
    n = len(datagram)
    if n < 8:
        raise DecodeError("truncated", f"sFlow datagram of {n} bytes is shorter than its header")
    version, addr_type = struct.unpack_from(">II", datagram, 0)
    if version != 5:
        raise DecodeError(
            "unknown_version", f"sFlow version {version} is not 5", offset=0, field="version"
        )
    if addr_type == 1:
        agent, pos = _V4_PREFIX + datagram[8:12], 12
    elif addr_type == 2:
        agent, pos = datagram[8:24], 24
    else:
        raise DecodeError(
            "bad_address_type",
            f"sFlow agent address type {addr_type} is neither 1 (IPv4) nor 2 (IPv6)",
            offset=4,
            field="agent_address_type",
        )
    if n < pos + 16:
        raise DecodeError("truncated", f"sFlow datagram of {n} bytes ends inside its header")
    sub_agent, sequence, _uptime, count = struct.unpack_from(">IIII", datagram, pos)
    return agent, sub_agent, sequence, count, pos + 16


def datagram_sequence(datagram: bytes) -> tuple[bytes, int, int]:
    """(agent address, sub-agent id, datagram sequence number) for loss accounting."""
    agent, sub_agent, sequence, _, _ = _header(datagram)
    return agent, sub_agent, sequence


def _records(
    datagram: bytes, pos: int, end: int, count: int, what: str
) -> list[tuple[int, int, int, int]]:
    """Split ``count`` records between ``pos`` and ``end``: (enterprise, format, start, end).

    The records' own end is the last tuple's end (``pos`` if there are none)."""
    out: list[tuple[int, int, int, int]] = []
    for i in range(count):  # each record needs 8 bytes, so the loop is bounded by ``end``
        if pos + 8 > end:
            raise DecodeError(
                "truncated", f"{what} record {i} of {count} runs past the datagram", offset=pos
            )
        tag, length = struct.unpack_from(">II", datagram, pos)
        body_end = pos + 8 + length
        if body_end > end:
            raise DecodeError(
                "length_overrun",
                f"{what} record {i} length {length} overruns the datagram",
                offset=pos + 4,
                field="record_length",
            )
        out.append((tag >> 12, tag & 0xFFF, pos + 8, body_end))
        pos = body_end
    return out


class _Columns:
    """Column lists shared by the datagrams of one call, with rollback for bad datagrams."""

    def __init__(self) -> None:
        self.flows: dict[str, list[object]] = {k: [] for k in (*_VARYING, *_PER_DATAGRAM)}
        self.ctr: dict[str, list[object]] = {k: [] for k in COUNTER_SCHEMA.names}

    def mark(self) -> tuple[int, int]:
        return len(self.flows["src_addr"]), len(self.ctr["raw"])

    def rollback(self, mark: tuple[int, int]) -> None:
        for values in self.flows.values():
            del values[mark[0] :]
        for values in self.ctr.values():
            del values[mark[1] :]

    def flow_batch(self, flow_schema: pa.Schema) -> pa.RecordBatch:
        cols = self.flows
        rows = len(cols["src_addr"])
        arrays = []
        for field in flow_schema:
            name = field.name
            if name in ("flow_start", "flow_end"):
                arrays.append(pa.array(cols["received_at"], type=pa.int64()).cast(TIMESTAMP))
            elif name in cols:
                arrays.append(pa.array(cols[name], type=_FLOW_TYPES[name]))
            elif name == "packets":
                arrays.append(pa.array([1] * rows, type=pa.uint64()))
            elif name == "source_format":
                arrays.append(pa.array(["sflow"] * rows, type=pa.string()))
            else:  # direction, or a column added to the schema later: typed nulls
                arrays.append(pa.nulls(rows, type=field.type))
        return pa.RecordBatch.from_arrays(arrays, schema=flow_schema)

    def counter_batch(self) -> pa.RecordBatch | None:
        if not self.ctr["raw"]:
            return None
        return pa.RecordBatch.from_arrays(
            [
                pa.array(self.ctr[f.name], type=pa.int64()).cast(TIMESTAMP)
                if f.name == "received_at"
                else pa.array(self.ctr[f.name], type=f.type)
                for f in COUNTER_SCHEMA
            ],
            schema=COUNTER_SCHEMA,
        )


class SflowDecoder:
    """Stateless sFlow v5 decoder: datagrams in, flow and counter record batches out.

    ``decapsulate_vxlan``: key VXLAN-encapsulated samples by their inner packet.
    """

    def __init__(self, *, decapsulate_vxlan: bool = False) -> None:
        self.decapsulate_vxlan = decapsulate_vxlan

    def decode(
        self, datagram: bytes, exporter: bytes, received_at_us: int
    ) -> tuple[pa.RecordBatch, pa.RecordBatch | None, dict[str, int]]:
        """Decode one datagram.

        ``exporter`` (the UDP source) is only used in error messages; rows carry the
        agent address. Returns (flows in FLOW_SCHEMA, counters in COUNTER_SCHEMA or None
        when the datagram has no counter records, stats). Raises :class:`DecodeError`.
        """
        from collectors.schemas import (
            FLOW_SCHEMA,  # local: keeps the module import light for workers
        )

        cols = _Columns()
        stats = dict.fromkeys(_STAT_KEYS, 0)
        self._parse_checked(bytes(datagram), exporter, received_at_us, cols, stats)
        stats["flows"] = len(cols.flows["src_addr"])
        return cols.flow_batch(FLOW_SCHEMA), cols.counter_batch(), stats

    def decode_many(
        self,
        datagrams: Sequence[bytes],
        exporters: Sequence[bytes],
        received_at_us: Sequence[int],
    ) -> tuple[pa.RecordBatch, pa.RecordBatch | None, dict[str, int], list[tuple[int, str, str]]]:
        """Decode many datagrams into one flow batch and one counter batch.

        The same rows as :meth:`decode` per datagram, in order, but the Arrow arrays are
        built once per call (much faster for many small datagrams). A malformed datagram
        adds nothing and is returned as (index, reason, message) instead of raising.
        """
        from collectors.schemas import FLOW_SCHEMA

        cols = _Columns()
        stats = dict.fromkeys(_STAT_KEYS, 0)
        rejected: list[tuple[int, str, str]] = []
        for i, (data, exporter, when) in enumerate(
            zip(datagrams, exporters, received_at_us, strict=True)
        ):
            mark = cols.mark()
            try:
                self._parse_checked(bytes(data), exporter, int(when), cols, stats)
            except DecodeError as exc:
                cols.rollback(mark)  # stats are only added once a datagram parsed whole
                rejected.append((i, exc.reason, str(exc)))
        stats["flows"] = len(cols.flows["src_addr"])
        return cols.flow_batch(FLOW_SCHEMA), cols.counter_batch(), stats, rejected

    def _parse_checked(
        self,
        data: bytes,
        exporter: bytes,
        received_at_us: int,
        cols: _Columns,
        stats: dict[str, int],
    ) -> None:
        try:
            self._parse(data, received_at_us, cols, stats)
        except DecodeError as exc:
            if exc.source is None:
                exc.source = f"sflow from {exporter.hex()}"
            raise
        except (struct.error, IndexError, ValueError, OverflowError) as exc:
            # Every length is checked before it is used; this is the last line of defence.
            raise DecodeError("malformed", f"sFlow datagram cannot be decoded: {exc}") from exc

    def _parse(
        self, data: bytes, received_at_us: int, cols: _Columns, stats: dict[str, int]
    ) -> None:
        agent, sub_agent, _sequence, count, pos = _header(data)
        flows, ctr = cols.flows, cols.ctr
        first_flow, first_ctr = cols.mark()
        local = dict.fromkeys(_STAT_KEYS, 0)
        local["datagrams"] = 1
        n = len(data)
        for i in range(count):  # bounded: every sample consumes at least 8 bytes
            if pos + 8 > n:
                raise DecodeError(
                    "truncated", f"sample {i} of {count} runs past the datagram", offset=pos
                )
            tag, length = struct.unpack_from(">II", data, pos)
            end = pos + 8 + length
            local["samples"] += 1
            enterprise, fmt = tag >> 12, tag & 0xFFF
            body = pos + 8
            # Records are bounded by the datagram, not by the declared sample length: some
            # agents (and gopacket's test packets) state it a word short or long, and
            # tshark and gopacket read such samples. A record overrunning the datagram is
            # still an error.
            if enterprise == 0 and fmt in (1, 3):
                used = self._flow_sample(
                    data, body, n, fmt == 3, flows, local, self.decapsulate_vxlan
                )
            elif enterprise == 0 and fmt in (2, 4):
                used = self._counter_sample(data, body, n, fmt == 4, ctr, local)
            else:
                if end > n:
                    raise DecodeError(
                        "length_overrun",
                        f"sample {i} length {length} overruns the datagram of {n} bytes",
                        offset=pos + 4,
                        field="sample_length",
                    )
                local["skipped_unknown_samples"] += 1
                used = end
            if used != end:
                local["sample_length_mismatch"] += 1
            pos = min(end, n)
        new_flows = len(flows["src_addr"]) - first_flow
        flows["exporter"].extend([agent] * new_flows)
        flows["observation_domain"].extend([sub_agent] * new_flows)
        flows["received_at"].extend([received_at_us] * new_flows)
        new_ctr = len(ctr["raw"]) - first_ctr
        ctr["exporter"].extend([agent] * new_ctr)
        ctr["observation_domain"].extend([sub_agent] * new_ctr)
        ctr["received_at"].extend([received_at_us] * new_ctr)
        for key, value in local.items():  # only once the whole datagram parsed
            stats[key] += value

    @staticmethod
    def _flow_sample(
        data: bytes,
        pos: int,
        end: int,
        expanded: bool,
        cols: dict[str, list[object]],
        stats: dict[str, int],
        decapsulate_vxlan: bool,
    ) -> int:
        if expanded:
            if pos + 44 > end:
                raise DecodeError("truncated", "expanded flow sample header truncated", offset=pos)
            (_, _, _, rate, _, _, in_fmt, in_val, out_fmt, out_val, nrec) = struct.unpack_from(
                ">IIIIIIIIIII", data, pos
            )
            input_if = in_val if in_fmt == 0 else 0
            output_if = out_val if out_fmt == 0 else 0
            pos += 44
        else:
            if pos + 32 > end:
                raise DecodeError("truncated", "flow sample header truncated", offset=pos)
            (_, _, rate, _, _, input_if, output_raw, nrec) = struct.unpack_from(
                ">IIIIIIII", data, pos
            )
            # Output: top two bits are the format (0 ifIndex, 1 discarded, 2 multiple).
            output_if = output_raw & 0x3FFFFFFF if output_raw >> 30 == 0 else 0
            pos += 32
        input_if = 0 if input_if == _UNKNOWN_IF else input_if
        output_if = 0 if output_if == _UNKNOWN_IF else output_if
        packet: SampledPacket | None = None
        fallback_len = 0
        switch_vlan: int | None = None
        next_hop: bytes | None = None
        src_as = dst_as = 0
        records = _records(data, pos, end, nrec, "flow")
        for enterprise, fmt, start, stop in records:
            stats["flow_records"] += 1
            body = data[start:stop]
            if enterprise != 0:
                stats["skipped_unknown_records"] += 1
            elif fmt == 1 and len(body) >= 16:
                proto, frame_len, stripped, hlen = struct.unpack_from(">IIII", body, 0)
                if 16 + hlen > len(body):
                    raise DecodeError(
                        "length_overrun",
                        f"raw packet header length {hlen} overruns its record",
                        offset=start + 12,
                        field="header_length",
                    )
                parsed = parse_sampled_header(proto, body[16 : 16 + hlen], decapsulate_vxlan)
                if packet is None or not packet.parsed:
                    packet = parsed
                    fallback_len = max(frame_len - stripped, 0)
            elif fmt in (3, 4):
                sampled = parse_sampled_ip(fmt, body)
                if sampled is None:
                    raise DecodeError(
                        "truncated", f"sampled IP record {fmt} truncated", offset=start
                    )
                if packet is None or not packet.parsed:
                    packet = sampled
            elif fmt == 2 and len(body) >= 4:
                if not fallback_len:
                    fallback_len = struct.unpack_from(">I", body, 0)[0]
            elif fmt == 1001 and len(body) >= 16:
                switch_vlan = struct.unpack_from(">I", body, 0)[0] & 0x0FFF
            elif fmt == 1002:
                hop, _src_mask, _dst_mask = parse_extended_router(body)
                next_hop = hop if hop is not None else next_hop
            elif fmt == 1003:
                hop, src_as, dst_as = parse_extended_gateway(body)
                if next_hop is None:
                    next_hop = hop
            else:
                stats["skipped_unknown_records"] += 1
        if packet is None or not packet.parsed:
            stats["unparsed_headers"] += 1
            vlan = packet.vlan if packet is not None else 0
            packet = SampledPacket(vlan=vlan)
        cols["src_addr"].append(packet.src_addr)
        cols["dst_addr"].append(packet.dst_addr)
        cols["src_port"].append(packet.src_port)
        cols["dst_port"].append(packet.dst_port)
        cols["protocol"].append(packet.protocol)
        cols["tcp_flags"].append(packet.tcp_flags)
        cols["tos"].append(packet.tos)
        cols["bytes"].append(packet.ip_length if packet.ip_length is not None else fallback_len)
        cols["input_if"].append(input_if)
        cols["output_if"].append(output_if)
        cols["src_as"].append(src_as)
        cols["dst_as"].append(dst_as)
        cols["next_hop"].append(next_hop)
        cols["vlan"].append(switch_vlan if switch_vlan is not None else packet.vlan)
        cols["sampling_interval"].append(rate if rate > 0 else None)  # 0: not announced
        cols["mpls_labels"].append(list(packet.mpls_labels) or None)
        stats["flow_samples"] += 1
        return records[-1][3] if records else pos

    @staticmethod
    def _counter_sample(
        data: bytes,
        pos: int,
        end: int,
        expanded: bool,
        ctr: dict[str, list[object]],
        stats: dict[str, int],
    ) -> int:
        if expanded:
            if pos + 16 > end:
                raise DecodeError("truncated", "expanded counter sample truncated", offset=pos)
            seq, src_type, src_index, nrec = struct.unpack_from(">IIII", data, pos)
            pos += 16
        else:
            if pos + 12 > end:
                raise DecodeError("truncated", "counter sample truncated", offset=pos)
            seq, source_id, nrec = struct.unpack_from(">III", data, pos)
            src_type, src_index = source_id >> 24, source_id & 0xFFFFFF
            pos += 12
        stats["counter_samples"] += 1
        records = _records(data, pos, end, nrec, "counter")
        for enterprise, fmt, start, stop in records:
            stats["counter_records"] += 1
            ctr["sample_sequence"].append(seq)
            ctr["source_id_type"].append(src_type)
            ctr["source_id_index"].append(src_index)
            ctr["enterprise"].append(enterprise)
            ctr["format"].append(fmt)
            ctr["raw"].append(data[start:stop])
            generic = enterprise == 0 and fmt == 1 and stop - start >= _GENERIC.size
            values = _GENERIC.unpack_from(data, start) if generic else None
            for k, (name, _) in enumerate(GENERIC_INTERFACE_FIELDS):
                ctr[name].append(values[k] if values is not None else None)
            if not generic and not (enterprise == 0 and fmt in (2, 3, 4, 5, 7, 1001)):
                stats["skipped_unknown_records"] += 1
        return records[-1][3] if records else pos
