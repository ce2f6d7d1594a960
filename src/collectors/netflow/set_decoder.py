"""Bulk decode of the data sets one v9 / IPFIX call queued: records to flow columns.

:class:`CallWork` is what :class:`collectors.netflow.template_session.TemplateSession`
queues while it walks a call's messages (one step per set); :func:`decode_sets` then
decodes every queued set at once with the Numba kernel
:func:`collectors.netflow.templates.decode_records`, chooses the address family of
records whose template carries both (:mod:`collectors.netflow.address_family`), fills
fields from packet sections (:mod:`collectors.netflow.packet_sections`) and assembles
``FLOW_SCHEMA`` columns (:mod:`collectors.netflow.template_flows`).

A record that yields no address and no volume - source and destination unspecified,
0 bytes and 0 packets - is not a flow: it is rejected (reason ``empty_record``, named by
datagram, template and record) and counted, never written as an empty row.
"""

from __future__ import annotations

from collections import Counter
from typing import Protocol

import numpy as np

from collectors.flows.batch import FORMAT_CODES, FlowColumns
from collectors.flows.empty_records import EMPTY_RECORD, empty_records
from collectors.netflow.address_family import choose_families
from collectors.netflow.information_elements import N_VALUE_SLOTS, SLOT
from collectors.netflow.packet_sections import fill_from_sections, label_stack
from collectors.netflow.template_flows import RowMeta, assemble_flows
from collectors.netflow.templates import Template, decode_records, empty_outputs

__all__ = ["CallWork", "HeldSet", "SamplerState", "decode_sets"]


class HeldSet(Protocol):
    """A data set held for its template (``template_session.PendingSet``)."""

    domain: int
    body: bytes
    protocol: str
    export_secs: int
    uptime_ms: int


class SamplerState(Protocol):
    """The options-data state rows take their sampling and init time from."""

    samplers: dict[tuple[bytes, int], dict[int, int]]
    default_sampling: dict[tuple[bytes, int], int]
    sysinit_ms: dict[tuple[bytes, int], int]


class CallWork:
    """Work of one decode call: message rows and queued data sets, as parallel lists.

    Rows ``0..m-1`` are the call's messages; rows after them belong to held data sets
    released from the pending buffer (each keeps the header values it arrived with).
    Set bodies are ``(offset, length)`` in the call's packed datagram buffer; released
    bodies live in ``extra`` and get offsets past the end of that buffer. ``row_index``
    is the datagram (position in the call) each row's rejections are reported under: a
    released set's is the datagram whose template released it (``current``).
    """

    def __init__(self, m: int, buf_len: int) -> None:
        self.m = m
        self.buf_len = buf_len
        self.exporter: list[bytes] = []
        self.domain = np.zeros(m, np.uint32)
        self.export_secs = np.zeros(m, np.int64)
        self.uptime = np.full(m, -1, np.int64)
        self.fmt = np.zeros(m, np.uint8)
        self.row_index: list[int] = []
        self.current = 0
        self.extra_rows: list[tuple[int, int, int, int]] = []  # domain, secs, uptime, fmt
        self.extra: list[bytes] = []
        self.extra_len = 0
        self.templates: list[Template] = []
        self.set_off: list[int] = []
        self.set_len: list[int] = []
        self.set_row: list[int] = []

    def add_extra(self, exporter: bytes, p: HeldSet, tpl: Template) -> None:
        """Queue a released held set as a row of its own."""
        row = self.m + len(self.extra_rows)
        self.exporter.append(exporter)
        self.row_index.append(self.current)
        self.extra_rows.append((p.domain, p.export_secs, p.uptime_ms, FORMAT_CODES[p.protocol]))
        self.templates.append(tpl)
        self.set_off.append(self.buf_len + self.extra_len)
        self.set_len.append(len(p.body))
        self.set_row.append(row)
        self.extra.append(p.body)
        self.extra_len += len(p.body)


def _row_meta(call: CallWork, state: SamplerState) -> RowMeta:
    extra = np.array(call.extra_rows, np.int64).reshape(-1, 4)
    domain = np.concatenate([call.domain, extra[:, 0].astype(np.uint32)])
    m = domain.shape[0]
    sampling = np.zeros(m, np.uint32)  # 0: no rate announced (null)
    sysinit = np.full(m, -1, np.int64)
    samplers: list[dict[int, int] | None] = [None] * m
    if (state.default_sampling or state.sysinit_ms or state.samplers) and m:
        if call.exporter.count(call.exporter[0]) == m and bool((domain == domain[0]).all()):
            # the usual call: one exporter and domain, so one look-up (not one a message)
            key = (call.exporter[0], int(domain[0]))
            sampling[:] = state.default_sampling.get(key, 0)
            sysinit[:] = state.sysinit_ms.get(key, -1)
            samplers = [state.samplers.get(key)] * m
        else:
            for i, key in enumerate(zip(call.exporter, domain.tolist(), strict=True)):
                sampling[i] = state.default_sampling.get(key, 0)
                sysinit[i] = state.sysinit_ms.get(key, -1)
                samplers[i] = state.samplers.get(key)
    return RowMeta(
        exporter=np.frombuffer(b"".join(call.exporter), np.uint8).reshape(m, 16),
        domain=domain,
        export_secs=np.concatenate([call.export_secs, extra[:, 1]]),
        uptime_ms=np.concatenate([call.uptime, extra[:, 2]]),
        source_format=np.concatenate([call.fmt, extra[:, 3].astype(np.uint8)]),
        sampling=sampling,
        sysinit_ms=sysinit,
        samplers=samplers,
    )


def decode_sets(
    call: CallWork,
    buf: np.ndarray,
    state: SamplerState,
    stats: Counter[str],
    rejected: list[tuple[int, str, str]],
    *,
    decapsulate_vxlan: bool = False,
    source: str = "udp",
) -> tuple[FlowColumns, np.ndarray]:
    """Decode all queued sets; return flows and the data records per message row."""
    n_sets = len(call.templates)
    n_rows = call.m + len(call.extra_rows)
    if n_sets == 0:
        return FlowColumns.allocate(0), np.zeros(n_rows, np.int64)
    first = call.templates[0]
    if all(t is first for t in call.templates):  # the usual call: one template
        tpl_list, set_prog = [first], np.zeros(n_sets, np.int32)
    else:
        progs: dict[int, int] = {}
        tpl_list = []
        set_prog = np.empty(n_sets, np.int32)
        for i, t in enumerate(call.templates):
            p = progs.get(id(t))
            if p is None:
                p = progs[id(t)] = len(tpl_list)
                tpl_list.append(t)
            set_prog[i] = p
    prog_n = np.array([len(t.fields) for t in tpl_list], np.int32)
    prog_off = np.zeros(len(tpl_list), np.int32)
    np.cumsum(prog_n[:-1], out=prog_off[1:])
    prog_min = np.array([max(t.min_length, 1) for t in tpl_list], np.int32)
    prog_fixed = np.array([t.fixed_length is not None for t in tpl_list], np.bool_)
    f_kind = np.concatenate([t.kinds for t in tpl_list])
    f_slot = np.concatenate([t.slots for t in tpl_list]).astype(np.int32)
    # Compact the value matrix to the slots these templates use.
    used = np.unique(f_slot[f_kind == 1])
    slot_row = np.full(N_VALUE_SLOTS, -1, np.int32)
    slot_row[used] = np.arange(used.shape[0], dtype=np.int32)
    f_row = np.where(f_kind == 1, slot_row[f_slot], 0).astype(np.int32)
    f_len = np.concatenate([t.lengths for t in tpl_list])
    set_len = np.array(call.set_len, np.int64)
    set_start = np.array(call.set_off, np.int64)
    if call.extra:
        buf = np.concatenate([buf, np.frombuffer(b"".join(call.extra), np.uint8)])
    capacity = int((set_len // prog_min[set_prog]).sum())
    dual = any(t.dual_family for t in tpl_list)
    vals, present, addrs, rec_set, sec, labels = empty_outputs(
        capacity,
        used.shape[0],
        dual_family=dual,
        sections=any(t.has_sections for t in tpl_list),
        labels=any(t.has_labels for t in tpl_list),
    )
    set_count = np.zeros(n_sets, np.int64)
    set_status = np.zeros(n_sets, np.int8)
    n = decode_records(
        buf,
        set_start,
        set_len,
        set_prog,
        prog_off,
        prog_n,
        prog_min,
        prog_fixed,
        f_kind,
        f_slot,
        f_row,
        f_len,
        vals,
        present,
        addrs,
        rec_set,
        set_count,
        set_status,
        sec,
        labels,
    )
    overruns = int(set_status.sum())
    if overruns:
        stats["records_overrun"] += overruns
    set_row = np.array(call.set_row, np.int64)
    row_records = np.bincount(set_row, weights=set_count, minlength=n_rows).astype(np.int64)
    vals, present, addrs, rec_set = vals[:, :n], present[:n], addrs[:n], rec_set[:n]
    if dual:
        rec_prog = set_prog[rec_set]
        row = slot_row[SLOT["ip_version"]]
        ipv = vals[row] if row >= 0 else np.zeros(n, np.uint64)
        bit = (present >> np.uint64(SLOT["ip_version"])) & np.uint64(1)
        addrs, present, ambiguous = choose_families(
            addrs,
            present,
            np.array([t.dual_family for t in tpl_list], np.bool_)[rec_prog],
            np.where(bit == 1, ipv, 0),
            np.array([t.first_family for t in tpl_list], np.int8)[rec_prog],
        )
        if ambiguous:
            stats["address_family_ambiguous"] += ambiguous
    mpls = None
    if sec.shape[0]:
        vals, slot_row, present, sec_values, sec_depth = fill_from_sections(
            buf, sec[:n], vals, slot_row, present, addrs, decapsulate_vxlan
        )
        if sec_values is not None and sec_depth is not None:
            mpls = (sec_values, sec_depth)
    if labels.shape[0]:
        values, depth = label_stack(labels[:n])
        if mpls is not None:  # label elements first, then what sections showed
            keep = depth == 0
            values[keep], depth[keep] = mpls[0][keep], mpls[1][keep]
        mpls = (values, depth)
    cols = assemble_flows(
        vals,
        slot_row,
        present,
        addrs,
        set_row[rec_set],
        _row_meta(call, state),
        np.logical_and.reduce([t.sure_slots for t in tpl_list]),
        mpls,
    )
    empty = empty_records(cols)
    if empty.size:
        _reject_empty(empty, call, rec_set, set_row, set_count, stats, rejected, source)
        keep = np.ones(len(cols), np.bool_)
        keep[empty] = False
        cols = cols.take(keep)
    return cols, row_records


def _reject_empty(
    empty: np.ndarray,
    call: CallWork,
    rec_set: np.ndarray,
    set_row: np.ndarray,
    set_count: np.ndarray,
    stats: Counter[str],
    rejected: list[tuple[int, str, str]],
    source: str,
) -> None:
    """One rejection per empty record, named by datagram, set, template and record."""
    first = np.zeros(set_count.shape[0], np.int64)
    np.cumsum(set_count[:-1], out=first[1:])
    for r in empty.tolist():  # forward records only: reverse flows always carry volume
        s = int(rec_set[r])
        tpl = call.templates[s]
        i = call.row_index[int(set_row[s])]
        rejected.append(
            (
                i,
                EMPTY_RECORD,
                f"{source}: datagram {i}: {tpl.protocol} template {tpl.template_id} "
                f"(domain {tpl.domain}) record {r - int(first[s])}: no address and no "
                "volume (source and destination unspecified, 0 bytes, 0 packets)",
            )
        )
    stats[f"malformed:{EMPTY_RECORD}"] += int(empty.size)
