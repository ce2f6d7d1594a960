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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from rating_engine.cgrates.tariff_plan import DestinationRate, TariffPlan, Timing

__all__ = ["cgrates_cost", "cgrates_subject_cost"]

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
    tp: TariffPlan,
    plan: str,
    destination: str,
    start: datetime,
    seconds: int,
    zone: str,
    debit: bool = False,
) -> float | None:
    """The cost CGRateS returns for the call, or None where it finds no rate; with
    ``debit``, what it debits an account (``CallCost.updateCost``: the connect fee and the
    timespans' increments, kept to the general rounding decimals; no MaxCost *free here)."""
    ivs = _intervals(tp, plan, destination)
    return _cost(tp, lambda _t: ivs, start, seconds, zone, debit)


def _cost(
    tp: TariffPlan,
    ivs_at: Callable[[datetime], list[_Interval]],
    start: datetime,
    seconds: int,
    zone: str,
    debit: bool = False,
) -> float | None:
    if seconds == 0:
        return 0.0  # GetCost: a call of no duration costs nothing, connect fee or not
    tz = ZoneInfo(zone)
    local0 = start.astimezone(tz)
    # timespans: cut at midnight, where the winning interval changes, at group starts
    cuts = []
    current = first = _winner(ivs_at(local0), local0)
    if current is None:
        return None
    for s in range(1, seconds):
        at = local0 + timedelta(seconds=s)
        w = _winner(ivs_at(at), at)
        if w is None:
            return None
        if (at.hour, at.minute, at.second) == (0, 0, 0) or w is not current:
            cuts.append((s, w))
            current = w
    spans = []  # (start s, end s, interval)
    edges = [(0, first), *cuts, (seconds, None)]
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
    if debit:
        assert not any(o[4].rate.max_cost_strategy == "*free" for o in out)
        return go_round(cost, 5, "*middle")
    return go_round(cost, decimals, method)


# --- a subject's RatingProfiles (RALs v0.10 CallDescriptor.LoadRatingPlans) ---------------

_MAX_DEPTH = 3


@dataclass
class _RatingInfo:
    activation: datetime
    intervals: list[_Interval] | None
    fallback_keys: tuple[tuple[str, str, str], ...]


@dataclass
class _Descriptor:
    start: datetime
    end: datetime
    infos: list[_RatingInfo]

    def continuous(self) -> bool:
        return (
            bool(self.infos)
            and self.infos[0].activation <= self.start
            and all(ri.intervals is not None for ri in self.infos)
        )


def _add_infos(cd: _Descriptor, ris: list[_RatingInfo]) -> None:
    """addRatingInfos: all of them into an empty descriptor, else only an earlier start."""
    if not cd.infos:
        cd.infos.extend(ris)
        return
    cd.infos.sort(key=lambda ri: ri.activation)
    if cd.infos[0].activation > cd.start and ris[0].activation < cd.infos[0].activation:
        cd.infos.append(ris[0])
        cd.infos.sort(key=lambda ri: ri.activation)


def _plans_for_prefix(
    tp: TariffPlan, cd: _Descriptor, key: tuple[str, str, str], destination: str, depth: int
) -> bool:
    """getRatingPlansForPrefix: False where CGRateS returns an error (no such profile, too
    deep); the rating infos found (and their fallbacks) are added to ``cd``."""
    if depth > _MAX_DEPTH:
        return False
    rows = sorted(
        (p for p in tp.profiles if (p.tenant, p.category, p.subject) == key),
        key=lambda p: p.activation,
    )
    if not rows:
        return False
    # RatingPlanActivations.GetActiveForCall
    last, first_after = 0, len(rows)
    for i, r in enumerate(rows):
        if r.activation <= cd.start:
            last = i
        if r.activation > cd.end:
            first_after = i
            break
    ris: list[_RatingInfo] = []
    for i, r in enumerate(rows[last:first_after]):
        ivs = _intervals(tp, r.rating_plan, destination) or None
        fallback = tuple((key[0], key[1], s) for s in r.fallback_subjects)
        if i == 0 and cd.start < r.activation:
            ris.append(_RatingInfo(cd.start, None, ((key[0], key[1], "*any"),)))
        if ivs is not None:
            ris.append(_RatingInfo(r.activation, ivs, fallback))
        elif fallback:
            ris.append(_RatingInfo(r.activation, None, fallback))
    if ris:
        _add_infos(cd, ris)
    if ris and cd.continuous():
        return True
    depth += 1
    index = 0
    while index < len(cd.infos):
        ri = cd.infos[index]
        if ri.intervals is None and ri.fallback_keys:
            end = cd.end if index == len(cd.infos) - 1 else cd.infos[index + 1].activation
            temp = _Descriptor(cd.start if index == 0 else ri.activation, end, [])
            for fbk in ri.fallback_keys:
                if not _plans_for_prefix(tp, temp, fbk, destination, depth):
                    continue
                for new_index, new_ri in enumerate(temp.infos):
                    if new_ri.intervals is None:
                        continue
                    if new_index == 0:
                        cd.infos[index] = new_ri
                    else:
                        cd.infos.insert(index + new_index, new_ri)
                if temp.continuous():
                    break
        index += 1
    return True


def cgrates_subject_cost(
    tp: TariffPlan,
    tenant: str,
    category: str,
    subject: str,
    destination: str,
    start: datetime,
    seconds: int,
    zone: str,
) -> float | None:
    """What CGRateS charges ``tenant:category:subject`` for the call: its RatingProfile
    (the ``*any`` subject's when it has none), fallback subjects, and a later activation
    inside the call, from which that activation's plan prices the call."""
    cd = _Descriptor(start, start + timedelta(seconds=seconds), [])
    if not _plans_for_prefix(tp, cd, (tenant, category, subject), destination, 1):
        cd = _Descriptor(cd.start, cd.end, [])
        _plans_for_prefix(tp, cd, (tenant, category, "*any"), destination, 1)
    if not cd.continuous():
        return None  # ErrUnauthorizedDestination / ErrRatingPlanNotFound
    infos = sorted(cd.infos, key=lambda ri: ri.activation)

    def ivs_at(t: datetime) -> list[_Interval]:
        found = [ri for ri in infos if ri.activation <= t] or infos[:1]
        assert found[-1].intervals is not None
        return found[-1].intervals

    return _cost(tp, ivs_at, start, seconds, zone)
