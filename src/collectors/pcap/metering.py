"""Packets to unidirectional flows with softflowd's semantics, in a Numba kernel.

How softflowd 1.1 meters (``softflowd.c``), and so how we do by default:

* A flow-table entry is a *connection*: the 5-tuple with its two endpoints in a
  canonical order (the address that compares lower first), so both directions
  share one entry with per-direction packets, bytes, TCP flags and ToS. On
  expiry each direction that saw packets becomes one unidirectional record.
  Both records carry the connection's first and last packet time
  (``shared_times=True``; set it False for each direction's own first/last).
* The key is (address family, addresses, protocol, ports); with ``track_vlan``
  (softflowd ``-T vlan``) also the outer VLAN. TCP and UDP carry ports; ICMP and
  ICMPv6 put ``type*256 + code`` in the destination port and 0 in the source
  port, as Cisco does; every other protocol (and non-first fragments) has ports 0.
* TCP flags are the OR of the 9-bit flags (NS included; softflowd keeps 8 bits).
* Bytes are the IP length of each packet (IPv4 total length, IPv6 40 + payload).
  softflowd counts the captured frame length minus the link header, which is the
  same except for Ethernet padding of runt frames, which we do not count.
* Idle expiry, chosen again after every packet: a TCP connection with a RST in
  either direction expires ``tcp_rst_timeout`` (120 s) after its last packet,
  one with a FIN in both directions ``tcp_fin_timeout`` (300 s) after, other TCP
  ``tcp_timeout`` (3600 s); UDP ``udp_timeout`` (300 s); ICMP/ICMPv6
  ``icmp_timeout`` (300 s); anything else ``general_timeout`` (3600 s). A zero
  timeout falls through to the next rule, as in softflowd.
* Active expiry: no entry lives past ``max_lifetime`` (604800 s, 0 disables) from
  its first packet; the packet that takes it past the limit is its last. An entry
  with more than ``max_flow_bytes`` (2^31) in a direction ends after that packet.
* A packet arriving after its entry's expiry time starts a new entry. Expired
  entries that see no more traffic are swept out every ``sweep_interval`` seconds
  of capture time (softflowd's ``expint``, 60 s) and at the end of the input.

Differences, on purpose: time is the capture clock in microseconds (softflowd
compares whole seconds of the wall clock, and in ``-r`` file mode does no idle
expiry at all: ``expire_by_time=False`` reproduces that); forced expiries apply
at the packet that triggers them (softflowd applies them at its next periodic
check, so later packets of the same batch may still join); double-tagged
(QinQ) frames are metered with their outer VLAN, where softflowd 1.1 skips them
as non-IP. softflowd's ``max_flows`` eviction is not modelled. The peer test
(``tests/collectors/test_metering_softflowd_peer.py``) checks the rest against
softflowd 1.1 -> nfcapd -> nfdump.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from numba import njit

from collectors.errors import CollectorError
from collectors.kernel_arrays import readonly_all
from collectors.pcap.packet_batch import PacketBatch
from collectors.pcap.packet_kernel import (
    U8_ICMP_CODE,
    U8_ICMP_TYPE,
    U8_IP_VERSION,
    U8_PROTOCOL,
    U8_STATUS,
    U8_TOS,
    U16_DST_PORT,
    U16_SRC_PORT,
    U16_TCP_FLAGS,
    U16_VLAN,
    U32_IP_LEN,
)
from collectors.schemas import FLOW_SCHEMA

__all__ = ["FlowMeter", "MeteringOptions", "meter_batches"]

_DONE, _OUT_FULL, _GROW = 0, 1, 2
_US = 1_000_000

# params vector layout
(
    _P_TCP,
    _P_RST,
    _P_FIN,
    _P_UDP,
    _P_ICMP,
    _P_GEN,
    _P_MAXLIFE,
    _P_BYTES,
    _P_BY_TIME,
    _P_VLAN,
    _P_SHARED,
    _P_SWEEP,
) = range(12)
# stats vector layout
_S_USED, _S_TOMB, _S_SEQ, _S_NEXT_SWEEP = range(4)


@dataclass(frozen=True)
class MeteringOptions:
    """softflowd's timeouts (seconds) and switches; the defaults are softflowd's."""

    tcp_timeout: int = 3600
    tcp_rst_timeout: int = 120
    tcp_fin_timeout: int = 300
    udp_timeout: int = 300
    icmp_timeout: int = 300
    general_timeout: int = 3600
    max_lifetime: int = 604800
    max_flow_bytes: int = 1 << 31
    expire_by_time: bool = True
    track_vlan: bool = False
    shared_times: bool = True
    sweep_interval: int = 60

    def params(self) -> np.ndarray:
        if self.general_timeout <= 0:
            raise CollectorError(
                "metering option general_timeout must be greater than zero (as in softflowd)"
            )
        return np.array(
            [
                self.tcp_timeout * _US,
                self.tcp_rst_timeout * _US,
                self.tcp_fin_timeout * _US,
                self.udp_timeout * _US,
                self.icmp_timeout * _US,
                self.general_timeout * _US,
                self.max_lifetime * _US,
                self.max_flow_bytes,
                int(self.expire_by_time),
                int(self.track_vlan),
                int(self.shared_times),
                max(self.sweep_interval, 1) * _US,
            ],
            np.int64,
        )


@njit(cache=True, nogil=True, inline="always")
def _word(a: np.ndarray, i: int, k: int) -> np.uint64:
    v = np.uint64(0)
    for j in range(8):
        v = (v << np.uint64(8)) | np.uint64(a[i, k + j])
    return v


@njit(cache=True, nogil=True, inline="always")
def _hash(k0: np.uint64, k1: np.uint64, k2: np.uint64, k3: np.uint64, k4: np.uint64) -> np.uint64:
    m = np.uint64(0x9E3779B97F4A7C15)
    h = np.uint64(0xCBF29CE484222325)
    for v in (k0, k1, k2, k3, k4):
        h = (h ^ v) * m
        h ^= h >> np.uint64(29)
    return h


@njit(cache=True, nogil=True)
def _emit(
    e: int,
    keys: np.ndarray,
    times: np.ndarray,
    counts: np.ndarray,
    attrs: np.ndarray,
    shared: bool,
    o_addr: np.ndarray,
    o_t: np.ndarray,
    o_cnt: np.ndarray,
    o_small: np.ndarray,
    n: int,
) -> int:
    """Write the (up to two) direction records of entry ``e``; returns the new count."""
    for d in range(2):
        if counts[e, d] == 0:
            continue
        o = 1 - d
        o_addr[n, 0] = keys[e, 2 * d]
        o_addr[n, 1] = keys[e, 2 * d + 1]
        o_addr[n, 2] = keys[e, 2 * o]
        o_addr[n, 3] = keys[e, 2 * o + 1]
        ports = keys[e, 4]
        p0 = (ports >> np.uint64(16)) & np.uint64(0xFFFF)
        p1 = ports & np.uint64(0xFFFF)
        o_small[n, 0] = p0 if d == 0 else p1
        o_small[n, 1] = p1 if d == 0 else p0
        o_small[n, 2] = (ports >> np.uint64(32)) & np.uint64(0xFF)
        o_small[n, 3] = attrs[e, d]
        o_small[n, 4] = attrs[e, 2 + d]
        o_small[n, 5] = attrs[e, 4]
        if shared:
            o_t[n, 0] = times[e, 0]
            o_t[n, 1] = times[e, 1]
        else:
            o_t[n, 0] = times[e, 4 + 2 * d]
            o_t[n, 1] = times[e, 5 + 2 * d]
        o_cnt[n, 0] = counts[e, 2 + d]
        o_cnt[n, 1] = counts[e, d]
        n += 1
    return n


@njit(cache=True, nogil=True)
def _meter(
    prm: np.ndarray,
    time_us: np.ndarray,
    src: np.ndarray,
    dst: np.ndarray,
    u32c: np.ndarray,
    u16c: np.ndarray,
    u8c: np.ndarray,
    i0: int,
    state: np.ndarray,
    keys: np.ndarray,
    times: np.ndarray,
    counts: np.ndarray,
    attrs: np.ndarray,
    st: np.ndarray,
    o_addr: np.ndarray,
    o_t: np.ndarray,
    o_cnt: np.ndarray,
    o_small: np.ndarray,
    n0: int,
) -> tuple[int, int, int]:
    """Meter packets ``i0..`` into the table; returns (next packet, records, code)."""
    cap = state.shape[0]
    mask = cap - 1
    ocap = o_t.shape[0]
    n = n0
    by_time = prm[_P_BY_TIME] != 0
    shared = prm[_P_SHARED] != 0
    maxlife = prm[_P_MAXLIFE]
    maxbytes = prm[_P_BYTES]
    for i in range(i0, time_us.shape[0]):
        if u8c[U8_STATUS, i] != 0:
            continue
        if n + 4 > ocap:
            return i, n, _OUT_FULL
        t = time_us[i]
        if by_time and t >= st[_S_NEXT_SWEEP]:
            for e in range(cap):
                if state[e] == 1 and times[e, 2] < t:
                    if n + 2 > ocap:
                        return i, n, _OUT_FULL
                    n = _emit(e, keys, times, counts, attrs, shared, o_addr, o_t, o_cnt, o_small, n)
                    state[e] = 2
                    st[_S_USED] -= 1
                    st[_S_TOMB] += 1
            st[_S_NEXT_SWEEP] = t + prm[_P_SWEEP]
        af = np.uint64(u8c[U8_IP_VERSION, i])
        proto = int(u8c[U8_PROTOCOL, i])
        sh, sl = _word(src, i, 0), _word(src, i, 8)
        dh, dl = _word(dst, i, 0), _word(dst, i, 8)
        ndx = 1 if (sh > dh or (sh == dh and sl > dl)) else 0
        sp = np.uint64(0)
        dp = np.uint64(0)
        if proto == 6 or proto == 17:
            sp = np.uint64(u16c[U16_SRC_PORT, i])
            dp = np.uint64(u16c[U16_DST_PORT, i])
        elif proto == 1 or proto == 58:
            dp = np.uint64(u8c[U8_ICMP_TYPE, i]) * np.uint64(256) + np.uint64(u8c[U8_ICMP_CODE, i])
        vlan = np.uint64(u16c[U16_VLAN, i])
        if ndx == 0:
            k0, k1, k2, k3 = sh, sl, dh, dl
            ports = (sp << np.uint64(16)) | dp
        else:
            k0, k1, k2, k3 = dh, dl, sh, sl
            ports = (dp << np.uint64(16)) | sp
        k4 = ports | (np.uint64(proto) << np.uint64(32)) | (af << np.uint64(40))
        if prm[_P_VLAN] != 0:
            k4 |= vlan << np.uint64(48)
        h = int(np.int64(_hash(k0, k1, k2, k3, k4) & np.uint64(mask)))
        slot = -1
        tomb = -1
        while True:
            s = state[h]
            if s == 0:
                break
            if s == 2:
                if tomb < 0:
                    tomb = h
            elif (
                keys[h, 4] == k4
                and keys[h, 0] == k0
                and keys[h, 1] == k1
                and keys[h, 2] == k2
                and keys[h, 3] == k3
            ):
                slot = h
                break
            h = (h + 1) & mask
        if slot >= 0 and by_time and t > times[slot, 2]:
            n = _emit(slot, keys, times, counts, attrs, shared, o_addr, o_t, o_cnt, o_small, n)
            state[slot] = 2
            st[_S_USED] -= 1
            st[_S_TOMB] += 1
            tomb = slot
            slot = -1
        if slot < 0:
            if (st[_S_USED] + st[_S_TOMB] + 1) * 2 > cap and tomb < 0:
                return i, n, _GROW
            slot = tomb if tomb >= 0 else h
            if state[slot] == 2:
                st[_S_TOMB] -= 1
            state[slot] = 1
            st[_S_USED] += 1
            keys[slot, 0] = k0
            keys[slot, 1] = k1
            keys[slot, 2] = k2
            keys[slot, 3] = k3
            keys[slot, 4] = k4
            times[slot, 0] = t
            times[slot, 3] = st[_S_SEQ]
            st[_S_SEQ] += 1
            for k in range(4):
                counts[slot, k] = 0
                attrs[slot, k] = 0
            attrs[slot, 4] = vlan
        e = slot
        if counts[e, ndx] == 0:
            attrs[e, 2 + ndx] = u8c[U8_TOS, i]
            times[e, 4 + 2 * ndx] = t
        counts[e, ndx] += np.uint64(1)
        counts[e, 2 + ndx] += np.uint64(u32c[U32_IP_LEN, i])
        attrs[e, ndx] |= u16c[U16_TCP_FLAGS, i]
        times[e, 5 + 2 * ndx] = t
        times[e, 1] = t
        last = t
        start = times[e, 0]
        forced = False
        if (
            maxbytes > 0
            and (counts[e, 2] > np.uint64(maxbytes) or counts[e, 3] > np.uint64(maxbytes))
        ) or (maxlife > 0 and last - start > maxlife):
            forced = True
        if forced:
            n = _emit(e, keys, times, counts, attrs, shared, o_addr, o_t, o_cnt, o_small, n)
            state[e] = 2
            st[_S_USED] -= 1
            st[_S_TOMB] += 1
            continue
        fl = attrs[e, 0] | attrs[e, 1]
        exp = -1
        if proto == 6:
            if prm[_P_RST] != 0 and (fl & 4) != 0:
                exp = last + prm[_P_RST]
            elif prm[_P_FIN] != 0 and (attrs[e, 0] & 1) != 0 and (attrs[e, 1] & 1) != 0:
                exp = last + prm[_P_FIN]
            elif prm[_P_TCP] != 0:
                exp = last + prm[_P_TCP]
        if exp < 0 and proto == 17 and prm[_P_UDP] != 0:
            exp = last + prm[_P_UDP]
        if (
            exp < 0
            and prm[_P_ICMP] != 0
            and ((af == 4 and proto == 1) or (af == 6 and proto == 58))
        ):
            exp = last + prm[_P_ICMP]
        if exp < 0:
            exp = last + prm[_P_GEN]
        if maxlife > 0:
            exp = min(exp, start + maxlife)
        times[e, 2] = exp
    return time_us.shape[0], n, _DONE


@njit(cache=True, nogil=True)
def _rehash(
    state: np.ndarray,
    keys: np.ndarray,
    times: np.ndarray,
    counts: np.ndarray,
    attrs: np.ndarray,
    n_state: np.ndarray,
    n_keys: np.ndarray,
    n_times: np.ndarray,
    n_counts: np.ndarray,
    n_attrs: np.ndarray,
) -> None:
    mask = n_state.shape[0] - 1
    for e in range(state.shape[0]):
        if state[e] != 1:
            continue
        h = np.int64(
            _hash(keys[e, 0], keys[e, 1], keys[e, 2], keys[e, 3], keys[e, 4]) & np.uint64(mask)
        )
        while n_state[h] != 0:
            h = (h + 1) & mask
        n_state[h] = 1
        n_keys[h] = keys[e]
        n_times[h] = times[e]
        n_counts[h] = counts[e]
        n_attrs[h] = attrs[e]


@njit(cache=True, nogil=True)
def _flush(
    order: np.ndarray,
    keys: np.ndarray,
    times: np.ndarray,
    counts: np.ndarray,
    attrs: np.ndarray,
    shared: bool,
    o_addr: np.ndarray,
    o_t: np.ndarray,
    o_cnt: np.ndarray,
    o_small: np.ndarray,
) -> int:
    n = 0
    for e in order:
        n = _emit(e, keys, times, counts, attrs, shared, o_addr, o_t, o_cnt, o_small, n)
    return n


def _records_table(
    o_addr: np.ndarray, o_t: np.ndarray, o_cnt: np.ndarray, o_small: np.ndarray, n: int
) -> pa.Table:
    addr = o_addr[:n].astype(">u8").view(np.uint8).reshape(n, 32)

    def col16(a: np.ndarray) -> pa.Array:
        return pa.FixedSizeBinaryArray.from_buffers(
            pa.binary(16), n, [None, pa.py_buffer(np.ascontiguousarray(a))]
        )

    ts = FLOW_SCHEMA.field("flow_start").type
    zeros32 = pa.array(np.zeros(n, np.uint32))
    cols = {
        "exporter": pa.nulls(n, pa.binary(16)),
        "observation_domain": zeros32,
        "flow_start": pa.array(o_t[:n, 0].copy()).cast(ts),
        "flow_end": pa.array(o_t[:n, 1].copy()).cast(ts),
        "src_addr": col16(addr[:, :16]),
        "dst_addr": col16(addr[:, 16:]),
        "src_port": pa.array(o_small[:n, 0].copy()),
        "dst_port": pa.array(o_small[:n, 1].copy()),
        "protocol": pa.array(o_small[:n, 2].astype(np.uint8)),
        "tcp_flags": pa.array(o_small[:n, 3].copy()),
        "tos": pa.array(o_small[:n, 4].astype(np.uint8)),
        "bytes": pa.array(o_cnt[:n, 0].copy()),
        "packets": pa.array(o_cnt[:n, 1].copy()),
        "input_if": zeros32,
        "output_if": zeros32,
        "src_as": zeros32,
        "dst_as": zeros32,
        "next_hop": pa.nulls(n, pa.binary(16)),
        "vlan": pa.array(o_small[:n, 5].copy()),
        "sampling_interval": pa.array(np.ones(n, np.uint32)),
        "direction": pa.nulls(n, pa.uint8()),
        "source_format": pa.repeat(pa.scalar("pcap", pa.string()), n),
        "mpls_labels": pa.nulls(n, FLOW_SCHEMA.field("mpls_labels").type),
    }
    # columns metering has no value for (enrichment): typed nulls
    arrays = [cols[f.name] if f.name in cols else pa.nulls(n, f.type) for f in FLOW_SCHEMA]
    return pa.Table.from_arrays(arrays, schema=FLOW_SCHEMA)


class FlowMeter:
    """Stateful metering: feed packet batches in capture order, then :meth:`flush`.

    Each call returns the flows that ended so far as a ``FLOW_SCHEMA`` table.
    """

    def __init__(self, options: MeteringOptions | None = None, *, capacity: int = 1 << 12) -> None:
        self.options = options or MeteringOptions()
        self._prm = self.options.params()
        cap = 1 << max(4, (capacity - 1).bit_length())
        self._alloc(cap)
        self._st = np.zeros(4, np.int64)
        self._st[_S_NEXT_SWEEP] = np.iinfo(np.int64).min
        self.packets = 0
        self.flows = 0
        self._min_out = 1024  # output records buffered per kernel call (tests shrink it)

    def _alloc(self, cap: int) -> None:
        self._state = np.zeros(cap, np.int8)
        self._keys = np.zeros((cap, 5), np.uint64)
        self._times = np.zeros((cap, 8), np.int64)
        self._counts = np.zeros((cap, 4), np.uint64)
        self._attrs = np.zeros((cap, 5), np.uint16)

    @property
    def active(self) -> int:
        """Connections currently held in the table."""
        return int(self._st[_S_USED])

    def _grow(self) -> None:
        old = (self._state, self._keys, self._times, self._counts, self._attrs)
        used = int(self._st[_S_USED])
        cap = old[0].shape[0]
        while (used + 1) * 3 > cap:  # rehash to at most a third full (grows again at half)
            cap *= 2
        self._alloc(cap)
        _rehash(*old, self._state, self._keys, self._times, self._counts, self._attrs)
        self._st[_S_TOMB] = 0

    def add(self, batch: PacketBatch | pa.Table | pa.RecordBatch) -> pa.Table:
        """Meter one batch (or a ``PACKET_SCHEMA`` table); returns the flows it expired.

        >>> from collectors import FlowMeter, read_packets
        >>> meter = FlowMeter()
        >>> ended = meter.add(read_packets("traffic.pcap.gz"))  # `rating-engine examples .`
        >>> flows = pa.concat_tables([ended, meter.flush()])
        >>> meter.packets, flows.num_rows
        (10531, 2604)
        """
        if not isinstance(batch, PacketBatch):
            batch = PacketBatch.from_arrow(batch)
        n_pk = len(batch)
        ocap = max(self._min_out, n_pk // 4)
        outs = _out(ocap)
        parts: list[pa.Table] = []
        i = 0
        n = 0
        # read-only whatever their source (a file or memory): the kernel compiles once
        time_us, src, dst, u32c, u16c, u8c = readonly_all(
            batch.time_us, batch.src, batch.dst, batch.u32c, batch.u16c, batch.u8c
        )
        while True:
            i, n, code = _meter(
                self._prm,
                time_us,
                src,
                dst,
                u32c,
                u16c,
                u8c,
                i,
                self._state,
                self._keys,
                self._times,
                self._counts,
                self._attrs,
                self._st,
                *outs,
                n,
            )
            if code == _GROW:
                self._grow()
            elif code == _OUT_FULL:
                parts.append(_records_table(*outs, n))
                n = 0
            else:
                break
        parts.append(_records_table(*outs, n))
        self.packets += int(np.count_nonzero(batch.u8c[U8_STATUS] == 0))
        table = pa.concat_tables(parts)
        self.flows += table.num_rows
        return table

    def expire(self, now_us: int) -> pa.Table:
        """End the connections whose expiry time is before ``now_us`` (idle live capture)."""
        if not self.options.expire_by_time:
            return _records_table(*_out(0), 0)
        due = (self._state == 1) & (self._times[:, 2] < now_us)
        return self._end(np.flatnonzero(due))

    def flush(self) -> pa.Table:
        """End every connection still held (end of input or shutdown)."""
        return self._end(np.flatnonzero(self._state == 1))

    def _end(self, used: np.ndarray) -> pa.Table:
        order = used[np.argsort(self._times[used, 3], kind="stable")]
        outs = _out(2 * len(order))
        n = _flush(
            order,
            self._keys,
            self._times,
            self._counts,
            self._attrs,
            bool(self._prm[_P_SHARED]),
            *outs,
        )
        self._state[order] = 2
        self._st[_S_USED] -= len(order)
        self._st[_S_TOMB] += len(order)
        table = _records_table(*outs, n)
        self.flows += table.num_rows
        return table


def _out(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return (
        np.empty((n, 4), np.uint64),
        np.empty((n, 2), np.int64),
        np.empty((n, 2), np.uint64),
        np.empty((n, 6), np.uint16),
    )


def meter_batches(
    batches: Iterable[PacketBatch | pa.Table | pa.RecordBatch],
    options: MeteringOptions | None = None,
) -> pa.Table:
    """Meter a whole packet stream and flush: every flow, in ``FLOW_SCHEMA``."""
    meter = FlowMeter(options)
    parts = [meter.add(b) for b in batches]
    parts.append(meter.flush())
    return pa.concat_tables(parts)
