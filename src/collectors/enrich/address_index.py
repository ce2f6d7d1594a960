"""A two-level index over address ranges, and the Numba kernels that look addresses up.

Each range carries a *payload* (uint64 below 2**62, 0 = "no range"): the enricher packs
the AS number and the country's two letters into it (:func:`pack_values`), the generic
:func:`lookup_payloads` uses range number + 1. IPv4 addresses (stored IPv4-mapped,
``::ffff:a.b.c.d``; ``::a.b.c.d`` too, as MaxMind's tree reads it) go through one
entry per /16 and, for a /16 cut into many ranges, one per /24. An entry is either the
answer itself (a block one range covers whole, or none touches: one memory read gives
the payload) or where to search (the ranges starting in the block, halved without
branches). IPv6 is a binary search over 128-bit ranges kept as (hi, lo) word pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = [
    "AddressIndex", "Enriched", "build_index", "enrich_side", "lookup_payloads", "pack_values",
]  # fmt: skip

#: A /16 with more ranges starting in it than this gets 256 per-/24 entries.
_DENSE = 16
#: Entry tags (top two bits): the payload itself, a search, a per-/24 table.
_SEARCH = np.uint64(1 << 62)
_TABLE = np.uint64(2 << 62)
_LOW32 = 0xFFFF_FFFF


@dataclass(frozen=True, repr=False)
class AddressIndex:
    """Ranges (sorted, disjoint, inclusive ends) with their payloads and the IPv4 index.

    ``top`` (uint64[65536]) holds an entry per /16, ``sub`` 256 entries per /24 of each
    /16 with more than ``_DENSE`` ranges; IPv6 ranges are 128-bit as two uint64 words.
    """

    top: np.ndarray
    sub: np.ndarray
    v4_start: np.ndarray
    v4_end: np.ndarray
    v4_payload: np.ndarray
    v6_start_hi: np.ndarray
    v6_start_lo: np.ndarray
    v6_end_hi: np.ndarray
    v6_end_lo: np.ndarray
    v6_payload: np.ndarray

    def __repr__(self) -> str:
        return (
            f"AddressIndex({self.v4_start.shape[0]} IPv4 and {self.v6_start_hi.shape[0]} "
            f"IPv6 ranges, {self.sub.shape[0] // 256} /16s indexed per /24)"
        )


def _entries(
    blocks: np.ndarray, size: int, start: np.ndarray, end: np.ndarray, payload: np.ndarray
) -> np.ndarray:
    """An entry per block ``[b, b + size)``: the payload of a range covering it whole,
    0 if no range touches it, else a search over the ranges starting in it (bits 0-31
    the first, 32-49 how many; the range before them is a candidate too)."""
    first = np.searchsorted(start, blocks)
    count = np.searchsorted(start, blocks + size) - first
    k = np.searchsorted(start, blocks, side="right").astype(np.int64) - 1
    reach = np.where(k >= 0, end[np.maximum(k, 0)].astype(np.int64), -1)
    out = _SEARCH | first.astype(np.uint64) | (count.astype(np.uint64) << np.uint64(32))
    whole = (k >= 0) & (reach >= blocks + size - 1)
    out[whole] = payload[k[whole]]
    out[(reach < blocks) & (count == 0)] = 0
    return out


def _coalesce(
    start: np.ndarray, end: np.ndarray, payload: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Adjacent ranges with the same payload as one (fewer ranges, more whole blocks)."""
    if start.shape[0] < 2:
        return start, end, payload
    joins = (start[1:].astype(np.int64) == end[:-1].astype(np.int64) + 1) & (
        payload[1:] == payload[:-1]
    )
    first = np.concatenate([[True], ~joins])
    last = np.concatenate([~joins, [True]])
    return start[first], end[last], payload[first]


def build_index(
    v4: tuple[np.ndarray, np.ndarray, np.ndarray],
    v6: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
) -> AddressIndex:
    """The index over IPv4 ``(start, end, payload)`` (uint32, uint32, uint64) and IPv6
    ``(start_hi, start_lo, end_hi, end_lo, payload)`` ranges, each sorted and disjoint."""
    start, end, payload = _coalesce(*v4)
    starts64 = start.astype(np.int64)
    slash16 = np.arange(65536, dtype=np.int64) << 16
    top = _entries(slash16, 1 << 16, starts64, end, payload)
    counts = np.diff(np.searchsorted(starts64, np.append(slash16, 1 << 32)))
    dense = np.flatnonzero((counts > _DENSE) & (top >> np.uint64(62) == 1))
    blocks = ((dense.astype(np.int64) << 16)[:, None] + (np.arange(256) << 8)).reshape(-1)
    sub = _entries(blocks, 256, starts64, end, payload)
    top[dense] = _TABLE | (np.arange(dense.shape[0], dtype=np.uint64) * np.uint64(256))
    return AddressIndex(
        top, sub, start.astype(np.uint32), end.astype(np.uint32), payload.astype(np.uint64),
        *(np.ascontiguousarray(a, np.uint64) for a in v6),
    )  # fmt: skip


def pack_values(asn: np.ndarray, country: np.ndarray) -> np.ndarray:
    """The enricher's payload: the AS number (0: none) in bits 0-31 and the country's two
    ASCII letters read as one native uint16 (0: none) in bits 32-47."""
    return asn.astype(np.uint64) | (country.astype(np.uint64) << np.uint64(32))


# -- the kernel ------------------------------------------------------------------------------
@intrinsic
def _prefetch(typingctx: Any, array: Any, index: Any) -> Any:
    """Ask the processor to bring ``array[index]`` into cache (LLVM's prefetch: no fault,
    no wait); the look-up that needs it comes some rows later."""
    sig = types.void(array, index)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(  # type: ignore[no-untyped-call]
            context, builder, aryty, ary, [args[1]], wraparound=False
        )
        byte_ptr = builder.bitcast(ptr, ir.IntType(8).as_pointer())
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [byte_ptr.type, i32, i32, i32])
        fn = cgutils.get_or_insert_function(  # type: ignore[no-untyped-call]
            builder.module, fnty, "llvm.prefetch.p0i8"
        )
        builder.call(fn, [byte_ptr, i32(0), i32(3), i32(1)])  # read, keep, data
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True, nogil=True)
def _bswap64(x: np.uint64) -> np.uint64:
    out = np.uint64(0)
    for _ in range(8):
        out = (out << np.uint64(8)) | (x & np.uint64(0xFF))
        x >>= np.uint64(8)
    return out


#: Rows ahead whose per-/24 entry is prefetched (measured: 8-32 alike, none 2-3 ns slower).
_AHEAD = 16


@njit(cache=True, nogil=True)
def _scan(
    words: np.ndarray,
    top: np.ndarray,
    sub: np.ndarray,
    v4_start: np.ndarray,
    v4_end: np.ndarray,
    v4_payload: np.ndarray,
    s_hi: np.ndarray,
    s_lo: np.ndarray,
    e_hi: np.ndarray,
    e_lo: np.ndarray,
    v6_payload: np.ndarray,
    v6_only: bool,
    enrich: bool,
    payloads: np.ndarray,
    old_as: np.ndarray,
    as_out: np.ndarray,
    letters: np.ndarray,
    valid: np.ndarray,
    counts: np.ndarray,
) -> None:
    """Look up each address (``words``: its two 8-byte halves, read little-endian).

    Without ``enrich``: ``payloads`` the payload of the range holding each address, 0
    when none does. With ``enrich``, from payloads packed by :func:`pack_values`:
    ``as_out`` the exporter's AS (``old_as``) or, where it is 0, the database's; the
    country column's two ``letters`` per row (0 where none) and its ``valid`` bits;
    ``counts``: AS numbers filled, countries found.

    Everything is written out in this one loop: as helper functions taking the arrays,
    Numba's reference counting of each array argument cost 10x the look-up, and one loop
    over both sides choosing each row's arrays cost 2x (measured).
    """
    n = words.shape[0]
    filled = np.int64(0)
    found = np.int64(0)
    bits = np.int64(0)
    for i in range(n):
        # the per-/24 entry of a row some way ahead: its cache miss overlaps this row's work
        j = i + _AHEAD
        if j < n and words[j, 0] == 0 and not v6_only:
            y = words[j, 1] >> np.uint64(32)
            b = np.int64(
                ((y & np.uint64(0xFF)) << np.uint64(24))
                | ((y & np.uint64(0xFF00)) << np.uint64(8))
                | ((y >> np.uint64(8)) & np.uint64(0xFF00))
                | (y >> np.uint64(24))
            )
            ahead = top[b >> 16]
            if ahead >> np.uint64(62) == np.uint64(2):
                at = np.int64(ahead & np.uint64(0xFFFF_FFFF)) + ((b >> 8) & 0xFF)
                _prefetch(sub, at)  # type: ignore[call-arg]
        w0 = words[i, 0]
        w1 = words[i, 1]
        low = w1 & np.uint64(0xFFFF_FFFF)  # bytes 8..11
        p = np.uint64(0)
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
            entry = top[a >> 16]
            if entry >> np.uint64(62) == np.uint64(2):
                entry = sub[np.int64(entry & np.uint64(0xFFFF_FFFF)) + ((a >> 8) & 0xFF)]
            if entry >> np.uint64(62) == np.uint64(0):
                p = entry
            else:
                base = np.int64(entry & np.uint64(0xFFFF_FFFF))
                m = np.int64((entry >> np.uint64(32)) & np.uint64(0x3FFFF))
                if m == 0:
                    k = base - 1
                else:
                    # branch-free halving: the comparison is a multiply, not a jump the
                    # processor mispredicts half the time (that cost more than the reads)
                    while m > 1:
                        half = m >> 1
                        base += half * np.int64(v4_start[base + half] <= a)
                        m -= half
                    k = base - np.int64(v4_start[base] > a)
                if k >= 0 and a <= v4_end[k]:
                    p = v4_payload[k]
        elif s_hi.shape[0] != 0:
            h = _bswap64(w0)
            lw = _bswap64(w1)
            lo = 0
            hi = s_hi.shape[0]
            while lo < hi:  # first start > (h, lw)
                mid = (lo + hi) >> 1
                if s_hi[mid] < h or (s_hi[mid] == h and s_lo[mid] <= lw):
                    lo = mid + 1
                else:
                    hi = mid
            k6 = lo - 1
            if k6 >= 0 and (h < e_hi[k6] or (h == e_hi[k6] and lw <= e_lo[k6])):
                p = v6_payload[k6]
        if not enrich:
            payloads[i] = p
            continue
        asn = np.uint32(p & np.uint64(0xFFFF_FFFF))
        old = old_as[i]
        take = (old == 0) & (asn != 0)
        as_out[i] = asn if take else old
        filled += np.int64(take)
        code = np.uint16(p >> np.uint64(32))
        letters[i] = code
        has = np.int64(code != 0)
        found += has
        bits |= has << (i & 7)
        if i & 7 == 7:  # a byte of validity bits a time (one store, no read-modify-write)
            valid[i >> 3] = np.uint8(bits)
            bits = np.int64(0)
    if enrich and n & 7:
        valid[n >> 3] = np.uint8(bits)
    counts[0] = filled
    counts[1] = found


def _words(addresses: np.ndarray) -> np.ndarray:
    """``(n, 16)`` uint8 addresses as ``(n, 2)`` little-endian uint64 halves."""
    return np.ascontiguousarray(addresses).view("<u8").reshape(-1, 2)


_NONE16 = np.empty(0, np.uint16)
_NONE32 = np.empty(0, np.uint32)
_NONE64 = np.empty(0, np.uint64)


def lookup_payloads(index: AddressIndex, addresses: np.ndarray, v6_only: bool) -> np.ndarray:
    """Payload of the range holding each ``(n, 16)`` uint8 address (0: none); with
    ``v6_only`` every address is read as IPv6, IPv4-mapped or not."""
    words = _words(addresses)
    out = np.empty(words.shape[0], np.uint64)
    _scan(words, index.top, index.sub, index.v4_start, index.v4_end, index.v4_payload,
          index.v6_start_hi, index.v6_start_lo, index.v6_end_hi, index.v6_end_lo,
          index.v6_payload, v6_only, False, out, _NONE32, _NONE32, _NONE16,
          np.empty(0, np.uint8), np.zeros(2, np.int64))  # fmt: skip
    return out


@dataclass(frozen=True)
class Enriched:
    """One side's look-ups (:func:`enrich_side`)."""

    as_numbers: np.ndarray  # uint32: the exporter's, or the database's where it was 0
    filled: int  # AS numbers taken from the database
    letters: np.ndarray  # uint16: a country's two letters, 0 where none
    valid: np.ndarray  # uint8: Arrow validity bits of the countries
    found: int  # countries found


def enrich_side(index: AddressIndex, addresses: np.ndarray, old_as: np.ndarray) -> Enriched:
    """AS numbers and countries of ``(n, 16)`` uint8 addresses whose exporter gave the
    uint32 AS numbers ``old_as``; the index's payloads packed by :func:`pack_values`."""
    n = old_as.shape[0]
    as_out = np.empty(n, np.uint32)
    letters = np.empty(n, np.uint16)
    valid = np.empty((n + 7) // 8, np.uint8)
    counts = np.zeros(2, np.int64)
    _scan(_words(addresses), index.top, index.sub, index.v4_start, index.v4_end,
          index.v4_payload, index.v6_start_hi, index.v6_start_lo, index.v6_end_hi,
          index.v6_end_lo, index.v6_payload, False, True, _NONE64, old_as, as_out, letters,
          valid, counts)  # fmt: skip
    return Enriched(as_out, int(counts[0]), letters, valid, int(counts[1]))
