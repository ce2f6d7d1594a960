"""NetFlow v9 (RFC 3954) export packets: header, FlowSets and (options) template records.

:func:`parse_v9` validates the whole packet before anything is applied and returns an
:class:`ExportMessage`: the header values plus, in packet order, the templates it
defines and the data sets it carries (as offsets). Data records themselves are decoded
later, in bulk, by :mod:`collectors.netflow.template_session`. Malformed input raises
:class:`~collectors.errors.DecodeError` with a reason code.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from collectors.errors import DecodeError
from collectors.netflow.templates import FieldSpec, Template

__all__ = ["ExportMessage", "SetItem", "is_zero", "parse_v9"]

_HDR = struct.Struct(">HHIIII")
_SET = struct.Struct(">HH")
_TPL = struct.Struct(">HH")
_OPT = struct.Struct(">HHH")


#: One element of a message, in order: ``(kind, set_id, offset, length, template)`` with
#: kind "template" (template set), "withdrawal" (set_id = the withdrawn template id) or
#: "data" (offset/length of the body within the datagram).
SetItem = tuple[str, int, int, int, Template | None]


@dataclass(slots=True)
class ExportMessage:
    """Header values of a v9 or IPFIX message and its sets in order."""

    protocol: str
    domain: int
    sequence: int
    export_secs: int
    uptime_ms: int  # v9 sysUptime; -1 for IPFIX
    items: list[SetItem] = field(default_factory=list)


def is_zero(data: bytes, start: int, end: int) -> bool:
    """True if ``data[start:end]`` is all zero bytes (padding)."""
    return not any(data[start:end])


def parse_v9(datagram: bytes, exporter: bytes) -> ExportMessage:
    """Parse and validate one NetFlow v9 export packet."""
    size = len(datagram)
    if size < _HDR.size:
        raise DecodeError("truncated", f"v9 header needs 20 bytes, got {size}", field="header")
    version, _count, uptime, secs, seq, source_id = _HDR.unpack_from(datagram)
    if version != 9:
        raise DecodeError("unsupported_version", f"version {version} is not 9", field="version")
    msg = ExportMessage("netflow_v9", source_id, seq, secs, uptime)
    pos = _HDR.size
    while pos < size:
        if size - pos < 4 or _SET.unpack_from(datagram, pos)[1] < 4:
            if is_zero(datagram, pos, size):
                break  # trailing zero padding after the last FlowSet
            if size - pos < 4:
                raise DecodeError("truncated", "FlowSet header cut short", offset=pos)
            raise DecodeError("set_too_short", "FlowSet length shorter than its header", offset=pos)
        set_id, length = _SET.unpack_from(datagram, pos)
        if pos + length > size:
            raise DecodeError(
                "set_overrun",
                f"FlowSet {set_id} length {length} overruns the packet",
                offset=pos,
                field="length",
            )
        body, end = pos + 4, pos + length
        if set_id == 0:
            _templates(datagram, body, end, exporter, source_id, msg)
        elif set_id == 1:
            _options_templates(datagram, body, end, exporter, source_id, msg)
        elif set_id >= 256:
            msg.items.append(("data", set_id, body, end - body, None))
        # ids 2..255 are reserved: skipped
        pos = end
    return msg


def _templates(
    data: bytes, pos: int, end: int, exporter: bytes, domain: int, msg: ExportMessage
) -> None:
    while end - pos >= 4:
        tid, count = _TPL.unpack_from(data, pos)
        if tid == 0 and is_zero(data, pos, end):
            return  # padding
        if tid < 256:
            raise DecodeError("bad_template_id", f"template id {tid} < 256", offset=pos)
        if count == 0:
            raise DecodeError("zero_length_template", f"template {tid} has no fields", offset=pos)
        pos += 4
        if pos + 4 * count > end:
            raise DecodeError("template_overrun", f"template {tid} overruns its set", offset=pos)
        specs = tuple(FieldSpec(*_TPL.unpack_from(data, pos + 4 * i)) for i in range(count))
        pos += 4 * count
        if sum(f.length for f in specs) == 0:
            raise DecodeError("zero_length_template", f"template {tid} records are 0 bytes")
        tpl = Template(exporter, domain, tid, specs, "netflow_v9")
        msg.items.append(("template", 0, 0, 0, tpl))


def _options_templates(
    data: bytes, pos: int, end: int, exporter: bytes, domain: int, msg: ExportMessage
) -> None:
    while end - pos >= 6:
        tid, scope_len, opt_len = _OPT.unpack_from(data, pos)
        if tid == 0 and is_zero(data, pos, end):
            return
        if tid < 256:
            raise DecodeError("bad_template_id", f"options template id {tid} < 256", offset=pos)
        if scope_len % 4 or opt_len % 4:
            raise DecodeError(
                "bad_options_template",
                f"options template {tid} scope/option lengths {scope_len}/{opt_len}",
                offset=pos,
            )
        if scope_len + opt_len == 0:
            raise DecodeError("zero_length_template", f"options template {tid} is empty")
        pos += 6
        if pos + scope_len + opt_len > end:
            raise DecodeError(
                "template_overrun", f"options template {tid} overruns its set", offset=pos
            )
        scopes = [
            FieldSpec(ie, ln, 0, True)
            for ie, ln in (_TPL.unpack_from(data, pos + i) for i in range(0, scope_len, 4))
        ]
        pos += scope_len
        opts = [FieldSpec(*_TPL.unpack_from(data, pos + i)) for i in range(0, opt_len, 4)]
        pos += opt_len
        specs = tuple(scopes + opts)
        if sum(f.length for f in specs) == 0:
            raise DecodeError("zero_length_template", f"options template {tid} is 0 bytes")
        tpl = Template(
            exporter, domain, tid, specs, "netflow_v9", scope_count=len(scopes), options=True
        )
        msg.items.append(("template", 1, 0, 0, tpl))
