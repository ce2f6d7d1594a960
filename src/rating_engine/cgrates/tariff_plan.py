"""A CGRateS TariffPlan's rating data, read and cross-checked as CGRateS's loader does.

Destinations, Timings, Rates, DestinationRates, RatingPlans and RatingProfiles become the
frozen records below; a reference to an id that is not defined is an error naming the file,
line and field (CGRateS refuses such a plan too). ``*any`` is CGRateS's built-in timing
(every day from 00:00) and destination.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from rating_engine.cgrates.tp_files import TpRow, find_rating_files, read_rows
from rating_engine.cgrates.tp_values import (
    ANY,
    parse_amount,
    parse_duration_ns,
    parse_int_list,
    parse_text_list,
    parse_time_of_day,
    parse_timestamp,
)
from rating_engine.errors import TariffError

__all__ = [
    "DestinationRate",
    "RateSlot",
    "RatingPlanBinding",
    "RatingProfile",
    "TariffPlan",
    "Timing",
    "read_tariff_plan",
]

_ROUNDING = ("*up", "*down", "*middle")
_STRATEGIES = ("", "*free", "*disconnect")


@dataclass(frozen=True)
class Timing:
    """Years, months, month days and weekdays (ISO; empty = any), all AND-ed; from ``start``
    (seconds after midnight) to the end of the day."""

    id: str
    years: tuple[int, ...]
    months: tuple[int, ...]
    month_days: tuple[int, ...]
    weekdays: tuple[int, ...]
    start: int


@dataclass(frozen=True)
class RateSlot:
    """One row of a Rates id; durations in nanoseconds (0 unit or increment: one second)."""

    connect_fee: Decimal
    rate: Decimal
    unit_ns: int
    increment_ns: int
    start_ns: int
    where: str


@dataclass(frozen=True)
class DestinationRate:
    """One row of a DestinationRates id: a destination priced by a Rates id."""

    id: str
    destination: str
    rates: str
    rounding_method: str
    rounding_decimals: int
    max_cost: Decimal
    max_cost_strategy: str
    where: str


@dataclass(frozen=True)
class RatingPlanBinding:
    """One row of a RatingPlan: DestinationRates at a Timing with a weight."""

    destination_rates: str
    timing: str
    weight: Decimal
    where: str


@dataclass(frozen=True)
class RatingProfile:
    """One row of RatingProfiles: who is rated by which RatingPlan from when."""

    tenant: str
    category: str
    subject: str
    activation: datetime
    rating_plan: str
    fallback_subjects: tuple[str, ...]
    direction: str
    where: str


@dataclass
class TariffPlan:
    """The rating data of one TariffPlan folder, every reference resolved."""

    folder: Path
    destinations: dict[str, tuple[str, ...]] = field(default_factory=dict)
    timings: dict[str, Timing] = field(default_factory=dict)
    rates: dict[str, list[RateSlot]] = field(default_factory=dict)
    destination_rates: dict[str, list[DestinationRate]] = field(default_factory=dict)
    rating_plans: dict[str, list[RatingPlanBinding]] = field(default_factory=dict)
    profiles: list[RatingProfile] = field(default_factory=list)
    #: files not read (name -> why) and notes on what was read but has no effect
    skipped_files: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _where(row: TpRow) -> str:
    return f"file {row.file}, line {row.line}"


def _rows(files: dict[str, Path], kind: str, separator: str) -> list[TpRow]:
    return read_rows(files[kind], kind, separator) if kind in files else []


def read_tariff_plan(folder: Path, timezone: str = "UTC", separator: str = ",") -> TariffPlan:
    """Read the rating files of a TariffPlan folder; ``timezone`` reads activation times
    written without an offset (CGRateS's ``general.default_timezone``)."""
    folder = Path(folder)
    files, skipped = find_rating_files(folder)
    if "rating_plans" not in files:
        raise TariffError(f"no RatingPlans.csv in {folder}: nothing to import (folder {folder})")
    tp = TariffPlan(folder, skipped_files=skipped)
    zone = ZoneInfo(timezone)
    for row in _rows(files, "destinations", separator):
        known = tp.destinations.get(row.get("id"), ())
        tp.destinations[row.get("id")] = known + parse_text_list(row.get("prefix"))
    tp.timings[ANY] = Timing(ANY, (), (), (), (), 0)
    for row in _rows(files, "timings", separator):
        tp.timings[row.get("id")] = Timing(
            row.get("id"),
            parse_int_list(row.get("years"), 1900, 2200, row.at("years")),
            parse_int_list(row.get("months"), 1, 12, row.at("months")),
            parse_int_list(row.get("month_days"), 1, 31, row.at("month_days")),
            # CGRateS counts Sunday as 0 or 7 (Go's weekdays); ISO: 1 = Monday .. 7
            tuple(d or 7 for d in parse_int_list(row.get("week_days"), 0, 7, row.at("week_days"))),
            parse_time_of_day(row.get("time"), row.at("time")),
        )
    old_rates = False
    for row in _rows(files, "rates", separator):
        if (row.get("rounding_method") or row.get("weight")) and not old_rates:
            old_rates = True
            tp.notes.append(
                f"Rates.csv of an old CGRateS layout: its rounding and weight columns are "
                f"ignored, DestinationRates carry the rounding (file {row.file})"
            )
        tp.rates.setdefault(row.get("id"), []).append(
            RateSlot(
                parse_amount(row.get("connect_fee"), row.at("connect_fee")),
                parse_amount(row.get("rate"), row.at("rate")),
                parse_duration_ns(row.get("rate_unit"), row.at("rate_unit")),
                parse_duration_ns(row.get("rate_increment"), row.at("rate_increment")),
                parse_duration_ns(row.get("group_interval_start"), row.at("group_interval_start")),
                _where(row),
            )
        )
    for row in _rows(files, "destination_rates", separator):
        tp.destination_rates.setdefault(row.get("id"), []).append(_destination_rate(tp, row))
    for row in _rows(files, "rating_plans", separator):
        if row.get("destination_rates_id") not in tp.destination_rates:
            raise row.at("destination_rates_id").fail(
                f"unknown DestinationRates id {row.get('destination_rates_id')!r}"
            )
        if row.get("timing_id") not in tp.timings:
            raise row.at("timing_id").fail(f"unknown Timing id {row.get('timing_id')!r}")
        tp.rating_plans.setdefault(row.get("id"), []).append(
            RatingPlanBinding(
                row.get("destination_rates_id"),
                row.get("timing_id"),
                parse_amount(row.get("weight"), row.at("weight")),
                _where(row),
            )
        )
    for row in _rows(files, "rating_profiles", separator):
        if row.get("rating_plan_id") not in tp.rating_plans:
            raise row.at("rating_plan_id").fail(f"unknown RatingPlan {row.get('rating_plan_id')!r}")
        tp.profiles.append(
            RatingProfile(
                row.get("tenant"),
                row.get("category"),
                row.get("subject"),
                parse_timestamp(row.get("activation_time"), zone, row.at("activation_time")),
                row.get("rating_plan_id"),
                # subjects, where "*any" is the default subject itself, not "any"
                tuple(p.strip() for p in row.get("fallback_subjects").split(";") if p.strip()),
                row.get("direction") or "*out",
                _where(row),
            )
        )
    return tp


def _destination_rate(tp: TariffPlan, row: TpRow) -> DestinationRate:
    dest = row.get("destination_id")
    if dest != ANY and dest not in tp.destinations:
        raise row.at("destination_id").fail(f"unknown destination {dest!r}")
    if row.get("rates_id") not in tp.rates:
        raise row.at("rates_id").fail(f"unknown rates id {row.get('rates_id')!r}")
    method = row.get("rounding_method") or "*middle"
    if method not in _ROUNDING:
        raise row.at("rounding_method").fail(f"expected one of {', '.join(_ROUNDING)}")
    decimals = row.get("rounding_decimals") or "0"
    if not decimals.isdigit():
        raise row.at("rounding_decimals").fail(f"not a number of decimals: {decimals!r}")
    strategy = row.get("max_cost_strategy")
    if strategy not in _STRATEGIES:
        raise row.at("max_cost_strategy").fail("expected *free, *disconnect or nothing")
    return DestinationRate(
        row.get("id"),
        dest,
        row.get("rates_id"),
        method,
        int(decimals),
        parse_amount(row.get("max_cost"), row.at("max_cost")),
        strategy,
        _where(row),
    )
