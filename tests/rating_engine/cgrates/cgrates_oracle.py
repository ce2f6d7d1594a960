"""What CGRateS (RALs v0.10, ``CallDescriptor.GetCost``) charges for a voice call, computed
the way its Go code computes it: binary floats, its ``utils.Round``, its timespans.

A test oracle only, written from CGRateS's documented rating logic and sources: the
destination is the longest prefix whose destinations have rates in the RatingPlan (the
heaviest on a tie), else ``*any``; the call is cut at local midnight, where the winning
rate interval changes (the highest weight in force, then the latest start) and at rate
group starts; each timespan is rounded up to whole increments (running over the next
one), costs round(round(duration x rate / unit, 5) / n, 5) per increment; the first
timespan adds the connect fee, and the total is rounded with the rate's method.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from rating_engine.cgrates.tariff_plan import DestinationRate, TariffPlan, Timing

__all__ = ["cgrates_cost"]

_NS = 1_000_000_000


def go_round(x: float, prec: int, method: str) -> float:
    """CGRateS ``utils.Round`` (v0.10): float arithmetic, *up ignoring float noise below
    10^-max(7, prec) of the last digit."""
    pw = math.pow(10, prec)
    intermed = x * pw
    frac = math.modf(intermed)[0]
    if method == "*up":
        noise = math.pow(10, -max(7, prec))
        rounder = math.ceil(intermed) if frac >= noise else math.floor(intermed)
    elif method == "*down":
        rounder = math.floor(intermed)
    elif method == "*middle":
        rounder = math.ceil(intermed) if frac >= 0.5 else math.floor(intermed)
    else:  # no method (GetLongestRounding finds none when every rate has 0 decimals)
        rounder = intermed
    return rounder / pw


@dataclass
class _Interval:
    timing: Timing
    weight: float
    rate: DestinationRate


def _active(iv: _Interval, local: datetime) -> bool:
    t = iv.timing
    return (
        (not t.years or local.year in t.years)
        and (not t.months or local.month in t.months)
        and (not t.month_days or local.day in t.month_days)
        and (not t.weekdays or local.isoweekday() in t.weekdays)
        and local.hour * 3600 + local.minute * 60 + local.second >= t.start
    )


def _winner(ivs: list[_Interval], local: datetime) -> _Interval | None:
    best = None
    for iv in ivs:
        if _active(iv, local) and (
            best is None or (iv.weight, iv.timing.start) > (best.weight, best.timing.start)
        ):
            best = iv
    return best


def _intervals(tp: TariffPlan, plan: str, destination: str) -> list[_Interval]:
    """The rate intervals of the destination a number (E.164 digits; the plan's '+' prefixes
    read without it) matches in the plan."""
    by_dest: dict[str, list[_Interval]] = {}
    for b in tp.rating_plans[plan]:
        for dr in tp.destination_rates[b.destination_rates]:
            by_dest.setdefault(dr.destination, []).append(
                _Interval(tp.timings[b.timing], float(b.weight), dr)
            )
    for length in range(len(destination), 0, -1):
        prefix = destination[:length]
        ids = sorted(
            d
            for d, ps in tp.destinations.items()
            if prefix in {p.lstrip("+") for p in ps} and d in by_dest
        )
        if ids:
            return max((by_dest[d] for d in ids), key=lambda ivs: max(i.weight for i in ivs))
    return by_dest.get("*any", [])


def _slot(tp: TariffPlan, dr: DestinationRate, position_ns: int) -> tuple[float, int, int]:
    """(rate, increment ns, unit ns) of the group in force ``position_ns`` into the call."""
    slots = sorted(tp.rates[dr.rates], key=lambda s: s.start_ns)
    slot = [s for s in slots if s.start_ns <= position_ns][-1]
    return float(slot.rate), slot.increment_ns or _NS, slot.unit_ns or _NS


def cgrates_cost(
    tp: TariffPlan, plan: str, destination: str, start: datetime, seconds: int, zone: str
) -> float | None:
    """The cost CGRateS returns for the call, or None where it finds no rate."""
    if seconds == 0:
        return 0.0  # GetCost: a call of no duration costs nothing, connect fee or not
    ivs = _intervals(tp, plan, destination)
    tz = ZoneInfo(zone)
    local0 = start.astimezone(tz)
    # timespans: cut at midnight, where the winning interval changes, at group starts
    cuts = []
    current = _winner(ivs, local0)
    if current is None:
        return None
    for s in range(1, seconds):
        at = local0 + timedelta(seconds=s)
        w = _winner(ivs, at)
        if w is None:
            return None
        if (at.hour, at.minute, at.second) == (0, 0, 0) or w is not current:
            cuts.append((s, w))
            current = w
    spans = []  # (start s, end s, interval)
    edges = [(0, _winner(ivs, local0)), *cuts, (seconds, None)]
    for (a, iv), (b, _) in itertools.pairwise(edges):
        assert iv is not None
        starts = sorted({s.start_ns // _NS for s in tp.rates[iv.rate.rates]} | {a, b})
        points = [x for x in starts if a <= x <= b]
        spans += [(x, y, iv) for x, y in itertools.pairwise(points) if y > x]
    # each timespan rounded up to whole increments, overlapping the next ones
    out = []
    end = 0
    for a, b, iv in spans:
        if b <= end:
            continue
        a = max(a, end)
        rate, inc, unit = _slot(tp, iv.rate, a * _NS)
        dur = (b - a) * _NS
        dur = -(-dur // inc) * inc
        out.append((dur, rate, inc, unit, iv))
        end = a + dur // _NS
    cost = 0.0
    so_far = 0.0
    decimals, method = 0, ""  # CGRateS's GetLongestRounding: only more decimals than 0 count
    for i, (dur, rate, inc, unit, iv) in enumerate(out):
        n = dur // inc
        span = go_round(float(dur) * (rate / float(unit)), 5, "*middle")
        each = go_round(span / float(n), 5, "*middle")
        # the connect fee of the Rates id's first row, on the first timespan only
        fee = float(tp.rates[iv.rate.rates][0].connect_fee) if i == 0 else 0.0
        ts_cost = go_round(fee + float(n) * each, 5, "*middle")
        cost += ts_cost
        so_far += cost  # as CGRateS does: its running total, summed again
        dr = iv.rate
        if dr.max_cost_strategy == "*free" and dr.max_cost > 0 and so_far >= float(dr.max_cost):
            cost = float(dr.max_cost)
            so_far = cost
        if dr.rounding_decimals > decimals:
            decimals, method = dr.rounding_decimals, dr.rounding_method
    return go_round(cost, decimals, method)
