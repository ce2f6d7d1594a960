"""The plotting helpers draw exactly the data they are given."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from bss.analyst.plots import (
    SEVERITY_COLORS,
    WEEKDAYS,
    alarm_timeline,
    hour_of_week_heatmap,
    hour_of_week_matrix,
    top_n_bar,
    traffic_over_time,
)

T0 = datetime(2026, 10, 5, tzinfo=UTC)  # a Monday


def _buckets() -> pl.DataFrame:
    hours = [T0 + timedelta(hours=h) for h in range(4)]
    return pl.DataFrame(
        {
            "subscription_id": [1, 1, 1, 1, 2, 2, 3],
            "bucket_start": [*hours, hours[0], hours[2], hours[1]],
            "bytes": [10, 20, 30, 40, 5, 7, 1],
            "packets": [1, 2, 3, 4, 1, 1, 1],
            "flows": [1, 1, 1, 1, 1, 1, 1],
        },
        schema_overrides={"bytes": pl.UInt64, "packets": pl.UInt64, "flows": pl.UInt64},
    )


def _y(line: Line2D) -> list[float]:
    return [float(v) for v in np.asarray(line.get_ydata(), dtype=np.float64)]


def test_traffic_over_time_one_line_per_key() -> None:
    fig = traffic_over_time(_buckets(), labels={1: "Acme (1)"}, max_series=2)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"Acme (1)", "2", "other"}
    assert _y(lines["Acme (1)"]) == [10, 20, 30, 40]
    assert _y(lines["2"]) == [5, 7]
    assert _y(lines["other"]) == [1]  # subscription 3, the smallest
    assert ax.get_ylabel() == "bytes per bucket"


def test_traffic_over_time_total_from_arrow() -> None:
    total = _buckets().group_by("bucket_start").agg(pl.col("packets").sum()).sort("bucket_start")
    fig = traffic_over_time(total.to_arrow(), metric="packets")
    (line,) = fig.axes[0].get_lines()
    assert line.get_label() == "total"
    assert _y(line) == [2, 3, 4, 4]
    with pytest.raises(ValueError, match="metric"):
        traffic_over_time(total, metric="octets")


def test_top_n_bar_ranks_and_shares() -> None:
    top = pa.table(
        {
            "rank": [2, 1, 3],
            "src_addr": ["192.0.2.2", "192.0.2.1", "2001:db8::1"],
            "bytes": pa.array([50, 80, 10], pa.uint64()),
            "bytes_pct": [25.0, 40.0, 5.0],
        }
    )
    fig = top_n_bar(top)
    ax = fig.axes[0]
    widths = [p.get_width() for p in ax.patches if isinstance(p, Rectangle)]
    assert widths == [80, 50, 10]  # rank order
    assert [t.get_text() for t in ax.get_yticklabels()] == ["192.0.2.1", "192.0.2.2",
                                                           "2001:db8::1"]  # fmt: skip
    assert ax.yaxis_inverted()
    assert [t.get_text() for t in ax.texts] == ["40.0 %", "25.0 %", "5.0 %"]


def test_top_n_bar_conversation_labels() -> None:
    top = pl.DataFrame({"rank": [1], "src_addr": ["a"], "dst_addr": ["b"], "flows": [3]})
    fig = top_n_bar(top, metric="flows")
    assert fig.axes[0].get_yticklabels()[0].get_text() == "a \u2194 b"


def _profile() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "subscription_id": [1, 1, 2],
            "hour_of_week": pl.Series([0, 24 * 6 + 23, 25], dtype=pl.Int16),
            "bytes_down": pl.Series([100, 7, 40], dtype=pl.UInt64),
            "bytes_up": pl.Series([1, 0, 2], dtype=pl.UInt64),
            "flows_down": pl.Series([1, 1, 1], dtype=pl.UInt64),
            "flows_up": pl.Series([1, 0, 1], dtype=pl.UInt64),
        }
    )


def test_hour_of_week_heatmap_cells() -> None:
    grid = hour_of_week_matrix(_profile())
    assert grid.shape == (7, 24)
    assert grid[0, 0] == 101  # Monday 00h, down + up
    assert grid[6, 23] == 7  # Sunday 23h
    assert grid[1, 1] == 42  # Tuesday 01h
    assert grid.sum() == 150
    assert hour_of_week_matrix(_profile(), value="bytes_up", subscription_id=1).sum() == 1
    fig = hour_of_week_heatmap(_profile(), subscription_id=2)
    ax = fig.axes[0]
    image = ax.get_images()[0]
    data = np.asarray(image.get_array())
    assert data[1, 1] == 42
    assert data.sum() == 42
    assert [t.get_text() for t in ax.get_yticklabels()] == list(WEEKDAYS)
    assert len(fig.axes) == 2  # the colour bar


def test_alarm_timeline_bars_and_colours() -> None:
    alarms = pl.DataFrame(
        {
            "alarmed_object": ["exporter A", "exporter A", "subscription 3"],
            "perceived_severity": ["cleared", "critical", "minor"],
            "raised_time": [T0, T0 + timedelta(hours=5), T0 + timedelta(hours=2)],
            "cleared_time": [T0 + timedelta(hours=3), None, T0 + timedelta(hours=4)],
        }
    )
    now = T0 + timedelta(hours=8)
    fig = alarm_timeline(alarms, now=now)
    ax = fig.axes[0]
    bars = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(bars) == 3
    colours = [to_hex(np.asarray(b.get_facecolor())[0].tolist()) for b in bars]
    assert colours == [SEVERITY_COLORS[s] for s in ("cleared", "minor", "critical")]
    # the open alarm runs to `now`: 3 hours wide (in days)
    open_bar = np.asarray(bars[2].get_paths()[0].vertices, dtype=np.float64)
    assert open_bar[:, 0].max() - open_bar[:, 0].min() == pytest.approx(3 / 24)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["exporter A", "subscription 3"]


def test_alarm_timeline_without_alarms() -> None:
    fig = alarm_timeline(pl.DataFrame({"alarmed_object": [], "perceived_severity": []}))
    assert fig.axes[0].texts[0].get_text() == "no alarms"
