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

    ``top`` (uint64[65536]) holds an entry per /16, that of ``a.b`` at ``a + 256 b`` (the
    address's first two bytes read as a little-endian number: no byte swap a look-up),
    ``sub`` 256 entries per /24 of each /16 with more than ``_DENSE`` ranges; IPv6
    ranges are 128-bit as two uint64 words.
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
    if start.shape[0] == 0:  # a database without IPv4 networks (IPv6 only, or empty)
        return np.zeros(blocks.shape[0], np.uint64)
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
    sub = np.append(sub, np.uint64(0)) if sub.shape[0] == 0 else sub  # read, never used
    top[dense] = _TABLE | (np.arange(dense.shape[0], dtype=np.uint64) * np.uint64(256))
    top = np.ascontiguousarray(top.reshape(256, 256).T).reshape(-1)  # a.b at a + 256 b
    return AddressIndex(
        top, sub, start.astype(np.uint32), end.astype(np.uint32), payload.astype(np.uint64),
        *(np.ascontiguousarray(a, np.uint64) for a in v6),
    )  # fmt: skip


def pack_values(asn: np.ndarray, country: np.ndarray) -> np.ndarray:
    """The enricher's payload: the AS number (0: none) in bits 0-31 and the country's two
    ASCII letters read as one native uint16 (0: none) in bits 32-47."""
    return asn.astype(np.uint64) | (country.astype(np.uint64) << np.uint64(32))


# -- the kernels -----------------------------------------------------------------------------
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


#: Rows ahead whose per-/24 entry is prefetched (in situ, the index is out of cache after
#: decoding: 64 rows ahead 9.3 against 10.5-12.5 ns a flow without; 32 and 128 alike).
_AHEAD = 64


@njit(cache=True, nogil=True)
def _bswap64(x: np.uint64) -> np.uint64:
    out = np.uint64(0)
    for _ in range(8):
        out = (out << np.uint64(8)) | (x & np.uint64(0xFF))
        x >>= np.uint64(8)
    return out


#: Marks an IPv6 address in the first pass's output (tag 3: no entry has it).
_V6 = np.uint64(3 << 62)
_BYTE = np.uint64(0xFF)


@njit(cache=True, nogil=True)
def _find(
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
    out: np.ndarray,
) -> None:
    """``out[i]``: the payload of the range holding address ``i`` (``words[2 i]`` and
    ``words[2 i + 1]``: its two 8-byte halves, read little-endian), 0 when none does.

    Two passes. The first reads each IPv4 address's index entries without a branch
    (IPv4-mapped ``::ffff:a.b.c.d``, and IPv4-compatible ``::a.b.c.d``, which MaxMind's
    tree also answers from its IPv4 data): a short loop body, so the processor keeps
    many rows' cache misses in flight (and prefetches the per-/24 entry ``_AHEAD`` rows
    on). The second searches the ranges for the rows whose
    entry said so, and the IPv6 rows. Measured against one pass doing all: 4.4 against
    6.0 ns per address on the benchmark's databases. The loops are written out here:
    helper functions taking the arrays cost 10x the look-up (Numba counts references to
    each array argument on every call).
    """
    n = words.shape[0] >> 1
    rest = np.int64(0)
    v4 = np.uint64(0) if v6_only else np.uint64(1)
    last = n - 1
    for i in range(n):
        # the per-/24 entry of a row some way ahead: its cache miss overlaps the rows before
        y = words[2 * min(i + _AHEAD, last) + 1] >> np.uint64(32)
        ahead = top[np.int64(y & np.uint64(0xFFFF))]
        at = np.int64(ahead & np.uint64(0xFFFF_FFFF)) + np.int64((y >> np.uint64(16)) & _BYTE)
        _prefetch(sub, at if ahead >> np.uint64(62) == np.uint64(2) else 0)  # type: ignore[call-arg]
        w0 = words[2 * i]
        w1 = words[2 * i + 1]
        x = w1 >> np.uint64(32)  # bytes 12..15 little-endian: a.b.c.d's a in the low byte
        entry = top[np.int64(x & np.uint64(0xFFFF))]  # a + 256 b: no byte swap
        table = entry >> np.uint64(62) == np.uint64(2)
        at = np.int64(entry & np.uint64(0xFFFF_FFFF)) + np.int64((x >> np.uint64(16)) & _BYTE)
        second = sub[at if table else 0]  # sub[0] exists: build_index keeps one entry
        entry = second if table else entry
        # IPv4 when bytes 0..9 are 0 and bytes 10..11 both 0 or both 0xff: adding 1 to
        # bytes 10..11 (one 16-bit number) leaves them 0 exactly then (0xffff + 1 carries
        # into bit 32, which the mask drops)
        low = (w1 + np.uint64(0x10000)) & np.uint64(0xFFFE_FFFF)
        is4 = ((w0 | low) == np.uint64(0)) & (v4 == np.uint64(1))
        entry = entry if is4 else _V6
        out[i] = entry
        rest += np.int64(entry >> np.uint64(62) != 0)
    if rest == 0:
        return
    for i in range(n):
        entry = out[i]
        tag = entry >> np.uint64(62)
        if tag == 0:
            continue
        p = np.uint64(0)
        if tag == 1:  # the ranges starting in the block, and the one before them
            x = words[2 * i + 1] >> np.uint64(32)
            a = np.int64(
                ((x & np.uint64(0xFF)) << np.uint64(24))
                | ((x & np.uint64(0xFF00)) << np.uint64(8))
                | ((x >> np.uint64(8)) & np.uint64(0xFF00))
                | (x >> np.uint64(24))
            )
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
            h = _bswap64(words[2 * i])
            lw = _bswap64(words[2 * i + 1])
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
        out[i] = p


@njit(cache=True, nogil=True)
def _columns(
    payloads: np.ndarray,
    old_as: np.ndarray,
    as_out: np.ndarray,
    letters: np.ndarray,
    counts: np.ndarray,
) -> None:
    """From payloads packed by :func:`pack_values`: ``as_out`` the exporter's AS
    (``old_as``) or, where it is 0, the database's; the country column's two
    ``letters`` per row (0 where none); ``counts``: AS numbers filled, countries found.
    No branch per row (the loop is vectorised)."""
    n = payloads.shape[0]
    filled = np.int64(0)
    found = np.int64(0)
    for i in range(n):
        p = payloads[i]
        asn = np.uint32(p & np.uint64(0xFFFF_FFFF))
        old = old_as[i]
        take = (old == 0) & (asn != 0)
        as_out[i] = asn if take else old
        filled += np.int64(take)
        code = np.uint16(p >> np.uint64(32))
        letters[i] = code
        found += np.int64(code != 0)
    counts[0] += filled
    counts[1] += found


@njit(cache=True, nogil=True)
def _enrich(
    words: np.ndarray,
    old_as: np.ndarray,
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
    payloads: np.ndarray,
    as_out: np.ndarray,
    letters: np.ndarray,
    counts: np.ndarray,
) -> None:
    """:func:`_find` then :func:`_columns` in one call: compiled for IPv4 read as IPv4
    (``v6_only`` a constant), 1.5 against 2.7 ns an address warm."""
    counts[0] = 0
    counts[1] = 0
    _find(words, top, sub, v4_start, v4_end, v4_payload,
          s_hi, s_lo, e_hi, e_lo, v6_payload, False, payloads)  # fmt: skip
    _columns(payloads, old_as, as_out, letters, counts)


def _words(addresses: np.ndarray) -> np.ndarray:
    """``(n, 16)`` uint8 addresses as ``2 n`` little-endian uint64 halves (flat: a 2-D
    array's row stride costs a multiply and a register in the look-up loop)."""
    return np.ascontiguousarray(addresses).view("<u8").reshape(-1)


def lookup_payloads(index: AddressIndex, addresses: np.ndarray, v6_only: bool) -> np.ndarray:
    """Payload of the range holding each ``(n, 16)`` uint8 address (0: none); with
    ``v6_only`` every address is read as IPv6, IPv4-mapped or not."""
    words = _words(addresses)
    out = np.empty(words.shape[0] // 2, np.uint64)
    _find(words, index.top, index.sub, index.v4_start, index.v4_end, index.v4_payload,
          index.v6_start_hi, index.v6_start_lo, index.v6_end_hi, index.v6_end_lo,
          index.v6_payload, v6_only, out)  # fmt: skip
    return out


@dataclass(frozen=True)
class Enriched:
    """One side's look-ups (:func:`enrich_side`)."""

    as_numbers: np.ndarray  # uint32: the exporter's, or the database's where it was 0
    filled: int  # AS numbers taken from the database
    letters: np.ndarray  # uint16: a country's two letters, 0 where none
    valid: np.ndarray | None  # uint8: Arrow validity bits of the countries; None: all found
    found: int  # countries found


def enrich_side(index: AddressIndex, addresses: np.ndarray, old_as: np.ndarray) -> Enriched:
    """AS numbers and countries of ``(n, 16)`` uint8 addresses whose exporter gave the
    uint32 AS numbers ``old_as``; the index's payloads packed by :func:`pack_values`."""
    n = old_as.shape[0]
    as_out = np.empty(n, np.uint32)
    letters = np.empty(n, np.uint16)
    counts = np.zeros(2, np.int64)
    _enrich(_words(addresses), old_as, index.top, index.sub, index.v4_start, index.v4_end,
            index.v4_payload, index.v6_start_hi, index.v6_start_lo, index.v6_end_hi,
            index.v6_end_lo, index.v6_payload, np.empty(n, np.uint64), as_out, letters,
            counts)  # fmt: skip
    found = int(counts[1])
    # numpy's packbits: a third of the time the bits took in the vectorised loop (measured)
    valid = None if found == n else np.packbits(letters != 0, bitorder="little")
    return Enriched(as_out, int(counts[0]), letters, valid, found)
