"""One CGRateS RatingPlan as one tariff document, priced as CGRateS's rater prices it.

How CGRateS (RALs, v0.10) rates a call and where each part lands in the tariff:

* the destination: the longest prefix of the number whose destinations have rates in the
  plan (a destination without rates in the plan is invisible to it, so a shorter prefix
  or ``*any`` takes over) - the tariff holds only the plan's destinations; a prefix in
  several of them goes to the one whose rate intervals weigh most;
* the rate interval: of the destination's own intervals (timing + weight) in force, the
  highest weight, then the latest start - ``band_selection = "per-destination"``, one
  band per (timing, weight);
* the cost: timespans rounded per increment to ``general.rounding_decimals`` -
  ``increment_decimals`` (left out for exact arithmetic); the total rounded with the
  DestinationRate's method and decimals; ``MaxCost`` with ``*free`` caps it.

What the tariff model cannot say yet raises :class:`NotExpressible` with the reason; the
importer reports the plan as not imported rather than pricing it differently.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from rating_engine.cgrates.tariff_plan import DestinationRate, RateSlot, TariffPlan, Timing
from rating_engine.cgrates.tp_values import ANY

__all__ = [
    "DEFAULT_CATEGORY_SERVICES",
    "ID_PATTERN",
    "ConvertOptions",
    "NotExpressible",
    "plan_document",
    "tariff_head",
]

#: CGRateS categories (and ToRs) and the service whose usage they rate.
DEFAULT_CATEGORY_SERVICES: Mapping[str, str] = {
    "call": "voice",
    "calls": "voice",
    "voice": "voice",
    "*voice": "voice",
    "sms": "sms",
    "*sms": "sms",
    "data": "data",
    "*data": "data",
}
_METHODS = {"*up": "up", "*down": "down", "*middle": "half-up"}
ID_PATTERN = _ID = re.compile(r"^[A-Za-z0-9_.:\-]+$")
_PREFIX = re.compile(r"^([0-9]{1,24}|[!-/:-~][!-~]{0,23})$")  # as tariff.sections reads them
_NS_PER_S = 1_000_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class NotExpressible(Exception):  # noqa: N818 - a verdict on a plan, caught by the importer
    """A RatingPlan uses something the tariff model cannot express (yet)."""


@dataclass(frozen=True)
class ConvertOptions:
    """How to read what a TariffPlan leaves to CGRateS's configuration."""

    currency: str = "EUR"
    timezone: str = "UTC"
    #: CGRateS's ``general.rounding_decimals``; None: exact arithmetic, no increment rounding
    rounding_decimals: int | None = 5
    category_services: Mapping[str, str] = field(
        default_factory=lambda: dict(DEFAULT_CATEGORY_SERVICES)
    )
    #: price as CGRateS debits an account (the sum of the increments, each timespan's
    #: total not rounded with the rate's method) instead of as ``GetCost`` reports it
    debit: bool = False


@dataclass
class _Interval:
    destination: str
    band: str
    weight: Decimal
    rate: DestinationRate


def _money(amount: Decimal, decimals: int, what: str) -> str:
    if amount >= 9_000_000:
        raise NotExpressible(f"{what} {amount} is too large")
    exponent = amount.normalize().as_tuple().exponent
    assert isinstance(exponent, int)
    if -exponent > decimals:
        raise NotExpressible(f"{what} {amount} has more than {decimals} decimals")
    return format(amount.normalize(), "f") if amount else "0"


def _band(timing: Timing, weight: int) -> dict[str, Any]:
    band: dict[str, Any] = {}
    for key, values in (
        ("years", timing.years),
        ("months", timing.months),
        ("month_days", timing.month_days),
        ("weekdays", timing.weekdays),
    ):
        if values:
            band[key] = sorted(set(values))
    if not band:
        band["weekdays"] = [1, 2, 3, 4, 5, 6, 7]
    s = timing.start
    band["start"] = f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}"
    band["weight"] = weight
    return band


def _groups(slots: list[RateSlot], service: str, where: str) -> list[dict[str, Any]]:
    """CGRateS rate slots as rate groups; durations are seconds for voice, a count of
    nanoseconds for SMS and data (CGRateS's usage unit: an SMS is 1 ns, a byte 1 ns)."""
    scale = _NS_PER_S if service == "voice" else 1
    groups = []
    for slot in sorted(slots, key=lambda s: s.start_ns):
        unit = slot.unit_ns or _NS_PER_S  # CGRateS: 0 is one second
        increment = slot.increment_ns or _NS_PER_S
        for value, what in ((unit, "RateUnit"), (increment, "RateIncrement"),
                            (slot.start_ns, "GroupIntervalStart")):  # fmt: skip
            if value % scale:
                raise NotExpressible(
                    f"{what} of {value} ns is not whole seconds, which voice is rated in "
                    f"({slot.where})"
                )
        groups.append(
            {
                "start": slot.start_ns // scale,
                "rate": _money(slot.rate, 9, f"rate ({slot.where})"),
                "unit": unit // scale,
                "increment": increment // scale,
            }
        )
    if groups[0]["start"] != 0:
        raise NotExpressible(f"rates {where} start after 0: CGRateS finds no rate before it")
    return groups


def plan_document(
    tp: TariffPlan, plan_id: str, services: list[str], options: ConvertOptions
) -> tuple[dict[str, Any], list[str]]:
    """The tariff document of RatingPlan ``plan_id`` pricing ``services``, and warnings."""
    warnings: list[str] = []
    if not _ID.match(plan_id):
        raise NotExpressible(f"the id {plan_id!r} is no tariff id (letters, digits, _ . : -)")
    bindings = tp.rating_plans[plan_id]
    # (timing, weight) -> band name: the timing's id, with the weight where it has several
    weights_of: dict[str, set[Decimal]] = {}
    for b in bindings:
        weights_of.setdefault(b.timing, set()).add(b.weight)
    all_weights = sorted({b.weight for b in bindings})
    integral = all(w == w.to_integral_value() and abs(w) < 2**31 for w in all_weights)
    rank = {w: int(w) if integral else 10 * i for i, w in enumerate(all_weights)}
    bands: dict[str, dict[str, Any]] = {}
    intervals: list[_Interval] = []
    for b in bindings:
        name = b.timing if len(weights_of[b.timing]) == 1 else f"{b.timing}@{b.weight}"
        bands[name] = _band(tp.timings[b.timing], rank[b.weight])
        intervals.extend(
            _Interval(dr.destination, name, b.weight, dr)
            for dr in tp.destination_rates[b.destination_rates]
        )
    # the plan's destinations and their prefixes; a prefix shared by several goes where
    # CGRateS sends it: the destination whose intervals weigh most
    weight_of: dict[str, Decimal] = {}
    for iv in intervals:
        weight_of[iv.destination] = max(weight_of.get(iv.destination, iv.weight), iv.weight)
    owner: dict[str, str] = {}
    for dest in sorted(d for d in weight_of if d != ANY):
        if not _ID.match(dest):
            raise NotExpressible(
                f"destination id {dest!r} is no set name (letters, digits, _ . : -)"
            )
        for raw in tp.destinations[dest]:
            # usage holds E.164 numbers without '+': "+49" is the prefix 49
            prefix = raw[1:] if raw.startswith("+") and raw[1:].isdigit() else raw
            if not _PREFIX.match(prefix):
                raise NotExpressible(
                    f"destination {dest} has prefix {raw!r}: prefixes are 1-24 digits, or 1-24 "
                    "printable characters starting with a non-digit"
                )
            other = owner.get(prefix)
            if other is None or weight_of[dest] > weight_of[other]:
                if other is not None:
                    warnings.append(f"prefix {prefix} is in {other} and {dest}: {dest} weighs more")
                owner[prefix] = dest
            elif other != dest:
                tie = (
                    " (equal weights: the id first in order)"
                    if weight_of[dest] == weight_of[other]
                    else ""
                )
                warnings.append(f"prefix {prefix} is in {other} and {dest}: {other} is used{tie}")
    destinations: dict[str, list[str]] = {}
    for prefix, dest in owner.items():
        destinations.setdefault(dest, []).append(prefix)
    for dest in sorted(set(weight_of) - set(destinations) - {ANY}):
        warnings.append(f"destination {dest} keeps no prefix of its own in this plan: never used")
    # rates and rules, per service
    rates: dict[str, dict[str, Any]] = {}
    pricing: list[dict[str, Any]] = []
    seen: set[tuple[str, str, str]] = set()
    for service in services:
        for iv in intervals:
            dest = iv.destination
            if dest != ANY and dest not in destinations:
                continue
            dr = iv.rate
            rate_name = f"{dr.id}:{dest}" + (f":{service}" if len(services) > 1 else "")
            if rate_name not in rates:
                rates[rate_name] = _rate(tp, dr, service, options, warnings)
            key = (service, dest, iv.band)
            if key in seen:
                warnings.append(
                    f"destination {dest} has two rates at timing {iv.band}: the first is used "
                    f"({dr.where})"
                )
                continue
            seen.add(key)
            pricing.append(
                {
                    "service": service,
                    "destinations": "*" if dest == ANY else dest,
                    "band": iv.band,
                    "rate": rate_name,
                }
            )
    activations = [p.activation for p in tp.profiles if p.rating_plan == plan_id]
    head = tariff_head(plan_id, f"CGRateS RatingPlan {plan_id}", options)
    head["active_from"] = min(activations, default=_EPOCH)
    doc = {"tariff": head, "destinations": destinations, "bands": bands, "rates": rates,
           "pricing": pricing}  # fmt: skip
    return doc, warnings


def tariff_head(tariff_id: str, name: str, options: ConvertOptions) -> dict[str, Any]:
    """The ``[tariff]`` table of an imported tariff (``active_from`` left to the caller)."""
    head: dict[str, Any] = {
        "id": tariff_id,
        "name": name,
        "currency": options.currency,
        "timezone": options.timezone,
        "version": "cgrates",
        "active_from": _EPOCH,
        "band_selection": "per-destination",
        "charge_zero_usage": False,  # CGRateS: a call of no duration costs nothing
    }
    if options.rounding_decimals is not None:
        head["increment_decimals"] = options.rounding_decimals
        head["increment_rounding_method"] = "half-up"  # CGRateS's *middle
    return head


def _rate(
    tp: TariffPlan, dr: DestinationRate, service: str, options: ConvertOptions,
    warnings: list[str],
) -> dict[str, Any]:  # fmt: skip
    slots = tp.rates[dr.rates]
    if dr.rounding_decimals > 6:
        raise NotExpressible(
            f"RoundingDecimals {dr.rounding_decimals} is finer than micro-units ({dr.where})"
        )
    rate: dict[str, Any] = {
        # CGRateS takes the connect fee of the Rates id's first row
        "connect_fee": _money(slots[0].connect_fee, 9, f"connect fee ({slots[0].where})"),
        "groups": _groups(slots, service, f"{dr.rates} ({slots[0].where})"),
        "rounding_method": _METHODS[dr.rounding_method],
        "rounding_decimals": dr.rounding_decimals,
    }
    if dr.rounding_decimals == 0 or options.debit:
        # CGRateS rounds a total only to more than 0 decimals (GetLongestRounding): with 0
        # it keeps the increments' sum; so does an account's debit (the increments, each
        # on the general rounding_decimals grid); micro-units are the finest cost here
        rate["rounding_decimals"] = 6
    if dr.max_cost > 0 and dr.max_cost_strategy == "*free":
        if options.debit:
            raise NotExpressible(
                f"MaxCost with *free when pricing debits: CGRateS then debits increments "
                f"until their sum reaches MaxCost, up to one increment beyond it, which a cap "
                f"cannot say ({dr.where})"
            )
        rate["max_cost"] = _money(dr.max_cost, 6, f"MaxCost ({dr.where})")
    elif dr.max_cost > 0 and dr.max_cost_strategy == "*disconnect":
        # GetCost and an account's debit charge the call in full: *disconnect only makes
        # SessionS end a live call where its cost reaches MaxCost (a dry-run debit)
        warnings.append(
            f"{dr.id}: MaxCost {dr.max_cost} with *disconnect: CGRateS ends a live call there; "
            f"a rated record is charged in full, as CGRateS charges its CDR ({dr.where})"
        )
    return rate
