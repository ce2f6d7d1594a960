"""Attributed flow volume per IP block per time bucket, as data usage records.

For every binding (subscription + CIDR block) and every epoch-aligned bucket (5 min,
hour or day, UTC) with traffic, one ``USAGE_SCHEMA`` record is produced:
``service = "data"``, ``subscriber_key_type = "ip"``, ``subscriber_key`` = the block's
key text in canonical form (``str(ipaddress.ip_network(key))``: the subscription's text
when it is already canonical; the rater canonicalises subscription keys and matches
usage keys as text),
``start_time`` = bucket start, ``duration_ms`` = bucket length, ``volume_up`` = bytes
the block sent (flow source in the block), ``volume_down`` = bytes it received
(destination in the block). A flow inside one block counts both ways.

Sampling: volumes are renormalised, ``bytes * sampling_interval`` (an interval of 0,
which some exporters send for "unknown", counts as 1). This is the unbiased estimate of
the real volume under 1-in-N packet sampling; it is exact only when unsampled.

A flow is bucketed by its start time (its whole volume lands in one bucket), so the
sum over buckets equals the flows' total exactly - what billing needs.

Record identity: ``record_key = f"flows:{subscription_id}:{block}:{bucket_start_us}:{bucket_us}"``
and ``record_id`` = the first 8 bytes of BLAKE2b over the utf-8 key, as a signed
little-endian int64 - the CDR reader's definition and kernel, so re-running
over the same flows yields the same ids (duplicates are detectable).

Partitions: ``usage_from_flows`` on each partition, then :func:`combine_usage`, equals
the one-shot result exactly (volumes are summed per record key).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from numba import njit

from collectors.cdr.kernels import record_id_reference, record_ids
from collectors.schemas import USAGE_SCHEMA
from rating_engine.errors import RatingError
from rating_engine.traffic.attribution import PrefixIndex, flow_entries
from rating_engine.traffic.bucket_kernel import aggregate_by_code
from rating_engine.traffic.groupby_kernel import (
    EMPTY_U32,
    bucket_width_us,
    numeric_column,
    sampling_multipliers,
)

__all__ = [
    "USAGE_BUCKETS",
    "UsageStats",
    "combine_usage",
    "record_id_for_key",
    "record_ids_for_keys",
    "usage_and_stats",
    "usage_from_flows",
]

log = logging.getLogger(__name__)

_ORDER = [
    ("subscriber_key", "ascending"),
    ("start_time", "ascending"),
    ("record_key", "ascending"),
]

#: Buckets allowed for usage records.
USAGE_BUCKETS = ("5min", "hour", "day")


def record_id_for_key(key: str) -> int:
    """Stable record id: the CDR reader's definition (first 8 bytes of BLAKE2b, signed LE)."""
    return record_id_reference(key)


def record_ids_for_keys(keys: Sequence[str] | pa.Array | pa.ChunkedArray) -> npt.NDArray[np.int64]:
    """:func:`record_id_for_key` over many keys, as an int64 array (one Numba BLAKE2b kernel,
    shared with the CDR reader so usage from flows and from CDRs is keyed alike)."""
    arr = keys if isinstance(keys, pa.Array | pa.ChunkedArray) else pa.array(keys, pa.string())
    if arr.null_count:
        raise RatingError(f"record keys: {arr.null_count} null key(s)")
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks else pa.array([], pa.string())
    return record_ids(arr)


@dataclass(frozen=True)
class UsageStats:
    """Counts of one conversion: nothing is dropped without being counted."""

    flows: int
    attributed: int
    unattributed: int
    unattributed_bytes: int
    records: int

    def combine(self, other: UsageStats) -> UsageStats:
        """Sum of two partitions' counts (records are recounted after combine_usage)."""
        return UsageStats(
            self.flows + other.flows,
            self.attributed + other.attributed,
            self.unattributed + other.unattributed,
            self.unattributed_bytes + other.unattributed_bytes,
            self.records + other.records,
        )


def usage_and_stats(
    flows: pa.Table | pa.RecordBatch,
    index: PrefixIndex,
    *,
    bucket: str = "hour",
    source_file: str = "flows",
) -> tuple[pa.Table, UsageStats]:
    """Usage records (``USAGE_SCHEMA``) and the counts of the conversion.

    ``flows`` is a ``FLOW_SCHEMA`` table or batch; if it already carries ``src_entry`` /
    ``dst_entry`` from :func:`rating_engine.traffic.attribution.attribute_flows` with the same
    index, the lookup is not repeated. ``source_file`` fills the usage field of that name.
    """
    if bucket not in USAGE_BUCKETS:
        raise RatingError(f"usage bucket {bucket!r}: use one of {', '.join(USAGE_BUCKETS)}")
    width = bucket_width_us(bucket)
    n = flows.num_rows
    es, ed = flow_entries(flows, index)
    if n:
        t = numeric_column(flows.column("flow_start"), np.int64)
        nbytes = numeric_column(flows.column("bytes"), np.uint64)
        npk = numeric_column(flows.column("packets"), np.uint64)
        mult = sampling_multipliers(flows)
    else:
        t = np.empty(0, np.int64)
        nbytes = npk = np.empty(0, np.uint64)
        mult = EMPTY_U32
    nk = max(index.n_entries, 1)
    up = aggregate_by_code(es.astype(np.int64), nk, t, width, nbytes, npk, mult=mult)
    down = aggregate_by_code(ed.astype(np.int64), nk, t, width, nbytes, npk, mult=mult)
    unattr = (es < 0) & (ed < 0)
    if mult.shape[0]:
        renorm = nbytes[unattr] * np.maximum(mult[unattr], 1).astype(np.uint64)
    else:
        renorm = nbytes[unattr]
    table = _records(index, width, up, down, source_file)
    stats = UsageStats(
        flows=n,
        attributed=int(n - unattr.sum()),
        unattributed=int(unattr.sum()),
        unattributed_bytes=int(renorm.sum(dtype=np.uint64)),
        records=table.num_rows,
    )
    if stats.unattributed:
        log.info(
            "%s: %d of %d flows (%d bytes) in no subscribed block",
            source_file,
            stats.unattributed,
            n,
            stats.unattributed_bytes,
        )
    return table, stats


def usage_from_flows(
    flows: pa.Table | pa.RecordBatch,
    index: PrefixIndex,
    *,
    bucket: str = "hour",
    source_file: str = "flows",
) -> pa.Table:
    """Usage records (``USAGE_SCHEMA``) from flows; see :func:`usage_and_stats`."""
    return usage_and_stats(flows, index, bucket=bucket, source_file=source_file)[0]


@njit(cache=True, nogil=True)
def _merge_sides(
    up_cell: npt.NDArray[np.int64],
    up_vol: npt.NDArray[np.uint64],
    down_cell: npt.NDArray[np.int64],
    down_vol: npt.NDArray[np.uint64],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    """Outer merge of two ascending cell lists: (cell, volume_up, volume_down)."""
    nu, nd = up_cell.shape[0], down_cell.shape[0]
    cell = np.empty(nu + nd, dtype=np.int64)
    vu = np.zeros(nu + nd, dtype=np.uint64)
    vd = np.zeros(nu + nd, dtype=np.uint64)
    i = j = k = 0
    while i < nu or j < nd:
        if j >= nd or (i < nu and up_cell[i] < down_cell[j]):
            cell[k], vu[k] = up_cell[i], up_vol[i]
            i += 1
        elif i >= nu or down_cell[j] < up_cell[i]:
            cell[k], vd[k] = down_cell[j], down_vol[j]
            j += 1
        else:
            cell[k], vu[k], vd[k] = up_cell[i], up_vol[i], down_vol[j]
            i += 1
            j += 1
        k += 1
    return cell[:k], vu[:k], vd[:k]


def _records(
    index: PrefixIndex,
    width: int,
    up: tuple[np.ndarray, ...],
    down: tuple[np.ndarray, ...],
    source_file: str,
) -> pa.Table:
    """One record per (entry, bucket) with traffic either way, in the documented order."""
    nk = max(index.n_entries, 1)
    both = np.concatenate([up[1], down[1]])
    if both.shape[0] == 0:
        return USAGE_SCHEMA.empty_table()
    t0 = int(both.min())
    # aggregate_by_code output is bucket-major, so these cell ids are ascending
    cell, vol_up, vol_down = _merge_sides(
        (up[1] - t0) // width * nk + up[0], up[2], (down[1] - t0) // width * nk + down[0], down[2]
    )
    e = cell % nk
    b = cell // nk * width + t0
    # order (subscriber_key, start_time, record_key): rank the few entries by their text
    prefixes = [f"flows:{index.subscription_id[i]}:{index.key[i]}:" for i in range(nk)]
    key_rank = np.argsort(np.argsort(np.array(index.key, dtype=object), kind="stable"))
    prefix_rank = np.argsort(np.argsort(np.array(prefixes, dtype=object), kind="stable"))
    bidx = cell // nk
    span = int(bidx.max()) + 1
    if nk * nk * span < (1 << 62):
        # one int64 sort key instead of a three-key lexsort
        order = np.argsort((key_rank[e] * span + bidx) * nk + prefix_rank[e], kind="stable")
    else:
        order = np.lexsort((prefix_rank[e], bidx, key_rank[e]))
    e, b, vol_up, vol_down = e[order], b[order], vol_up[order], vol_down[order]
    take = pa.array(e.astype(np.int64))
    subscriber = pa.array(index.key, pa.string()).take(take)
    record_key = pc.binary_join_element_wise(
        pa.array([x[:-1] for x in prefixes], pa.string()).take(take),
        pc.cast(pa.array(b), pa.string()),
        pa.scalar(str(width)),
        ":",
    )
    return _usage_table(record_key, source_file, subscriber, b, width, vol_up, vol_down)


def _usage_table(
    keys: pa.Array,
    source_file: str | pa.Array,
    subscriber: pa.Array,
    start_us: np.ndarray,
    width: int | np.ndarray,
    vol_up: np.ndarray,
    vol_down: np.ndarray,
) -> pa.Table:
    m = len(keys)
    files = pa.repeat(pa.scalar(source_file), m) if isinstance(source_file, str) else source_file
    duration = np.broadcast_to(np.asarray(width, dtype=np.int64) // 1000, (m,))
    nulls = pa.nulls(m, pa.string())
    return pa.table(
        [
            pa.array(record_ids_for_keys(keys), pa.int64()),
            keys,
            files,
            # derived records have no line of their own in a file
            pa.array(np.zeros(m, dtype=np.int64)),
            subscriber,
            pa.repeat(pa.scalar("ip"), m),
            pa.repeat(pa.scalar("data"), m),
            pa.array(start_us, pa.int64()).cast(USAGE_SCHEMA.field("start_time").type),
            pa.array(np.ascontiguousarray(duration)),
            pa.array(vol_up, pa.uint64()),
            pa.array(vol_down, pa.uint64()),
            nulls,
            nulls,
            nulls,
        ],
        schema=USAGE_SCHEMA,
    )


def combine_usage(tables: Iterable[pa.Table]) -> pa.Table:
    """Merge per-partition usage tables: volumes summed per ``record_key``.

    Sorted by (subscriber_key, start_time, record_key). The first partition's
    ``source_file`` is kept for a key seen in several partitions.
    """
    parts = [t for t in tables if t.num_rows]
    if not parts:
        return USAGE_SCHEMA.empty_table()
    table = pa.concat_tables(parts).combine_chunks()
    grouped = table.group_by("record_key", use_threads=False).aggregate(
        [
            ("volume_up", "sum"),
            ("volume_down", "sum"),
            ("source_file", "first"),
            ("subscriber_key", "first"),
            ("start_time", "first"),
            ("duration_ms", "first"),
        ]
    )
    g = grouped
    start = numeric_column(g.column("start_time_first"), np.int64)
    return _usage_table(
        g.column("record_key").combine_chunks(),
        g.column("source_file_first").combine_chunks(),
        g.column("subscriber_key_first").combine_chunks(),
        start,
        numeric_column(g.column("duration_ms_first"), np.int64) * 1000,
        numeric_column(g.column("volume_up_sum"), np.uint64),
        numeric_column(g.column("volume_down_sum"), np.uint64),
    ).sort_by(_ORDER)
