"""Address ranges with values, and the Numba kernel that finds an address's range.

A MaxMind database is a binary tree walked bit by bit; doing that per flow from Python
costs microseconds. Instead each database is read once at start into sorted, disjoint
ranges (:class:`Networks`), two databases are merged into one set of ranges carrying
both values (:func:`merge_networks`), and :func:`lookup_ranges` finds each flow
address's range with a binary search: IPv4 (stored IPv4-mapped, ``::ffff:a.b.c.d``)
through a per-/16 index into 32-bit ranges (``::a.b.c.d`` too, as MaxMind's tree reads
it), IPv6 through 128-bit ranges as (hi, lo) word pairs. ``values[k, j]`` is database
``j``'s value for range ``k``; -1 is none.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

__all__ = ["Networks", "lookup_ranges", "merge_networks", "networks_from_lists"]

_U64 = np.uint64
_MAX64 = np.uint64(0xFFFF_FFFF_FFFF_FFFF)


@dataclass(frozen=True, repr=False)
class Networks:
    """Sorted, disjoint address ranges (inclusive ends) and their values (``-1`` = none).

    IPv4 ranges are 32-bit (``v4_start``/``v4_end`` uint32, indexed per /16 by
    ``v4_index``); IPv6 ranges are 128-bit as two uint64 words each. ``v4_values`` and
    ``v6_values`` are ``(ranges, columns)`` int64.
    """

    v4_start: np.ndarray
    v4_end: np.ndarray
    v4_values: np.ndarray
    v4_index: np.ndarray  # int64[65537]: first range starting in each /16
    v6_start_hi: np.ndarray
    v6_start_lo: np.ndarray
    v6_end_hi: np.ndarray
    v6_end_lo: np.ndarray
    v6_values: np.ndarray

    @property
    def columns(self) -> int:
        return int(self.v4_values.shape[1])

    def __len__(self) -> int:
        return int(self.v4_start.shape[0] + self.v6_start_hi.shape[0])

    def __repr__(self) -> str:
        return f"Networks({len(self)} ranges, {self.columns} value columns)"


def _v4_index(starts: np.ndarray) -> np.ndarray:
    return np.searchsorted(starts, np.arange(65537, dtype=np.int64) << 16).astype(np.int64)


def networks_from_lists(v4: list[tuple[int, int, int]], v6: list[tuple[int, int, int]]) -> Networks:
    """Build from ``(first, last, value)`` triples (IPv4 as 32-bit ints, IPv6 as 128-bit).

    Ranges must not overlap (a database's networks never do); order does not matter.
    """
    v4.sort()
    v6.sort()
    a4 = np.array(v4, np.int64).reshape(-1, 3)
    if a4.shape[0] > 1:  # a database holding IPv4 twice (mapped and native): first wins
        before = np.maximum.accumulate(a4[:, 1])
        keep = np.ones(a4.shape[0], bool)
        keep[1:] = a4[1:, 0] > before[:-1]
        a4 = a4[keep]
    starts = a4[:, 0].astype(np.uint32)
    hi = np.array([s >> 64 for s, _, _ in v6], _U64)
    lo = np.array([s & 0xFFFF_FFFF_FFFF_FFFF for s, _, _ in v6], _U64)
    return Networks(
        v4_start=starts,
        v4_end=a4[:, 1].astype(np.uint32),
        v4_values=a4[:, 2:3].copy(),
        v4_index=_v4_index(starts),
        v6_start_hi=hi,
        v6_start_lo=lo,
        v6_end_hi=np.array([e >> 64 for _, e, _ in v6], _U64),
        v6_end_lo=np.array([e & 0xFFFF_FFFF_FFFF_FFFF for _, e, _ in v6], _U64),
        v6_values=np.array([v for _, _, v in v6], np.int64).reshape(-1, 1),
    )


# -- the kernels -----------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def _find_v4(a: np.uint32, index: np.ndarray, start: np.ndarray, end: np.ndarray) -> int:
    """Range holding IPv4 ``a``, or -1: the last start <= a (searched within a's /16)."""
    bucket = np.int64(a) >> 16
    lo = index[bucket]
    hi = index[bucket + 1]
    while lo < hi:  # first start > a
        mid = (lo + hi) >> 1
        if start[mid] <= a:
            lo = mid + 1
        else:
            hi = mid
    k = int(lo - 1)
    if k >= 0 and a <= end[k]:
        return k
    return -1


@njit(cache=True, nogil=True)
def _find_v6(
    h: np.uint64,
    l: np.uint64,  # noqa: E741 - the low word
    s_hi: np.ndarray,
    s_lo: np.ndarray,
    e_hi: np.ndarray,
    e_lo: np.ndarray,
) -> int:
    """Range holding the 128-bit address (h, l), or -1."""
    lo = 0
    hi = s_hi.shape[0]
    while lo < hi:  # first start > (h, l)
        mid = (lo + hi) >> 1
        if s_hi[mid] < h or (s_hi[mid] == h and s_lo[mid] <= l):
            lo = mid + 1
        else:
            hi = mid
    k = lo - 1
    if k >= 0 and (h < e_hi[k] or (h == e_hi[k] and l <= e_lo[k])):
        return k
    return -1


@njit(cache=True, nogil=True)
def _lookup(
    addr: np.ndarray,
    v4_index: np.ndarray,
    v4_start: np.ndarray,
    v4_end: np.ndarray,
    s_hi: np.ndarray,
    s_lo: np.ndarray,
    e_hi: np.ndarray,
    e_lo: np.ndarray,
    out_v4: np.ndarray,
    out_v6: np.ndarray,
) -> None:
    n = addr.shape[0]
    for i in range(n):
        out_v4[i] = -1
        out_v6[i] = -1
        row = addr[i]
        # IPv4-mapped ::ffff:a.b.c.d, and IPv4-compatible ::a.b.c.d, which MaxMind's tree
        # also answers from its IPv4 data
        mapped = (row[10] == 0xFF and row[11] == 0xFF) or (row[10] == 0 and row[11] == 0)
        for j in range(10):
            if row[j] != 0:
                mapped = False
                break
        if mapped:
            a = (
                (np.uint32(row[12]) << 24)
                | (np.uint32(row[13]) << 16)
                | (np.uint32(row[14]) << 8)
                | np.uint32(row[15])
            )
            out_v4[i] = _find_v4(a, v4_index, v4_start, v4_end)
        elif s_hi.shape[0]:
            h = np.uint64(0)
            lw = np.uint64(0)
            for j in range(8):
                h = (h << np.uint64(8)) | np.uint64(row[j])
                lw = (lw << np.uint64(8)) | np.uint64(row[8 + j])
            out_v6[i] = _find_v6(h, lw, s_hi, s_lo, e_hi, e_lo)


def lookup_ranges(networks: Networks, addresses: np.ndarray) -> np.ndarray:
    """Values of the range holding each address: ``(n, columns)`` int64, -1 where none.

    ``addresses`` is ``(n, 16)`` uint8, IPv4 mapped as ``::ffff:a.b.c.d``.
    """
    n = addresses.shape[0]
    k4 = np.empty(n, np.int64)
    k6 = np.empty(n, np.int64)
    _lookup(
        addresses,
        networks.v4_index,
        networks.v4_start,
        networks.v4_end,
        networks.v6_start_hi,
        networks.v6_start_lo,
        networks.v6_end_hi,
        networks.v6_end_lo,
        k4,
        k6,
    )
    out = np.full((n, networks.columns), -1, np.int64)
    hit4 = k4 >= 0
    if hit4.any():
        out[hit4] = networks.v4_values[k4[hit4]]
    hit6 = k6 >= 0
    if hit6.any():
        out[hit6] = networks.v6_values[k6[hit6]]
    return out


# -- merging databases -----------------------------------------------------------------------
def _v4_lookup(nets: Networks, points: np.ndarray) -> np.ndarray:
    k = np.searchsorted(nets.v4_start, points, side="right").astype(np.int64) - 1
    ok = k >= 0
    ok[ok] = points[ok] <= nets.v4_end[k[ok]]
    out = np.full((points.shape[0], nets.columns), -1, np.int64)
    out[ok] = nets.v4_values[k[ok]]
    return out


def _as_addresses(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    both = np.empty((hi.shape[0], 2), ">u8")
    both[:, 0] = hi
    both[:, 1] = lo
    return both.view(np.uint8).reshape(-1, 16)


def merge_networks(parts: list[Networks]) -> Networks:
    """One set of ranges whose value columns are those of ``parts`` side by side.

    The boundaries are the union of every part's; each piece takes each part's value
    there (-1 where a part has none), and pieces without any value are dropped.
    """
    if len(parts) == 1:
        return parts[0]
    # IPv4: pieces start at every start and every end + 1 (int64: 2**32 fits)
    bounds = np.unique(
        np.concatenate(
            [p.v4_start.astype(np.int64) for p in parts]
            + [p.v4_end.astype(np.int64) + 1 for p in parts]
        )
    )
    starts4 = bounds[bounds < (1 << 32)]
    ends4 = np.append(starts4[1:] - 1, (1 << 32) - 1)
    vals4 = np.concatenate([_v4_lookup(p, starts4) for p in parts], axis=1)
    keep = (vals4 >= 0).any(axis=1)
    s4 = starts4[keep].astype(np.uint32)
    # IPv6: the same with 128-bit bounds as (hi, lo) word pairs
    pairs = [_v6_bounds(p) for p in parts]
    hi = np.concatenate([h for h, _ in pairs])
    lo = np.concatenate([w for _, w in pairs])
    order = np.lexsort((lo, hi))
    hi, lo = hi[order], lo[order]
    if hi.shape[0]:
        first = np.ones(hi.shape[0], bool)
        first[1:] = (hi[1:] != hi[:-1]) | (lo[1:] != lo[:-1])
        hi, lo = hi[first], lo[first]
    end_lo = np.append(lo[1:] - _U64(1), _MAX64) if lo.shape[0] else lo
    end_hi = np.append(hi[1:] - (lo[1:] == 0).astype(_U64), _MAX64) if hi.shape[0] else hi
    points = _as_addresses(hi, lo)
    vals6 = np.concatenate([_v6_values(p, points) for p in parts], axis=1)
    keep6 = (vals6 >= 0).any(axis=1) if vals6.shape[0] else np.zeros(0, bool)
    return Networks(
        v4_start=s4,
        v4_end=ends4[keep].astype(np.uint32),
        v4_values=vals4[keep],
        v4_index=_v4_index(s4),
        v6_start_hi=hi[keep6],
        v6_start_lo=lo[keep6],
        v6_end_hi=end_hi[keep6],
        v6_end_lo=end_lo[keep6],
        v6_values=vals6[keep6].reshape(-1, vals4.shape[1]),
    )


def _v6_bounds(nets: Networks) -> tuple[np.ndarray, np.ndarray]:
    """Every start and every end + 1 (the carry into the high word; none past the top)."""
    top = (nets.v6_end_hi == _MAX64) & (nets.v6_end_lo == _MAX64)
    carry = (nets.v6_end_lo == _MAX64).astype(_U64)
    after_hi = (nets.v6_end_hi + carry)[~top]
    after_lo = (nets.v6_end_lo + _U64(1))[~top]  # uint64 arrays wrap: 0 with the carry
    return (
        np.concatenate([nets.v6_start_hi, after_hi]),
        np.concatenate([nets.v6_start_lo, after_lo]),
    )


def _v6_values(nets: Networks, points: np.ndarray) -> np.ndarray:
    """Values at IPv6 points (never IPv4-mapped: those are looked up as IPv4)."""
    n = points.shape[0]
    if n == 0:
        return np.zeros((0, nets.columns), np.int64)
    k4 = np.empty(n, np.int64)
    k6 = np.empty(n, np.int64)
    _lookup(
        points,
        nets.v4_index,
        nets.v4_start,
        nets.v4_end,
        nets.v6_start_hi,
        nets.v6_start_lo,
        nets.v6_end_hi,
        nets.v6_end_lo,
        k4,
        k6,
    )
    out = np.full((n, nets.columns), -1, np.int64)
    hit = k6 >= 0
    out[hit] = nets.v6_values[k6[hit]]
    return out
