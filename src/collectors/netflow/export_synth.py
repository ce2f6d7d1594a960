"""Encoders for NetFlow v5/v9 and IPFIX export datagrams, and realistic synthetic streams.

Used by the tests (known-answer datagrams), the decode benchmark and loopback
replayers. The encoders follow the same RFC layouts the decoders read: v5 header 24
bytes + 48-byte records; v9 header 20 bytes; IPFIX header 16 bytes; sets padded to 4
bytes; IPFIX variable-length fields with the 1-byte or 3-byte length prefix.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np

__all__ = [
    "V5_DTYPE",
    "V9_FLOW_TEMPLATE",
    "data_set",
    "encode_ipfix",
    "encode_record",
    "encode_v5",
    "encode_v9",
    "ipfix_options_template_set",
    "ipfix_template_set",
    "synth_template_stream",
    "synth_v5_datagrams",
    "v9_options_template_set",
    "v9_template_set",
]

#: One NetFlow v5 record, big-endian.
V5_DTYPE = np.dtype(
    [
        ("srcaddr", ">u4"),
        ("dstaddr", ">u4"),
        ("nexthop", ">u4"),
        ("input", ">u2"),
        ("output", ">u2"),
        ("dPkts", ">u4"),
        ("dOctets", ">u4"),
        ("first", ">u4"),
        ("last", ">u4"),
        ("srcport", ">u2"),
        ("dstport", ">u2"),
        ("pad1", "u1"),
        ("tcp_flags", "u1"),
        ("prot", "u1"),
        ("tos", "u1"),
        ("src_as", ">u2"),
        ("dst_as", ">u2"),
        ("src_mask", "u1"),
        ("dst_mask", "u1"),
        ("pad2", ">u2"),
    ]
)
assert V5_DTYPE.itemsize == 48

#: A typical fixed-length IPv4 flow template: (element id, length).
V9_FLOW_TEMPLATE: tuple[tuple[int, int], ...] = (
    (8, 4),  # src addr
    (12, 4),  # dst addr
    (15, 4),  # next hop
    (7, 2),  # src port
    (11, 2),  # dst port
    (4, 1),  # protocol
    (6, 1),  # tcp flags
    (5, 1),  # tos
    (10, 4),  # input if
    (14, 4),  # output if
    (1, 8),  # bytes
    (2, 8),  # packets
    (16, 4),  # src as
    (17, 4),  # dst as
    (22, 4),  # first switched (uptime)
    (21, 4),  # last switched
)


def encode_v5(
    records: np.ndarray,
    *,
    uptime_ms: int,
    unix_secs: int,
    unix_nsecs: int = 0,
    sequence: int = 0,
    engine_type: int = 0,
    engine_id: int = 0,
    sampling: int = 0,
) -> bytes:
    """One v5 datagram from a ``V5_DTYPE`` array (``sampling``: the raw 16-bit field)."""
    head = struct.pack(
        ">HHIIIIBBH",
        5,
        len(records),
        uptime_ms & 0xFFFFFFFF,
        unix_secs,
        unix_nsecs,
        sequence & 0xFFFFFFFF,
        engine_type,
        engine_id,
        sampling,
    )
    return head + records.astype(V5_DTYPE).tobytes()


def synth_v5_datagrams(
    n_datagrams: int, records_per: int = 30, *, seed: int = 0, unix_secs: int = 1_700_000_000
) -> list[bytes]:
    """Realistic v5 datagrams (sequence numbers counting flows, uptime ~ 10 days)."""
    rng = np.random.default_rng(seed)
    recs = np.zeros(n_datagrams * records_per, V5_DTYPE)
    n = recs.shape[0]
    recs["srcaddr"] = rng.integers(0x0A000000, 0x0AFFFFFF, n)
    recs["dstaddr"] = rng.integers(0xC0A80000, 0xC0A8FFFF, n)
    recs["nexthop"] = 0x0A000001
    recs["input"] = rng.integers(1, 48, n)
    recs["output"] = rng.integers(1, 48, n)
    recs["dPkts"] = rng.integers(1, 10_000, n)
    recs["dOctets"] = recs["dPkts"] * rng.integers(40, 1500, n)
    uptime = 864_000_000
    recs["last"] = uptime - rng.integers(0, 60_000, n)
    recs["first"] = recs["last"] - rng.integers(0, 300_000, n)
    recs["srcport"] = rng.integers(1024, 65535, n)
    recs["dstport"] = rng.choice([53, 80, 443, 8080], n)
    recs["prot"] = rng.choice([6, 17], n)
    recs["tcp_flags"] = np.where(recs["prot"] == 6, 0x1B, 0)
    recs["src_as"] = rng.integers(0, 65535, n)
    recs["dst_as"] = rng.integers(0, 65535, n)
    return [
        encode_v5(
            recs[i * records_per : (i + 1) * records_per],
            uptime_ms=uptime,
            unix_secs=unix_secs + i // 1000,
            sequence=i * records_per,
            engine_id=1,
        )
        for i in range(n_datagrams)
    ]


def encode_record(lengths: Sequence[int], values: Sequence[int | bytes]) -> bytes:
    """One data record: ints big-endian in their field length, bytes as-is.

    Length 65535 (variable) takes bytes and writes the RFC 7011 length prefix: one byte
    below 255, else 255 and a 2-byte length.
    """
    out = bytearray()
    for length, value in zip(lengths, values, strict=True):
        if length == 65535:
            raw = value if isinstance(value, bytes) else bytes(value)
            if len(raw) < 255:
                out.append(len(raw))
            else:
                out += b"\xff" + struct.pack(">H", len(raw))
            out += raw
        elif isinstance(value, bytes):
            out += value.rjust(length, b"\x00")[-length:]
        else:
            out += (value & ((1 << (8 * length)) - 1)).to_bytes(length, "big")
    return bytes(out)


def data_set(set_id: int, body: bytes, *, pad: bool = True) -> bytes:
    """A set (v9 FlowSet / IPFIX set) with header, padded to a multiple of 4 bytes."""
    padding = (-len(body)) % 4 if pad else 0
    return struct.pack(">HH", set_id, 4 + len(body) + padding) + body + b"\x00" * padding


def v9_template_set(templates: Sequence[tuple[int, Sequence[tuple[int, int]]]]) -> bytes:
    """A v9 template FlowSet (id 0) from (template id, [(type, length), ...])."""
    body = b"".join(
        struct.pack(">HH", tid, len(fields)) + b"".join(struct.pack(">HH", *f) for f in fields)
        for tid, fields in templates
    )
    return data_set(0, body)


def v9_options_template_set(
    tid: int, scopes: Sequence[tuple[int, int]], options: Sequence[tuple[int, int]]
) -> bytes:
    """A v9 options template FlowSet (id 1)."""
    body = struct.pack(">HHH", tid, 4 * len(scopes), 4 * len(options))
    body += b"".join(struct.pack(">HH", *f) for f in (*scopes, *options))
    return data_set(1, body)


def encode_v9(
    sets: Sequence[bytes], *, source_id: int, sequence: int, uptime_ms: int, unix_secs: int
) -> bytes:
    """A v9 export packet."""
    head = struct.pack(
        ">HHIIII", 9, len(sets), uptime_ms & 0xFFFFFFFF, unix_secs, sequence, source_id
    )
    return head + b"".join(sets)


def _ipfix_field(ie: int, length: int, pen: int = 0) -> bytes:
    if pen:
        return struct.pack(">HHI", ie | 0x8000, length, pen)
    return struct.pack(">HH", ie, length)


def ipfix_template_set(templates: Sequence[tuple[int, Sequence[tuple[int, int, int]]]]) -> bytes:
    """An IPFIX template set (id 2) from (template id, [(ie, length, pen), ...])."""
    body = b"".join(
        struct.pack(">HH", tid, len(fields)) + b"".join(_ipfix_field(*f) for f in fields)
        for tid, fields in templates
    )
    return data_set(2, body, pad=False)


def ipfix_options_template_set(
    tid: int,
    scopes: Sequence[tuple[int, int, int]],
    options: Sequence[tuple[int, int, int]],
    *,
    pad: bool = False,
) -> bytes:
    """An IPFIX options template set (id 3), padded to 4 bytes only if ``pad``."""
    body = struct.pack(">HHH", tid, len(scopes) + len(options), len(scopes))
    body += b"".join(_ipfix_field(*f) for f in (*scopes, *options))
    return data_set(3, body, pad=pad)


def encode_ipfix(sets: Sequence[bytes], *, domain: int, sequence: int, export_time: int) -> bytes:
    """An IPFIX message (length filled in)."""
    body = b"".join(sets)
    return struct.pack(">HHIII", 10, 16 + len(body), export_time, sequence, domain) + body


def synth_template_stream(
    protocol: str,
    n_datagrams: int,
    records_per: int = 24,
    *,
    seed: int = 0,
    template_id: int = 256,
    unix_secs: int = 1_700_000_000,
) -> list[bytes]:
    """A template datagram followed by ``n_datagrams`` data datagrams (``V9_FLOW_TEMPLATE``).

    For IPFIX a message with the system init time (options data) comes second.

    ``protocol`` is ``netflow_v9`` or ``ipfix``; records are built with numpy, so large
    streams are cheap to make.
    """
    rng = np.random.default_rng(seed)
    fields = V9_FLOW_TEMPLATE
    fmts = {1: "u1", 2: ">u2", 4: ">u4", 8: ">u8"}
    dtype = np.dtype([(f"f{i}", fmts[length]) for i, (_, length) in enumerate(fields)])
    n = n_datagrams * records_per
    recs = np.zeros(n, dtype)
    uptime = 864_000_000
    col = {ie: f"f{i}" for i, (ie, _) in enumerate(fields)}
    recs[col[8]] = rng.integers(0x0A000000, 0x0AFFFFFF, n)
    recs[col[12]] = rng.integers(0xC0A80000, 0xC0A8FFFF, n)
    recs[col[15]] = 0x0A000001
    recs[col[7]] = rng.integers(1024, 65535, n)
    recs[col[11]] = rng.choice([53, 80, 443, 8080], n)
    recs[col[4]] = rng.choice([6, 17], n)
    recs[col[6]] = np.where(recs[col[4]] == 6, 0x1B, 0)
    recs[col[10]] = rng.integers(1, 48, n)
    recs[col[14]] = rng.integers(1, 48, n)
    recs[col[2]] = rng.integers(1, 10_000, n)
    recs[col[1]] = recs[col[2]] * rng.integers(40, 1500, n)
    recs[col[16]] = rng.integers(0, 1 << 32, n)
    recs[col[17]] = rng.integers(0, 1 << 32, n)
    recs[col[21]] = uptime - rng.integers(0, 60_000, n)
    recs[col[22]] = recs[col[21]] - rng.integers(0, 300_000, n)
    raw = recs.tobytes()
    size = dtype.itemsize * records_per
    out: list[bytes] = []
    if protocol == "netflow_v9":
        tpl = v9_template_set([(template_id, fields)])
        out.append(encode_v9([tpl], source_id=1, sequence=0, uptime_ms=uptime, unix_secs=unix_secs))
        for i in range(n_datagrams):
            ds = data_set(template_id, raw[i * size : (i + 1) * size])
            out.append(
                encode_v9([ds], source_id=1, sequence=i + 1, uptime_ms=uptime, unix_secs=unix_secs)
            )
    elif protocol == "ipfix":
        tpl = ipfix_template_set([(template_id, [(ie, ln, 0) for ie, ln in fields])])
        # IPFIX uptime-relative stamps need the system init time: put it in the records
        # instead - flowStart/EndSysUpTime plus a per-message options record would work too.
        init = unix_secs * 1000 - uptime
        opt = ipfix_options_template_set(template_id + 1, [(149, 4, 0)], [(160, 8, 0)])
        opt_data = data_set(template_id + 1, struct.pack(">IQ", 1, init))
        # Options data in a message of its own: scapy mis-parses a set after an options
        # template set, and the benchmark feeds scapy these same datagrams.
        out.append(encode_ipfix([tpl, opt], domain=1, sequence=0, export_time=unix_secs))
        out.append(encode_ipfix([opt_data], domain=1, sequence=0, export_time=unix_secs))
        for i in range(n_datagrams):
            ds = data_set(template_id, raw[i * size : (i + 1) * size], pad=False)
            out.append(
                encode_ipfix([ds], domain=1, sequence=1 + i * records_per, export_time=unix_secs)
            )
    else:
        raise ValueError(f"protocol {protocol!r} is neither netflow_v9 nor ipfix")
    return out
