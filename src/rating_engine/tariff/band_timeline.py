"""Time bands as UTC timelines: where the winning band changes, and a per-day index."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from rating_engine.tariff.model import Band

__all__ = ["DAY_US", "band_timeline", "day_index", "day_range"]

DAY_US = 86_400_000_000
_EPOCH = date(1970, 1, 1)


def _utc_us(dt: datetime) -> int:
    delta = dt - datetime(1970, 1, 1, tzinfo=ZoneInfo("UTC"))
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def _offset_pieces(zone: ZoneInfo, start_s: int, end_s: int) -> list[tuple[int, int, int]]:
    """[(from_s, to_s, utc_offset_s)] covering [start_s, end_s) in UTC seconds."""

    def off(t: int) -> int:
        dt = datetime.fromtimestamp(t, tz=zone)
        u = dt.utcoffset()
        assert u is not None
        return int(u.total_seconds())

    pieces: list[tuple[int, int, int]] = []
    a, o = start_s, off(start_s)
    t = start_s
    while t < end_s:
        nxt = min(t + 86400, end_s)
        if off(nxt) != o:
            lo, hi = t, nxt  # offset at lo == o, at hi differs: find first second that differs
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if off(mid) == o:
                    lo = mid
                else:
                    hi = mid
            pieces.append((a, hi, o))
            a, o = hi, off(hi)
            t = hi
            continue
        t = nxt
    pieces.append((a, end_s, o))
    return pieces


def _bands_on(bands: tuple[Band, ...], day: date) -> list[Band]:
    """Bands that apply on a local date, in the order of ``bands`` (priority order)."""
    return [b for b in bands if b.on_day(day.year, day.month, day.day, day.isoweekday())]


def _winner(active: tuple[int, ...]) -> int:
    return active[0] if active else -1


def band_timeline(
    bands: tuple[Band, ...],
    timezone: str,
    years: tuple[int, int],
    classify: Callable[[tuple[int, ...]], int] = _winner,
    split_days: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """UTC instants (µs) where the bands in force change, an id for each stretch, and
    whether the stretch begins a local day (with ``split_days``, every local midnight
    begins a stretch, even where the id stays: CGRateS splits calls there).

    ``bands`` are in priority order; ``classify`` maps the indices of the bands in force at
    an instant (in that order) to the stretch's id, by default the first one, the winning
    band (-1 = none in force). The last entry is the end of the range (id -2, "out of
    range"). A band's active window (``active_from``/``active_until``) opens and closes it
    at UTC instants, which begin stretches too. Local wall-clock change points are mapped
    to UTC piece by piece between the zone's offset transitions, so a repeated autumn hour
    is evaluated twice and a skipped spring hour never starts.
    """
    zone = ZoneInfo(timezone)
    index = {b.name: i for i, b in enumerate(bands)}
    start_s = _utc_us(datetime(years[0], 1, 1, tzinfo=zone)) // 1_000_000
    end_s = _utc_us(datetime(years[1] + 1, 1, 1, tzinfo=zone)) // 1_000_000
    starts: list[int] = []
    ids: list[int] = []
    newday: list[int] = []
    cache: dict[int, list[Band]] = {}

    # the instants (UTC s) where a band's active window opens or closes
    edges = sorted(
        {e // 1_000_000 for b in bands for e in (b.active_from, b.active_until) if e is not None}
    )

    def winner(local_s: int, utc_s: int) -> int:
        day, tod = divmod(local_s, 86400)
        on = cache.get(day)
        if on is None:
            on = cache[day] = _bands_on(bands, _EPOCH + timedelta(days=day))
        return classify(
            tuple(
                index[b.name]
                for b in on
                if b.start <= tod < b.end and (not edges or b.in_window(utc_s * 1_000_000))
            )
        )

    for a, b_, o in _offset_pieces(zone, start_s, end_s):
        la, lb = a + o, b_ + o
        points = {la}
        for day in range(la // 86400, (lb - 1) // 86400 + 1):
            base = day * 86400
            points.add(base)
            on = cache.get(day)
            if on is None:
                on = cache[day] = _bands_on(bands, _EPOCH + timedelta(days=day))
            for band in on:
                points.add(base + band.start)
                points.add(base + band.end)
        points.update(e + o for e in edges if a <= e < b_)
        for lp in sorted(p for p in points if la <= p < lb):
            w = winner(lp, lp - o)
            midnight = split_days and lp % 86400 == 0
            if not ids or ids[-1] != w or midnight:
                starts.append((lp - o) * 1_000_000)
                ids.append(w)
                newday.append(int(midnight))
    starts.append(end_s * 1_000_000)
    ids.append(-2)
    newday.append(1)
    return (
        np.array(starts, dtype=np.int64),
        np.array(ids, dtype=np.int32),
        np.array(newday, dtype=np.uint8),
    )


def day_range(years: tuple[int, int]) -> tuple[int, int]:
    """First day (days since 1970-01-01) and number of days of the per-day index for
    ``years``, with a few days' margin either side."""
    day0 = (date(years[0] - 1, 12, 30) - _EPOCH).days
    return day0, (date(years[1] + 1, 1, 3) - _EPOCH).days - day0


def day_index(starts: np.ndarray, day0: int, ndays: int) -> np.ndarray:
    """Per day from ``day0``: the timeline entry in force at its first instant, so finding
    the band of an instant starts at its day's entry (O(1)) instead of a search."""
    days = np.arange(day0, day0 + ndays, dtype=np.int64) * DAY_US
    return np.searchsorted(starts, days, side="right").astype(np.int32) - 1
