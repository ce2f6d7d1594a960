"""nfdump's filter language, the part operators use, parsed into a small expression tree.

    proto tcp and dst port 443
    src net 10.0.0.0/8 and not dst port in [53 123]
    (bytes > 1M or packets >= 10k) and flags S and not flags A
    in if 3 and vlan 20 and next ip 192.0.2.1

Primitives (nfdump 1.7's words; ``src``/``dst`` may be omitted for "either", or written
``src and dst`` / ``src or dst``): ``any``; ``ipv4``/``inet``, ``ipv6``/``inet6``;
``proto NAME|N``; ``[dqual] ip|host ADDR``, ``[dqual] ip in [ADDR[/N] ...]``;
``[dqual] net ADDR/N`` or ``net ADDR MASK`` (IPv4 and IPv6); ``[dqual] port [CMP] N``,
``[dqual] port in [N ...]``; ``[dqual] as [CMP] N``, ``[dqual] as in [N ...]``;
``[in|out] if N``; ``[src] vlan N``; ``next ip ADDR``, ``router ip ADDR`` (the
exporter); ``bytes|packets|flows|tos|duration|pps|bps|bpp [CMP] N``; ``flags LETTERS``
(all of F S R P A U C E set, X = FSRPAU; implies TCP) or ``flags [CMP] N``;
``icmp-type N``, ``icmp-code N``. ``CMP`` is ``= == > < >= <= eq gt lt ge le``
(default equal); numbers take ``k M G T`` (x1000 each, as nfdump) or ``0x`` hex.
``and`` (``&&``) binds tighter than ``or`` (``||``); ``not`` (``!``) tighter still;
parentheses group; ``#`` starts a comment. Names a flow does not carry here (``dst vlan``,
``out bytes``, host names) are refused with a message, never matched as nothing.

:func:`parse_filter` returns the tree (:data:`Node`); :func:`render` writes it back as
text that parses to an equivalent tree. Errors are :class:`FilterError` with the
position of the offending token.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from rating_engine.errors import FilterError

__all__ = [
    "PROTOCOLS",
    "PROTOCOL_NAMES",
    "AddressIn",
    "And",
    "Compare",
    "Const",
    "FlagsAll",
    "InSet",
    "Node",
    "Not",
    "Or",
    "parse_filter",
    "render",
]

#: Protocol names accepted by ``proto`` (case-insensitive) -> number.
PROTOCOLS = {
    "hopopt": 0, "icmp": 1, "igmp": 2, "ggp": 3, "ipip": 4, "st": 5, "tcp": 6, "egp": 8,
    "igp": 9, "udp": 17, "ipv6": 41, "rsvp": 46, "gre": 47, "esp": 50, "ah": 51,
    "icmp6": 58, "ipv6-icmp": 58, "eigrp": 88, "ospf": 89, "pim": 103, "vrrp": 112,
    "l2tp": 115, "sctp": 132,
}  # fmt: skip
#: How listings name a protocol (nfdump's spelling); others print as their number.
PROTOCOL_NAMES = {
    0: "HOPOPT", 1: "ICMP", 2: "IGMP", 4: "IPIP", 6: "TCP", 17: "UDP", 41: "IPv6",
    46: "RSVP", 47: "GRE", 50: "ESP", 51: "AH", 58: "ICMP6", 88: "EIGRP", 89: "OSPF",
    103: "PIM", 112: "VRRP", 115: "L2TP", 132: "SCTP",
}  # fmt: skip
_FLAG_BITS = {"F": 1, "S": 2, "R": 4, "P": 8, "A": 16, "U": 32, "E": 64, "C": 128}
_COMPARE = {"=": "==", "==": "==", "eq": "==", ">": ">", "gt": ">", "<": "<", "lt": "<",
            ">=": ">=", "ge": ">=", "<=": "<=", "le": "<="}  # fmt: skip
_SCALE = {"k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
_TOKEN = re.compile(
    r"\s+|#[^\n]*|(?P<op>&&|\|\||==|>=|<=|[=<>!()\[\],/])|(?P<word>[A-Za-z0-9_:.\-]+)|(?P<bad>.)"
)
#: Column limits: what a value compared with the column can be.
_MAX = {"protocol": 255, "src_port": 65535, "dst_port": 65535, "tos": 255, "vlan": 65535,
        "tcp_flags": 255, "icmp_type": 255, "icmp_code": 255, "src_as": 2**32 - 1,
        "dst_as": 2**32 - 1, "input_if": 2**32 - 1, "output_if": 2**32 - 1,
        "bytes": 2**64 - 1, "packets": 2**64 - 1, "duration": 2**63 - 1, "pps": 2**63 - 1,
        "bps": 2**63 - 1, "bpp": 2**63 - 1}  # fmt: skip


@dataclass(frozen=True)
class Const:
    """``any`` (True) or a comparison decided by constants (``flows > 5``: False)."""

    value: bool


@dataclass(frozen=True)
class Compare:
    """``column op value``. Columns are ``FLOW_SCHEMA`` integers or derived per flow:
    ``flows`` (1), ``duration`` (ms), ``pps``, ``bps``, ``bpp``, ``icmp_type``,
    ``icmp_code``, ``ip_version`` (4 or 6)."""

    column: str
    op: str
    value: int


@dataclass(frozen=True)
class InSet:
    """``column in [values]``."""

    column: str
    values: tuple[int, ...]


@dataclass(frozen=True)
class FlagsAll:
    """TCP with every bit of ``mask`` set in ``tcp_flags``."""

    mask: int


@dataclass(frozen=True)
class AddressIn:
    """An address column (``src_addr``, ``dst_addr``, ``next_hop``, ``exporter``) inside
    any of ``ranges``: inclusive 16-byte (low, high) bounds, one per host or network."""

    column: str
    ranges: tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True)
class Not:
    operand: Node


@dataclass(frozen=True)
class And:
    operands: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    operands: tuple[Node, ...]


Node = Const | Compare | InSet | FlagsAll | AddressIn | Not | And | Or


@dataclass(frozen=True)
class _Tok:
    kind: str  # "op", "word" or "end"
    text: str
    pos: int


def _tokens(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    for m in _TOKEN.finditer(text):
        if m.lastgroup == "bad":
            raise FilterError(f"filter: unexpected character {m.group()!r}", text, m.start())
        if m.lastgroup is not None:
            out.append(_Tok(m.lastgroup, m.group(), m.start()))
    out.append(_Tok("end", "", len(text)))
    return out


def _either(make: type[And] | type[Or], nodes: list[Node]) -> Node:
    return nodes[0] if len(nodes) == 1 else make(tuple(nodes))


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.i = 0

    # -- token helpers ------------------------------------------------------------------
    def peek(self, ahead: int = 0) -> _Tok:
        return self.toks[min(self.i + ahead, len(self.toks) - 1)]

    def word(self, ahead: int = 0) -> str:
        tok = self.peek(ahead)
        return tok.text.lower() if tok.kind == "word" else tok.text

    def take(self) -> _Tok:
        tok = self.peek()
        self.i += 1
        return tok

    def fail(self, what: str, tok: _Tok | None = None) -> FilterError:
        tok = tok or self.peek()
        found = "the end" if tok.kind == "end" else repr(tok.text)
        return FilterError(f"filter: expected {what}, found {found}", self.text, tok.pos)

    def expect(self, text: str) -> None:
        if self.word() != text:
            raise self.fail(repr(text))
        self.take()

    # -- expressions --------------------------------------------------------------------
    def parse(self) -> Node:
        if self.peek().kind == "end":
            return Const(True)  # an empty filter matches every flow, as in nfdump
        node = self.or_expr()
        if self.peek().kind != "end":
            raise self.fail("'and', 'or' or the end")
        return node

    def or_expr(self) -> Node:
        nodes = [self.and_expr()]
        while self.word() in ("or", "||"):
            self.take()
            nodes.append(self.and_expr())
        return _either(Or, nodes)

    def and_expr(self) -> Node:
        nodes = [self.unary()]
        while self.word() in ("and", "&&"):
            self.take()
            nodes.append(self.unary())
        return _either(And, nodes)

    def unary(self) -> Node:
        if self.word() in ("not", "!"):
            self.take()
            return Not(self.unary())
        if self.word() == "(":
            self.take()
            node = self.or_expr()
            self.expect(")")
            return node
        return self.primitive()

    # -- primitives ---------------------------------------------------------------------
    def primitive(self) -> Node:
        tok = self.peek()
        w = self.word()
        if w == "any":
            self.take()
            return Const(True)
        if w in ("ipv4", "inet", "ipv6", "inet6"):
            self.take()
            return Compare("ip_version", "==", 4 if w in ("ipv4", "inet") else 6)
        if w == "proto":
            self.take()
            return Compare("protocol", "==", self.protocol())
        if w in ("in", "out") and self.word(1) == "if":
            self.take()
            self.take()
            return Compare("input_if" if w == "in" else "output_if", "==", self.number("if"))
        if w == "if":
            self.take()
            n = self.number("if")
            return Or((Compare("input_if", "==", n), Compare("output_if", "==", n)))
        if w in ("in", "out") and self.word(1) in ("bytes", "packets"):
            if w == "out":
                raise FilterError(
                    "filter: 'out bytes' / 'out packets': flows here are unidirectional "
                    "(no out counters); use 'bytes' / 'packets'", self.text, tok.pos,
                )  # fmt: skip
            self.take()
            w = self.word()
        if w in ("bytes", "packets", "flows", "duration", "pps", "bps", "bpp"):
            self.take()
            op = self.comparison()
            value = self.number(w)
            if w == "flows":  # every stored flow counts as one flow
                return Const(_holds(1, op, value))
            return Compare(w, op, self.checked(w, value))
        if w == "tos":
            self.take()
            return self.compare_column("tos")
        if w == "flags":
            self.take()
            return self.flags()
        if w in ("icmp-type", "icmp-code"):
            self.take()
            column = w.replace("-", "_")
            return Compare(column, "==", self.checked(column, self.number(w)))
        if w in ("next", "router"):
            self.take()
            self.expect("ip")
            column = "next_hop" if w == "next" else "exporter"
            if self.word() == "in":
                return AddressIn(column, self.address_list())
            return AddressIn(column, (self.address(),))
        return self.qualified()

    def qualified(self) -> Node:
        """``[src|dst|src and dst|src or dst] ip|host|net|port|as|vlan|tos ...``."""
        start = self.peek()
        sides: tuple[str, ...] = ("src", "dst")
        join: type[And] | type[Or] = Or
        if self.word() in ("src", "dst"):
            if self.word(1) in ("and", "or") and self.word(2) in ("src", "dst"):
                if {self.word(), self.word(2)} != {"src", "dst"}:
                    raise self.fail("'src and dst' or 'src or dst'", self.peek(2))
                join = And if self.word(1) == "and" else Or
                self.i += 3
            else:
                sides = (self.take().text.lower(),)
        w = self.word()
        if w not in ("ip", "host", "net", "port", "as", "vlan", "tos"):
            what = "a filter primitive (proto, ip, net, port, as, if, vlan, bytes, ...)"
            raise self.fail(what if start is self.peek() else "ip, net, port, as or vlan")
        tok = self.take()
        if w in ("vlan", "tos"):
            if sides == ("dst",) or (len(sides) == 2 and join is And):
                raise FilterError(
                    f"filter: 'dst {w}': flows here carry one {w} (the source's); "
                    f"use '{w}'", self.text, start.pos,
                )  # fmt: skip
            return (
                self.compare_column(w)
                if w == "tos"
                else Compare("vlan", "==", self.checked("vlan", self.number("vlan")))
            )
        nodes: list[Node]
        if w in ("ip", "host", "net"):
            if w == "net":
                ranges: tuple[tuple[bytes, bytes], ...] = (self.network(tok),)
            elif self.word() == "in":
                ranges = self.address_list()
            else:
                ranges = (self.address(),)
            nodes = [AddressIn(f"{s}_addr", ranges) for s in sides]
        else:
            column = "port" if w == "port" else "as"
            if self.word() == "in":
                self.take()
                values = self.number_list(w)
                nodes = [InSet(f"{s}_{column}", values) for s in sides]
            else:
                op = self.comparison()
                value = self.number(w)
                nodes = [Compare(f"{s}_{column}", op, self.checked(f"{s}_{column}", value))
                         for s in sides]  # fmt: skip
        return _either(join, nodes)

    def compare_column(self, column: str) -> Node:
        op = self.comparison()
        return Compare(column, op, self.checked(column, self.number(column)))

    def flags(self) -> Node:
        tok = self.peek()
        if tok.kind == "word" and not tok.text[0].isdigit():
            letters = tok.text.upper()
            if len(letters) > 8 or any(c not in _FLAG_BITS and c != "X" for c in letters):
                raise FilterError(
                    "filter: flags are letters of FSRPAUEC (X = FSRPAU)", self.text, tok.pos
                )
            self.take()
            mask = 0
            for c in letters:
                mask |= 63 if c == "X" else _FLAG_BITS[c]
            return FlagsAll(mask)
        op = self.comparison()
        value = self.checked("tcp_flags", self.number("flags"))
        return And((Compare("protocol", "==", 6), Compare("tcp_flags", op, value)))

    def comparison(self) -> str:
        w = self.word()
        if w in _COMPARE:
            self.take()
            return _COMPARE[w]
        return "=="

    def number(self, what: str) -> int:
        tok = self.peek()
        text = tok.text.lower()
        try:
            if text.startswith("0x"):
                value = int(text, 16)
            elif text[-1:] in _SCALE and text[:-1].isdigit():
                value = int(text[:-1]) * _SCALE[text[-1]]
            elif text.isdigit():
                value = int(text)
            else:
                raise ValueError(text)
        except ValueError:
            raise self.fail(f"a number after {what!r}") from None
        self.take()
        return value

    def checked(self, column: str, value: int) -> int:
        limit = _MAX.get(column)
        if limit is not None and value > limit:
            tok = self.toks[self.i - 1]
            raise FilterError(f"filter: {value} is out of range 0..{limit}", self.text, tok.pos)
        return value

    def protocol(self) -> int:
        tok = self.peek()
        if tok.kind == "word" and tok.text.lower() in PROTOCOLS:
            self.take()
            return PROTOCOLS[tok.text.lower()]
        if tok.kind == "word" and tok.text.isdigit():
            return self.checked("protocol", self.number("proto"))
        raise self.fail("a protocol name (tcp, udp, icmp, ...) or number")

    def number_list(self, what: str) -> tuple[int, ...]:
        self.expect("[")
        values: list[int] = []
        column = "src_port" if what == "port" else "src_as"
        while self.word() != "]":
            if self.word() == "," and values:
                self.take()
            values.append(self.checked(column, self.number(what)))
        if not values:
            raise self.fail(f"a {what} number")
        self.take()
        return tuple(sorted(set(values)))

    def address(self) -> tuple[bytes, bytes]:
        tok = self.peek()
        try:
            ip = ipaddress.ip_address(tok.text) if tok.kind == "word" else None
        except ValueError:
            ip = None
        if ip is None:
            raise self.fail("an IP address (host names are not looked up)")
        self.take()
        raw = _bytes16(ip)
        return raw, raw

    def network(self, keyword: _Tok) -> tuple[bytes, bytes]:
        """``ADDR/N`` or ``ADDR MASK`` (IPv4 dotted mask)."""
        tok = self.peek()
        low, _ = self.address()
        v4 = low[:12] == _V4_PREFIX
        if self.word() == "/":
            self.take()
            bits_tok = self.peek()
            bits = self.number("/")
        elif v4 and self.peek().kind == "word" and "." in self.peek().text:
            bits_tok = self.peek()
            mask_bits = _mask_bits(self.take().text)
            if mask_bits is None:
                raise FilterError("filter: not a contiguous netmask", self.text, bits_tok.pos)
            bits = mask_bits
        else:
            raise self.fail("'/' and a prefix length after the network address")
        top = 32 if v4 else 128
        if not 0 < bits <= top:
            raise FilterError(f"filter: prefix length must be 1..{top}", self.text, bits_tok.pos)
        if not v4 and low == bytes(16):
            raise FilterError("filter: cannot filter on the unspecified network", self.text,
                              tok.pos)  # fmt: skip
        return _prefix_range(low, (96 if v4 else 0) + bits)

    def address_list(self) -> tuple[tuple[bytes, bytes], ...]:
        self.expect("in")
        self.expect("[")
        ranges: list[tuple[bytes, bytes]] = []
        while self.word() != "]":
            if self.word() == "," and ranges:
                self.take()
            low, _ = self.address()
            if self.word() == "/":
                self.take()
                v4 = low[:12] == _V4_PREFIX
                bits_tok = self.peek()
                bits = self.number("/")
                if not 0 < bits <= (32 if v4 else 128):
                    raise FilterError("filter: bad prefix length", self.text, bits_tok.pos)
                ranges.append(_prefix_range(low, (96 if v4 else 0) + bits))
            else:
                ranges.append((low, low))
        if not ranges:
            raise self.fail("an IP address")
        self.take()
        return tuple(sorted(set(ranges)))


_V4_PREFIX = b"\x00" * 10 + b"\xff\xff"


def _bytes16(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bytes:
    return _V4_PREFIX + ip.packed if ip.version == 4 else ip.packed


def _prefix_range(address: bytes, bits: int) -> tuple[bytes, bytes]:
    """Inclusive (low, high) of the ``bits``-long prefix (of 128) holding ``address``."""
    value = int.from_bytes(address, "big")
    host = (1 << (128 - bits)) - 1
    return (value & ~host).to_bytes(16, "big"), (value | host).to_bytes(16, "big")


def _mask_bits(text: str) -> int | None:
    try:
        mask = int(ipaddress.IPv4Address(text))
    except ValueError:
        return None
    bits = bin(mask).count("1")
    return bits if mask == ((1 << bits) - 1) << (32 - bits) else None


def _holds(left: int, op: str, right: int) -> bool:
    return {"==": left == right, "<": left < right, ">": left > right,
            "<=": left <= right, ">=": left >= right}[op]  # fmt: skip


def parse_filter(text: str) -> Node:
    """The expression tree of an nfdump filter; :class:`FilterError` with the position."""
    return _Parser(text).parse()


# -- rendering -------------------------------------------------------------------------
_WORDS = {"src_port": "src port", "dst_port": "dst port", "src_as": "src as",
          "dst_as": "dst as", "input_if": "in if", "output_if": "out if",
          "protocol": "proto", "tcp_flags": "flags", "icmp_type": "icmp-type",
          "icmp_code": "icmp-code"}  # fmt: skip
_ADDRESS_WORDS = {"src_addr": "src ip", "dst_addr": "dst ip", "next_hop": "next ip",
                  "exporter": "router ip"}  # fmt: skip


def _address_text(low: bytes, high: bytes) -> str:
    v4 = low[:12] == _V4_PREFIX
    ip = ipaddress.ip_address(low[12:] if v4 else low)
    if low == high:
        return str(ip)
    span = int.from_bytes(high, "big") - int.from_bytes(low, "big") + 1
    return f"{ip}/{(32 if v4 else 128) - (span.bit_length() - 1)}"


def render(node: Node) -> str:
    """``node`` as filter text (parses back to an equivalent expression)."""
    if isinstance(node, Const):
        return "any" if node.value else "not any"
    if isinstance(node, Compare):
        if node.column == "ip_version":
            return "ipv4" if node.value == 4 else "ipv6"
        op = "" if node.op == "==" else f"{node.op} "
        if node.column in ("icmp_type", "icmp_code", "input_if", "output_if", "vlan"):
            if node.op != "==":
                raise FilterError(f"filter: {node.column} takes only equality")
            op = ""
        word = _WORDS.get(node.column, node.column)
        if node.column == "tcp_flags":
            return f"(proto 6 and flags {op}{node.value})"
        return f"{word} {op}{node.value}"
    if isinstance(node, InSet):
        return f"{_WORDS[node.column]} in [{' '.join(map(str, node.values))}]"
    if isinstance(node, FlagsAll):
        letters = "".join(c for c, bit in _FLAG_BITS.items() if node.mask & bit)
        return f"flags {letters}"
    if isinstance(node, AddressIn):
        word = _ADDRESS_WORDS[node.column]
        items = [_address_text(lo, hi) for lo, hi in node.ranges]
        if len(items) == 1 and "/" not in items[0]:
            return f"{word} {items[0]}"
        return f"{word} in [{' '.join(items)}]"
    if isinstance(node, Not):
        return f"not {render(node.operand)}"
    joiner = " and " if isinstance(node, And) else " or "
    return "(" + joiner.join(render(n) for n in node.operands) + ")"
