"""Flow listings in nfdump's output formats: ``line``, ``long``, ``extended``, ``csv``,
``json`` and ``fmt:...`` with nfdump's ``%`` tokens.

    text = render_flows(table, "fmt:%ts %td %pr %sap -> %dap %byt")
    sys.stdout.buffer.write(text)

Every column is turned into text with Arrow compute functions over the whole table (an
address is converted once per distinct value), lines are joined the same way and the
result is the bytes of one Arrow string buffer: no Python work per flow, so a listing
of millions of flows costs about as much as reading them. Times are UTC. Like nfdump,
``line``/``long``/``extended`` scale packets and bytes past a million (``1.2 M``)
unless ``plain`` numbers are asked for; ``csv`` and ``json`` are always plain. ICMP
destination ports print as ``type.code``; an IPv6 address and its port are joined by
``.`` (``2001:db8::1.443``), as nfdump does.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bss.analyst.query import address_text
from bss.errors import ValidationError
from rating_engine.traffic.filter_syntax import PROTOCOL_NAMES

__all__ = ["FORMATS", "TOKENS", "TOKEN_COLUMNS", "format_columns", "render_flows"]

#: nfdump 1.7's predefined formats as ``fmt:`` strings.
FORMATS = {
    "line": "%ts %td %pr %sap -> %dap %pkt %byt %fl",
    "long": "%ts %td %pr %sap -> %dap %flg %tos %pkt %byt %fl",
    "extended": "%ts %td %pr %sap -> %dap %flg %tos %pkt %byt %pps %bps %bpp %fl",
}
_FLAG_LETTERS = "CEUAPRSF"  # bit 7 .. bit 0, nfdump's order
_S = pa.string()


def _join(*parts: pa.Array | str) -> pa.Array:
    return pc.binary_join_element_wise(*[pa.scalar(p, _S) if isinstance(p, str) else p
                                         for p in parts], "")  # fmt: skip


def _num(table: pa.Table, name: str) -> pa.Array:
    col = table.column(name)
    return (col.combine_chunks() if col.num_chunks else pa.array([], col.type)).fill_null(0)


def _digits(values: pa.Array) -> pa.Array:
    return values.cast(_S)


def _scaled(values: pa.Array, plain: bool) -> pa.Array:
    """nfdump's number scaling: ``1.2 M``, ``3.4 G``, ``5.6 T`` (decimal), else plain."""
    out = _digits(values)
    if plain or len(values) == 0:
        return out
    v = values.to_numpy(zero_copy_only=False).astype(np.float64)
    big = v >= 1e6
    if not big.any():
        return out
    v = v[big]  # only the large values are rewritten (usually few)
    scale = np.where(v >= 1e12, 1e12, np.where(v >= 1e9, 1e9, 1e6))
    tenths = np.round(v / scale * 10).astype(np.int64)
    units = np.where(scale == 1e12, 2, np.where(scale == 1e9, 1, 0))
    unit = pc.take(pa.array([" M", " G", " T"]), pa.array(units))
    text = _join(_digits(pa.array(tenths // 10)), ".", _digits(pa.array(tenths % 10)), unit)
    return pc.replace_with_mask(out, pa.array(big), text)


def _two(values: np.ndarray) -> pa.Array:
    return pc.utf8_lpad(_digits(pa.array(values)), 2, "0")


def _time(table: pa.Table, name: str) -> pa.Array:
    """``YYYY-MM-DD hh:mm:ss.mmm`` (UTC): each distinct day written once, the time of day
    from integer arithmetic (Arrow's strftime converts zones per value: far slower)."""
    us = pc.cast(table.column(name).combine_chunks(), pa.int64()).to_numpy(zero_copy_only=False)
    days, rest = np.divmod(us, 86_400_000_000)
    ms = rest // 1000
    uniq, idx = np.unique(days, return_inverse=True)
    names = pa.array(np.array(uniq, dtype="datetime64[D]").astype(str).tolist(), _S)
    secs = ms // 1000
    return _join(pc.take(names, pa.array(idx)), " ", _two(secs // 3600), ":",
                 _two(secs // 60 % 60), ":", _two(secs % 60), ".",
                 pc.utf8_lpad(_digits(pa.array(ms % 1000)), 3, "0"))  # fmt: skip


def _duration_ms(table: pa.Table) -> pa.Array:
    start = pc.cast(table.column("flow_start").combine_chunks(), pa.int64())
    end = pc.cast(table.column("flow_end").combine_chunks(), pa.int64())
    return pc.max_element_wise(pc.divide(pc.subtract(end, start), 1000), 0)


def _seconds(ms: pa.Array) -> pa.Array:
    whole = pc.divide(ms, 1000)
    rest = pc.subtract(ms, pc.multiply(whole, 1000))
    return _join(_digits(whole), ".", pc.utf8_lpad(_digits(rest), 3, "0"))


def _rate(table: pa.Table, kind: str) -> pa.Array:
    """Per-flow pps, bps, bpp in nfdump's integer arithmetic (0 for a 0 ms flow)."""
    dur = _duration_ms(table).to_numpy(zero_copy_only=False).astype(np.uint64)
    pk = _num(table, "packets").to_numpy(zero_copy_only=False).astype(np.uint64)
    by = _num(table, "bytes").to_numpy(zero_copy_only=False).astype(np.uint64)
    if kind == "bpp":
        return pa.array(np.where(pk > 0, by // np.maximum(pk, 1), 0).astype(np.uint64))
    count = pk * np.uint64(1000) if kind == "pps" else by * np.uint64(8000)
    return pa.array(np.where(dur > 0, count // np.maximum(dur, 1), 0).astype(np.uint64))


@cache
def _texts(kind: str) -> pa.Array:
    """The 256 protocol names or TCP flag strings, built once (a listing of a few rows
    would otherwise spend most of its time on them)."""
    if kind == "proto":
        return pa.array([PROTOCOL_NAMES.get(i, str(i)) for i in range(256)], _S)
    return pa.array(
        ["".join(c if i & (1 << (7 - k)) else "." for k, c in enumerate(_FLAG_LETTERS))
         for i in range(256)], _S,
    )  # fmt: skip


def _proto(table: pa.Table) -> pa.Array:
    return pc.take(_texts("proto"), _num(table, "protocol"))


def _flags(table: pa.Table) -> pa.Array:
    flags = pc.bit_wise_and(_num(table, "tcp_flags"), pa.scalar(255, pa.uint16()))
    return pc.take(_texts("flags"), flags)


def _address(table: pa.Table, name: str) -> pa.Array:
    return address_text(table.column(name)).fill_null("-")


def _port(table: pa.Table, name: str) -> pa.Array:
    port = _num(table, name)
    if name == "src_port":
        return _digits(port)
    icmp = pc.is_in(_num(table, "protocol"), pa.array([1, 58], pa.uint8()))
    kind = _digits(pc.divide(port, 256))
    code = _digits(pc.bit_wise_and(port, pa.scalar(255, pa.uint16())))
    return pc.if_else(icmp, _join(kind, ".", code), _digits(port))


def _address_port(table: pa.Table, side: str) -> pa.Array:
    addr = _address(table, f"{side}_addr")
    sep = pc.if_else(pc.match_substring(addr, ":"), ".", ":")
    return _join(addr, sep, _port(table, f"{side}_port"))


@dataclass(frozen=True)
class _Token:
    header: str
    width: int  # >0 right-aligned, <0 left-aligned
    text: Callable[[pa.Table, bool], pa.Array]
    csv: str = ""  # nfdump's csv column name


TOKENS: dict[str, _Token] = {
    "ts": _Token("Date first seen", -23, lambda t, p: _time(t, "flow_start"), "ts"),
    "te": _Token("Date last seen", -23, lambda t, p: _time(t, "flow_end"), "te"),
    "td": _Token("Duration", 9, lambda t, p: _seconds(_duration_ms(t)), "td"),
    "pr": _Token("Proto", -5, lambda t, p: _proto(t), "pr"),
    "sa": _Token("Src IP Addr", 16, lambda t, p: _address(t, "src_addr"), "sa"),
    "da": _Token("Dst IP Addr", 16, lambda t, p: _address(t, "dst_addr"), "da"),
    "sap": _Token("Src IP Addr:Port", 22, lambda t, p: _address_port(t, "src")),
    "dap": _Token("Dst IP Addr:Port", -22, lambda t, p: _address_port(t, "dst")),
    "sp": _Token("Src Pt", 6, lambda t, p: _port(t, "src_port"), "sp"),
    "dp": _Token("Dst Pt", 6, lambda t, p: _port(t, "dst_port"), "dp"),
    "pkt": _Token("Packets", 8, lambda t, p: _scaled(_num(t, "packets"), p), "ipkt"),
    "ipkt": _Token("In Pkt", 8, lambda t, p: _scaled(_num(t, "packets"), p)),
    "byt": _Token("Bytes", 8, lambda t, p: _scaled(_num(t, "bytes"), p), "ibyt"),
    "ibyt": _Token("In Byte", 8, lambda t, p: _scaled(_num(t, "bytes"), p)),
    "fl": _Token("Flows", 5, lambda t, p: pa.array(["1"] * t.num_rows, _S), "fl"),
    "flg": _Token("Flags", -8, lambda t, p: _flags(t), "flg"),
    "tos": _Token("Tos", 3, lambda t, p: _digits(_num(t, "tos")), "stos"),
    "stos": _Token("STos", 4, lambda t, p: _digits(_num(t, "tos"))),
    "pps": _Token("pps", 8, lambda t, p: _scaled(_rate(t, "pps"), p), "pps"),
    "bps": _Token("bps", 8, lambda t, p: _scaled(_rate(t, "bps"), p), "bps"),
    "bpp": _Token("Bpp", 6, lambda t, p: _digits(_rate(t, "bpp")), "bpp"),
    "sas": _Token("Src AS", 6, lambda t, p: _digits(_num(t, "src_as")), "sas"),
    "das": _Token("Dst AS", 6, lambda t, p: _digits(_num(t, "dst_as")), "das"),
    "in": _Token("Input", 5, lambda t, p: _digits(_num(t, "input_if")), "in"),
    "out": _Token("Output", 6, lambda t, p: _digits(_num(t, "output_if")), "out"),
    "nh": _Token("Next-hop IP", 16, lambda t, p: _address(t, "next_hop"), "nh"),
    "ra": _Token("Router IP", 16, lambda t, p: _address(t, "exporter"), "ra"),
    "svln": _Token("SVlan", 5, lambda t, p: _digits(_num(t, "vlan")), "svln"),
    "sr": _Token("Sampling", 8, lambda t, p: _digits(_num(t, "sampling_interval"))),
}
_CSV = "%ts,%te,%td,%sa,%da,%sp,%dp,%pr,%flg,%stos,%pkt,%byt,%in,%out,%sas,%das,%nh,%svln,%ra"
_TIMES = ("flow_start", "flow_end")
_RATES = ("flow_start", "flow_end", "packets", "bytes")
#: Flow columns each token reads (a listing reads only these from the dataset).
TOKEN_COLUMNS: dict[str, tuple[str, ...]] = {
    "ts": ("flow_start",), "te": ("flow_end",), "td": _TIMES, "pr": ("protocol",),
    "sa": ("src_addr",), "da": ("dst_addr",), "sap": ("src_addr", "src_port"),
    "dap": ("dst_addr", "dst_port", "protocol"), "sp": ("src_port",),
    "dp": ("dst_port", "protocol"), "pkt": ("packets",), "ipkt": ("packets",),
    "byt": ("bytes",), "ibyt": ("bytes",), "fl": (), "flg": ("tcp_flags",), "tos": ("tos",),
    "stos": ("tos",), "pps": _RATES, "bps": _RATES, "bpp": _RATES, "sas": ("src_as",),
    "das": ("dst_as",), "in": ("input_if",), "out": ("output_if",), "nh": ("next_hop",),
    "ra": ("exporter",), "svln": ("vlan",), "sr": ("sampling_interval",),
}  # fmt: skip
_JSON_COLUMNS = ("flow_start", "flow_end", "protocol", "tcp_flags", "src_port", "dst_port",
                 "tos", "src_addr", "dst_addr", "packets", "bytes", "input_if", "output_if",
                 "src_as", "dst_as", "vlan", "exporter")  # fmt: skip
_TOKEN_RE = re.compile(r"%(" + "|".join(sorted(TOKENS, key=len, reverse=True)) + r")")


def _parse(fmt: str) -> list[str | _Token]:
    parts: list[str | _Token] = []
    pos = 0
    for m in _TOKEN_RE.finditer(fmt):
        if m.start() > pos:
            parts.append(fmt[pos : m.start()])
        parts.append(TOKENS[m.group(1)])
        pos = m.end()
    if pos < len(fmt):
        parts.append(fmt[pos:])
    if not any(isinstance(p, _Token) for p in parts):
        names = " ".join(f"%{k}" for k in TOKENS)
        raise ValidationError(f"output format {fmt!r}: no % token; use {names}")
    return parts


def _format_text(output: str) -> str:
    if output == "csv":
        return _CSV
    if output in FORMATS:
        return FORMATS[output]
    if output.startswith("fmt:"):
        return output[4:]
    raise ValidationError(
        f"output format {output!r}: use line, long, extended, csv, json or fmt:..."
    )


def format_columns(output: str) -> list[str]:
    """The flow columns ``render_flows(..., output)`` reads, in a stable order (always
    packets and bytes too: listings end with their totals)."""
    if output == "json":
        return list(_JSON_COLUMNS)
    names = _TOKEN_RE.findall(_format_text(output))
    cols = [c for name in names for c in TOKEN_COLUMNS[name]]
    return list(dict.fromkeys([*cols, "packets", "bytes"]))


def _pad(text: pa.Array, width: int) -> pa.Array:
    return pc.utf8_lpad(text, width) if width > 0 else pc.utf8_rpad(text, -width)


def _lines(table: pa.Table, parts: list[str | _Token], plain: bool, padded: bool) -> pa.Array:
    pieces: list[pa.Array | str] = []
    for part in parts:
        if isinstance(part, str):
            pieces.append(part)
        else:
            text = part.text(table, plain)
            pieces.append(_pad(text, part.width) if padded else text)
    return _join(*pieces, "\n")


def _header(parts: list[str | _Token]) -> str:
    out = []
    for part in parts:
        if isinstance(part, str):
            out.append(" " * len(part) if part.strip() in ("->", "") else part)
        else:
            w = part.width
            out.append(part.header.rjust(w) if w > 0 else part.header.ljust(-w))
    return "".join(out).rstrip() + "\n"


def _json_lines(table: pa.Table) -> pa.Array:
    def addr(name: str, key: str) -> pa.Array:
        text = _address(table, name)
        v6 = pc.match_substring(text, ":")
        return pc.if_else(v6, _join(f'"{key.replace("@", "6")}": "', text, '"'),
                          _join(f'"{key.replace("@", "4")}": "', text, '"'))  # fmt: skip

    def ts(name: str) -> pa.Array:
        return pc.replace_substring(_time(table, name), " ", "T")

    sep = ",\n\t"
    return _join(
        '{\n\t"first": "', ts("flow_start"), '"', sep, '"last": "', ts("flow_end"), '"', sep,
        '"proto": ', _digits(_num(table, "protocol")), sep,
        '"tcp_flags": "', _flags(table), '"', sep,
        '"src_port": ', _digits(_num(table, "src_port")), sep,
        '"dst_port": ', _digits(_num(table, "dst_port")), sep,
        '"src_tos": ', _digits(_num(table, "tos")), sep,
        addr("src_addr", "src@_addr"), sep, addr("dst_addr", "dst@_addr"), sep,
        '"in_packets": ', _digits(_num(table, "packets")), sep,
        '"in_bytes": ', _digits(_num(table, "bytes")), sep,
        '"input_snmp": ', _digits(_num(table, "input_if")), sep,
        '"output_snmp": ', _digits(_num(table, "output_if")), sep,
        '"src_as": ', _digits(_num(table, "src_as")), sep,
        '"dst_as": ', _digits(_num(table, "dst_as")), sep,
        '"src_vlan": ', _digits(_num(table, "vlan")), sep,
        addr("exporter", "ip@_router"), "\n}",
    )  # fmt: skip


def _buffer(lines: pa.Array) -> bytes:
    """The concatenated values of a string array: its data buffer between the offsets."""
    if len(lines) == 0:
        return b""
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)[lines.offset :]
    data: bytes = lines.buffers()[2].to_pybytes()
    return data[offsets[0] : offsets[len(lines)]]


def render_flows(
    table: pa.Table, output: str = "line", *, plain: bool = False, header: bool = True
) -> bytes:
    """The flows of ``table`` (``FLOW_SCHEMA`` columns) as nfdump would print them with
    ``-o output``: ``line``, ``long``, ``extended``, ``csv``, ``json`` or ``fmt:...``."""
    if output == "json":
        body = _json_lines(table)
        if len(body) == 0:
            return b"[]\n"
        items = pc.binary_join_element_wise(body, pa.scalar(",\n", _S), "")
        text = _buffer(items)
        return b"[\n" + text[:-2] + b"\n]\n"
    csv = output == "csv"
    parts = _parse(_format_text(output))
    body = _buffer(_lines(table, parts, plain or csv, not csv)) if table.num_rows else b""
    if not header:
        return body
    if csv:
        names = [p.csv or p.header for p in parts if isinstance(p, _Token)]
        return (",".join(names) + "\n").encode() + body
    return _header(parts).encode() + body
