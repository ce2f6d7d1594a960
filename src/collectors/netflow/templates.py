"""NetFlow v9 / IPFIX templates: the cache, their compiled form and the record kernel.

A template is keyed by (exporter address, observation domain / source id, template id).
It is compiled once, when it arrives, into a small *program* (per field: kind, slot,
length) that one Numba kernel, :func:`decode_records`, runs over the data sets of many
datagrams at a time - fixed-length and variable-length (RFC 7011 section 7: 1- and
3-byte length prefixes) layouts alike. Fixed-length templates also get a numpy
structured dtype (:attr:`Template.dtype`). :meth:`Template.decode_python` is the
pure-Python reference twin, also used for the rare options records.

A redefinition replaces the old template. The cache bounds templates per exporter so
a template flood cannot exhaust memory, and serialises to JSON so a collector can
restore it after a restart.
"""

from __future__ import annotations

import base64
import json
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numba import njit

from collectors.netflow.information_elements import (
    ADDRESS_SLOTS,
    IE_TABLE,
    IPV6_ADDRESS_IES,
    LABEL_SLOTS,
    N_ADDRESS_SLOTS,
    N_VALUE_SLOTS,
    SECTION_SLOTS,
    V9_SCOPE_TYPES,
    VALUE_SLOTS,
    ie_name,
)

__all__ = [
    "ADDRESS_BIT",
    "VARIABLE_LENGTH",
    "FieldSpec",
    "Template",
    "TemplateCache",
    "decode_records",
    "empty_outputs",
    "template_bytes",
]

VARIABLE_LENGTH = 65535
#: Bit of the per-record presence mask for address slot ``a`` is ``ADDRESS_BIT + a``.
ADDRESS_BIT = 56
_KIND_SKIP, _KIND_VALUE, _KIND_ADDRESS, _KIND_SECTION, _KIND_LABEL = 0, 1, 2, 3, 4
assert N_VALUE_SLOTS <= ADDRESS_BIT
assert ADDRESS_BIT + 2 * N_ADDRESS_SLOTS <= 64


@dataclass(frozen=True)
class FieldSpec:
    """One field of a template: element id, length (65535 = variable), PEN, v9 scope flag."""

    ie: int
    length: int
    pen: int = 0
    v9_scope: bool = False

    @property
    def name(self) -> str:
        """The element's registry name (v9 scope fields: ``scope<Type>``)."""
        if self.v9_scope:
            return "scope" + V9_SCOPE_TYPES.get(self.ie, str(self.ie))
        return ie_name(self.ie, self.pen)


@dataclass
class Template:
    """A (data or options) template and its compiled program."""

    exporter: bytes
    domain: int
    template_id: int
    fields: tuple[FieldSpec, ...]
    protocol: str  # "netflow_v9" or "ipfix"
    scope_count: int = 0  # > 0 for options templates
    options: bool = False
    kinds: np.ndarray = field(init=False, repr=False)
    slots: np.ndarray = field(init=False, repr=False)
    lengths: np.ndarray = field(init=False, repr=False)
    min_length: int = field(init=False)
    fixed_length: int | None = field(init=False)
    #: value slots every record of this template carries (fixed length 1..8)
    sure_slots: np.ndarray = field(init=False, repr=False)
    #: both address families for one slot: IPv6 fields sit in slots 4-7
    dual_family: bool = field(init=False)
    #: family (4 or 6) of the first address field, 0 if none: the last tie-breaker
    first_family: int = field(init=False)
    #: carries a packet section (315 / 313) or MPLS label elements (70-79)
    has_sections: bool = field(init=False)
    has_labels: bool = field(init=False)

    def __post_init__(self) -> None:
        n = len(self.fields)
        self.kinds = np.zeros(n, np.int8)
        self.slots = np.zeros(n, np.int8)
        self.lengths = np.zeros(n, np.int32)
        min_len, variable = 0, False
        families: dict[int, set[int]] = {}
        self.first_family = 0
        for i, f in enumerate(self.fields):
            self.lengths[i] = f.length
            if f.length == VARIABLE_LENGTH:
                variable = True
                min_len += 1  # the shortest length prefix
            else:
                min_len += f.length
            key = (f.pen, f.ie)
            if self.options or f.v9_scope:
                continue  # options records are read by decode_python, not the kernel
            if key in VALUE_SLOTS and (f.length == VARIABLE_LENGTH or 1 <= f.length <= 8):
                self.kinds[i], self.slots[i] = _KIND_VALUE, VALUE_SLOTS[key]
            elif key in ADDRESS_SLOTS and f.length in (4, 16, VARIABLE_LENGTH):
                self.kinds[i], self.slots[i] = _KIND_ADDRESS, ADDRESS_SLOTS[key]
                family = 6 if key in IPV6_ADDRESS_IES else 4
                families.setdefault(ADDRESS_SLOTS[key], set()).add(family)
                self.first_family = self.first_family or family
            elif key in SECTION_SLOTS:
                self.kinds[i], self.slots[i] = _KIND_SECTION, SECTION_SLOTS[key]
            elif key in LABEL_SLOTS and f.length in (3, 4, VARIABLE_LENGTH):
                self.kinds[i], self.slots[i] = _KIND_LABEL, LABEL_SLOTS[key]
        self.dual_family = any(len(v) == 2 for v in families.values())
        if self.dual_family:
            for i, f in enumerate(self.fields):
                if self.kinds[i] == _KIND_ADDRESS and (f.pen, f.ie) in IPV6_ADDRESS_IES:
                    self.slots[i] += N_ADDRESS_SLOTS
        self.has_sections = bool((self.kinds == _KIND_SECTION).any())
        self.has_labels = bool((self.kinds == _KIND_LABEL).any())
        self.min_length = min_len
        self.fixed_length = None if variable else min_len
        self.sure_slots = np.zeros(N_VALUE_SLOTS, np.bool_)
        fixed = (self.kinds == _KIND_VALUE) & (self.lengths >= 1) & (self.lengths <= 8)
        self.sure_slots[self.slots[fixed]] = True

    @property
    def key(self) -> tuple[bytes, int, int]:
        """(exporter, domain, template id)."""
        return (self.exporter, self.domain, self.template_id)

    @property
    def dtype(self) -> np.dtype | None:
        """Big-endian structured dtype of one record (fixed-length templates only)."""
        if self.fixed_length is None:
            return None
        fmts = {1: "u1", 2: ">u2", 4: ">u4", 8: ">u8"}
        return np.dtype(
            {
                "names": [f"f{i}" for i in range(len(self.fields))],
                "formats": [fmts.get(f.length, f"V{f.length}") for f in self.fields],
            }
        )

    def decode_python(self, body: bytes) -> list[dict[str, int | float | bytes]]:
        """Reference decoder: records of a data set body as {name: int, float or bytes}.

        Integers of length 1..8 become ints (reduced-size encoding is just a shorter
        big-endian number), float32/float64 elements floats; everything else stays bytes.
        Trailing bytes shorter than a record are padding; a record overrunning the set
        ends the walk.
        """
        out: list[dict[str, int | float | bytes]] = []
        pos, end = 0, len(body)
        while end - pos >= max(self.min_length, 1):
            rec: dict[str, int | float | bytes] = {}
            q = pos
            for f in self.fields:
                length = f.length
                if length == VARIABLE_LENGTH:
                    if q >= end:
                        return out
                    length = body[q]
                    q += 1
                    if length == 255:
                        if q + 2 > end:
                            return out
                        length = int.from_bytes(body[q : q + 2], "big")
                        q += 2
                if q + length > end:
                    return out
                raw = body[q : q + length]
                if length in (4, 8) and _is_float_ie(f):
                    rec[f.name] = struct.unpack(">f" if length == 4 else ">d", raw)[0]
                elif 1 <= length <= 8 and not _is_bytes_ie(f):
                    rec[f.name] = int.from_bytes(raw, "big")
                else:
                    rec[f.name] = bytes(raw)
                q += length
            out.append(rec)
            pos = q
        return out

    def to_json(self) -> dict[str, object]:
        """A JSON-able description (the compiled program is rebuilt on load)."""
        return {
            "exporter": base64.b64encode(self.exporter).decode(),
            "domain": self.domain,
            "template_id": self.template_id,
            "protocol": self.protocol,
            "scope_count": self.scope_count,
            "options": self.options,
            "fields": [[f.ie, f.length, f.pen, f.v9_scope] for f in self.fields],
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Template:
        """Inverse of :meth:`to_json`."""
        return cls(
            exporter=base64.b64decode(doc["exporter"]),
            domain=int(doc["domain"]),
            template_id=int(doc["template_id"]),
            fields=tuple(
                FieldSpec(int(a), int(b), int(c), bool(d)) for a, b, c, d in doc["fields"]
            ),
            protocol=str(doc["protocol"]),
            scope_count=int(doc["scope_count"]),
            options=bool(doc["options"]),
        )


_BYTES_TYPES = ("ipv4Address", "ipv6Address", "macAddress", "octetArray", "string")


def _is_bytes_ie(f: FieldSpec) -> bool:
    return f.pen == 0 and not f.v9_scope and f.ie in IE_TABLE and IE_TABLE[f.ie][1] in _BYTES_TYPES


def _is_float_ie(f: FieldSpec) -> bool:
    return f.pen == 0 and not f.v9_scope and IE_TABLE.get(f.ie, ("", "", 0))[1].startswith("float")


def template_bytes(template: Template) -> int:
    """What a template costs in memory, about (the object, its field specs, its program)."""
    return 640 + 96 * len(template.fields)


class TemplateCache:
    """Templates by (exporter, domain, template id), at most ``max_per_exporter`` each and
    ``max_bytes`` (:func:`template_bytes`) in all, so spoofed exporters cannot exhaust
    memory together either."""

    def __init__(self, max_per_exporter: int = 1024, max_bytes: int = 128 << 20) -> None:
        self.max_per_exporter = max_per_exporter
        self.max_bytes = max_bytes
        self.bytes = 0
        self._templates: dict[tuple[bytes, int, int], Template] = {}
        self._per_exporter: dict[bytes, int] = {}

    def get(self, exporter: bytes, domain: int, template_id: int) -> Template | None:
        """The template in force, or None."""
        return self._templates.get((exporter, domain, template_id))

    def put(self, template: Template) -> str:
        """Add or replace; returns "new", "replaced", "unchanged", "limit" (refused: the
        exporter has ``max_per_exporter``) or "memory_limit" (refused: ``max_bytes``)."""
        key = template.key
        old = self._templates.get(key)
        size = template_bytes(template)
        if old is not None:
            if old.fields == template.fields and old.options == template.options:
                return "unchanged"  # refreshes are frequent: keep the compiled object
            grown = self.bytes - template_bytes(old) + size
            if grown > self.max_bytes:
                return "memory_limit"
            self._templates[key] = template
            self.bytes = grown
            return "replaced"
        count = self._per_exporter.get(template.exporter, 0)
        if count >= self.max_per_exporter:
            return "limit"
        if self.bytes + size > self.max_bytes:
            return "memory_limit"
        self._templates[key] = template
        self._per_exporter[template.exporter] = count + 1
        self.bytes += size
        return "new"

    def remove(self, exporter: bytes, domain: int, template_id: int) -> bool:
        """Forget one template (an explicit, non-UDP withdrawal)."""
        old = self._templates.pop((exporter, domain, template_id), None)
        if old is None:
            return False
        self.bytes -= template_bytes(old)
        self._per_exporter[exporter] -= 1
        if not self._per_exporter[exporter]:
            del self._per_exporter[exporter]
        return True

    def forget_exporter(self, exporter: bytes) -> int:
        """Forget every template of ``exporter``; returns how many."""
        if exporter not in self._per_exporter:
            return 0
        keys = [k for k in self._templates if k[0] == exporter]
        for key in keys:
            self.remove(*key)
        return len(keys)

    def exporters(self) -> list[bytes]:
        """The exporters that have templates here."""
        return list(self._per_exporter)

    def __len__(self) -> int:
        return len(self._templates)

    def templates(self) -> list[Template]:
        """All templates in force."""
        return list(self._templates.values())

    def to_json(self) -> str:
        """The cache as JSON."""
        return json.dumps(
            {
                "max_per_exporter": self.max_per_exporter,
                "templates": [t.to_json() for t in self._templates.values()],
            }
        )

    @classmethod
    def from_json(
        cls, text: str, max_per_exporter: int | None = None, max_bytes: int = 128 << 20
    ) -> TemplateCache:
        """Inverse of :meth:`to_json` (templates beyond the limits are left out)."""
        doc = json.loads(text)
        cache = cls(max_per_exporter or int(doc["max_per_exporter"]), max_bytes)
        for t in doc["templates"]:
            cache.put(Template.from_json(t))
        return cache


@njit(cache=True, nogil=True)
def decode_records(
    buf: np.ndarray,
    set_start: np.ndarray,
    set_len: np.ndarray,
    set_prog: np.ndarray,
    prog_off: np.ndarray,
    prog_n: np.ndarray,
    prog_min: np.ndarray,
    prog_fixed: np.ndarray,
    f_kind: np.ndarray,
    f_slot: np.ndarray,
    f_row: np.ndarray,
    f_len: np.ndarray,
    vals: np.ndarray,
    present: np.ndarray,
    addrs: np.ndarray,
    rec_set: np.ndarray,
    set_count: np.ndarray,
    set_status: np.ndarray,
    sec: np.ndarray,
    labels: np.ndarray,
) -> int:
    """Decode every record of every data set into ``vals``/``addrs``; return the record count.

    Set ``s`` is ``buf[set_start[s]:set_start[s]+set_len[s]]`` (the body, after the set
    header) under program ``set_prog[s]`` (``prog_fixed[t]``: no variable-length field,
    so one bounds check per record suffices). A value field with slot ``f_slot[f]`` lands in
    ``vals[f_row[f], record]`` (rows are compacted to the slots the call's templates use)
    and sets bit ``f_slot[f]`` of ``present[record]``. ``set_status[s]`` becomes 1 when a record
    overruns its set (the rest of that set is dropped, the other sets are unaffected).
    A packet section gives ``sec[record]`` = (kind + 1, offset in ``buf``, length) and label
    element ``k`` the 24-bit ``labels[record, k]``; both blocks have no rows (and are never
    touched) when no template of the call carries such fields.
    """
    with_sec = sec.shape[0] > 0
    with_labels = labels.shape[0] > 0
    r = 0
    cap = present.shape[0]
    for s in range(set_start.shape[0]):
        t = set_prog[s]
        o = set_start[s]
        end = o + set_len[s]
        p0 = prog_off[t]
        nf = prog_n[t]
        ml = max(prog_min[t], 1)
        cnt = 0
        fixed = prog_fixed[t]
        while end - o >= ml and r < cap:
            q = o
            ok = True
            mask = np.uint64(0)
            if with_sec:
                sec[r, 0] = 0  # a record cut short before may have written this row
            if with_labels:
                for j in range(labels.shape[1]):
                    labels[r, j] = 0
            for f in range(p0, p0 + nf):
                length = np.int64(f_len[f])
                if fixed:
                    pass  # ``end - o >= ml`` already covers the whole record
                elif length == 65535:
                    if q >= end:
                        ok = False
                        break
                    length = np.int64(buf[q])
                    q += 1
                    if length == 255:
                        if q + 2 > end:
                            ok = False
                            break
                        length = (np.int64(buf[q]) << 8) | np.int64(buf[q + 1])
                        q += 2
                    if q + length > end:
                        ok = False
                        break
                elif q + length > end:
                    ok = False
                    break
                kind = f_kind[f]
                if kind == 1 and 1 <= length <= 8:
                    v = np.uint64(0)
                    for j in range(length):
                        v = (v << np.uint64(8)) | np.uint64(buf[q + j])
                    vals[f_row[f], r] = v
                    mask |= np.uint64(1) << np.uint64(f_slot[f])
                elif kind == 2 and (length == 4 or length == 16):
                    a = f_slot[f]
                    if length == 4:
                        for j in range(10):  # another field may have filled this slot
                            addrs[r, a, j] = 0
                        addrs[r, a, 10] = 0xFF
                        addrs[r, a, 11] = 0xFF
                        for j in range(4):
                            addrs[r, a, 12 + j] = buf[q + j]
                    else:
                        for j in range(16):
                            addrs[r, a, j] = buf[q + j]
                    mask |= np.uint64(1) << np.uint64(56 + a)
                elif kind == 3:
                    k = np.int64(f_slot[f]) + 1
                    if sec[r, 0] == 0 or k < sec[r, 0]:
                        sec[r, 0] = k
                        sec[r, 1] = q
                        sec[r, 2] = length
                elif kind == 4 and length >= 3:
                    labels[r, f_slot[f]] = (
                        (np.uint32(buf[q]) << 16) | (np.uint32(buf[q + 1]) << 8) | buf[q + 2]
                    )
                q += length
            if not ok:
                set_status[s] = 1
                break
            if q == o:
                break  # a record of zero bytes cannot advance: stop rather than spin
            present[r] = mask
            rec_set[r] = s
            r += 1
            cnt += 1
            o = q
        set_count[s] = cnt
    return r


def empty_outputs(
    capacity: int,
    n_rows: int,
    *,
    dual_family: bool = False,
    sections: bool = False,
    labels: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Zeroed (vals, present, addrs, rec_set, sec, labels) for :func:`decode_records`.

    ``addrs`` has 8 slots when a template carries both address families; ``sec`` and
    ``labels`` have rows only when a template carries sections / label elements.
    """
    slots = 2 * N_ADDRESS_SLOTS if dual_family else N_ADDRESS_SLOTS
    return (
        np.zeros((max(n_rows, 1), capacity), np.uint64),
        np.zeros(capacity, np.uint64),
        np.zeros((capacity, slots, 16), np.uint8),
        np.zeros(capacity, np.int32),
        np.zeros((capacity if sections else 0, 3), np.int64),
        np.zeros((capacity if labels else 0, len(LABEL_SLOTS)), np.uint32),
    )
