"""Flow listings in nfdump's output formats: ``line``, ``long``, ``extended``, ``csv``,
``json`` and ``fmt:...`` with nfdump's ``%`` tokens.

    text = render_flows(table, "fmt:%ts %td %pr %sap -> %dap %byt")
    sys.stdout.buffer.write(text)

A listing is one polars ``select`` over the whole table: each token is an expression
(numbers and times formatted by polars, addresses from a table of the 256 octets,
protocol names and TCP flags looked up), padded and joined into lines; ``csv`` is
written by polars' CSV writer from the typed columns. No Python work per flow, and the
expressions are built once per format, so a thousand flows take about a millisecond and
millions about as long as reading them. An IPv6 address is converted once per distinct
value (RFC 5952, :mod:`ipaddress`). Times are UTC. Like nfdump, ``line``/``long``/
``extended`` scale packets and bytes past a million (``1.2 M``) unless ``plain``
numbers are asked for; ``csv`` and ``json`` are always plain. ICMP destination ports
print as ``type.code``; an IPv6 address and its port are joined by ``.``
(``2001:db8::1.443``), as nfdump does.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np
import polars as pl
import pyarrow as pa

from bss.errors import ValidationError
from collectors.addresses import addresses_to_strings
from rating_engine.traffic.filter_syntax import PROTOCOL_NAMES

__all__ = ["FORMATS", "TOKENS", "TOKEN_COLUMNS", "format_columns", "render_flows"]

#: nfdump 1.7's predefined formats as ``fmt:`` strings.
FORMATS = {
    "line": "%ts %td %pr %sap -> %dap %pkt %byt %fl",
    "long": "%ts %td %pr %sap -> %dap %flg %tos %pkt %byt %fl",
    "extended": "%ts %td %pr %sap -> %dap %flg %tos %pkt %byt %pps %bps %bpp %fl",
}
_FLAG_LETTERS = "CEUAPRSF"  # bit 7 .. bit 0, nfdump's order
_V4_PREFIX = b"\x00" * 10 + b"\xff\xff"  # IPv4-mapped IPv6: ::ffff:a.b.c.d
_ADDRESS_COLUMNS = ("src_addr", "dst_addr", "next_hop", "exporter")
_TIME_FORMAT = "%Y-%m-%d %H:%M:%S%.3f"  # %.3f: milliseconds, truncated
_SCALED = ("packets", "bytes")


@dataclass(frozen=True)
class _Shape:
    """What of the data the expressions depend on: the address columns holding IPv6
    (their text is a ``_<name>_text`` column beside them), those with no address at all,
    the volume columns with a value past a million (the others need no scaling) and
    whether any flow is ICMP (the others' destination port is a plain number)."""

    v6: frozenset[str] = frozenset()
    big: frozenset[str] = frozenset()
    empty: frozenset[str] = frozenset()
    icmp: bool = True


def _num(name: str) -> pl.Expr:
    return pl.col(name).fill_null(0)


def _digits(values: pl.Expr) -> pl.Expr:
    return values.cast(pl.String)


def _tenths(values: pl.Series) -> pl.Series:
    """Each volume's quotient by its unit in tenths, as nfdump's ``printf("%5.1f")``
    rounds ``(double)v / 1e6``: the double's exact value, ties to even. Divided by numpy
    (polars multiplies by the reciprocal: 999950000 * 1e-6 is 999.9499999999999, not the
    quotient 999.95). ``q * 10`` rounded agrees except where the product lands on a half:
    1.05 (really 1.05000000000000004) times 10 is 10.5, yet prints ``1.1``; those few are
    decided by Python's formatting, which rounds the exact value as C does."""
    v = values.to_numpy()
    q = v / np.where(v >= 1e12, 1e12, np.where(v >= 1e9, 1e9, 1e6))
    t = q * 10
    tenths = np.rint(t)
    for i in np.flatnonzero(t - np.floor(t) == 0.5).tolist():
        tenths[i] = round(float(f"{q[i]:.1f}") * 10)
    return pl.Series(values.name, tenths, pl.Float64).cast(pl.Int64)


def _scaled(values: pl.Expr, plain: bool) -> pl.Expr:
    """nfdump's number scaling: ``1.2 M``, ``3.4 G``, ``5.6 T`` (decimal, the quotient's
    tenths as nfdump's ``%5.1f`` rounds them), else plain."""
    if plain:
        return _digits(values)
    v = values.cast(pl.Float64)
    tenths = v.map_batches(_tenths, return_dtype=pl.Int64)
    unit = pl.when(v >= 1e12).then(pl.lit(" T")).when(v >= 1e9).then(pl.lit(" G"))
    text = pl.concat_str(_digits(tenths // 10), pl.lit("."), _digits(tenths % 10),
                         unit.otherwise(pl.lit(" M")))  # fmt: skip
    return pl.when(v >= 1e6).then(text).otherwise(_digits(values))


def _naive(name: str) -> pl.Expr:
    """A time column as a UTC time without zone (formatting a zoned time converts it per
    value)."""
    return pl.col(name).cast(pl.Datetime("us", "UTC")).dt.replace_time_zone(None)


def _time(name: str) -> pl.Expr:
    """``YYYY-MM-DD hh:mm:ss.mmm`` (UTC)."""
    return _naive(name).dt.to_string(_TIME_FORMAT)


def _duration_ms() -> pl.Expr:
    dur = pl.col("flow_end").cast(pl.Int64) - pl.col("flow_start").cast(pl.Int64)
    return (dur // 1000).clip(0)


def _seconds(ms: pl.Expr) -> pl.Expr:
    return pl.concat_str(_digits(ms // 1000), pl.lit("."), _digits(ms % 1000).str.zfill(3))


def _rate(kind: str) -> pl.Expr:
    """Per-flow pps, bps, bpp in nfdump's integer arithmetic (0 for a 0 ms flow)."""
    pk, by = _num("packets").cast(pl.UInt64), _num("bytes").cast(pl.UInt64)
    if kind == "bpp":
        return pl.when(pk > 0).then(by // pk.clip(1)).otherwise(0).cast(pl.UInt64)
    dur = _duration_ms().cast(pl.UInt64)
    count = pk * 1000 if kind == "pps" else by * 8000
    return pl.when(dur > 0).then(count // dur.clip(1)).otherwise(0).cast(pl.UInt64)


@cache
def _texts(kind: str) -> pl.Series:
    """The 256 protocol names, TCP flag strings or decimal octets, built once."""
    if kind == "proto":
        return pl.Series([PROTOCOL_NAMES.get(i, str(i)) for i in range(256)], dtype=pl.String)
    if kind == "octets":
        return pl.Series([str(i) for i in range(256)], dtype=pl.String)
    return pl.Series(
        ["".join(c if i & (1 << (7 - k)) else "." for k, c in enumerate(_FLAG_LETTERS))
         for i in range(256)], dtype=pl.String,
    )  # fmt: skip


def _looked_up(kind: str, index: pl.Expr) -> pl.Expr:
    return pl.lit(_texts(kind)).gather(index.cast(pl.UInt32))


def _proto() -> pl.Expr:
    return _looked_up("proto", _num("protocol"))


def _flags() -> pl.Expr:
    return _looked_up("flags", _num("tcp_flags").cast(pl.UInt32) & 255)


def _is_v4(name: str) -> pl.Expr:
    return pl.col(name).bin.starts_with(_V4_PREFIX)


def _v6_column(name: str) -> str:
    return f"_{name}_text"


def _address(name: str, shape: _Shape) -> pl.Expr:
    """An address column as text: IPv4 (mapped) from its four octets, others from the
    frame's ``_<name>_text`` column (see :func:`_shaped`); null -> ``-``."""
    if name in shape.empty:
        return pl.lit("-")
    addr = pl.col(name)
    octets = [pl.lit(_texts("octets")).gather(addr.bin.get(i)) for i in range(12, 16)]
    text = pl.concat_str(octets, separator=".")
    if name in shape.v6:
        text = pl.when(_is_v4(name)).then(text).otherwise(pl.col(_v6_column(name)))
    return text.fill_null("-")  # (without IPv6 every value is IPv4 or null)


def _shaped(frame: pl.DataFrame) -> tuple[pl.DataFrame, _Shape]:
    """The frame with a ``_<name>_text`` column beside each address column holding IPv6
    (not mapped) addresses - RFC 5952 text by :mod:`ipaddress`, once per distinct
    address - and its :class:`_Shape`; one pass over the frame when it has no IPv6."""
    present = [n for n in _ADDRESS_COLUMNS if n in frame.columns]
    empty = frozenset(n for n in present if frame[n].null_count() == frame.height)
    names = [n for n in present if n not in empty]
    volumes = [n for n in _SCALED if n in frame.columns]
    if frame.height == 0:
        return frame, _Shape()
    other = {n: pl.col(n).is_not_null() & ~_is_v4(n) for n in names}
    protocol = [_num("protocol").is_in([1, 58]).any().alias("_icmp")]
    seen = frame.select(
        *(e.any().alias(n) for n, e in other.items()),
        *((pl.col(n).max() >= 1_000_000).alias(n) for n in volumes),
        *(protocol if "protocol" in frame.columns else []),
    ).row(0, named=True)  # fmt: skip
    shape = _Shape(frozenset(n for n in names if seen[n]),
                   frozenset(n for n in volumes if seen[n]), empty,
                   bool(seen.get("_icmp", True)))  # fmt: skip
    texts = []
    for name in sorted(shape.v6):
        values = frame.select(pl.col(name).filter(other[name]).unique()).to_series()
        words = pl.Series(addresses_to_strings(values.to_arrow().cast(pa.binary(16))),
                          dtype=pl.String)  # fmt: skip
        texts.append(pl.col(name).replace_strict(values, words, default=None,
                                                 return_dtype=pl.String)
                     .alias(_v6_column(name)))  # fmt: skip
    return (frame.with_columns(texts) if texts else frame), shape


def _port(name: str, shape: _Shape) -> pl.Expr:
    port = _num(name)
    if name == "src_port" or not shape.icmp:
        return _digits(port)
    icmp = _num("protocol").is_in([1, 58])
    typed = pl.concat_str(_digits(port // 256), pl.lit("."), _digits(port % 256))
    return pl.when(icmp).then(typed).otherwise(_digits(port))


def _address_port(shape: _Shape, side: str) -> pl.Expr:
    name = f"{side}_addr"
    sep = pl.lit(":")
    if name in shape.v6:  # IPv6 text and its port are joined by a dot
        sep = pl.when(pl.col(_v6_column(name)).is_null()).then(sep).otherwise(pl.lit("."))
    return pl.concat_str(_address(name, shape), sep, _port(f"{side}_port", shape))


#: (the data's shape, plain numbers) -> the token's text
_Text = Callable[[_Shape, bool], pl.Expr]


@dataclass(frozen=True)
class _Token:
    header: str
    width: int  # >0 right-aligned, <0 left-aligned
    text: _Text
    csv: str = ""  # nfdump's csv column name


def _n(name: str) -> _Text:
    return lambda s, p: _digits(_num(name))


def _volume(name: str) -> _Text:
    return lambda s, p: _scaled(_num(name), p or name not in s.big)


def _addr(name: str) -> _Text:
    return lambda s, p: _address(name, s)


TOKENS: dict[str, _Token] = {
    "ts": _Token("Date first seen", -23, lambda s, p: _time("flow_start"), "ts"),
    "te": _Token("Date last seen", -23, lambda s, p: _time("flow_end"), "te"),
    "td": _Token("Duration", 9, lambda s, p: _seconds(_duration_ms()), "td"),
    "pr": _Token("Proto", -5, lambda s, p: _proto(), "pr"),
    "sa": _Token("Src IP Addr", 16, _addr("src_addr"), "sa"),
    "da": _Token("Dst IP Addr", 16, _addr("dst_addr"), "da"),
    "sap": _Token("Src IP Addr:Port", 22, lambda s, p: _address_port(s, "src")),
    "dap": _Token("Dst IP Addr:Port", -22, lambda s, p: _address_port(s, "dst")),
    "sp": _Token("Src Pt", 6, lambda s, p: _port("src_port", s), "sp"),
    "dp": _Token("Dst Pt", 6, lambda s, p: _port("dst_port", s), "dp"),
    "pkt": _Token("Packets", 8, _volume("packets"), "ipkt"),
    "ipkt": _Token("In Pkt", 8, _volume("packets")),
    "byt": _Token("Bytes", 8, _volume("bytes"), "ibyt"),
    "ibyt": _Token("In Byte", 8, _volume("bytes")),
    "fl": _Token("Flows", 5, lambda s, p: pl.lit("1"), "fl"),
    "flg": _Token("Flags", -8, lambda s, p: _flags(), "flg"),
    "tos": _Token("Tos", 3, _n("tos"), "stos"),
    "stos": _Token("STos", 4, _n("tos")),
    "pps": _Token("pps", 8, lambda s, p: _scaled(_rate("pps"), p), "pps"),
    "bps": _Token("bps", 8, lambda s, p: _scaled(_rate("bps"), p), "bps"),
    "bpp": _Token("Bpp", 6, lambda s, p: _digits(_rate("bpp")), "bpp"),
    "sas": _Token("Src AS", 6, _n("src_as"), "sas"),
    "das": _Token("Dst AS", 6, _n("dst_as"), "das"),
    "in": _Token("Input", 5, _n("input_if"), "in"),
    "out": _Token("Output", 6, _n("output_if"), "out"),
    "nh": _Token("Next-hop IP", 16, _addr("next_hop"), "nh"),
    "ra": _Token("Router IP", 16, _addr("exporter"), "ra"),
    "svln": _Token("SVlan", 5, _n("vlan"), "svln"),
    "sr": _Token("Sampling", 8, _n("sampling_interval")),
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


def _pad(text: pl.Expr, width: int) -> pl.Expr:
    return text.str.pad_start(width) if width > 0 else text.str.pad_end(-width)


@cache
def _line(output: str, plain: bool, shape: _Shape) -> pl.Expr:
    """One listing line (without its end) as an expression: built once per format."""
    pieces: list[pl.Expr] = []
    for part in _parse(_format_text(output)):
        if isinstance(part, str):
            pieces.append(pl.lit(part))
        else:
            pieces.append(_pad(part.text(shape, plain), part.width))
    return pl.concat_str(pieces)


#: csv columns written as they are (numbers; times by the writer's time format)
_CSV_TYPED = {"sp": "src_port", "stos": "tos", "pkt": "packets", "byt": "bytes",
              "in": "input_if", "out": "output_if", "sas": "src_as", "das": "dst_as",
              "svln": "vlan"}  # fmt: skip


@cache
def _csv_columns(shape: _Shape) -> list[pl.Expr]:
    """nfdump's csv columns: numbers and times typed (polars' CSV writer formats them
    itself, faster than as text), the others as text."""
    out = []
    for name in _TOKEN_RE.findall(_CSV):
        if name in ("ts", "te"):
            expr = _naive("flow_start" if name == "ts" else "flow_end")
        elif name == "td":  # seconds with 3 decimals (exact: whole ms below 2**53)
            expr = _duration_ms().cast(pl.Float64) / 1000
        elif name in _CSV_TYPED:
            expr = _num(_CSV_TYPED[name])
        elif name == "dp" and not shape.icmp:
            expr = _num("dst_port")
        else:
            expr = TOKENS[name].text(shape, True)
        out.append(expr.alias(name))
    return out


def _header(parts: list[str | _Token]) -> str:
    out = []
    for part in parts:
        if isinstance(part, str):
            out.append(" " * len(part) if part.strip() in ("->", "") else part)
        else:
            w = part.width
            out.append(part.header.rjust(w) if w > 0 else part.header.ljust(-w))
    return "".join(out).rstrip() + "\n"


@cache
def _json_item(shape: _Shape) -> pl.Expr:
    def addr(name: str, key: str) -> pl.Expr:
        v6 = pl.col(_v6_column(name)).is_not_null() if name in shape.v6 else pl.lit(False)
        key4, key6 = (f'"{key.replace("@", v)}": "' for v in "46")
        return pl.concat_str(pl.when(v6).then(pl.lit(key6)).otherwise(pl.lit(key4)),
                             _address(name, shape), pl.lit('"'))  # fmt: skip

    def ts(name: str) -> pl.Expr:
        return _naive(name).dt.to_string(_TIME_FORMAT.replace(" ", "T"))

    def n(name: str) -> pl.Expr:
        return _digits(_num(name))

    sep = ",\n\t"
    return pl.concat_str(
        pl.lit('{\n\t"first": "'), ts("flow_start"), pl.lit(f'"{sep}"last": "'),
        ts("flow_end"), pl.lit(f'"{sep}"proto": '), n("protocol"),
        pl.lit(f'{sep}"tcp_flags": "'), _flags(), pl.lit(f'"{sep}"src_port": '),
        n("src_port"), pl.lit(f'{sep}"dst_port": '), n("dst_port"),
        pl.lit(f'{sep}"src_tos": '), n("tos"), pl.lit(sep),
        addr("src_addr", "src@_addr"), pl.lit(sep), addr("dst_addr", "dst@_addr"),
        pl.lit(f'{sep}"in_packets": '), n("packets"), pl.lit(f'{sep}"in_bytes": '),
        n("bytes"), pl.lit(f'{sep}"input_snmp": '), n("input_if"),
        pl.lit(f'{sep}"output_snmp": '), n("output_if"), pl.lit(f'{sep}"src_as": '),
        n("src_as"), pl.lit(f'{sep}"dst_as": '), n("dst_as"),
        pl.lit(f'{sep}"src_vlan": '), n("vlan"), pl.lit(sep),
        addr("exporter", "ip@_router"), pl.lit("\n}"),
    )  # fmt: skip


def _frame(table: pa.Table | pl.DataFrame) -> pl.DataFrame:
    if isinstance(table, pl.DataFrame):
        return table
    frame = pl.from_arrow(table, rechunk=False)
    assert isinstance(frame, pl.DataFrame)
    return frame


def _joined(frame: pl.DataFrame, line: pl.Expr, terminator: str) -> bytes:
    """Each line's text followed by ``terminator``."""
    text = frame.select(line.str.join(terminator)).item()
    return str(text).encode() + terminator.encode()


def render_flows(
    table: pa.Table | pl.DataFrame,
    output: str = "line",
    *,
    plain: bool = False,
    header: bool = True,
) -> bytes:
    """The flows of ``table`` (``FLOW_SCHEMA`` columns, as Arrow or polars) as nfdump
    would print them with ``-o output``: ``line``, ``long``, ``extended``, ``csv``,
    ``json`` or ``fmt:...``."""
    if output == "json":
        frame, shape = _shaped(_frame(table))
        if frame.height == 0:
            return b"[]\n"
        return b"[\n" + _joined(frame, _json_item(shape), ",\n")[:-2] + b"\n]\n"
    parts = _parse(_format_text(output))
    top = b""
    if header and output == "csv":
        top = (",".join(p.csv or p.header for p in parts if isinstance(p, _Token)) + "\n").encode()
    elif header:
        top = _header(parts).encode()
    frame, shape = _shaped(_frame(table))
    if frame.height == 0:
        return top
    if output != "csv":
        return top + _joined(frame, _line(output, plain, shape), "\n")
    out = io.BytesIO()
    out.write(top)
    frame.select(_csv_columns(shape)).write_csv(
        out,
        include_header=False,
        quote_style="never",
        datetime_format=_TIME_FORMAT,
        float_precision=3,
    )  # never quoting: no value holds a comma, quote or line end
    return out.getvalue()
