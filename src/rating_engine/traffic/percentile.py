"""95th percentile of 5-minute rates per subscription (burstable / "95/5" billing).

The method, exactly:

1. The period ``[period_start_us, period_end_us)`` is cut into ``n`` consecutive
   5-minute intervals starting at ``period_start_us``; the period length must be a
   whole number of intervals. Every interval is a sample, including those without
   traffic (they count as 0) - so ``samples == n`` for every subscription.
2. Each attributed flow's renormalised bytes (``bytes * sampling_interval``, 0 read as 1)
   are spread over the intervals its ``[flow_start, flow_end)`` overlaps, in proportion
   to the overlap: the cumulative share up to the end of an interval is
   ``floor(bytes * elapsed / duration)``, so the pieces are integers and sum to the flow's
   bytes exactly (pieces outside the period are dropped). A zero-length flow falls in
   the interval of its start. For flows of 2**32 us (~71.6 min) or longer, ``elapsed``
   and ``duration`` are both shifted right by the same number of bits first so the
   product stays in 64 bits; the total is still exact.
3. Bytes received (destination in one of the subscription's blocks) and bytes sent
   (source in one) are summed per interval and per subscription over all its blocks.
4. Per direction, the ``n`` samples are sorted ascending and the one at index
   ``ceil(0.95 * n) - 1`` is taken (the top 5 % are discarded). Rate in bits per second
   is ``floor(bytes * 8 / 300)``.
5. ``p95_bps = max(p95_down_bps, p95_up_bps)`` - the usual "greater of in or out" rule.

Subscriptions with an IP binding active at any time in the period are reported, with
zero if they had no traffic. Partitions: :func:`percentile_samples` per partition,
:func:`combine_samples`, then :func:`p95_from_samples` equals :func:`percentile_95`.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import numpy.typing as npt
import pyarrow as pa
from numba import njit

from rating_engine.errors import RatingError
from rating_engine.traffic.attribution import PrefixIndex, flow_entries
from rating_engine.traffic.bucket_kernel import aggregate_by_code
from rating_engine.traffic.groupby_kernel import numeric_column, sampling_multipliers

__all__ = [
    "INTERVAL_US",
    "P95_SCHEMA",
    "SAMPLES_SCHEMA",
    "combine_samples",
    "p95_from_samples",
    "p95_index",
    "percentile_95",
    "percentile_samples",
    "spread_pieces",
]

#: Length of one sample interval: 5 minutes in microseconds.
INTERVAL_US = 300_000_000
_INTERVAL_S = 300

I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]

SAMPLES_SCHEMA = pa.schema(
    [
        ("subscription_id", pa.int64()),
        ("interval", pa.int64()),
        ("bytes_down", pa.uint64()),
        ("bytes_up", pa.uint64()),
    ]
)

P95_SCHEMA = pa.schema(
    [
        ("subscription_id", pa.int64()),
        ("account_id", pa.int64()),
        ("samples", pa.int64()),
        ("p95_bps", pa.int64()),
        ("p95_down_bps", pa.int64()),
        ("p95_up_bps", pa.int64()),
    ]
)


def p95_index(n: int) -> int:
    """Index of the 95th-percentile sample in ``n`` ascending samples: ``ceil(0.95 n) - 1``."""
    return (95 * n + 99) // 100 - 1


def _check_period(period_start_us: int, period_end_us: int) -> int:
    span = period_end_us - period_start_us
    if span <= 0 or span % INTERVAL_US:
        raise RatingError(
            f"percentile period [{period_start_us}, {period_end_us}) us: length must be a "
            f"positive multiple of 5 minutes"
        )
    return span // INTERVAL_US


@njit(cache=True, nogil=True)
def spread_pieces(
    code: npt.NDArray[np.int64],
    start: I64,
    end: I64,
    nbytes: U64,
    mult: npt.NDArray[np.uint32],
    p0: int,
    nint: int,
) -> tuple[I64, I64, U64]:
    """Split each coded flow's bytes over the 5-minute intervals it overlaps.

    Returns pieces ``(code, interval, bytes)``; rows with a negative code are skipped.
    """
    n = code.shape[0]
    W = 300_000_000
    total = 0
    for i in range(n):
        if code[i] < 0:
            continue
        s = start[i]
        e = end[i] if end[i] > s else s
        a = (s - p0) // W
        b = (e - 1 - p0) // W if e > s else a
        a = max(a, 0)
        b = min(b, nint - 1)
        if b >= a:
            total += b - a + 1
    out_code = np.empty(total, dtype=np.int64)
    out_int = np.empty(total, dtype=np.int64)
    out_bytes = np.empty(total, dtype=np.uint64)
    k = 0
    use_mult = mult.shape[0] > 0
    for i in range(n):
        if code[i] < 0:
            continue
        m = np.uint64(1)
        if use_mult and mult[i] > 1:
            m = np.uint64(mult[i])
        B = nbytes[i] * m
        s = start[i]
        e = end[i] if end[i] > s else s
        d = e - s
        first = (s - p0) // W
        last = (e - 1 - p0) // W if d > 0 else first
        shift = 0
        while (d >> shift) >= (1 << 32):
            shift += 1
        dd = np.uint64(d >> shift)
        q = B // dd if d > 0 else np.uint64(0)
        r = B % dd if d > 0 else np.uint64(0)
        lo = max(first, 0)
        hi = min(last, nint - 1)
        for j in range(lo, hi + 1):
            if d == 0:
                piece = B
            else:
                # cumulative share at the interval's end minus at its start
                stop = min(e, p0 + (j + 1) * W)
                c = np.uint64((stop - s) >> shift)
                cum = q * c + (r * c) // dd
                prev = np.uint64(0)
                if j > first:
                    c0 = np.uint64((p0 + j * W - s) >> shift)
                    prev = q * c0 + (r * c0) // dd
                piece = cum - prev
            out_code[k] = code[i]
            out_int[k] = j
            out_bytes[k] = piece
            k += 1
    return out_code, out_int, out_bytes


def _sub_codes(index: PrefixIndex, p0: int, p1: int) -> tuple[I64, I64, I64]:
    """Subscriptions active in the period: (sorted ids, account ids, entry -> code or -1)."""
    active = (index.active_from < p1) & (index.active_to > p0)
    ids, first = np.unique(index.subscription_id[active], return_index=True)
    accounts = index.account_id[active][first]
    code = np.full(index.n_entries, -1, dtype=np.int64)
    code[active] = np.searchsorted(ids, index.subscription_id[active])
    return ids, accounts, code


def percentile_samples(
    flows: pa.Table | pa.RecordBatch,
    index: PrefixIndex,
    period_start_us: int,
    period_end_us: int,
) -> pa.Table:
    """Partial result: non-zero 5-minute byte sums per subscription (``SAMPLES_SCHEMA``)."""
    nint = _check_period(period_start_us, period_end_us)
    ids, _acc, code_of = _sub_codes(index, period_start_us, period_end_us)
    if flows.num_rows == 0 or ids.shape[0] == 0:
        return SAMPLES_SCHEMA.empty_table()
    es, ed = flow_entries(flows, index)
    start = numeric_column(flows.column("flow_start"), np.int64)
    end = numeric_column(flows.column("flow_end"), np.int64)
    nbytes = numeric_column(flows.column("bytes"), np.uint64)
    mult = sampling_multipliers(flows)
    sides = []
    for ent in (ed, es):
        codes = np.where(ent >= 0, code_of[np.maximum(ent, 0)], -1)
        pc_, pi, pb = spread_pieces(codes, start, end, nbytes, mult, period_start_us, nint)
        c, iv, b, _p, _f = aggregate_by_code(pc_, ids.shape[0], pi, 1, pb, pb)
        sides.append((c, iv, b))
    return _samples_table(ids, sides[0], sides[1])


def _samples_table(ids: I64, down: tuple[I64, I64, U64], up: tuple[I64, I64, U64]) -> pa.Table:
    code = np.concatenate([down[0], up[0]])
    interval = np.concatenate([down[1], up[1]])
    if code.shape[0] == 0:
        return SAMPLES_SCHEMA.empty_table()
    uniq, inv = np.unique(np.stack([code, interval], axis=1), axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    bd = np.zeros(uniq.shape[0], dtype=np.uint64)
    bu = np.zeros(uniq.shape[0], dtype=np.uint64)
    np.add.at(bd, inv[: down[0].shape[0]], down[2])
    np.add.at(bu, inv[down[0].shape[0] :], up[2])
    return pa.table(
        [pa.array(ids[uniq[:, 0]]), pa.array(uniq[:, 1]), pa.array(bd), pa.array(bu)],
        schema=SAMPLES_SCHEMA,
    )


def combine_samples(tables: Iterable[pa.Table]) -> pa.Table:
    """Sum partial sample tables per (subscription, interval)."""
    parts = [t for t in tables if t.num_rows]
    if not parts:
        return SAMPLES_SCHEMA.empty_table()
    t = pa.concat_tables(parts)
    g = t.group_by(["subscription_id", "interval"], use_threads=False).aggregate(
        [("bytes_down", "sum"), ("bytes_up", "sum")]
    )
    out = pa.table(
        [g["subscription_id"], g["interval"], g["bytes_down_sum"], g["bytes_up_sum"]],
        schema=SAMPLES_SCHEMA,
    )
    return out.sort_by([("subscription_id", "ascending"), ("interval", "ascending")])


def _p95_sparse(codes: I64, values: U64, nsubs: int, n: int) -> I64:
    """Per code, the p95 of ``n`` samples of which only the non-zero ``values`` are given."""
    out = np.zeros(nsubs, dtype=np.int64)
    keep = values > 0
    codes, values = codes[keep], values[keep]
    order = np.lexsort((values, codes))
    codes, values = codes[order], values[order]
    k = p95_index(n)
    starts = np.searchsorted(codes, np.arange(nsubs), side="left")
    counts = np.searchsorted(codes, np.arange(nsubs), side="right") - starts
    zeros = n - counts
    has = k >= zeros  # the p95 sample is one of the non-zero ones
    pick = values[(starts + k - zeros)[has]]
    out[has] = (pick * np.uint64(8) // np.uint64(_INTERVAL_S)).astype(np.int64)
    return out


def p95_from_samples(
    samples: pa.Table, index: PrefixIndex, period_start_us: int, period_end_us: int
) -> pa.Table:
    """Final result (``P95_SCHEMA``) from a (combined) samples table."""
    n = _check_period(period_start_us, period_end_us)
    ids, accounts, _code = _sub_codes(index, period_start_us, period_end_us)
    sid = numeric_column(samples.column("subscription_id"), np.int64)
    if np.setdiff1d(sid, ids).size:
        raise RatingError("samples table: subscription_id not active in the period's index")
    codes = np.searchsorted(ids, sid)
    down = _p95_sparse(codes, numeric_column(samples.column("bytes_down"), np.uint64), len(ids), n)
    up = _p95_sparse(codes, numeric_column(samples.column("bytes_up"), np.uint64), len(ids), n)
    return pa.table(
        [
            pa.array(ids),
            pa.array(accounts),
            pa.array(np.full(ids.shape[0], n, dtype=np.int64)),
            pa.array(np.maximum(down, up)),
            pa.array(down),
            pa.array(up),
        ],
        schema=P95_SCHEMA,
    )


def percentile_95(
    flows: pa.Table | pa.RecordBatch,
    index: PrefixIndex,
    period_start_us: int,
    period_end_us: int,
) -> pa.Table:
    """95th percentile of 5-minute rates per subscription over the period (see module doc)."""
    samples = percentile_samples(flows, index, period_start_us, period_end_us)
    return p95_from_samples(samples, index, period_start_us, period_end_us)
