"""Address ranges with values, read from databases and merged.

A MaxMind database is a binary tree walked bit by bit; doing that per flow from Python
costs microseconds. Instead each database is read once at start into sorted, disjoint
ranges (:class:`Networks`), two databases are merged into one set of ranges carrying
both values (:func:`merge_networks`), and addresses are looked up in an index over the
ranges (:mod:`collectors.enrich.address_index`; :func:`lookup_ranges` gives the values).
IPv4 ranges are 32-bit (IPv4-mapped ``::ffff:a.b.c.d`` and ``::a.b.c.d`` addresses
find them, as in MaxMind's tree), IPv6 ranges 128-bit as (hi, lo) word pairs.
``values[k, j]`` is database ``j``'s value for range ``k``; -1 is none.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from collectors.enrich.address_index import AddressIndex, build_index, lookup_payloads

__all__ = ["Networks", "lookup_ranges", "merge_networks", "networks_from_lists"]

_U64 = np.uint64
_MAX64 = np.uint64(0xFFFF_FFFF_FFFF_FFFF)


@dataclass(frozen=True, repr=False)
class Networks:
    """Sorted, disjoint address ranges (inclusive ends) and their values (``-1`` = none).

    IPv4 ranges are 32-bit (``v4_start``/``v4_end`` uint32); IPv6 ranges are 128-bit as
    two uint64 words each. ``v4_values`` and ``v6_values`` are ``(ranges, columns)`` int64.
    """

    v4_start: np.ndarray
    v4_end: np.ndarray
    v4_values: np.ndarray
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
    def index(self) -> AddressIndex:
        """The look-up index, each range's payload its row in :attr:`all_values` + 1."""
        n4 = self.v4_start.shape[0]
        rows4 = np.arange(1, n4 + 1, dtype=np.uint64)
        rows6 = np.arange(n4 + 1, n4 + 1 + self.v6_start_hi.shape[0], dtype=np.uint64)
        return build_index(
            (self.v4_start, self.v4_end, rows4),
            (self.v6_start_hi, self.v6_start_lo, self.v6_end_hi, self.v6_end_lo, rows6),
        )

    @functools.cached_property
    def all_values(self) -> np.ndarray:
        """IPv4 values, IPv6 values, then a row of -1 (the answer for "no range")."""
        none = np.full((1, self.columns), -1, np.int64)
        return np.concatenate([self.v4_values, self.v6_values, none])


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
        v6_start_hi=hi,
        v6_start_lo=lo,
        v6_end_hi=np.array([e >> 64 for _, e, _ in v6], _U64),
        v6_end_lo=np.array([e & 0xFFFF_FFFF_FFFF_FFFF for _, e, _ in v6], _U64),
        v6_values=np.array([v for _, _, v in v6], np.int64).reshape(-1, 1),
    )


def _values(networks: Networks, addresses: np.ndarray, v6_only: bool) -> np.ndarray:
    payloads = lookup_payloads(networks.index, addresses, v6_only)
    return networks.all_values[payloads.astype(np.int64) - 1]  # payload 0: the -1 row


def lookup_ranges(networks: Networks, addresses: np.ndarray) -> np.ndarray:
    """Values of the range holding each address: ``(n, columns)`` int64, -1 where none.

    ``addresses`` is ``(n, 16)`` uint8, IPv4 mapped as ``::ffff:a.b.c.d``.
    """
    return _values(networks, addresses, False)


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
    bounds = np.sort(
        np.concatenate(
            [p.v4_start.astype(np.int64) for p in parts]
            + [p.v4_end.astype(np.int64) + 1 for p in parts]
        )
    )
    # distinct by sorting: np.unique (hash-based in numpy 2.3+) took 2.7 s of CPU on the
    # 2.2 million bounds of two GeoLite2-sized databases, sorting 0.12 s
    if bounds.shape[0]:  # none when no part has IPv4 networks
        bounds = bounds[np.append(True, bounds[1:] != bounds[:-1])]
    starts4 = bounds[bounds < (1 << 32)]
    ends4 = np.append(starts4[1:] - 1, (1 << 32) - 1) if starts4.shape[0] else starts4
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
    return _values(nets, points, True)
