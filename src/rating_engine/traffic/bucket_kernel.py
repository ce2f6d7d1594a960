"""Dense time-bucketing kernels: sums per (integer code, epoch-aligned bucket).

The fast path of per-subscription (or per-port, per-protocol...) bucketing: codes are
small integers, so groups are cells of a dense ``buckets x codes`` table (bucket-major,
which keeps time-ordered rows in a small, hot part of memory). Three strategies give the
same result - one dense table, row chunks each dense over the buckets they span then
summed, or the hash kernel of :mod:`rating_engine.traffic.groupby_kernel` - chosen by size.
"""

from __future__ import annotations

import itertools

import numpy as np
import numpy.typing as npt
from numba import njit

from collectors.kernel_arrays import readonly_all
from rating_engine.kernel_threads import n_threads, run_chunks
from rating_engine.traffic.groupby_kernel import (
    EMPTY_U32,
    EMPTY_U64,
    hash_aggregate_parallel,
)

__all__ = ["DENSE_MAX_CELLS", "aggregate_by_code", "dense_aggregate"]

I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
#: Codes may be int32 (half the memory traffic for big inputs) or int64.
Codes = npt.NDArray[np.int32] | npt.NDArray[np.int64]

#: Above this many cells (keys x buckets) the dense kernel gives way to the chunked and
#: hash kernels. Its scratch memory is cells x 24 bytes per thread (<= 192 MiB each).
DENSE_MAX_CELLS = 1 << 23


#: Dense tables up to this many cells are built in one piece, per thread.
_GLOBAL_MAX_CELLS = 1 << 25
_CHUNK_ROWS = 1 << 22


@njit(cache=True, nogil=True)
def _dense_chunk(
    codes: Codes,
    nkeys: int,
    t: I64,
    t0: int,
    width: int,
    nbuckets: int,
    nbytes: U64,
    npackets: U64,
    weight: U64,
    mult: npt.NDArray[np.uint32],
    acc: U64,
    lo: int,
    hi: int,
) -> None:
    """Add rows ``lo..hi-1`` into ``acc`` (3 x cells: bytes, packets, flows)."""
    use_mult = mult.shape[0] > 0
    use_weight = weight.shape[0] > 0
    cur_lo = np.int64(1)
    cur_hi = np.int64(0)
    b = np.int64(0)
    for i in range(lo, hi):
        k = codes[i]
        if k < 0 or k >= nkeys:
            continue
        if width > 0:
            ti = t[i]
            # time-ordered rows mostly stay in the current bucket: skip the division
            if ti < cur_lo or ti >= cur_hi:
                b = (ti - t0) // width
                cur_lo = t0 + b * width
                cur_hi = cur_lo + width
        if b < 0 or b >= nbuckets:
            continue
        cell = b * nkeys + k
        m = np.uint64(1)
        if use_mult and mult[i] > 1:
            m = np.uint64(mult[i])
        acc[0, cell] += nbytes[i] * m
        acc[1, cell] += npackets[i] * m
        acc[2, cell] += weight[i] if use_weight else np.uint64(1)


def dense_aggregate(
    codes: Codes,
    nkeys: int,
    t: I64,
    t0: int,
    width: int,
    nbuckets: int,
    nbytes: U64,
    npackets: U64,
    weight: U64,
    mult: npt.NDArray[np.uint32],
    nchunks: int,
) -> tuple[U64, U64, U64]:
    """Sum per (bucket, code) into dense ``nbuckets * nkeys`` arrays (bucket-major).

    Rows with a negative code, or a bucket outside ``[0, nbuckets)``, are skipped. Each
    of ``nchunks`` row chunks accumulates into its own arrays (no atomics), summed at the
    end; the chunks run on a thread pool over the GIL-free kernel (a Numba parfor
    compiled 2x longer on a cold cache, issue #22). Bucket-major cells keep time-ordered
    input (the usual case) within a small, hot part of memory.
    """
    n = codes.shape[0]
    cells = nkeys * nbuckets
    acc = np.zeros((nchunks, 3, cells), dtype=np.uint64)
    step = (n + nchunks - 1) // nchunks
    args = (codes, nkeys, t, t0, width, nbuckets, nbytes, npackets, weight, mult)
    chunks = [(acc[c], min(n, c * step), min(n, (c + 1) * step)) for c in range(nchunks)]
    run_chunks(_dense_chunk, args, chunks)
    out = acc[0].copy()
    for c in range(1, nchunks):
        out += acc[c]
    return out[0], out[1], out[2]


@njit(cache=True, nogil=True)
def _valid_range(codes: Codes, nkeys: int, t: I64) -> tuple[int, int, int]:
    """(valid rows, min t, max t) over rows with a code in ``[0, nkeys)``."""
    cnt = 0
    lo = np.iinfo(np.int64).max
    hi = np.iinfo(np.int64).min
    for i in range(codes.shape[0]):
        k = codes[i]
        if k >= 0 and k < nkeys:
            cnt += 1
            v = t[i]
            lo = min(lo, v)
            hi = max(hi, v)
    return cnt, lo, hi


@njit(cache=True, nogil=True)
def _chunk_sparse(
    codes: Codes,
    nkeys: int,
    t: I64,
    t0: int,
    width: int,
    nbytes: U64,
    npackets: U64,
    weight: U64,
    mult: npt.NDArray[np.uint32],
    lo: int,
    hi: int,
    max_cells: int,
) -> tuple[I64, U64, U64, U64]:
    """Rows ``lo:hi`` -> sparse ``(global cell, bytes, packets, flows)``, cell-ordered.

    Global cell = bucket * nkeys + code. When the chunk's buckets span few cells (time-
    ordered input), it accumulates densely; otherwise it emits one entry per row.
    """
    bmin = np.iinfo(np.int64).max
    bmax = np.iinfo(np.int64).min
    for i in range(lo, hi):
        k = codes[i]
        if k >= 0 and k < nkeys:
            b = (t[i] - t0) // width
            bmin = min(bmin, b)
            bmax = max(bmax, b)
    use_mult = mult.shape[0] > 0
    use_weight = weight.shape[0] > 0
    if bmax < bmin:
        return (
            np.empty(0, np.int64),
            np.empty(0, np.uint64),
            np.empty(0, np.uint64),
            np.empty(0, np.uint64),
        )
    span = bmax - bmin + 1
    dense = span * nkeys <= max_cells
    size = span * nkeys if dense else hi - lo
    cell_out = np.empty(size, np.int64)
    acc = np.zeros((3, size), dtype=np.uint64)
    j = 0
    # time-ordered rows mostly stay in the current bucket: skip the division then
    cur_lo = np.int64(1)
    cur_hi = np.int64(0)
    b = np.int64(0)
    for i in range(lo, hi):
        k = codes[i]
        if k < 0 or k >= nkeys:
            continue
        ti = t[i]
        if ti < cur_lo or ti >= cur_hi:
            b = (ti - t0) // width
            cur_lo = t0 + b * width
            cur_hi = cur_lo + width
        m = np.uint64(1)
        if use_mult and mult[i] > 1:
            m = np.uint64(mult[i])
        if dense:
            slot = (b - bmin) * nkeys + k
        else:
            slot = j
            cell_out[j] = b * nkeys + k
            j += 1
        acc[0, slot] += nbytes[i] * m
        acc[1, slot] += npackets[i] * m
        acc[2, slot] += weight[i] if use_weight else np.uint64(1)
    if not dense:
        return cell_out[:j], acc[0, :j].copy(), acc[1, :j].copy(), acc[2, :j].copy()
    nz = 0
    for s in range(size):
        if acc[2, s] != 0:
            nz += 1
    cells = np.empty(nz, np.int64)
    ob = np.empty(nz, np.uint64)
    op = np.empty(nz, np.uint64)
    of = np.empty(nz, np.uint64)
    j = 0
    base = bmin * nkeys
    for s in range(size):
        if acc[2, s] != 0:
            cells[j] = base + s
            ob[j] = acc[0, s]
            op[j] = acc[1, s]
            of[j] = acc[2, s]
            j += 1
    return cells, ob, op, of


@njit(cache=True, nogil=True)
def _scatter(parts_cells: I64, pb: U64, pp: U64, pf: U64, ncells: int) -> tuple[I64, U64, U64, U64]:
    """Sum sparse (cell, metrics) entries into a dense table and read the non-empty cells."""
    acc = np.zeros((3, ncells), dtype=np.uint64)
    for i in range(parts_cells.shape[0]):
        c = parts_cells[i]
        acc[0, c] += pb[i]
        acc[1, c] += pp[i]
        acc[2, c] += pf[i]
    nz = 0
    for c in range(ncells):
        if acc[2, c] != 0:
            nz += 1
    cells = np.empty(nz, np.int64)
    ob = np.empty(nz, np.uint64)
    op = np.empty(nz, np.uint64)
    of = np.empty(nz, np.uint64)
    j = 0
    for c in range(ncells):
        if acc[2, c] != 0:
            cells[j] = c
            ob[j] = acc[0, c]
            op[j] = acc[1, c]
            of[j] = acc[2, c]
            j += 1
    return cells, ob, op, of


def aggregate_by_code(
    codes: Codes,
    nkeys: int,
    t: I64,
    width: int,
    nbytes: U64,
    npackets: U64,
    weight: U64 = EMPTY_U64,
    mult: npt.NDArray[np.uint32] = EMPTY_U32,
) -> tuple[I64, I64, U64, U64, U64]:
    """Sum per (code in ``[0, nkeys)``, epoch-aligned bucket); other codes are skipped.

    Returns ``(code, bucket_start_us, bytes, packets, flows)`` for the non-empty groups,
    sorted by bucket then code (``width == 0``: one bucket starting at 0). Three strategies,
    same result: one dense table when keys x buckets is small; row chunks accumulated
    densely over the buckets each chunk spans, then summed into one table (fast when rows
    come roughly in time order, as collectors write them); a hash table otherwise.
    """
    n = codes.shape[0]
    if width <= 0:
        width, t = 1, np.zeros(n, dtype=np.int64)
    # read-only whatever their source: each kernel compiles once (collectors.kernel_arrays)
    codes, t, nbytes, npackets, weight, mult = readonly_all(
        codes, t, nbytes, npackets, weight, mult
    )
    count, tmin, tmax = _valid_range(codes, nkeys, t) if n else (0, 0, 0)
    if count == 0:
        e = np.empty(0, np.int64)
        return e, e.copy(), EMPTY_U64, EMPTY_U64, EMPTY_U64
    t0 = tmin // width * width
    nbuckets = (tmax - t0) // width + 1
    cells_total = nkeys * nbuckets
    if cells_total <= DENSE_MAX_CELLS:
        k = n_threads() if n >= 200_000 else 1
        b, p, f = dense_aggregate(
            codes, nkeys, t, t0, width, nbuckets, nbytes, npackets, weight, mult, k
        )
        cells = np.flatnonzero(f)
        b, p, f = b[cells], p[cells], f[cells]
    elif cells_total <= _GLOBAL_MAX_CELLS:
        # rows per chunk so that a time-ordered chunk spans a few buckets (table in cache)
        rows = int(min(max(n * 4 // nbuckets, 1 << 16), _CHUNK_ROWS))
        bounds = [*range(0, n, rows), n]
        args = (codes, nkeys, t, t0, width, nbytes, npackets, weight, mult)
        chunks = [(lo, hi, DENSE_MAX_CELLS // 4) for lo, hi in itertools.pairwise(bounds)]
        parts = run_chunks(_chunk_sparse, args, chunks)
        cells, b, p, f = _scatter(
            np.concatenate([x[0] for x in parts]),
            np.concatenate([x[1] for x in parts]),
            np.concatenate([x[2] for x in parts]),
            np.concatenate([x[3] for x in parts]),
            cells_total,
        )
    else:
        sel = ((codes >= 0) & (codes < nkeys)).view(np.uint8)
        keys = codes.astype(np.uint64).reshape(n, 1)
        gk, b, p, f = hash_aggregate_parallel(
            keys, t, t0, width, nbytes, npackets, weight, mult, sel
        )
        # sorted by bucket, then code already; no cell numbers: bucket x nkeys + code can
        # pass 2^63 here (e.g. 1-us buckets over days, codes spanning 32-bit AS numbers)
        return (
            gk[:, 0].astype(np.int64),
            gk[:, 1].astype(np.int64) * width + t0,
            b,
            p,
            f,
        )
    return (
        (cells % nkeys).astype(np.int64),
        (cells // nkeys).astype(np.int64) * width + t0,
        b,
        p,
        f,
    )
