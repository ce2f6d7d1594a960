"""Template-based decoding state for NetFlow v9 and IPFIX: many messages per call.

:class:`TemplateSession` owns what outlives one datagram: the template cache, data sets
held until their template arrives (bounded bytes per exporter), sampler options
(sampler / PSAMP selector id -> 1-in-N interval, :mod:`collectors.netflow.sampler_options`)
and system init times from options data. A call to :meth:`TemplateSession.decode` walks
the messages in order in Python (one step per set, never per record), then decodes all
queued data sets at once (:func:`collectors.netflow.set_decoder.decode_sets`: the Numba
record kernel, then vectorised numpy to ``FLOW_SCHEMA`` columns).
"""

from __future__ import annotations

import base64
import json
import logging
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit

from collectors.errors import DecodeError
from collectors.flows.batch import FORMAT_CODES, FlowColumns
from collectors.flows.sequence import SequenceTracker
from collectors.netflow.ipfix import parse_ipfix
from collectors.netflow.sampler_options import sampler_of, sampling_interval
from collectors.netflow.set_decoder import CallWork, decode_sets
from collectors.netflow.templates import Template, TemplateCache
from collectors.netflow.v9 import ExportMessage, parse_v9

__all__ = ["PendingSet", "TemplateSession"]

log = logging.getLogger(__name__)


@dataclass
class PendingSet:
    """A data set whose template has not arrived yet, with the context to decode it later."""

    domain: int
    template_id: int
    body: bytes
    protocol: str
    export_secs: int
    uptime_ms: int
    received_at_us: int


@njit(cache=True, nogil=True)
def _scan_messages(
    buf: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    simple: np.ndarray,
    header: np.ndarray,
    set_lo: np.ndarray,
    set_id: np.ndarray,
    set_off: np.ndarray,
    set_len: np.ndarray,
) -> int:
    """Find the messages made only of well-formed data sets (the steady state).

    ``header[i]`` gets (domain, sequence, export secs, uptime or -1); sets of message
    ``i`` are ``set_lo[i]:set_lo[i+1]``. Anything else - templates, options, padding,
    reserved ids, bad lengths - leaves ``simple[i]`` False for the full Python parser,
    which alone decides what is malformed.
    """
    k = 0
    for i in range(starts.shape[0]):
        set_lo[i] = k
        o, end = starts[i], ends[i]
        version = (np.int64(buf[o]) << 8) | np.int64(buf[o + 1])
        if version == 9:
            if end - o < 20:
                continue
            header[i, 0] = _be32(buf, o + 16)
            header[i, 1] = _be32(buf, o + 12)
            header[i, 2] = _be32(buf, o + 8)
            header[i, 3] = _be32(buf, o + 4)
            pos = o + 20
        else:
            if end - o < 16:
                continue
            length = (np.int64(buf[o + 2]) << 8) | np.int64(buf[o + 3])
            if length < 16 or o + length > end:
                continue
            end = o + length
            header[i, 0] = _be32(buf, o + 12)
            header[i, 1] = _be32(buf, o + 8)
            header[i, 2] = _be32(buf, o + 4)
            header[i, 3] = -1
            pos = o + 16
        ok = True
        k0 = k
        while pos < end:
            if end - pos < 4:
                ok = False
                break
            sid = (np.int64(buf[pos]) << 8) | np.int64(buf[pos + 1])
            slen = (np.int64(buf[pos + 2]) << 8) | np.int64(buf[pos + 3])
            if sid < 256 or slen < 4 or pos + slen > end:
                ok = False
                break
            set_id[k] = sid
            set_off[k] = pos + 4
            set_len[k] = slen - 4
            k += 1
            pos += slen
        if ok:
            simple[i] = True
        else:
            k = k0
    set_lo[starts.shape[0]] = k
    return k


@njit(cache=True, nogil=True, inline="always")
def _be32(b: np.ndarray, o: int) -> np.int64:
    return (
        (np.int64(b[o]) << 24)
        | (np.int64(b[o + 1]) << 16)
        | (np.int64(b[o + 2]) << 8)
        | np.int64(b[o + 3])
    )


def _drop_exporter(table: dict[Any, Any], exporter: bytes) -> None:
    """Remove the keys ``(exporter, ...)`` of ``table``."""
    for key in [k for k in table if k[0] == exporter]:
        del table[key]


class TemplateSession:
    """Per-collector state and bulk decode for v9 / IPFIX messages."""

    def __init__(
        self,
        *,
        max_templates_per_exporter: int = 1024,
        max_pending_bytes_per_exporter: int = 1 << 20,
        max_template_bytes: int = 128 << 20,
        max_pending_bytes: int = 32 << 20,
    ) -> None:
        #: key packet sections that carry VXLAN by their inner packet (a setting, not state)
        self.decapsulate_vxlan = False
        self.cache = TemplateCache(max_templates_per_exporter, max_template_bytes)
        self.max_pending_bytes = max_pending_bytes_per_exporter
        #: held data of all exporters together, at most (spoofed sources add up)
        self.max_pending_total = max_pending_bytes
        self.pending_total = 0
        self.pending: dict[bytes, deque[PendingSet]] = {}
        self.pending_bytes: dict[bytes, int] = {}
        #: (exporter, domain) -> {sampler id: interval}
        self.samplers: dict[tuple[bytes, int], dict[int, int]] = {}
        #: (exporter, domain) -> interval from options data without a sampler id
        self.default_sampling: dict[tuple[bytes, int], int] = {}
        #: (exporter, domain) -> systemInitTimeMilliseconds from options data
        self.sysinit_ms: dict[tuple[bytes, int], int] = {}
        #: (exporter, domain, template id) -> the latest options records (for inspection)
        self.options_records: dict[
            tuple[bytes, int, int], list[dict[str, int | float | bytes]]
        ] = {}

    # -- the call -----------------------------------------------------------------------
    def decode(
        self,
        index: np.ndarray,
        datagrams: Sequence[bytes],
        exporters: list[bytes],
        received: np.ndarray,
        buf: np.ndarray,
        offsets: np.ndarray,
        stats: Counter[str],
        rejected: list[tuple[int, str, str]],
        sequence: SequenceTracker,
        source: str = "udp",
    ) -> FlowColumns:
        """Decode the v9 / IPFIX datagrams ``index`` of a call, in order.

        ``buf``/``offsets`` are the call's datagrams packed (see
        :func:`collectors.netflow.v5.pack_datagrams`); ``datagrams``, ``exporters`` and
        ``received`` are indexed by position in the call; ``source`` names the input in
        rejection messages. Sampling and system init time from options data are taken as
        they stand at the end of the call, so options sent after the data in one message
        (or in a later message of the call) still apply.
        """
        m = int(index.shape[0])
        call = CallWork(m, int(buf.shape[0]))
        starts, ends = offsets[index], offsets[index + 1]
        simple = np.zeros(m, np.bool_)
        header = np.zeros((m, 4), np.int64)
        set_lo = np.zeros(m + 1, np.int64)
        cap = int(((ends - starts) // 4).sum()) + 1
        s_id = np.zeros(cap, np.int64)
        s_off = np.zeros(cap, np.int64)
        s_len = np.zeros(cap, np.int64)
        k = _scan_messages(buf, starts, ends, simple, header, set_lo, s_id, s_off, s_len)
        s_id, s_off, s_len = s_id[:k], s_off[:k], s_len[:k]
        call.domain[:] = header[:, 0]
        call.export_secs[:] = header[:, 2]
        call.uptime[:] = header[:, 3]
        is_v9 = buf[starts + 1] == 9
        call.fmt[:] = np.where(is_v9, FORMAT_CODES["netflow_v9"], FORMAT_CODES["ipfix"])
        ok = simple.copy()
        options_count = np.zeros(m, np.int64)
        unknown = np.zeros(m, np.bool_)
        get = self.cache._templates.get  # the hot lookup, once per data set
        idx_l = index.tolist()
        exp_l = [exporters[i] for i in idx_l]
        call.exporter = list(exp_l)
        call.row_index = list(idx_l)
        dom_l = header[:, 0].tolist()
        lo_l, id_l, off_l, len_l = set_lo.tolist(), s_id.tolist(), s_off.tolist(), s_len.tolist()
        q_tpl, q_off, q_len, q_row = call.templates, call.set_off, call.set_len, call.set_row
        for j, is_simple in enumerate(simple.tolist()):
            if is_simple:
                exporter, domain = exp_l[j], dom_l[j]
                for k in range(lo_l[j], lo_l[j + 1]):
                    found = get((exporter, domain, id_l[k]))
                    if found is not None and not found.options:
                        q_tpl.append(found)
                        q_off.append(off_l[k])
                        q_len.append(len_l[k])
                        q_row.append(j)
                        continue
                    body = buf[off_l[k] : off_l[k] + len_l[k]].tobytes()
                    ex = ExportMessage(
                        "netflow_v9" if is_v9[j] else "ipfix",
                        domain,
                        int(header[j, 1]),
                        int(header[j, 2]),
                        int(header[j, 3]),
                    )
                    if found is None:
                        unknown[j] = True
                        self._hold(exporter, ex, id_l[k], body, int(received[idx_l[j]]), stats)
                    else:
                        options_count[j] += self._options(found, body)
            else:
                ok[j] = self._slow(
                    j,
                    idx_l[j],
                    datagrams,
                    exp_l[j],
                    received,
                    starts,
                    call,
                    header,
                    options_count,
                    unknown,
                    stats,
                    rejected,
                )
        cols, row_records = decode_sets(
            call,
            buf,
            self,
            stats,
            rejected,
            decapsulate_vxlan=self.decapsulate_vxlan,
            source=source,
        )
        # Loss accounting: v9 counts packets, IPFIX data records (unknown: resync).
        exp_arr = np.frombuffer(b"".join(exp_l), np.uint8).reshape(m, 16) if m else None
        if exp_arr is not None:
            for v9, kind in ((True, "netflow_v9"), (False, "ipfix")):
                sel = ok & (is_v9 == v9)
                if not sel.any():
                    continue
                if v9:
                    counts = np.ones(int(sel.sum()), np.int64)
                else:
                    counts = options_count[sel] + row_records[: call.m][sel]
                    counts = np.where(unknown[sel], -1, counts)
                sequence.observe_many(exp_arr[sel], header[sel, 0], kind, header[sel, 1], counts)
        return cols

    def _slow(
        self,
        j: int,
        index: int,
        datagrams: Sequence[bytes],
        exporter: bytes,
        received: np.ndarray,
        starts: np.ndarray,
        call: CallWork,
        header: np.ndarray,
        options_count: np.ndarray,
        unknown: np.ndarray,
        stats: Counter[str],
        rejected: list[tuple[int, str, str]],
    ) -> bool:
        """Full parse of message ``j`` (templates, options, padding, errors)."""
        datagram = bytes(datagrams[index])
        try:
            msg = (parse_v9 if datagram[1] == 9 else parse_ipfix)(datagram, exporter)
        except DecodeError as exc:
            rejected.append((index, exc.reason, str(exc)))
            stats[f"malformed:{exc.reason}"] += 1
            return False
        header[j] = (msg.domain, msg.sequence, msg.export_secs, msg.uptime_ms)
        call.domain[j] = msg.domain
        call.export_secs[j] = msg.export_secs
        call.uptime[j] = msg.uptime_ms
        n_sets = len(call.templates)
        base = int(starts[j])
        call.current = index  # held sets this message's templates release
        get = self.cache._templates.get
        try:
            for kind, set_id, off, length, tpl in msg.items:
                if kind == "data":
                    found = get((exporter, msg.domain, set_id))
                    if found is None:
                        unknown[j] = True
                        body = datagram[off : off + length]
                        self._hold(exporter, msg, set_id, body, int(received[index]), stats)
                    elif found.options:
                        options_count[j] += self._options(found, datagram[off : off + length])
                    else:
                        call.templates.append(found)
                        call.set_off.append(base + off)
                        call.set_len.append(length)
                        call.set_row.append(j)
                elif kind == "template":
                    assert tpl is not None
                    outcome = self.cache.put(tpl)
                    stats[f"template_{outcome}"] += 1
                    if outcome in ("new", "replaced"):
                        options_count[j] += self._drain(tpl, call, stats)
                else:
                    stats["template_withdrawal_ignored"] += 1
        except Exception as exc:  # a bug must not take the collector down
            log.exception("datagram %d: v9/IPFIX apply failed", index)
            del call.templates[n_sets:], call.set_off[n_sets:]
            del call.set_len[n_sets:], call.set_row[n_sets:]
            rejected.append((index, "internal_error", repr(exc)))
            stats["malformed:internal_error"] += 1
            return False
        return True

    def _options(self, tpl: Template, body: bytes) -> int:
        records = tpl.decode_python(body)
        self._apply_options(tpl, records)
        return len(records)

    # -- data before its template ----------------------------------------------------------
    def _hold(
        self,
        exporter: bytes,
        msg: ExportMessage,
        set_id: int,
        body: bytes,
        received: int,
        stats: Counter[str],
    ) -> None:
        stats["unknown_template"] += 1
        size = len(body)
        if size > self.max_pending_bytes:
            stats["pending_dropped"] += 1
            return
        pend = PendingSet(
            msg.domain, set_id, body, msg.protocol, msg.export_secs, msg.uptime_ms, received
        )
        dq = self.pending.setdefault(exporter, deque())
        before = self.pending_bytes.get(exporter, 0)
        used = before + size
        while used > self.max_pending_bytes and dq:
            used -= len(dq.popleft().body)  # the oldest goes first
            stats["pending_dropped"] += 1
        total = self.pending_total - before + used
        while total > self.max_pending_total and dq:  # all exporters' share is full
            dropped = len(dq.popleft().body)
            used, total = used - dropped, total - dropped
            stats["pending_dropped"] += 1
        if total > self.max_pending_total:  # others hold it all: this set is not kept
            stats["pending_dropped"] += 1
            stats["pending_memory_limit"] += 1
            self.pending_bytes[exporter] = used
            self.pending_total = total - size
            return
        dq.append(pend)
        self.pending_bytes[exporter] = used
        self.pending_total = total

    def _drain(self, tpl: Template, call: CallWork, stats: Counter[str]) -> int:
        """Queue the held data sets the new template ``tpl`` decodes; return options records."""
        exporter = tpl.exporter
        dq = self.pending.get(exporter)
        if not dq:
            return 0
        keep: deque[PendingSet] = deque()
        options_count = 0
        for p in dq:
            if p.domain != tpl.domain or p.template_id != tpl.template_id:
                keep.append(p)
                continue
            stats["pending_decoded"] += 1
            self.pending_bytes[exporter] -= len(p.body)
            self.pending_total -= len(p.body)
            if tpl.options:
                options_count += self._options(tpl, p.body)
                continue
            # Its own row: the header values of the message it came in.
            call.add_extra(exporter, p, tpl)
        self.pending[exporter] = keep
        return options_count

    # -- exporters ---------------------------------------------------------------------------
    def exporters(self) -> set[bytes]:
        """Every exporter this session holds something for."""
        found = set(self.cache.exporters()) | set(self.pending)
        for table in (self.samplers, self.default_sampling, self.sysinit_ms):
            found.update(key[0] for key in table)
        return found

    def forget_exporter(self, exporter: bytes) -> None:
        """Drop everything held for ``exporter`` (evicted to make room for another)."""
        self.cache.forget_exporter(exporter)
        self.pending.pop(exporter, None)
        self.pending_total -= self.pending_bytes.pop(exporter, 0)
        _drop_exporter(self.samplers, exporter)
        _drop_exporter(self.default_sampling, exporter)
        _drop_exporter(self.sysinit_ms, exporter)
        _drop_exporter(self.options_records, exporter)

    # -- options data: samplers and system init time -----------------------------------------
    def _apply_options(self, tpl: Template, records: list[dict[str, int | float | bytes]]) -> None:
        key = (tpl.exporter, tpl.domain)
        self.options_records[(tpl.exporter, tpl.domain, tpl.template_id)] = records[-64:]
        for rec in records:
            interval = sampling_interval(rec)
            sampler = sampler_of(rec)
            if interval is not None:
                if sampler is not None:
                    self.samplers.setdefault(key, {})[sampler] = interval
                else:
                    self.default_sampling[key] = interval
            init = rec.get("systemInitTimeMilliseconds")
            if isinstance(init, int) and init < 1 << 53:  # beyond that it is not a time
                self.sysinit_ms[key] = init

    # -- persistence ---------------------------------------------------------------------------
    def to_json(self) -> str:
        """Templates, sampler options, init times and held data sets as JSON."""

        def b64(b: bytes) -> str:
            return base64.b64encode(b).decode()

        return json.dumps(
            {
                "templates": self.cache.to_json(),
                "samplers": [
                    [b64(e), d, [[k, v] for k, v in m.items()]]
                    for (e, d), m in self.samplers.items()
                ],
                "default_sampling": [[b64(e), d, v] for (e, d), v in self.default_sampling.items()],
                "sysinit_ms": [[b64(e), d, v] for (e, d), v in self.sysinit_ms.items()],
                "pending": [
                    [
                        b64(e),
                        [
                            [
                                p.domain,
                                p.template_id,
                                b64(p.body),
                                p.protocol,
                                p.export_secs,
                                p.uptime_ms,
                                p.received_at_us,
                            ]
                            for p in dq
                        ],
                    ]
                    for e, dq in self.pending.items()
                ],
            }
        )

    @classmethod
    def from_json(
        cls,
        text: str,
        *,
        max_templates_per_exporter: int = 1024,
        max_pending_bytes_per_exporter: int = 1 << 20,
        max_template_bytes: int = 128 << 20,
        max_pending_bytes: int = 32 << 20,
    ) -> TemplateSession:
        """Inverse of :meth:`to_json` (bounds come from the arguments)."""
        doc = json.loads(text)
        s = cls(
            max_templates_per_exporter=max_templates_per_exporter,
            max_pending_bytes_per_exporter=max_pending_bytes_per_exporter,
            max_template_bytes=max_template_bytes,
            max_pending_bytes=max_pending_bytes,
        )
        s.cache = TemplateCache.from_json(
            doc["templates"], max_templates_per_exporter, max_template_bytes
        )
        d64 = base64.b64decode
        for e, d, items in doc["samplers"]:
            s.samplers[(d64(e), int(d))] = {int(k): int(v) for k, v in items}
        for e, d, v in doc["default_sampling"]:
            s.default_sampling[(d64(e), int(d))] = int(v)
        for e, d, v in doc["sysinit_ms"]:
            s.sysinit_ms[(d64(e), int(d))] = int(v)
        for e, rows in doc["pending"]:
            dq: deque[PendingSet] = deque(
                PendingSet(int(a), int(b), d64(c), str(p), int(x), int(u), int(r))
                for a, b, c, p, x, u, r in rows
            )
            s.pending[d64(e)] = dq
            s.pending_bytes[d64(e)] = sum(len(p.body) for p in dq)
        s.pending_total = sum(s.pending_bytes.values())
        return s
