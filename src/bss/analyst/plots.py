"""Matplotlib figures for the analyst API: traffic over time, top-N, hour of week, alarms.

Every function takes what :class:`bss.analyst.api.Workspace` returns (a polars DataFrame or an
Arrow table) and returns a :class:`matplotlib.figure.Figure` built without pyplot, so it
works under any backend (Agg in tests and scripts, inline in notebooks), keeps no global
figure list to leak, and never calls ``show``. Times are drawn in UTC.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TypeAlias

import matplotlib.dates as mdates
import numpy as np
import polars as pl
import pyarrow as pa
from matplotlib.figure import Figure

__all__ = [
    "SEVERITY_COLORS",
    "WEEKDAYS",
    "alarm_timeline",
    "hour_of_week_heatmap",
    "hour_of_week_matrix",
    "top_n_bar",
    "traffic_over_time",
]

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
#: Colours of X.733 perceived severities (ITU-T X.733 / TMF642 names).
SEVERITY_COLORS: dict[str, str] = {
    "critical": "#b2182b",
    "major": "#ef6548",
    "minor": "#fdae61",
    "warning": "#fee08b",
    "indeterminate": "#9e9e9e",
    "cleared": "#1a9850",
}
_METRICS = ("bytes", "packets", "flows")
_NOT_KEYS = {
    *_METRICS,
    "bucket_start",
    "rank",
    "flows_pct",
    "packets_pct",
    "bytes_pct",
    "bpp",
}

Frame: TypeAlias = pl.DataFrame | pa.Table


def _frame(data: Frame) -> pl.DataFrame:
    if isinstance(data, pl.DataFrame):
        return data
    out = pl.from_arrow(data)
    if not isinstance(out, pl.DataFrame):
        raise TypeError("expected a table, got a single column")
    return out


def _label(row: tuple[Any, ...], labels: Mapping[Any, str] | None) -> str:
    if labels is not None and len(row) == 1 and row[0] in labels:
        return labels[row[0]]
    return " \u2194 ".join(str(v) for v in row)


def _key_columns(frame: pl.DataFrame) -> list[str]:
    return [c for c in frame.columns if c not in _NOT_KEYS]


def traffic_over_time(
    buckets: Frame,
    *,
    metric: str = "bytes",
    labels: Mapping[Any, str] | None = None,
    max_series: int = 8,
    title: str | None = None,
) -> Figure:
    """One line per key (or one total line) of a ``bucket_traffic`` result over time.

    Keys beyond the ``max_series`` largest (by total ``metric``) are summed into
    ``other``. ``labels`` maps a key value (e.g. a subscription id) to its legend text.
    """
    frame = _frame(buckets)
    if metric not in _METRICS:
        raise ValueError(f"metric {metric!r}: use one of {', '.join(_METRICS)}")
    keys = _key_columns(frame)
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax = fig.add_subplot()
    if keys:
        totals = frame.group_by(keys).agg(pl.col(metric).sum()).sort(metric, descending=True)
        shown = totals.head(max_series).select(keys)
        groups = [(_label(tuple(r), labels), frame.join(shown.slice(i, 1), on=keys))
                  for i, r in enumerate(shown.iter_rows())]  # fmt: skip
        rest = frame.join(shown, on=keys, how="anti")
        if rest.height:
            groups.append(("other", rest))
    else:
        groups = [("total", frame)]
    for name, part in groups:
        series = part.group_by("bucket_start").agg(pl.col(metric).sum()).sort("bucket_start")
        x = series["bucket_start"].dt.replace_time_zone(None).to_numpy()
        ax.plot(x, series[metric].to_numpy().astype(np.float64), label=name, drawstyle="steps-post")
    ax.xaxis.set_major_formatter(_date_formatter(ax))
    ax.set_xlabel("time (UTC)")
    ax.set_ylabel(f"{metric} per bucket")
    ax.set_title(title or f"{metric} over time")
    if keys:
        ax.legend(loc="upper left", fontsize="small")
    ax.grid(alpha=0.3)
    return fig


def top_n_bar(
    top: Frame,
    *,
    metric: str = "bytes",
    labels: Mapping[Any, str] | None = None,
    title: str | None = None,
) -> Figure:
    """Horizontal bars of a top-N result, rank 1 at the top, with the share in percent."""
    frame = _frame(top)
    if "rank" in frame.columns:
        frame = frame.sort("rank")
    keys = _key_columns(frame)
    names = [_label(tuple(r), labels) for r in frame.select(keys).iter_rows()]
    values = frame[metric].to_numpy().astype(np.float64)
    fig = Figure(figsize=(8, 0.45 * max(len(names), 1) + 1.2), layout="constrained")
    ax = fig.add_subplot()
    y = np.arange(len(names))
    bars = ax.barh(y, values, color="tab:blue")
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    pct = f"{metric}_pct"
    if pct in frame.columns:
        ax.bar_label(bars, labels=[f"{p:.1f} %" for p in frame[pct].to_list()], padding=3)
    ax.set_xlabel(metric)
    ax.set_title(title or f"top {len(names)} by {metric}")
    return fig


def hour_of_week_matrix(
    profile: Frame, *, value: str = "bytes", subscription_id: int | None = None
) -> np.ndarray:
    """A 7x24 float matrix (Monday..Sunday x hour, UTC) from an hour-of-week profile.

    ``value``: ``bytes`` (down + up), ``bytes_down``, ``bytes_up``, ``flows`` or
    ``flows_down`` / ``flows_up``; summed over subscriptions unless one is chosen.
    """
    frame = _frame(profile)
    if subscription_id is not None:
        frame = frame.filter(pl.col("subscription_id") == subscription_id)
    if value in ("bytes", "flows"):
        expr = pl.col(f"{value}_down").cast(pl.Float64) + pl.col(f"{value}_up").cast(pl.Float64)
    else:
        expr = pl.col(value).cast(pl.Float64)
    cells = frame.group_by("hour_of_week").agg(expr.sum().alias("v"))
    grid = np.zeros(168, dtype=np.float64)
    grid[cells["hour_of_week"].to_numpy().astype(np.int64)] = cells["v"].to_numpy()
    return grid.reshape(7, 24)


def hour_of_week_heatmap(
    profile: Frame,
    *,
    value: str = "bytes",
    subscription_id: int | None = None,
    title: str | None = None,
) -> Figure:
    """Heatmap of usage by weekday (rows) and hour (columns) - the usage frequency."""
    grid = hour_of_week_matrix(profile, value=value, subscription_id=subscription_id)
    fig = Figure(figsize=(10, 3.6), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(grid, aspect="auto", cmap="viridis", interpolation="nearest")
    ax.set_yticks(range(7), WEEKDAYS)
    ax.set_xticks(range(0, 24, 2), [f"{h:02d}" for h in range(0, 24, 2)])
    ax.set_xlabel("hour of day (UTC)")
    who = "all subscriptions" if subscription_id is None else f"subscription {subscription_id}"
    ax.set_title(title or f"{value} by hour of week, {who}")
    fig.colorbar(image, ax=ax, label=value)
    return fig


def alarm_timeline(
    alarms: Frame, *, now: datetime | None = None, title: str | None = None
) -> Figure:
    """One row per alarmed object; a bar from raise to clear (or ``now``) per alarm.

    Colours follow the perceived severity at the alarm's last update. Needs the columns
    ``alarmed_object``, ``perceived_severity``, ``raised_time`` and ``cleared_time``.
    """
    frame = _frame(alarms)
    fig = Figure(figsize=(10, 0.5 * max(frame.height, 1) + 1.5), layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(title or "alarms")
    if frame.height == 0:
        ax.text(0.5, 0.5, "no alarms", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    end_default = (now or datetime.now(UTC)).replace(tzinfo=None)
    objects = sorted({str(o) for o in frame["alarmed_object"].to_list()})
    row_of = {o: i for i, o in enumerate(objects)}
    rows = frame.sort("raised_time").iter_rows(named=True)
    for alarm in rows:
        start = _naive(alarm["raised_time"])
        end = _naive(alarm["cleared_time"]) if alarm["cleared_time"] is not None else end_default
        severity = str(alarm["perceived_severity"])
        x0 = _date_num(start)
        width = max(_date_num(end) - x0, 1e-4)
        ax.broken_barh(
            [(x0, width)],
            (row_of[str(alarm["alarmed_object"])] - 0.4, 0.8),
            facecolors=SEVERITY_COLORS.get(severity, "#636363"),
            edgecolor="black",
            linewidth=0.5,
            label=severity,
        )
    ax.set_yticks(range(len(objects)), objects)
    ax.xaxis_date()
    ax.xaxis.set_major_formatter(_date_formatter(ax))
    ax.set_xlabel("time (UTC)")
    handles, names = ax.get_legend_handles_labels()
    unique = dict(zip(names, handles, strict=True))
    ax.legend(unique.values(), unique.keys(), loc="upper left", fontsize="small")
    return fig


def _naive(value: datetime) -> datetime:
    """UTC wall time without tzinfo (matplotlib's date numbers are UTC)."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def _date_num(value: datetime) -> float:
    return float(mdates.date2num(value))  # type: ignore[no-untyped-call]


def _date_formatter(ax: Any) -> Any:
    locator = ax.xaxis.get_major_locator()
    return mdates.ConciseDateFormatter(locator)  # type: ignore[no-untyped-call]
