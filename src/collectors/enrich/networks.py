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

import functools
from dataclasses import dataclass

import numpy as np
from numba import njit

__all__ = ["Networks", "lookup_ranges", "merge_networks", "networks_from_lists"]

_U64 = np.uint64
_MAX64 = np.uint64(0xFFFF_FFFF_FFFF_FFFF)
#: A /16 with more ranges than this gets a per-/24 index (Networks.v4_dense).
_DENSE = 16


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

    @functools.cached_property
    def v4_dense(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A second index level for the /16s holding many ranges: ``(offset, index,
        whole)``; ``offset[b]`` (int64[65536], -1 for a sparse /16) points into ``index``
        and ``whole`` (int32), 257 entries per dense /16 (one per /24, and an end):
        ``index`` is the first range starting in each /24, ``whole`` the range covering
        all of that /24 (>= 0), -2 when no range touches it, -1 when it must be searched.
        A look-up in a /16 cut into /24s then reads one entry instead of halving through
        hundreds of ranges (8 dependent steps)."""
        counts = np.diff(self.v4_index)
        dense = np.flatnonzero(counts > _DENSE)
        offset = np.full(65536, -1, np.int64)
        offset[dense] = np.arange(dense.shape[0], dtype=np.int64) * 257
        points = (dense.astype(np.int64)[:, None] << 16) + (np.arange(257, dtype=np.int64) << 8)
        flat = points.reshape(-1)
        index = np.searchsorted(self.v4_start, flat).astype(np.int32)
        # the range holding each /24's first address, and whether it runs to the /24's end
        k = np.searchsorted(self.v4_start, flat, side="right").astype(np.int64) - 1
        safe = np.maximum(k, 0)
        ends = np.where(k >= 0, self.v4_end[safe].astype(np.int64), -1)
        starts_inside = np.append(index[1:] > index[:-1], False)  # a range starts in the /24
        whole = np.full(flat.shape[0], -1, np.int32)
        covers = (k >= 0) & (ends >= flat) & (ends >= flat + 255)
        whole[covers] = k[covers]
        untouched = ((k < 0) | (ends < flat)) & ~starts_inside
        whole[untouched] = -2
        return offset, index, whole

    @functools.cached_property
    def all_values(self) -> np.ndarray:
        """IPv4 values, IPv6 values, then a row of -1 (the answer for "no range")."""
        none = np.full((1, self.columns), -1, np.int64)
        return np.concatenate([self.v4_values, self.v6_values, none])


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
def _find_v4(
    a: np.int64,
    index: np.ndarray,
    dense_at: np.ndarray,
    dense: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
) -> int:
    """Range holding IPv4 ``a``, or -1: the last start <= a, searched within a's /24 when
    its /16 is dense (``dense_at``/``dense``: :attr:`Networks.v4_dense`), else its /16.

    Branch-free halving: the comparison becomes a multiply, not a jump the processor
    mispredicts half the time (that cost more than the memory reads).
    """
    bucket = a >> 16
    at = dense_at[bucket]
    if at >= 0:
        sub = at + ((a >> 8) & 0xFF)
        base = np.int64(dense[sub])
        n = np.int64(dense[sub + 1]) - base
    else:
        base = index[bucket]
        n = index[bucket + 1] - base
    if n == 0:
        k = base - 1
    else:
        while n > 1:
            half = n >> 1
            base += half * np.int64(start[base + half] <= a)
            n -= half
        k = base - np.int64(start[base] > a)
    if k >= 0 and a <= end[k]:
        return int(k)
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
def _bswap64(x: np.uint64) -> np.uint64:
    out = np.uint64(0)
    for _ in range(8):
        out = (out << np.uint64(8)) | (x & np.uint64(0xFF))
        x >>= np.uint64(8)
    return out


@njit(cache=True, nogil=True)
def _lookup(
    words: np.ndarray,
    v4_index: np.ndarray,
    dense_at: np.ndarray,
    dense: np.ndarray,
    whole: np.ndarray,
    v4_start: np.ndarray,
    v4_end: np.ndarray,
    s_hi: np.ndarray,
    s_lo: np.ndarray,
    e_hi: np.ndarray,
    e_lo: np.ndarray,
    table: np.ndarray,
    v6_only: bool,
    out: np.ndarray,
) -> None:
    """``out[i] = table[row]`` of address ``i`` (``words``: its two 8-byte halves, read
    little-endian); the row is the IPv4 range, or the number of IPv4 ranges plus the IPv6
    range, or the last row of ``table`` (all -1) when no range holds the address."""
    n4 = v4_start.shape[0]
    none = table.shape[0] - 1
    cols = table.shape[1]
    mask32 = np.uint64(0xFFFF_FFFF)
    for i in range(words.shape[0]):
        w0 = words[i, 0]
        w1 = words[i, 1]
        low = w1 & mask32  # bytes 8..11
        row = none
        # IPv4-mapped ::ffff:a.b.c.d, and IPv4-compatible ::a.b.c.d, which MaxMind's tree
        # also answers from its IPv4 data
        if not v6_only and w0 == 0 and (low == np.uint64(0xFFFF0000) or low == 0):
            x = w1 >> np.uint64(32)  # bytes 12..15, little-endian: d.c.b.a
            a = np.int64(
                ((x & np.uint64(0xFF)) << np.uint64(24))
                | ((x & np.uint64(0xFF00)) << np.uint64(8))
                | ((x >> np.uint64(8)) & np.uint64(0xFF00))
                | (x >> np.uint64(24))
            )
            # a /24 one range covers whole (or none touches) is answered from one entry,
            # here rather than in _find_v4: the call alone cost 4x the look-up (measured)
            at = dense_at[a >> 16]
            known = np.int64(whole[at + ((a >> 8) & 0xFF)]) if at >= 0 else np.int64(-1)
            if known >= 0:
                row = known
            elif known == -1:
                k = _find_v4(a, v4_index, dense_at, dense, v4_start, v4_end)
                if k >= 0:
                    row = k
        elif s_hi.shape[0]:
            k = _find_v6(_bswap64(w0), _bswap64(w1), s_hi, s_lo, e_hi, e_lo)
            if k >= 0:
                row = n4 + k
        for j in range(cols):
            out[i, j] = table[row, j]


def _words(addresses: np.ndarray) -> np.ndarray:
    """``(n, 16)`` uint8 addresses as ``(n, 2)`` little-endian uint64 halves (no copy)."""
    flat = np.ascontiguousarray(addresses)
    return flat.view("<u8").reshape(-1, 2)


def _run(networks: Networks, addresses: np.ndarray, v6_only: bool) -> np.ndarray:
    out = np.empty((addresses.shape[0], networks.columns), np.int64)
    dense_at, dense, whole = networks.v4_dense
    _lookup(
        _words(addresses),
        networks.v4_index,
        dense_at,
        dense,
        whole,
        networks.v4_start,
        networks.v4_end,
        networks.v6_start_hi,
        networks.v6_start_lo,
        networks.v6_end_hi,
        networks.v6_end_lo,
        networks.all_values,
        v6_only,
        out,
    )
    return out


def lookup_ranges(networks: Networks, addresses: np.ndarray) -> np.ndarray:
    """Values of the range holding each address: ``(n, columns)`` int64, -1 where none.

    ``addresses`` is ``(n, 16)`` uint8, IPv4 mapped as ``::ffff:a.b.c.d``.
    """
    return _run(networks, addresses, False)


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
    """IPv6 ranges' values at IPv6 points (never read as IPv4, whatever their bits)."""
    if points.shape[0] == 0:
        return np.zeros((0, nets.columns), np.int64)
    return _run(nets, points, True)
