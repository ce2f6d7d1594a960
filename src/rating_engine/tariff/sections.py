"""The tables of a tariff document: rates, bands, destination sets, pricing, period pricing."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from rating_engine.tariff.fields import (
    ID_PATTERN,
    MONEY_DECIMALS,
    RATE_DECIMALS,
    FieldContext,
    check_keys,
    get_field,
    parse_money,
    parse_rounding,
    parse_time_of_day,
    parse_timestamp,
)
from rating_engine.tariff.model import (
    PERIOD_MEASURES,
    PERIOD_MODES,
    SERVICES,
    Band,
    DestinationSet,
    PassThrough,
    PeriodPricing,
    PricingRule,
    Rate,
    RateGroup,
    Tier,
)

__all__ = [
    "parse_band",
    "parse_destinations",
    "parse_period_pricing",
    "parse_pricing",
    "parse_rate",
]

_DATE = re.compile(r"^(\*|\d{4})-(\d{2})-(\d{2})$")
#: digit prefixes (E.164), or text ones that start with a non-digit (``voicemail``, ``+49``):
#: a destination starting with a digit can only match the former, else only the latter
_PREFIX = re.compile(r"^([0-9]{1,24}|[!-/:-~][!-~]{0,23})$")


def parse_rate(ctx: FieldContext, name: str, table: Any, defaults: dict[str, Any]) -> Rate:
    """A ``[rates.<name>]`` table; ``defaults`` holds the tariff's rounding settings."""
    field = f"rates.{name}"
    if not isinstance(table, dict):
        raise ctx.fail(field, "expected a table")
    check_keys(
        ctx,
        table,
        {
            "connect_fee",
            "groups",
            "rounding_method",
            "rounding_decimals",
            "increment_rounding_method",
            "increment_decimals",
            "min_charge",
            "max_cost",
            "charge_zero_usage",
            "pass_through",
            "markup_percent",
            "markup_fixed",
        },
        field,
    )
    passing = _pass_through(ctx, table, field)
    connect = parse_money(ctx, table.get("connect_fee", "0"), f"{field}.connect_fee", RATE_DECIMALS)
    # a pass-through rate prices nothing by groups: one zero group bills the usage's units
    groups_raw = [{"rate": "0", "unit": 1, "increment": 1}] if passing else \
        get_field(ctx, table, "groups", field, list)  # fmt: skip
    if not groups_raw:
        raise ctx.fail(f"{field}.groups", "at least one rate group is required")
    groups: list[RateGroup] = []
    for i, g in enumerate(groups_raw):
        gfield = f"{field}.groups[{i}]"
        if not isinstance(g, dict):
            raise ctx.fail(gfield, "expected an inline table")
        check_keys(ctx, g, {"start", "rate", "unit", "increment"}, gfield)
        start = get_field(ctx, g, "start", gfield, int, 0)
        unit = get_field(ctx, g, "unit", gfield, int)
        increment = get_field(ctx, g, "increment", gfield, int)
        rate = parse_money(
            ctx, get_field(ctx, g, "rate", gfield, str), f"{gfield}.rate", RATE_DECIMALS
        )
        if not 1 <= unit <= 10**13:
            raise ctx.fail(f"{gfield}.unit", "must be an integer 1..1e13")
        if not 1 <= increment <= 10**12:
            raise ctx.fail(f"{gfield}.increment", "must be an integer 1..1e12")
        if start < 0 or start > 10**13:
            raise ctx.fail(f"{gfield}.start", "must be an integer >= 0")
        if i == 0 and start != 0:
            raise ctx.fail(f"{gfield}.start", "the first group must start at 0")
        if groups and start <= groups[-1].start:
            raise ctx.fail(f"{gfield}.start", "group starts must increase strictly")
        groups.append(RateGroup(start, rate, unit, increment))
    rounding = parse_rounding(
        ctx,
        table.get("rounding_method", defaults["rounding_method"]),
        table.get("rounding_decimals", defaults["rounding_decimals"]),
        f"{field}.rounding",
    )
    inc_dec = table.get("increment_decimals", defaults.get("increment_decimals"))
    increment_rounding = None
    if inc_dec is not None:
        increment_rounding = parse_rounding(
            ctx,
            table.get("increment_rounding_method", defaults["increment_rounding_method"]),
            inc_dec,
            f"{field}.increment_rounding",
            most=9,
        )
    min_charge = max_cost = None
    if "min_charge" in table:
        min_charge = parse_money(ctx, table["min_charge"], f"{field}.min_charge", MONEY_DECIMALS)
    if "max_cost" in table:
        max_cost = parse_money(ctx, table["max_cost"], f"{field}.max_cost", MONEY_DECIMALS)
    if min_charge is not None and max_cost is not None and min_charge > max_cost:
        raise ctx.fail(f"{field}.min_charge", "min_charge exceeds max_cost")
    zero = table.get("charge_zero_usage", defaults.get("charge_zero_usage", True))
    if not isinstance(zero, bool):
        raise ctx.fail(f"{field}.charge_zero_usage", "expected true or false")
    if passing is not None and passing.markup_fixed < 0 and min_charge is None:
        raise ctx.fail(
            f"{field}.markup_fixed",
            f"a negative markup_fixed ({passing.markup_fixed}) makes the price of a cheap record "
            "negative; give a min_charge",
        )
    return Rate(
        name, connect, tuple(groups), rounding, increment_rounding, min_charge, max_cost, zero,
        passing,
    )  # fmt: skip


def _pass_through(ctx: FieldContext, table: dict[str, Any], field: str) -> PassThrough | None:
    """The pass-through settings of a rate table, None unless ``pass_through = true``."""
    on = table.get("pass_through", False)
    if not isinstance(on, bool):
        raise ctx.fail(f"{field}.pass_through", "expected true or false")
    if not on:
        for key in ("markup_percent", "markup_fixed"):
            if key in table:
                raise ctx.fail(f"{field}.{key}", "only for a rate with pass_through = true")
        return None
    for key in ("groups", "connect_fee"):
        if key in table:
            raise ctx.fail(f"{field}.{key}", "a pass-through rate is priced by the record's price")
    percent = _signed(ctx, table.get("markup_percent", "0"), f"{field}.markup_percent", 4)
    if percent < -100:
        raise ctx.fail(
            f"{field}.markup_percent", f"a markup of {percent} % makes every price negative"
        )
    fixed = _signed(ctx, table.get("markup_fixed", "0"), f"{field}.markup_fixed", MONEY_DECIMALS)
    return PassThrough(percent, fixed)


def _signed(ctx: FieldContext, value: Any, field: str, decimals: int) -> Decimal:
    """A decimal string that may be negative, with at most ``decimals`` decimals."""
    if not isinstance(value, str):
        raise ctx.fail(field, 'expected a decimal string, e.g. "-2.5"')
    try:
        amount = Decimal(value.strip())
    except InvalidOperation:
        raise ctx.fail(field, f"not a decimal number: {value!r}") from None
    if not amount.is_finite():
        raise ctx.fail(field, f"must be finite: {value!r}")
    return -parse_money(ctx, str(-amount), field, decimals) if amount < 0 else \
        parse_money(ctx, value, field, decimals)  # fmt: skip


def parse_band(ctx: FieldContext, name: str, table: Any, zone: ZoneInfo | None = None) -> Band:
    """A ``[bands.<name>]`` table; ``zone`` reads its window's naive date-times."""
    field = f"bands.{name}"
    if not isinstance(table, dict):
        raise ctx.fail(field, "expected a table")
    keys = {"weekdays", "dates", "years", "months", "month_days", "start", "end", "weight"}
    check_keys(ctx, table, keys | {"active_from", "active_until"}, field)
    window: list[int | None] = []
    for key in ("active_from", "active_until"):
        us = None
        if key in table:
            us = parse_timestamp(ctx, table[key], zone or ZoneInfo("UTC"), f"{field}.{key}")
            if us % 1_000_000:
                raise ctx.fail(f"{field}.{key}", "a band's window is in whole seconds")
        window.append(us)
    if window[0] is not None and window[1] is not None and window[0] >= window[1]:
        raise ctx.fail(f"{field}.active_until", "active_until must be after active_from")
    weekdays = _int_set(ctx, table, "weekdays", field, 1, 7, "1 (Monday) .. 7 (Sunday)")
    years = _int_set(ctx, table, "years", field, 1900, 2200, "years 1900 .. 2200")
    months = _int_set(ctx, table, "months", field, 1, 12, "1 .. 12")
    month_days = _int_set(ctx, table, "month_days", field, 1, 31, "1 .. 31")
    dates: list[tuple[int | None, int, int]] = []
    for d in get_field(ctx, table, "dates", field, list, []):
        if not isinstance(d, str) or not (m := _DATE.match(d)):
            raise ctx.fail(f"{field}.dates", f'expected "YYYY-MM-DD" or "*-MM-DD": {d!r}')
        year = None if m[1] == "*" else int(m[1])
        month, day = int(m[2]), int(m[3])
        try:
            datetime(year or 2000, month, day)
        except ValueError:
            raise ctx.fail(f"{field}.dates", f"not a date: {d!r}") from None
        dates.append((year, month, day))
    if not (weekdays or dates or years or months or month_days):
        raise ctx.fail(field, "a band needs weekdays, dates, years, months or month_days")
    start = parse_time_of_day(ctx, table.get("start", "00:00"), f"{field}.start")
    end = parse_time_of_day(ctx, table.get("end", "24:00"), f"{field}.end")
    if start >= end:
        raise ctx.fail(f"{field}.end", "end must be after start (split a band over midnight)")
    weight = get_field(ctx, table, "weight", field, int, 0)
    return Band(name, weekdays, tuple(dates), start, end, weight, years, months, month_days,
                window[0], window[1])  # fmt: skip


def _int_set(
    ctx: FieldContext, table: dict[str, Any], key: str, field: str, lo: int, hi: int, what: str
) -> frozenset[int]:
    """A list of integers lo..hi at ``table[key]`` (absent = empty)."""
    values = get_field(ctx, table, key, field, list, [])
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise ctx.fail(f"{field}.{key}", f"{key} are integers {what}: {v!r}")
    return frozenset(values)


def parse_destinations(ctx: FieldContext, table: Any, field: str) -> dict[str, DestinationSet]:
    """A table of destination sets (name -> digit prefixes) at ``field``."""
    if not isinstance(table, dict):
        raise ctx.fail(field, "expected a table of destination sets")
    out: dict[str, DestinationSet] = {}
    for name, prefixes in table.items():
        sfield = f"{field}.{name}"
        if not ID_PATTERN.match(name):
            raise ctx.fail(sfield, "set names use letters, digits and _ . : -")
        if not isinstance(prefixes, list) or not prefixes:
            raise ctx.fail(sfield, "expected a non-empty list of digit prefixes")
        for p in prefixes:
            if not isinstance(p, str) or not _PREFIX.match(p):
                raise ctx.fail(
                    sfield,
                    "prefixes are 1-24 digits, or 1-24 printable characters starting with a "
                    f"non-digit (voicemail, +49): {p!r}",
                )
        out[name] = DestinationSet(name, tuple(prefixes))
    return out


def parse_pricing(ctx: FieldContext, rules: Any, field: str) -> list[PricingRule]:
    """The ``[[pricing]]`` rules at ``field``."""
    if not isinstance(rules, list):
        raise ctx.fail(field, "expected an array of tables [[pricing]]")
    out = []
    for i, rule in enumerate(rules):
        rfield = f"{field}[{i}]"
        if not isinstance(rule, dict):
            raise ctx.fail(rfield, "expected a table")
        check_keys(ctx, rule, {"service", "destinations", "band", "rate"}, rfield)
        service = get_field(ctx, rule, "service", rfield, str)
        if service not in SERVICES:
            raise ctx.fail(f"{rfield}.service", f"must be one of {', '.join(SERVICES)}")
        dest = get_field(ctx, rule, "destinations", rfield, str, "*")
        band = get_field(ctx, rule, "band", rfield, str, "*")
        rate = get_field(ctx, rule, "rate", rfield, str)
        out.append(
            PricingRule(service, None if dest == "*" else dest, None if band == "*" else band, rate)
        )
    return out


def parse_period_pricing(
    ctx: FieldContext, name: str, t: Any, set_names: set[str], defaults: dict[str, Any]
) -> PeriodPricing:
    """A ``[period_pricing.<name>]`` table; its sets must be among ``set_names``."""
    field = f"period_pricing.{name}"
    if not isinstance(t, dict):
        raise ctx.fail(field, "expected a table")
    check_keys(ctx, t, _PERIOD_KEYS, field)
    prorated = t.get("measure") == "prorated"
    metric = ""
    if prorated:  # a quantity over the period: no service, destinations or events
        metric = get_field(ctx, t, "metric", field, str)
        if not metric.replace("_", "").isalnum():
            raise ctx.fail(f"{field}.metric", "must be a name of letters, digits and _")
        for key in ("service", "destinations", "free_events"):
            if key in t:
                raise ctx.fail(f"{field}.{key}", 'not for measure = "prorated" (give metric)')
    elif "metric" in t:
        raise ctx.fail(f"{field}.metric", 'only for measure = "prorated"')
    service = "" if prorated else get_field(ctx, t, "service", field, str)
    if not prorated and service not in SERVICES:
        raise ctx.fail(f"{field}.service", f"must be one of {', '.join(SERVICES)}")
    sets = tuple(get_field(ctx, t, "destinations", field, list, []))
    for s in sets:
        if s not in set_names:
            raise ctx.fail(f"{field}.destinations", f"unknown destination set {s!r}")
    mode = get_field(ctx, t, "mode", field, str)
    if mode not in PERIOD_MODES:
        raise ctx.fail(f"{field}.mode", 'must be "graduated", "volume" or "package"')
    measure = get_field(ctx, t, "measure", field, str, "units")
    if measure not in PERIOD_MEASURES:
        raise ctx.fail(f"{field}.measure", 'must be "units", "events", "cost" or "prorated"')
    cost = measure == "cost"
    if cost and "unit" in t:
        raise ctx.fail(f"{field}.unit", "a cost measure is priced by percent: no unit")
    if cost and mode == "package":
        raise ctx.fail(f"{field}.mode", "a cost measure is priced by tiers, not packages")
    if cost and "free_units" in t:
        raise ctx.fail(f"{field}.free_units", "a cost measure takes free_events, not units")
    # a cost measure is micro-units; a percent p is then p/100 per unit of money
    unit = 1_000_000 if cost else get_field(ctx, t, "unit", field, int, 1)
    if not 1 <= unit <= 10**13:
        raise ctx.fail(f"{field}.unit", "must be an integer 1..1e13")
    free_units = get_field(ctx, t, "free_units", field, int, 0)
    if not 0 <= free_units < 2**62:
        raise ctx.fail(f"{field}.free_units", "must be an integer >= 0")
    free_events = get_field(ctx, t, "free_events", field, int, 0)
    if not 0 <= free_events <= 10**6:
        raise ctx.fail(f"{field}.free_events", "must be an integer 0..1000000")
    size, price = 0, Decimal(0)
    tiers: list[Tier] = []
    if mode == "package":
        if "tiers" in t:
            raise ctx.fail(f"{field}.tiers", "a package pricing has no tiers")
        size = get_field(ctx, t, "package_size", field, int)
        if not 1 <= size <= 10**13:
            raise ctx.fail(f"{field}.package_size", "must be an integer 1..1e13 (not 0)")
        price = parse_money(
            ctx, get_field(ctx, t, "package_price", field, str), f"{field}.package_price",
            MONEY_DECIMALS,
        )  # fmt: skip
    else:
        for key in ("package_size", "package_price"):
            if key in t:
                raise ctx.fail(f"{field}.{key}", 'only for mode = "package"')
        raw = get_field(ctx, t, "tiers", field, list)
        for i, tier in enumerate(raw):
            tiers.append(_tier(ctx, f"{field}.tiers[{i}]", tier, i == len(raw) - 1, tiers, cost))
        if not tiers:
            raise ctx.fail(f"{field}.tiers", "at least one tier is required")
    rounding = parse_rounding(
        ctx,
        t.get("rounding_method", defaults["rounding_method"]),
        t.get("rounding_decimals", defaults["rounding_decimals"]),
        f"{field}.rounding",
    )
    return PeriodPricing(
        name, service, sets, mode, unit, tuple(tiers), rounding, measure, free_units,
        free_events, size, price, metric,
    )  # fmt: skip


_PERIOD_KEYS = {
    "service", "destinations", "mode", "measure", "unit", "tiers", "rounding_method",
    "rounding_decimals", "free_units", "free_events", "package_size", "package_price", "metric",
}  # fmt: skip


def _tier(
    ctx: FieldContext, tfield: str, tier: Any, last: bool, before: list[Tier], cost: bool
) -> Tier:
    """One tier ``{ upto, rate | percent, flat }``; a cost measure's limits are money."""
    if not isinstance(tier, dict):
        raise ctx.fail(tfield, "expected an inline table")
    price_key = "percent" if cost else "rate"
    check_keys(ctx, tier, {"upto", price_key, "flat"}, tfield)
    if cost:
        upto_raw = tier.get("upto")
        upto = None
        if upto_raw is not None:
            upto = int(parse_money(ctx, upto_raw, f"{tfield}.upto", MONEY_DECIMALS) * 10**6)
    else:
        upto = get_field(ctx, tier, "upto", tfield, int, None)
    if (upto is None) != last:
        raise ctx.fail(f"{tfield}.upto", "every tier but the last needs upto; the last none")
    if upto is not None and upto <= 0:
        raise ctx.fail(f"{tfield}.upto", "tier limits must be positive")
    if upto is not None and before and upto <= (before[-1].upto or 0):
        raise ctx.fail(
            f"{tfield}.upto",
            f"overlaps the tier before (up to {before[-1].upto}): tier limits must increase",
        )
    if price_key not in tier and "flat" not in tier:
        raise ctx.fail(tfield, f"a tier needs a {price_key}, a flat fee or both")
    # a percent has two decimals fewer than a rate: p % per unit of money is p/100
    decimals = RATE_DECIMALS - 2 if cost else RATE_DECIMALS
    rate = parse_money(
        ctx, get_field(ctx, tier, price_key, tfield, str, "0"), f"{tfield}.{price_key}", decimals
    )
    flat = parse_money(
        ctx, get_field(ctx, tier, "flat", tfield, str, "0"), f"{tfield}.flat", MONEY_DECIMALS
    )
    return Tier(upto, rate / 100 if cost else rate, flat)
