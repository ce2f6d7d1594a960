"""Numba hash group-by kernels over flow columns (single table and radix-partitioned).

They sum three metrics per group - bytes, packets and flows - optionally renormalised
by the 1-in-N sampling interval, optionally split into time buckets. They take plain
numpy views of Arrow buffers (no copies of the big columns) and return one partial
result per call; results are combined by aggregating them again with the flow count
passed as a weight, which is associative, so a partition-wise run (threads here, Dask
tasks elsewhere) equals the one-shot run exactly.

Conventions of every kernel argument:
- ``keys``: uint64 ``(n, w)``; a row's key words are compared for equality only, so
  addresses can be passed as the raw (native-endian) words of their 16 bytes.
- ``t``/``t0``/``width``: bucket = ``(t[i] - t0) // width``; ``width == 0`` means no bucket.
- ``mult``: uint32 sampling interval per row (0 treated as 1), or an empty array for "1".
- ``weight``: uint64 flow count per row, or an empty array for "1 per row".
- ``sel``: uint8 row mask (1 = use the row), or an empty array for "all rows".

Small-integer keys (subscriptions, ports) go through the dense kernels of
:mod:`rating_engine.traffic.bucket_kernel` instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from numba import njit

from collectors.kernel_arrays import readonly, readonly_all
from rating_engine.kernel_threads import n_threads, run_chunks
from rating_engine.traffic.flow_query import BUCKET_US, bucket_width_us  # Numba-free home

__all__ = [
    "BUCKET_US",
    "EMPTY_U8",
    "EMPTY_U32",
    "EMPTY_U64",
    "address_words",
    "bucket_width_us",
    "hash_aggregate",
    "hash_aggregate_parallel",
    "numeric_column",
    "radix_aggregate",
    "sampling_multipliers",
]

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]

EMPTY_U8 = np.empty(0, dtype=np.uint8)
EMPTY_U32 = np.empty(0, dtype=np.uint32)
EMPTY_U64 = np.empty(0, dtype=np.uint64)


def address_words(column: pa.Array | pa.ChunkedArray) -> U64:
    """Zero-copy ``(n, 2)`` uint64 view of a ``fixed_size_binary(16)`` column's data buffer.

    The words are native-endian reinterpretations of the network-order bytes: fine for
    equality and hashing; :func:`rating_engine.traffic.attribution` byte-swaps where order matters.
    A chunked column with more than one chunk is combined (one copy).
    """
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if arr.type.byte_width != 16:
        raise TypeError(f"expected fixed_size_binary(16), got {arr.type}")
    n = len(arr)
    buf = arr.buffers()[1]
    if buf is None or n == 0:
        return np.zeros((0, 2), dtype=np.uint64)
    words = np.frombuffer(buf, dtype=np.uint64, count=2 * n, offset=arr.offset * 16)
    return words.reshape(n, 2)


def numeric_column(column: pa.Array | pa.ChunkedArray, dtype: npt.DTypeLike) -> np.ndarray:
    """A numeric (or timestamp) column as a numpy array, zero-copy when it has no nulls."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_timestamp(arr.type):
        arr = arr.view(pa.int64())  # same buffer, no cast
    if arr.null_count:
        raise ValueError("column has nulls")
    out: np.ndarray = arr.to_numpy(zero_copy_only=True)
    return out if out.dtype == np.dtype(dtype) else out.astype(dtype)


def sampling_multipliers(table: pa.Table | pa.RecordBatch) -> npt.NDArray[np.uint32]:
    """The ``sampling_interval`` column as kernel multipliers (empty if absent).

    A null interval - the exporter announced no rate - becomes 0, which the kernels count
    as 1: such a flow's volume is taken as exported.
    """
    if "sampling_interval" not in table.schema.names:
        return EMPTY_U32
    column = table.column("sampling_interval")
    if column.null_count:
        column = pc.fill_null(column, 0)
    return numeric_column(column, np.uint32)


@njit(cache=True, nogil=True, inline="always")
def _mix(h: Any, x: Any) -> Any:
    # splitmix64 finaliser over (h xor x): cheap and good enough for linear probing.
    z = (h ^ x) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(cache=True, nogil=True)
def _grow(tab: U64, kw: int) -> U64:
    """Double an inline hash table, reinserting its occupied slots (flows != 0)."""
    cap = tab.shape[0] * 2
    out = np.zeros((cap, kw + 3), dtype=np.uint64)
    mask = cap - 1
    for s0 in range(tab.shape[0]):
        if tab[s0, kw + 2] == 0:
            continue
        h = np.uint64(0)
        for j in range(kw):
            h = _mix(h, tab[s0, j])
        s = np.int64(h & np.uint64(mask))
        while out[s, kw + 2] != 0:
            s = (s + 1) & mask
        for j in range(kw + 3):
            out[s, j] = tab[s0, j]
    return out


@njit(cache=True, nogil=True)
def hash_aggregate(
    keys: U64,
    t: I64,
    t0: int,
    width: int,
    nbytes: U64,
    npackets: U64,
    weight: U64,
    mult: npt.NDArray[np.uint32],
    sel: npt.NDArray[np.uint8],
    start: int,
    stop: int,
) -> tuple[U64, U64, U64, U64]:
    """Group rows ``start:stop`` by (key words, bucket); sum bytes, packets and flows.

    Returns ``(group_keys, bytes, packets, flows)``; ``group_keys`` has ``w + 1`` columns,
    the last being the bucket index (0 when ``width == 0``). Groups come out in hash-table
    order. The table is open addressing with each slot's key words and sums side by side
    in one row (one cache line touched per input row, the cost that matters at high key
    counts); a slot is free while its flow count is 0 (a weight of 0 is never passed).
    """
    w = keys.shape[1]
    kw = w + 1
    tab = np.zeros((1024, kw + 3), dtype=np.uint64)
    mask = 1023
    ngroups = 0
    use_sel = sel.shape[0] > 0
    use_mult = mult.shape[0] > 0
    use_weight = weight.shape[0] > 0
    cur = np.zeros(kw, dtype=np.uint64)
    for i in range(start, stop):
        if use_sel and sel[i] == 0:
            continue
        h = np.uint64(0)
        for j in range(w):
            cur[j] = keys[i, j]
            h = _mix(h, cur[j])
        cur[w] = np.uint64((t[i] - t0) // width) if width > 0 else np.uint64(0)
        h = _mix(h, cur[w])
        s = np.int64(h & np.uint64(mask))
        while True:
            if tab[s, kw + 2] == 0:
                for j in range(kw):
                    tab[s, j] = cur[j]
                ngroups += 1
                break
            same = True
            for j in range(kw):
                if tab[s, j] != cur[j]:
                    same = False
                    break
            if same:
                break
            s = (s + 1) & mask
        m = np.uint64(1)
        if use_mult and mult[i] > 1:
            m = np.uint64(mult[i])
        tab[s, kw] += nbytes[i] * m
        tab[s, kw + 1] += npackets[i] * m
        tab[s, kw + 2] += weight[i] if use_weight else np.uint64(1)
        if 2 * ngroups > tab.shape[0]:
            tab = _grow(tab, kw)
            mask = tab.shape[0] - 1
    gk = np.empty((ngroups, kw), dtype=np.uint64)
    gb = np.empty(ngroups, dtype=np.uint64)
    gp = np.empty(ngroups, dtype=np.uint64)
    gf = np.empty(ngroups, dtype=np.uint64)
    g = 0
    for si in range(tab.shape[0]):
        if tab[si, kw + 2] != 0:
            for j in range(kw):
                gk[g, j] = tab[si, j]
            gb[g] = tab[si, kw]
            gp[g] = tab[si, kw + 1]
            gf[g] = tab[si, kw + 2]
            g += 1
    return gk, gb, gp, gf


def radix_aggregate(
    keys: U64,
    t: I64,
    t0: int,
    width: int,
    nbytes: U64,
    npackets: U64,
    weight: U64,
    mult: npt.NDArray[np.uint32],
    sel: npt.NDArray[np.uint8],
    bits: int,
    nchunks: int,
) -> tuple[U64, U64, U64, U64]:
    """:func:`hash_aggregate` for many keys: radix-partition by hash, then small tables.

    Rows are scattered by the top ``bits`` of their key hash into ``2**bits`` partitions
    (sequential writes), and each partition is aggregated with a hash table that fits in
    cache; partitions hold disjoint keys, so they run in parallel and need no combine.
    Same result as :func:`hash_aggregate` (groups in partition, then table order).

    The scattered rows live in a scratch buffer from Arrow's memory pool, which keeps
    freed pages for the next call: fresh ``np.empty`` pages of this size are mapped and
    zeroed by the kernel on every call (measured: ~40 % of the kernel's CPU was system
    time in page faults).
    """
    n, w = keys.shape
    # without buckets the bucket word is always 0: leave it out of the scattered rows
    kb = w + 1 if width > 0 else w
    # a flow count per scattered row only when weights are given (else each row is 1)
    nv = 3 if weight.shape[0] > 0 else 2
    scratch = np.frombuffer(pa.allocate_buffer(max(n * (2 + kb + nv), 1) * 8), dtype=np.uint64)
    # serial GIL-free kernels on a thread pool: the parfor took 6.6 s CPU to compile (#22)
    nparts = 1 << bits
    step = (n + nchunks - 1) // nchunks
    rows = [(min(n, c * step), min(n, (c + 1) * step)) for c in range(nchunks)]
    counts = np.zeros((nchunks, nparts), dtype=np.int64)
    run_chunks(_radix_hash, (keys, t, t0, width, sel, bits, scratch[:n]),
               [(counts[c], lo, hi) for c, (lo, hi) in enumerate(rows)])  # fmt: skip
    # partition by partition, each chunk's rows in chunk order
    starts = np.zeros(nparts * nchunks + 1, dtype=np.int64)
    starts[1:] = np.cumsum(counts.T.ravel())
    offsets = starts[:-1].reshape(nparts, nchunks).T.copy()
    part_start = starts[::nchunks].copy()
    total = int(starts[-1])
    # no hash in the scattered rows: recomputing it from the cached key words is cheaper
    pk = scratch[n : n + total * kb].reshape((total, kb))
    pv = scratch[n + total * kb : n + total * (kb + nv)].reshape((total, nv))
    flows = scratch[n + total * (kb + nv) : n + total * (kb + nv + 1)]
    run_chunks(_radix_scatter, (keys, t, t0, width, nbytes, npackets, weight, mult, sel, bits,
                                scratch[:n], pk, pv),
               [(offsets[c], lo, hi) for c, (lo, hi) in enumerate(rows)])  # fmt: skip
    # per partition: aggregate in place - group g is written over row g <= the row being
    # read, so the scattered buffers double as the output (no second large allocation)
    ngroups = np.zeros(nparts, dtype=np.int64)
    m = min(nparts, 4 * n_threads())
    run_chunks(_radix_group, (pk, pv, flows, part_start, ngroups),
               [(c * nparts // m, (c + 1) * nparts // m) for c in range(m)])  # fmt: skip
    out_n = int(ngroups.sum())
    first = part_start[:-1] - (np.cumsum(ngroups) - ngroups)  # group row - output row
    idx = np.arange(out_n, dtype=np.int64) + np.repeat(first, ngroups)
    ok = np.zeros((out_n, w + 1), dtype=np.uint64)
    ok[:, :kb] = pk[idx]
    return ok, pv[idx, 0], pv[idx, 1], flows[idx]


@njit(cache=True, nogil=True)
def _radix_hash(
    keys: U64,
    t: I64,
    t0: int,
    width: int,
    sel: npt.NDArray[np.uint8],
    bits: int,
    hashes: U64,
    counts: I64,
    lo: int,
    hi: int,
) -> None:
    """Hash rows ``lo..hi-1`` into ``hashes``, counting the rows of each partition."""
    shift = np.uint64(64 - bits)
    use_sel = sel.shape[0] > 0
    for i in range(lo, hi):
        if use_sel and sel[i] == 0:
            continue
        h = np.uint64(0)
        for j in range(keys.shape[1]):
            h = _mix(h, keys[i, j])
        if width > 0:
            h = _mix(h, np.uint64((t[i] - t0) // width))
        hashes[i] = h
        counts[np.int64(h >> shift) if bits > 0 else 0] += 1


@njit(cache=True, nogil=True)
def _radix_scatter(
    keys: U64,
    t: I64,
    t0: int,
    width: int,
    nbytes: U64,
    npackets: U64,
    weight: U64,
    mult: npt.NDArray[np.uint32],
    sel: npt.NDArray[np.uint8],
    bits: int,
    hashes: U64,
    pk: U64,
    pv: U64,
    off: I64,
    lo: int,
    hi: int,
) -> None:
    """Write rows ``lo..hi-1`` to their partitions, from ``off`` (next row of each)."""
    w = keys.shape[1]
    shift = np.uint64(64 - bits)
    use_sel = sel.shape[0] > 0
    use_mult = mult.shape[0] > 0
    use_weight = weight.shape[0] > 0
    for i in range(lo, hi):
        if use_sel and sel[i] == 0:
            continue
        h = hashes[i]
        part = np.int64(h >> shift) if bits > 0 else np.int64(0)
        o = off[part]
        off[part] = o + 1
        for j in range(w):
            pk[o, j] = keys[i, j]
        if width > 0:
            pk[o, w] = np.uint64((t[i] - t0) // width)
        if use_mult and mult[i] > 1:
            m = np.uint64(mult[i])
            pv[o, 0] = nbytes[i] * m
            pv[o, 1] = npackets[i] * m
        else:
            pv[o, 0] = nbytes[i]
            pv[o, 1] = npackets[i]
        if use_weight:
            pv[o, 2] = weight[i]


@njit(cache=True, nogil=True)
def _radix_group(
    pk: U64,
    pv: U64,
    flows: U64,
    part_start: I64,
    ngroups: I64,
    p_lo: int,
    p_hi: int,
) -> None:
    """Aggregate partitions ``p_lo..p_hi-1`` in place; ``ngroups[p]`` = groups of each."""
    kb = pk.shape[1]
    use_weight = pv.shape[1] > 2
    for p in range(p_lo, p_hi):
        lo = part_start[p]
        hi = part_start[p + 1]
        cap = 16
        while cap < 2 * (hi - lo):
            cap *= 2
        slot = np.full(cap, -1, dtype=np.int64)
        g = lo
        for r in range(lo, hi):
            h = np.uint64(0)
            for j in range(kb):
                h = _mix(h, pk[r, j])
            f = pv[r, 2] if use_weight else np.uint64(1)
            s = np.int64(h & np.uint64(cap - 1))
            while True:
                q = slot[s]
                if q == -1:
                    slot[s] = g
                    if g != r:
                        for j in range(kb):
                            pk[g, j] = pk[r, j]
                        pv[g, 0] = pv[r, 0]
                        pv[g, 1] = pv[r, 1]
                    flows[g] = f
                    g += 1
                    break
                same = True
                for j in range(kb):
                    if pk[q, j] != pk[r, j]:
                        same = False
                        break
                if same:
                    pv[q, 0] += pv[r, 0]
                    pv[q, 1] += pv[r, 1]
                    flows[q] += f
                    break
                s = (s + 1) & (cap - 1)
        ngroups[p] = g - lo


def hash_aggregate_parallel(
    keys: U64,
    t: I64,
    t0: int,
    width: int,
    nbytes: U64,
    npackets: U64,
    weight: U64 = EMPTY_U64,
    mult: npt.NDArray[np.uint32] = EMPTY_U32,
    sel: npt.NDArray[np.uint8] = EMPTY_U8,
    *,
    threads: int | None = None,
    ordered: bool = True,
) -> tuple[U64, U64, U64, U64]:
    """:func:`hash_aggregate` over row chunks on several threads, then one combine pass.

    The combine aggregates the partials again (bucket already resolved, flows as weight);
    with ``ordered`` the result is sorted by bucket, then key words, so it does not depend
    on the thread count; without, groups stay in hash order (cheaper, for partials).
    ``threads``: how many row chunks (default :func:`n_threads`); they run on the kernels'
    shared pool (:mod:`rating_engine.kernel_threads`).
    """
    n = keys.shape[0]
    k = threads or n_threads()
    # read-only whatever their source: each kernel compiles once (collectors.kernel_arrays)
    keys, t, nbytes, npackets, weight, mult, sel = readonly_all(
        keys, t, nbytes, npackets, weight, mult, sel
    )
    keys_in = keys
    if n >= _RADIX_MIN_ROWS:
        # a key word equal on every row (the zero half of IPv4-mapped addresses) is left
        # out of the hashed and scattered rows and put back on the groups: IPv4 keys
        # aggregate as one word instead of two (~15 % less kernel CPU, measured)
        const = _constant_words(keys)
        if const.any():
            kept = np.flatnonzero(~const)
            packed = pa.allocate_buffer(max(n * kept.size, 1) * 8)  # pooled: no page faults
            keys = np.take(
                keys,
                kept,
                axis=1,
                out=np.frombuffer(packed, np.uint64)[: n * kept.size].reshape(n, kept.size),
            )
            keys = readonly(keys)
        # ~40k+ rows per partition: tables stay in cache, few write streams (measured)
        bits = int(min(max(int(np.log2(max(n, 1) / 40_000)), 1), 10))
        gk, gb, gp, gf = radix_aggregate(keys, t, t0, width, nbytes, npackets, weight, mult,
                                         sel, bits, k)  # fmt: skip
        if const.any():
            full = np.empty((gk.shape[0], const.shape[0] + 1), dtype=np.uint64)
            full[:, np.flatnonzero(~const)] = gk[:, :-1]
            full[:, np.flatnonzero(const)] = _first_row(keys_in, const)
            full[:, -1] = gk[:, -1]
            gk = full
        return _sorted(gk, gb, gp, gf) if ordered else (gk, gb, gp, gf)
    if n < 200_000:
        k = 1
    bounds = np.linspace(0, n, k + 1).astype(np.int64)
    chunks = [(int(bounds[i]), int(bounds[i + 1])) for i in range(k)]
    parts = run_chunks(hash_aggregate, (keys, t, t0, width, nbytes, npackets, weight, mult, sel),
                       chunks)  # fmt: skip
    if len(parts) == 1:
        gk, gb, gp, gf = parts[0]
    else:
        gk = np.concatenate([p[0] for p in parts])
        gb = np.concatenate([p[1] for p in parts])
        gp = np.concatenate([p[2] for p in parts])
        gf = np.concatenate([p[3] for p in parts])
        # the bucket word goes back in as "time" with width 1, so it stays the bucket word
        tb = gk[:, -1].view(np.int64)
        words, tb, gb, gp, gf = readonly_all(np.ascontiguousarray(gk[:, :-1]), tb, gb, gp, gf)
        gk, gb, gp, gf = hash_aggregate(
            words, tb, 0, 1, gb, gp, gf, readonly(EMPTY_U32), readonly(EMPTY_U8), 0, gk.shape[0]
        )
    return _sorted(gk, gb, gp, gf) if ordered else (gk, gb, gp, gf)


@njit(cache=True, nogil=True)
def _constant_words(keys: U64) -> npt.NDArray[np.bool_]:
    """Which key words hold the same value on every row (never all of them: one stays)."""
    w = keys.shape[1]
    const = np.zeros(w, dtype=np.bool_)
    if w < 2 or keys.shape[0] == 0:
        return const
    for j in range(w):
        v = keys[0, j]
        same = True
        for i in range(keys.shape[0]):
            if keys[i, j] != v:
                same = False
                break
        const[j] = same
    if const.all():
        const[0] = False
    return const


def _first_row(keys: U64, const: npt.NDArray[np.bool_]) -> U64:
    return np.asarray(keys[0, np.flatnonzero(const)], dtype=np.uint64)


def _sorted(gk: U64, gb: U64, gp: U64, gf: U64) -> tuple[U64, U64, U64, U64]:
    """Order groups by bucket (last word), then key words left to right."""
    if gk.shape[0] <= 1:
        return gk, gb, gp, gf
    w = gk.shape[1] - 1
    order = np.lexsort([gk[:, j] for j in range(w - 1, -1, -1)] + [gk[:, w]])
    return np.ascontiguousarray(gk[order]), gb[order], gp[order], gf[order]


#: From this many rows the radix-partitioned aggregate is used (and threads split partitions).
_RADIX_MIN_ROWS = 100_000
