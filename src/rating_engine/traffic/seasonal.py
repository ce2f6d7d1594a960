"""Seasonal detections: an hour-of-week median/MAD baseline per series and a robust z-score.

Series come from :func:`rating_engine.traffic.aggregate.bucket_traffic` (key column(s),
``bucket_start``, ``bytes``, ``packets``, ``flows``); times are int64 microseconds since
the epoch (UTC); results are :data:`~rating_engine.traffic.detections.DETECTION_SCHEMA`
tables.

For a bucket starting at ``t`` its slot is the hour of week ``h = (t // 1 h + 72) mod 168``
(0 = Monday 00:00 UTC). The baseline samples of a series for slot ``h`` are *all*
epoch-aligned buckets of that slot in the history window ``[history_start, eval_start)``
from the series' first bucket seen in that window on; buckets without a row count as 0
(a series is sparse: no flows means no row). Then::

    median = median(samples)
    MAD    = median(|samples - median|)
    MAD'   = max(MAD, mad_floor_abs, mad_floor_rel * |median|)   # a flat series has MAD 0
    z      = 0.6745 * (x - median) / MAD'                        # Iglewicz-Hoaglin robust z

A slot needs samples from at least ``min_weeks`` distinct weeks, else the series is not
judged (minimum history). ``|z| >= warning / minor / major / critical`` (default 3.5, 5,
8, 12) gives that severity; ``z > 0`` is ``traffic_high`` (direction ``above``), ``z < 0``
``traffic_low`` (``below``). The detection's ``threshold`` is the value of ``x`` at which
the severity given was reached: ``median ± level * MAD' / 0.6745``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from rating_engine.errors import RatingError
from rating_engine.traffic.detections import (
    SEVERITIES,
    Tiers,
    concat_detections,
    detection_table,
    encode_objects,
    grade,
    times_us,
)

__all__ = [
    "BaselineParams",
    "hour_of_week",
    "hour_of_week_baseline",
    "seasonal_detections",
]

HOUR_US = 3_600_000_000
WEEK_US = 168 * HOUR_US
# 1970-01-01 was a Thursday: +72 h makes slot 0 Monday 00:00 UTC (as in aggregate.py).
_HOW_SHIFT = 72
_Z_SCALE = 0.6745

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class BaselineParams:
    """Thresholds on |robust z| and the MAD floor of the seasonal baseline (see module doc)."""

    tiers: Tiers = (3.5, 5.0, 8.0, 12.0)
    mad_floor_abs: float = 1000.0
    mad_floor_rel: float = 0.05
    min_weeks: int = 2
    directions: tuple[str, ...] = ("above", "below")


def hour_of_week(t_us: I64) -> I64:
    """Slot 0..167 of each time (0 = Monday 00:00-01:00 UTC)."""
    return np.asarray((t_us // HOUR_US + _HOW_SHIFT) % 168, dtype=np.int64)


@dataclass(frozen=True)
class _SlotBaseline:
    median: F64
    mad: F64
    samples: I64
    weeks: I64


def _slot_baseline(
    codes: I64, t: I64, v: F64, nseries: int, first_seen: I64, grid: I64, slot: int
) -> _SlotBaseline:
    """Median/MAD per series over the history buckets ``grid`` of one hour-of-week slot."""
    times = grid[hour_of_week(grid) == slot]
    m = times.shape[0]
    mat = np.zeros((nseries, m))
    mat[times[None, :] < first_seen[:, None]] = np.nan
    rows = np.flatnonzero(np.isin(t, times))
    mat[codes[rows], np.searchsorted(times, t[rows])] = v[rows]
    samples = np.sum(~np.isnan(mat), axis=1).astype(np.int64)
    week = (times // HOUR_US + _HOW_SHIFT) // 168
    j0 = np.searchsorted(times, first_seen)
    weeks = np.zeros(nseries, dtype=np.int64)
    if m:
        # every week between the first valid bucket and the last holds the slot
        has = j0 < m
        weeks[has] = week[-1] - week[j0[has]] + 1
    median = np.full(nseries, np.nan)
    mad = np.full(nseries, np.nan)
    ok = samples > 0
    if ok.any():
        sub = mat[ok]
        med = np.nanmedian(sub, axis=1)
        median[ok] = med
        mad[ok] = np.nanmedian(np.abs(sub - med[:, None]), axis=1)
    return _SlotBaseline(median, mad, samples, weeks)


@dataclass(frozen=True)
class _Prepared:
    names: list[str]
    codes: I64  # every row of the series
    t: I64
    v: F64
    hist: npt.NDArray[np.bool_]  # rows in the history window
    first_seen: I64  # per series, first bucket in history (int64 max: never)
    grid: I64  # every aligned bucket start of the history window


def _prepare(
    series: pa.Table, objects: pa.Array, metric: str, bucket_us: int, history: tuple[int, int]
) -> _Prepared:
    if bucket_us <= 0 or HOUR_US % bucket_us:
        raise RatingError(f"seasonal baseline: bucket of {bucket_us} us does not divide an hour")
    if metric not in series.schema.names:
        raise RatingError(f"seasonal baseline: series has no field {metric}")
    codes, names = encode_objects(objects)
    t = times_us(series, "bucket_start")
    v = np.asarray(series.column(metric).to_numpy(), dtype=np.float64)
    if np.any(t % bucket_us):
        raise RatingError(f"seasonal baseline: field bucket_start not aligned to {bucket_us} us")
    h0, h1 = history
    hist = (t >= h0) & (t < h1)
    first_seen = np.full(len(names), np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first_seen, codes[hist], t[hist])
    grid = np.arange(-(-h0 // bucket_us) * bucket_us, h1, bucket_us, dtype=np.int64)
    return _Prepared(names, codes, t, v, hist, first_seen, grid)


def _baseline_of(pr: _Prepared, slot: int) -> _SlotBaseline:
    h = pr.hist
    return _slot_baseline(
        pr.codes[h], pr.t[h], pr.v[h], len(pr.names), pr.first_seen, pr.grid, slot
    )


def hour_of_week_baseline(
    series: pa.Table,
    objects: pa.Array,
    metric: str,
    *,
    bucket_us: int,
    history: tuple[int, int],
    slots: Sequence[int],
) -> pa.Table:
    """Baseline of every series for each slot: ``object``, ``hour_of_week``, ``median``,
    ``mad``, ``samples``, ``weeks`` (series never seen in ``history`` are left out)."""
    pr = _prepare(series, objects, metric, bucket_us, history)
    names = pr.names
    seen = np.flatnonzero(pr.first_seen < np.iinfo(np.int64).max)
    out: dict[str, list[object]] = {
        k: [] for k in ("object", "hour_of_week", "median", "mad", "samples", "weeks")
    }
    for slot in sorted(set(slots)):
        b = _baseline_of(pr, slot)
        for i in seen:
            if b.samples[i] == 0:
                continue
            out["object"].append(names[i])
            out["hour_of_week"].append(slot)
            out["median"].append(float(b.median[i]))
            out["mad"].append(float(b.mad[i]))
            out["samples"].append(int(b.samples[i]))
            out["weeks"].append(int(b.weeks[i]))
    return pa.table(
        {
            "object": pa.array(out["object"], pa.string()),
            "hour_of_week": pa.array(out["hour_of_week"], pa.int16()),
            "median": pa.array(out["median"], pa.float64()),
            "mad": pa.array(out["mad"], pa.float64()),
            "samples": pa.array(out["samples"], pa.int64()),
            "weeks": pa.array(out["weeks"], pa.int64()),
        }
    )


def seasonal_detections(
    series: pa.Table,
    objects: pa.Array,
    metric: str = "bytes",
    *,
    bucket_us: int,
    evaluate: tuple[int, int],
    history_start: int,
    params: BaselineParams | None = None,
) -> pa.Table:
    """Judge every complete bucket in ``evaluate`` against the hour-of-week baseline from
    ``[history_start, evaluate[0])``; ``objects`` names each row of ``series``.

    A series with a baseline but no row in an evaluated bucket is judged at 0.
    """
    p = params or BaselineParams()
    e0, e1 = evaluate
    pr = _prepare(series, objects, metric, bucket_us, (history_start, e0))
    names = pr.names
    judged_rows = np.flatnonzero((pr.t >= e0) & (pr.t < e1))
    ev_codes, ev_t, ev_v = pr.codes[judged_rows], pr.t[judged_rows], pr.v[judged_rows]
    parts: list[pa.Table] = []
    cache: dict[int, _SlotBaseline] = {}
    # complete buckets only: a bucket cut by the window's end would look like a drop
    for start in range(-(-e0 // bucket_us) * bucket_us, e1 - bucket_us + 1, bucket_us):
        slot = int(hour_of_week(np.array([start]))[0])
        if slot not in cache:
            cache[slot] = _baseline_of(pr, slot)
        b = cache[slot]
        x = np.zeros(len(names))
        at = ev_t == start
        x[ev_codes[at]] = ev_v[at]
        judged = np.flatnonzero(b.weeks >= p.min_weeks)
        if judged.size == 0:
            continue
        med, mad = b.median[judged], b.mad[judged]
        floor = np.maximum(mad, np.maximum(p.mad_floor_abs, p.mad_floor_rel * np.abs(med)))
        z = _Z_SCALE * (x[judged] - med) / floor
        level, bound = grade(np.abs(z), p.tiers)
        up = z > 0
        allowed = np.where(up, "above" in p.directions, "below" in p.directions)
        hit = np.flatnonzero((level >= 0) & allowed)
        if hit.size == 0:
            continue
        sign = np.where(up[hit], 1.0, -1.0)
        thr = med[hit] + sign * bound[hit] * floor[hit] / _Z_SCALE
        objs = [names[judged[i]] for i in hit]
        obs = x[judged][hit]
        parts.append(
            detection_table(
                objs,
                ["traffic_high" if u else "traffic_low" for u in up[hit]],
                metric,
                obs,
                thr,
                med[hit],
                ["above" if u else "below" for u in up[hit]],
                np.full(hit.size, start),
                np.full(hit.size, start + bucket_us),
                [SEVERITIES[k] for k in level[hit]],
                [
                    f"{metric} {o:.0f} vs hour-of-week median {m:.0f} "
                    f"(MAD {d:.0f}, robust z {zz:+.1f})"
                    for o, m, d, zz in zip(obs, med[hit], mad[hit], z[hit], strict=True)
                ],
            )
        )
    return concat_detections(parts)
