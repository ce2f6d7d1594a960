"""IPFIX (RFC 7011) messages: header, sets, template and options template records.

:func:`parse_ipfix` validates the whole message first and returns an
:class:`~collectors.netflow.v9.ExportMessage` listing, in message order, the templates
(with enterprise elements and their PEN), withdrawals and data sets. Withdrawals are
reported as items but, per RFC 7011 section 8.4, a UDP collector ignores them
(templates over UDP expire or get redefined instead). Data records are decoded in bulk
by :mod:`collectors.netflow.template_session`.
"""

from __future__ import annotations

import struct

from collectors.errors import DecodeError
from collectors.netflow.templates import FieldSpec, Template
from collectors.netflow.v9 import ExportMessage, is_zero

__all__ = ["parse_ipfix"]

_HDR = struct.Struct(">HHIII")
_SET = struct.Struct(">HH")
_U16 = struct.Struct(">HH")
_U32 = struct.Struct(">I")


def parse_ipfix(datagram: bytes, exporter: bytes) -> ExportMessage:
    """Parse and validate one IPFIX message (one UDP payload)."""
    size = len(datagram)
    if size < _HDR.size:
        raise DecodeError("truncated", f"IPFIX header needs 16 bytes, got {size}", field="header")
    version, length, export_time, seq, domain = _HDR.unpack_from(datagram)
    if version != 10:
        raise DecodeError("unsupported_version", f"version {version} is not 10", field="version")
    if length < _HDR.size:
        raise DecodeError("bad_length", f"message length {length} < 16", field="length")
    if length > size:
        raise DecodeError("truncated", f"message length {length} > datagram {size}", field="length")
    msg = ExportMessage("ipfix", domain, seq, export_time, -1)
    pos = _HDR.size
    while pos < length:
        if length - pos < 4 or _SET.unpack_from(datagram, pos)[1] < 4:
            if is_zero(datagram, pos, length):
                break
            if length - pos < 4:
                raise DecodeError("truncated", "set header cut short", offset=pos)
            raise DecodeError("set_too_short", "set length shorter than its header", offset=pos)
        set_id, slen = _SET.unpack_from(datagram, pos)
        if pos + slen > length:
            raise DecodeError(
                "set_overrun", f"set {set_id} length {slen} overruns the message", offset=pos
            )
        body, end = pos + 4, pos + slen
        if set_id in (2, 3):
            _templates(datagram, body, end, exporter, domain, set_id == 3, msg)
        elif set_id >= 256:
            msg.items.append(("data", set_id, body, end - body, None))
        # 0, 1 (NetFlow v9 ids) and 4..255 are not used in IPFIX: skipped
        pos = end
    return msg


def _templates(
    data: bytes,
    pos: int,
    end: int,
    exporter: bytes,
    domain: int,
    options: bool,
    msg: ExportMessage,
) -> None:
    head = 6 if options else 4
    while end - pos >= 4:
        tid, count = _U16.unpack_from(data, pos)
        if tid == 0 and is_zero(data, pos, end):
            return  # set padding
        if count == 0:
            # A withdrawal (id 2/3 = all templates); ignored over UDP (RFC 7011 8.4).
            msg.items.append(("withdrawal", tid, 0, 0, None))
            pos += 4
            continue
        if tid < 256:
            raise DecodeError("bad_template_id", f"template id {tid} < 256", offset=pos)
        if end - pos < head:
            raise DecodeError("template_overrun", f"template {tid} header cut", offset=pos)
        scope = 0
        if options:
            scope = (data[pos + 4] << 8) | data[pos + 5]
            if scope == 0 or scope > count:
                raise DecodeError(
                    "bad_options_template",
                    f"options template {tid} scope count {scope} of {count}",
                    offset=pos,
                )
        pos += head
        specs = []
        for _ in range(count):
            if end - pos < 4:
                raise DecodeError("template_overrun", f"template {tid} overruns", offset=pos)
            ie, flen = _U16.unpack_from(data, pos)
            pos += 4
            pen = 0
            if ie & 0x8000:
                if end - pos < 4:
                    raise DecodeError("template_overrun", f"template {tid} PEN cut", offset=pos)
                pen = _U32.unpack_from(data, pos)[0]
                ie &= 0x7FFF
                pos += 4
            specs.append(FieldSpec(ie, flen, pen))
        if sum(f.length for f in specs) == 0:
            raise DecodeError("zero_length_template", f"template {tid} records are 0 bytes")
        tpl = Template(
            exporter, domain, tid, tuple(specs), "ipfix", scope_count=scope, options=options
        )
        msg.items.append(("template", 3 if options else 2, 0, 0, tpl))
