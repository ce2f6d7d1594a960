"""Per-record element values (from :func:`collectors.netflow.templates.decode_records`) to flows.

All vectorised numpy over the records of one call:

- times, in order of preference: nanosecond / microsecond (NTP format), millisecond and
  second timestamps, delta-microseconds before export, then sysUpTime-relative stamps
  (v9 header uptime; IPFIX systemInitTimeMilliseconds from the record or options data),
  each with a signed 32-bit distance so the uptime wrap at 2**32 ms is harmless; a
  missing end is start + duration; with no time at all, the export time;
- counters: delta, else total, else post counters (reduced-size already widened);
  a *packet report* (a record without counters that carries ipTotalLength 224,
  dataLinkFrameSize 312, sectionExportedOctets 410 or a packet section) is one packet
  of that size: ipTotalLength, else dataLinkFrameSize, else the IP length read from the
  section (the section's own bytes if it held no IP header), else sectionExportedOctets;
- interfaces: ingress/egressInterface (10/14), else ingress/egressPhysicalInterface
  (252/253);
- sampling: per-record samplingInterval (34), samplerRandomInterval (50),
  samplingPacketInterval/Space (305/306), a sampler id (48/302) resolved through
  options data, else the exporter's options default, else 0 - not announced, null in
  the flow schema (renormalisation counts it as 1);
- RFC 5103 biflows: a record with reverse counters also yields the reverse flow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from collectors.flows.batch import FlowColumns
from collectors.netflow.information_elements import SLOT
from collectors.netflow.templates import ADDRESS_BIT

__all__ = ["NTP_EPOCH_OFFSET", "RowMeta", "assemble_flows"]

NTP_EPOCH_OFFSET = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01


@dataclass
class RowMeta:
    """Context per message (row): header values and the exporter state for its key."""

    exporter: np.ndarray  # (m, 16) uint8
    domain: np.ndarray  # uint32
    export_secs: np.ndarray  # int64
    uptime_ms: np.ndarray  # int64, v9 sysUptime; -1 for IPFIX
    source_format: np.ndarray  # uint8
    sampling: np.ndarray  # uint32 default interval from options data (1 if none)
    sysinit_ms: np.ndarray  # int64 systemInitTimeMilliseconds from options data, -1 unknown
    samplers: list[dict[int, int] | None]  # sampler id -> interval, per row


def _signed32(x: np.ndarray) -> np.ndarray:
    d = x.astype(np.int64) & 0xFFFFFFFF
    return np.where(d >= 1 << 31, d - (1 << 32), d)


def _ntp_us(v: np.ndarray) -> np.ndarray:
    secs = (v >> np.uint64(32)).astype(np.int64) - NTP_EPOCH_OFFSET
    # Round to the nearest microsecond: exporters truncate to NTP fractions.
    frac = ((v & np.uint64(0xFFFFFFFF)) * np.uint64(1_000_000) + np.uint64(1 << 31)) >> np.uint64(
        32
    )
    return secs * 1_000_000 + frac.astype(np.int64)


class _Records:
    """Accessors over the (slot row, record) value matrix and the presence bits."""

    def __init__(
        self, vals: np.ndarray, slot_row: np.ndarray, present: np.ndarray, sure: np.ndarray
    ) -> None:
        self.vals = vals
        self.slot_row = slot_row
        self.present = present
        self.sure = sure  # slots every record carries: no need to test the bits
        self._zeros = np.zeros(present.shape[0], np.uint64)
        self._has: dict[str, np.ndarray] = {}

    def has(self, slot: str) -> np.ndarray:
        got = self._has.get(slot)
        if got is None:
            if self.slot_row[SLOT[slot]] < 0:
                got = np.zeros(self.present.shape[0], np.bool_)
            elif self.sure[SLOT[slot]]:
                got = np.ones(self.present.shape[0], np.bool_)
            else:
                bit = np.uint64(SLOT[slot])
                got = ((self.present >> bit) & np.uint64(1)).astype(np.bool_)
            self._has[slot] = got
        return got

    def has_addr(self, a: int) -> np.ndarray:
        return ((self.present >> np.uint64(ADDRESS_BIT + a)) & np.uint64(1)).astype(np.bool_)

    def v(self, slot: str) -> np.ndarray:
        row = self.slot_row[SLOT[slot]]
        return self._zeros if row < 0 else self.vals[row]

    def take(self, idx: np.ndarray) -> _Records:
        return _Records(self.vals[:, idx], self.slot_row, self.present[idx], self.sure)


def _time(
    r: _Records,
    which: str,
    prefix: str,
    export_us: np.ndarray,
    uptime_now: np.ndarray,
    sysinit: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """(microseconds, known) for ``which`` in ("start", "end"), lowest priority first."""
    n = export_us.shape[0]
    out = np.zeros(n, np.int64)
    ok = np.zeros(n, np.bool_)
    name = f"{prefix}{which}_uptime"
    sel = r.has(name) & (uptime_now >= 0)
    if sel.any():
        d = _signed32(uptime_now[sel] - r.v(name)[sel].astype(np.int64))
        out[sel] = export_us[sel] - d * 1000
        ok |= sel
    # IPFIX with an export time before system init (a clock the exporter never set):
    # the stamp is still relative to systemInitTimeMilliseconds.
    sel = r.has(name) & (uptime_now < 0) & (sysinit >= 0)
    if sel.any():
        out[sel] = (sysinit[sel] + r.v(name)[sel].astype(np.int64)) * 1000
        ok |= sel
    name = f"{which}_delta_us"
    if not prefix and (sel := r.has(name)).any():
        out[sel] = export_us[sel] - r.v(name)[sel].astype(np.int64)
        ok |= sel
    for unit, scale in (("s", 1_000_000), ("ms", 1000)):
        name = f"{prefix}{which}_{unit}"
        if name in SLOT and (sel := r.has(name)).any():
            out[sel] = r.v(name)[sel].astype(np.int64) * scale
            ok |= sel
    for unit in ("us", "ns"):
        name = f"{prefix}{which}_{unit}"
        if name in SLOT and (sel := r.has(name)).any():
            out[sel] = _ntp_us(r.v(name)[sel])
            ok |= sel
    return out, ok


def _times(
    r: _Records, prefix: str, export_us: np.ndarray, uptime_now: np.ndarray, sysinit: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    start, s_ok = _time(r, "start", prefix, export_us, uptime_now, sysinit)
    end, e_ok = _time(r, "end", prefix, export_us, uptime_now, sysinit)
    if not prefix:
        dur = np.full(start.shape[0], -1, np.int64)
        for name, scale in (("duration_ms", 1000), ("duration_us", 1)):
            sel = r.has(name)
            dur[sel] = r.v(name)[sel].astype(np.int64) * scale
        fix = ~e_ok & s_ok & (dur >= 0)
        end[fix] = start[fix] + dur[fix]
        e_ok |= fix
        fix = ~s_ok & e_ok & (dur >= 0)
        start[fix] = end[fix] - dur[fix]
        s_ok |= fix
    known = s_ok | e_ok
    start = np.where(s_ok, start, np.where(e_ok, end, export_us))
    end = np.where(e_ok, end, start)
    return start, end, known


def _first_of(r: _Records, names: tuple[str, ...]) -> np.ndarray:
    first = r.has(names[0])
    if first.all():
        return r.v(names[0])
    out = np.zeros(r.present.shape[0], np.uint64)
    for name in reversed(names):
        sel = r.has(name)
        out[sel] = r.v(name)[sel]
    return out


def assemble_flows(
    vals: np.ndarray,
    slot_row: np.ndarray,
    present: np.ndarray,
    addrs: np.ndarray,
    rec_row: np.ndarray,
    meta: RowMeta,
    sure: np.ndarray | None = None,
    mpls: tuple[np.ndarray, np.ndarray] | None = None,
) -> FlowColumns:
    """Flow columns for ``n`` decoded records; record ``i`` came from message ``rec_row[i]``.

    ``vals[slot_row[s], i]`` holds value slot ``s`` of record ``i`` (``slot_row[s] < 0``:
    no template in the call maps that slot); ``sure[s]``: every record carries slot ``s``;
    ``mpls``: label values ``(n, MAX_LABELS)`` and depths, when any record has labels.
    """
    n = present.shape[0]
    if n == 0:
        return FlowColumns.allocate(0)
    if sure is None:
        sure = np.zeros(slot_row.shape[0], np.bool_)
    r = _Records(vals, slot_row, present, sure)
    rs = rec_row
    export_us = meta.export_secs[rs] * 1_000_000
    # Current uptime: the v9 header's, or (IPFIX) export time minus system init time.
    uptime = meta.uptime_ms[rs]
    sysinit = meta.sysinit_ms[rs]
    sysinit = np.where(r.has("sysinit_ms"), r.v("sysinit_ms").astype(np.int64), sysinit)
    since_init = export_us // 1000 - sysinit
    uptime_now = np.where(
        uptime >= 0,
        uptime,
        np.where((sysinit >= 0) & (since_init >= 0), since_init & 0xFFFFFFFF, -1),
    )
    sysinit = np.where(uptime >= 0, -1, sysinit)
    start, end, _ = _times(r, "", export_us, uptime_now, sysinit)

    # np.take, not fancy indexing, and no np.where over (n, 16): both are far slower.
    nh4, bgp = r.has_addr(2), r.has_addr(3)
    next_hop = np.ascontiguousarray(addrs[:, 2])
    use_bgp = ~nh4 & bgp
    if use_bgp.any():
        next_hop[use_bgp] = addrs[use_bgp, 3]
    dport = r.v("dst_port")
    protocol = r.v("protocol").astype(np.uint8)
    if r.has("icmp").any():
        use_icmp = r.has("icmp") & (~r.has("dst_port") | (dport == 0))
        dport = np.where(use_icmp, r.v("icmp"), dport)
        # softflowd's ICMP templates carry the type/code but no protocol element.
        guess = ~r.has("protocol") & r.has("icmp")
        v4 = (addrs[:, 0, 10] == 0xFF) & (addrs[:, 0, 11] == 0xFF) & (addrs[:, 0, :10] == 0).all(1)
        protocol[guess] = np.where(v4[guess], 1, 58)
    cols = FlowColumns(
        exporter=np.take(meta.exporter, rs, axis=0),
        observation_domain=np.take(meta.domain, rs),
        flow_start=start,
        flow_end=end,
        src_addr=np.ascontiguousarray(addrs[:, 0]),
        dst_addr=np.ascontiguousarray(addrs[:, 1]),
        src_port=r.v("src_port").astype(np.uint16),
        dst_port=dport.astype(np.uint16),
        protocol=protocol,
        tcp_flags=r.v("tcp_flags").astype(np.uint16),
        tos=r.v("tos").astype(np.uint8),
        bytes=_first_of(r, ("bytes", "bytes_total", "post_bytes")).astype(np.uint64),
        packets=_first_of(r, ("packets", "packets_total", "post_packets")).astype(np.uint64),
        input_if=_interface(r, "input_if", "in_phys_if"),
        output_if=_interface(r, "output_if", "out_phys_if"),
        src_as=r.v("src_as").astype(np.uint32),
        dst_as=r.v("dst_as").astype(np.uint32),
        next_hop=next_hop,
        next_hop_valid=nh4 | bgp,
        vlan=r.v("vlan").astype(np.uint16),
        sampling_interval=_sampling(r, rs, meta),
        direction=r.v("direction").astype(np.uint8),
        direction_valid=r.has("direction").copy(),
        source_format=np.take(meta.source_format, rs),
        mpls_labels=mpls[0] if mpls is not None else np.zeros((n, 0), np.uint32),
        mpls_depth=mpls[1] if mpls is not None else np.zeros(n, np.uint8),
    )
    _packet_reports(cols, r)
    return _with_reverse(cols, r, export_us, uptime_now, sysinit)


def _interface(r: _Records, name: str, physical: str) -> np.ndarray:
    """The SNMP interface element, else the physical interface one (252/253)."""
    out = r.v(name).astype(np.uint32)
    if r.slot_row[SLOT[physical]] >= 0:
        sel = ~r.has(name) & r.has(physical)
        out[sel] = r.v(physical)[sel]
    return out


_REPORT_SIZES = ("ip_total_length", "frame_size", "header_ip_length", "section_octets")


def _packet_reports(cols: FlowColumns, r: _Records) -> None:
    """Records without counters that describe one sampled packet: its size, 1 packet."""
    if all(r.slot_row[SLOT[k]] < 0 for k in _REPORT_SIZES):
        return
    sized = r.has(_REPORT_SIZES[0])
    for name in _REPORT_SIZES[1:]:
        sized = sized | r.has(name)
    no_bytes = sized & ~(r.has("bytes") | r.has("bytes_total") | r.has("post_bytes"))
    if no_bytes.any():
        cols.bytes[no_bytes] = _first_of(r, _REPORT_SIZES)[no_bytes]
    no_packets = sized & ~(r.has("packets") | r.has("packets_total") | r.has("post_packets"))
    cols.packets[no_packets] = 1


def _sampling(r: _Records, rs: np.ndarray, meta: RowMeta) -> np.ndarray:
    out = meta.sampling[rs].astype(np.uint64)
    sid = r.has("sampler_id")
    if sid.any():
        idx = np.nonzero(sid)[0]
        sampler_ids = r.v("sampler_id")
        pairs = np.unique(np.stack([rs[idx].astype(np.uint64), sampler_ids[idx]]), axis=1)
        for row, sampler in pairs.T.tolist():
            interval = (meta.samplers[int(row)] or {}).get(int(sampler))
            if interval:
                out[sid & (rs == row) & (sampler_ids == sampler)] = interval
    sel = r.has("packet_interval") & (r.v("packet_interval") > 0)
    if sel.any():
        space = np.where(r.has("packet_space"), r.v("packet_space"), 0)
        out[sel] = (r.v("packet_interval")[sel] + space[sel]) // r.v("packet_interval")[sel]
    for name in ("sampler_random_interval", "sampling_interval"):
        sel = r.has(name) & (r.v(name) > 0)
        out[sel] = r.v(name)[sel]
    # 0 stays 0: no rate announced for that record (null in the flow schema).
    result: np.ndarray = np.minimum(out, 0xFFFFFFFF).astype(np.uint32)
    return result


def _with_reverse(
    cols: FlowColumns,
    r: _Records,
    export_us: np.ndarray,
    uptime_now: np.ndarray,
    sysinit: np.ndarray,
) -> FlowColumns:
    reverse_slots = ("r_bytes", "r_bytes_total", "r_packets", "r_packets_total")
    if all(r.slot_row[SLOT[k]] < 0 for k in reverse_slots):
        return cols
    rb = _first_of(r, ("r_bytes", "r_bytes_total"))
    rp = _first_of(r, ("r_packets", "r_packets_total"))
    emit = (rb > 0) | (rp > 0)
    if not emit.any():
        return cols
    idx = np.nonzero(emit)[0]
    rev = cols.take(idx)
    rev.src_addr, rev.dst_addr = rev.dst_addr, rev.src_addr
    icmp = (rev.protocol == 1) | (rev.protocol == 58)
    rev.src_port, rev.dst_port = (
        np.where(icmp, rev.src_port, rev.dst_port),
        np.where(icmp, rev.dst_port, rev.src_port),
    )
    rev.input_if, rev.output_if = rev.output_if, rev.input_if
    rev.src_as, rev.dst_as = rev.dst_as, rev.src_as
    rev.bytes = rb[idx]
    rev.packets = rp[idx]
    rev.tcp_flags = r.v("r_tcp_flags")[idx].astype(np.uint16)
    rev.next_hop_valid = np.zeros(len(idx), np.bool_)
    rev.direction_valid = np.zeros(len(idx), np.bool_)
    sub = r.take(idx)
    start, end, known = _times(sub, "r_", export_us[idx], uptime_now[idx], sysinit[idx])
    rev.flow_start = np.where(known, start, rev.flow_start)
    rev.flow_end = np.where(known, end, rev.flow_end)
    both = FlowColumns.allocate(0)
    for f in both.__dataclass_fields__:
        setattr(both, f, np.concatenate([getattr(cols, f), getattr(rev, f)]))
    return both
