"""The tariff model: frozen dataclasses, loaded from TOML and validated.

A tariff has a currency, an IANA time zone, named destination sets (digit prefixes),
time bands, named rates (connect fee + rate groups), pricing rules binding
(service, destination set, band) to a rate, allowances, and versions with
activation times. The format is documented field by field in ``docs/tariffs.md``.

Every validation failure raises :class:`TariffError` naming the file, the tariff
and the field. Amounts stay exact: money is parsed from decimal strings into
:class:`~decimal.Decimal` and compiled to integers later.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from rating_engine.errors import TariffError

__all__ = [
    "ROUNDING_METHODS",
    "SERVICES",
    "Allowance",
    "Band",
    "DestinationSet",
    "PeriodPricing",
    "PricingRule",
    "Rate",
    "RateGroup",
    "Rounding",
    "Tariff",
    "TariffVersion",
    "Tier",
    "load_tariff_file",
    "parse_tariff",
]

#: Services a tariff prices; the unit of each is seconds, events and bytes.
SERVICES = ("voice", "sms", "data")
#: Rounding methods (costs are never negative, so "up" is the ceiling).
ROUNDING_METHODS = ("up", "down", "half-up", "half-even")
#: Rates may carry up to 9 decimals (nano-units); fees and limits up to 6 (micro-units).
RATE_DECIMALS = 9
MONEY_DECIMALS = 6

_DATE = re.compile(r"^(\*|\d{4})-(\d{2})-(\d{2})$")
_TIME = re.compile(r"^(\d{2}):(\d{2})(?::(\d{2}))?$")
_ID = re.compile(r"^[A-Za-z0-9_.:\-]+$")


@dataclass(frozen=True)
class Rounding:
    """How an amount is rounded: a method and a number of decimals of the currency."""

    method: str
    decimals: int


@dataclass(frozen=True)
class RateGroup:
    """From ``start`` units into the usage on: ``rate`` per ``unit``, billed per ``increment``.

    Units are seconds (voice), events (sms) or bytes (data).
    """

    start: int
    rate: Decimal
    unit: int
    increment: int


@dataclass(frozen=True)
class Rate:
    """A named price: connect fee, rate groups, rounding and per-record limits."""

    name: str
    connect_fee: Decimal
    groups: tuple[RateGroup, ...]
    rounding: Rounding
    #: CGRateS compatibility: each increment's cost is rounded like this before summing.
    increment_rounding: Rounding | None
    min_charge: Decimal | None
    max_cost: Decimal | None


@dataclass(frozen=True)
class Band:
    """A time band in the tariff's zone: on matching days, from ``start`` to ``end`` (seconds).

    A day matches if its ISO weekday (1 = Monday) is in ``weekdays`` or it equals one of
    ``dates`` ((year or None for every year, month, day)). The highest ``weight`` wins.
    """

    name: str
    weekdays: frozenset[int]
    dates: tuple[tuple[int | None, int, int], ...]
    start: int
    end: int
    weight: int


@dataclass(frozen=True)
class DestinationSet:
    """A named set of destination digit prefixes."""

    name: str
    prefixes: tuple[str, ...]


@dataclass(frozen=True)
class PricingRule:
    """``service`` usage to ``destinations`` in ``band`` (None = any) costs ``rate``."""

    service: str
    destinations: str | None
    band: str | None
    rate: str


@dataclass(frozen=True)
class Allowance:
    """Free ``units`` per billing period for ``service`` to ``destinations`` (empty = any)."""

    name: str
    service: str
    destinations: tuple[str, ...]
    units: int


@dataclass(frozen=True)
class Tier:
    """A tier of period pricing: quantities up to ``upto`` (None = no limit) at ``rate``."""

    upto: int | None
    rate: Decimal


@dataclass(frozen=True)
class PeriodPricing:
    """Tiered pricing of a billing period's total ``service`` quantity per subscription.

    ``graduated``: each tier prices the part of the total inside it; ``volume``: the tier the
    total falls into prices all of it. ``rate`` is per ``unit`` (seconds, events, bytes).
    """

    name: str
    service: str
    destinations: tuple[str, ...]
    mode: str
    unit: int
    tiers: tuple[Tier, ...]
    rounding: Rounding


@dataclass(frozen=True)
class TariffVersion:
    """A complete, resolved definition in force from ``active_from`` (UTC microseconds)."""

    version: str
    active_from: int
    destinations: tuple[DestinationSet, ...]
    bands: tuple[Band, ...]
    rates: tuple[Rate, ...]
    pricing: tuple[PricingRule, ...]


@dataclass(frozen=True)
class Tariff:
    """A tariff: identity, zone, currency, versions (ascending ``active_from``), allowances."""

    id: str
    name: str
    currency: str
    timezone: str
    versions: tuple[TariffVersion, ...]
    allowances: tuple[Allowance, ...]
    source: str
    content_hash: str
    period_pricing: tuple[PeriodPricing, ...] = ()


class _Ctx:
    """Builds error messages naming file, tariff and field."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.tariff = "?"

    def fail(self, field: str, message: str) -> TariffError:
        return TariffError(f"{message} (file {self.source}, tariff {self.tariff}, field {field})")


def _get(
    ctx: _Ctx, table: dict[str, Any], key: str, field: str, kind: type, default: Any = ...
) -> Any:
    if key not in table:
        if default is ...:
            raise ctx.fail(f"{field}.{key}" if field else key, "missing required field")
        return default
    value = table[key]
    if kind is int and isinstance(value, bool):
        raise ctx.fail(f"{field}.{key}" if field else key, "expected an integer")
    if not isinstance(value, kind):
        raise ctx.fail(f"{field}.{key}" if field else key, f"expected {kind.__name__}")
    return value


def _check_keys(ctx: _Ctx, table: dict[str, Any], allowed: set[str], field: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ctx.fail(f"{field}.{unknown[0]}" if field else unknown[0], "unknown field")


def _money(ctx: _Ctx, value: Any, field: str, decimals: int) -> Decimal:
    # Money comes as a decimal string so that TOML floats never round it on the way in.
    if not isinstance(value, str):
        raise ctx.fail(field, 'money must be a decimal string, e.g. "0.0125"')
    try:
        amount = Decimal(value.strip())
    except InvalidOperation:
        raise ctx.fail(field, f"not a decimal number: {value!r}") from None
    if not amount.is_finite() or amount < 0:
        raise ctx.fail(field, f"must be a finite amount >= 0: {value!r}")
    exponent = amount.as_tuple().exponent
    assert isinstance(exponent, int)
    if -exponent > decimals:
        raise ctx.fail(field, f"at most {decimals} decimals allowed: {value!r}")
    if amount >= Decimal(9_000_000):
        raise ctx.fail(field, f"amount too large: {value!r}")
    return amount


def _rounding(ctx: _Ctx, method: Any, decimals: Any, field: str) -> Rounding:
    if method not in ROUNDING_METHODS:
        raise ctx.fail(f"{field}_method", f"must be one of {', '.join(ROUNDING_METHODS)}")
    if isinstance(decimals, bool) or not isinstance(decimals, int) or not 0 <= decimals <= 6:
        raise ctx.fail(f"{field}_decimals", "must be an integer 0..6")
    return Rounding(method, decimals)


def _time_of_day(ctx: _Ctx, value: Any, field: str) -> int:
    if not isinstance(value, str) or not (m := _TIME.match(value)):
        raise ctx.fail(field, 'expected "HH:MM" or "HH:MM:SS"')
    h, mi, s = int(m[1]), int(m[2]), int(m[3] or 0)
    seconds = h * 3600 + mi * 60 + s
    if mi > 59 or s > 59 or seconds > 86400:
        raise ctx.fail(field, f"not a time of day: {value!r}")
    return seconds


def _timestamp(ctx: _Ctx, value: Any, zone: ZoneInfo, field: str) -> int:
    # TOML datetimes arrive parsed; a local (naive) one is read in the tariff's zone.
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ctx.fail(field, f"not an ISO date-time: {value!r}") from None
    if not isinstance(value, datetime):
        raise ctx.fail(field, "expected a date-time")
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    delta = value - datetime(1970, 1, 1, tzinfo=ZoneInfo("UTC"))
    return int((delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds)


def _rate(ctx: _Ctx, name: str, table: Any, defaults: dict[str, Any]) -> Rate:
    field = f"rates.{name}"
    if not isinstance(table, dict):
        raise ctx.fail(field, "expected a table")
    _check_keys(
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
        },
        field,
    )
    connect = _money(ctx, table.get("connect_fee", "0"), f"{field}.connect_fee", RATE_DECIMALS)
    groups_raw = _get(ctx, table, "groups", field, list)
    if not groups_raw:
        raise ctx.fail(f"{field}.groups", "at least one rate group is required")
    groups: list[RateGroup] = []
    for i, g in enumerate(groups_raw):
        gfield = f"{field}.groups[{i}]"
        if not isinstance(g, dict):
            raise ctx.fail(gfield, "expected an inline table")
        _check_keys(ctx, g, {"start", "rate", "unit", "increment"}, gfield)
        start = _get(ctx, g, "start", gfield, int, 0)
        unit = _get(ctx, g, "unit", gfield, int)
        increment = _get(ctx, g, "increment", gfield, int)
        rate = _money(ctx, _get(ctx, g, "rate", gfield, str), f"{gfield}.rate", RATE_DECIMALS)
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
    rounding = _rounding(
        ctx,
        table.get("rounding_method", defaults["rounding_method"]),
        table.get("rounding_decimals", defaults["rounding_decimals"]),
        f"{field}.rounding",
    )
    inc_dec = table.get("increment_decimals", defaults.get("increment_decimals"))
    increment_rounding = None
    if inc_dec is not None:
        increment_rounding = _rounding(
            ctx,
            table.get("increment_rounding_method", defaults["increment_rounding_method"]),
            inc_dec,
            f"{field}.increment_rounding",
        )
    min_charge = max_cost = None
    if "min_charge" in table:
        min_charge = _money(ctx, table["min_charge"], f"{field}.min_charge", MONEY_DECIMALS)
    if "max_cost" in table:
        max_cost = _money(ctx, table["max_cost"], f"{field}.max_cost", MONEY_DECIMALS)
    if min_charge is not None and max_cost is not None and min_charge > max_cost:
        raise ctx.fail(f"{field}.min_charge", "min_charge exceeds max_cost")
    return Rate(name, connect, tuple(groups), rounding, increment_rounding, min_charge, max_cost)


def _band(ctx: _Ctx, name: str, table: Any) -> Band:
    field = f"bands.{name}"
    if not isinstance(table, dict):
        raise ctx.fail(field, "expected a table")
    _check_keys(ctx, table, {"weekdays", "dates", "start", "end", "weight"}, field)
    weekdays = _get(ctx, table, "weekdays", field, list, [])
    for d in weekdays:
        if isinstance(d, bool) or not isinstance(d, int) or not 1 <= d <= 7:
            raise ctx.fail(f"{field}.weekdays", "weekdays are integers 1 (Monday) .. 7 (Sunday)")
    dates: list[tuple[int | None, int, int]] = []
    for d in _get(ctx, table, "dates", field, list, []):
        if not isinstance(d, str) or not (m := _DATE.match(d)):
            raise ctx.fail(f"{field}.dates", f'expected "YYYY-MM-DD" or "*-MM-DD": {d!r}')
        year = None if m[1] == "*" else int(m[1])
        month, day = int(m[2]), int(m[3])
        try:
            datetime(year or 2000, month, day)
        except ValueError:
            raise ctx.fail(f"{field}.dates", f"not a date: {d!r}") from None
        dates.append((year, month, day))
    if not weekdays and not dates:
        raise ctx.fail(field, "a band needs weekdays or dates")
    start = _time_of_day(ctx, table.get("start", "00:00"), f"{field}.start")
    end = _time_of_day(ctx, table.get("end", "24:00"), f"{field}.end")
    if start >= end:
        raise ctx.fail(f"{field}.end", "end must be after start (split a band over midnight)")
    weight = _get(ctx, table, "weight", field, int, 0)
    return Band(name, frozenset(weekdays), tuple(dates), start, end, weight)


def _destinations(ctx: _Ctx, table: Any, field: str) -> dict[str, DestinationSet]:
    if not isinstance(table, dict):
        raise ctx.fail(field, "expected a table of destination sets")
    out: dict[str, DestinationSet] = {}
    for name, prefixes in table.items():
        sfield = f"{field}.{name}"
        if not _ID.match(name):
            raise ctx.fail(sfield, "set names use letters, digits and _ . : -")
        if not isinstance(prefixes, list) or not prefixes:
            raise ctx.fail(sfield, "expected a non-empty list of digit prefixes")
        for p in prefixes:
            if not isinstance(p, str) or not p.isdigit() or not p.isascii() or len(p) > 24:
                raise ctx.fail(sfield, f"prefixes are 1-24 digits, no '+': {p!r}")
        out[name] = DestinationSet(name, tuple(prefixes))
    return out


def _pricing(ctx: _Ctx, rules: Any, field: str) -> list[PricingRule]:
    if not isinstance(rules, list):
        raise ctx.fail(field, "expected an array of tables [[pricing]]")
    out = []
    for i, rule in enumerate(rules):
        rfield = f"{field}[{i}]"
        if not isinstance(rule, dict):
            raise ctx.fail(rfield, "expected a table")
        _check_keys(ctx, rule, {"service", "destinations", "band", "rate"}, rfield)
        service = _get(ctx, rule, "service", rfield, str)
        if service not in SERVICES:
            raise ctx.fail(f"{rfield}.service", f"must be one of {', '.join(SERVICES)}")
        dest = _get(ctx, rule, "destinations", rfield, str, "*")
        band = _get(ctx, rule, "band", rfield, str, "*")
        rate = _get(ctx, rule, "rate", rfield, str)
        out.append(
            PricingRule(service, None if dest == "*" else dest, None if band == "*" else band, rate)
        )
    return out


def _resolve_version(
    ctx: _Ctx,
    version: str,
    active_from: int,
    destinations: dict[str, DestinationSet],
    bands: dict[str, Band],
    rates: dict[str, Rate],
    pricing: list[PricingRule],
    field: str,
) -> TariffVersion:
    seen: dict[str, str] = {}
    for s in destinations.values():
        for p in s.prefixes:
            if p in seen:
                raise ctx.fail(
                    f"{field}destinations.{s.name}",
                    f"prefix {p} is already in set {seen[p]}; a prefix belongs to one set",
                )
            seen[p] = s.name
    weights: dict[int, str] = {}
    for b in bands.values():
        if b.weight in weights:
            raise ctx.fail(
                f"{field}bands.{b.name}.weight",
                f"weight {b.weight} is also band {weights[b.weight]}'s; weights decide overlaps "
                "and must differ",
            )
        weights[b.weight] = b.name
    if not bands:
        raise ctx.fail(f"{field}bands", "at least one band is required")
    keys: set[tuple[str, str | None, str | None]] = set()
    for i, r in enumerate(pricing):
        rfield = f"{field}pricing[{i}]"
        if r.destinations is not None and r.destinations not in destinations:
            raise ctx.fail(f"{rfield}.destinations", f"unknown destination set {r.destinations!r}")
        if r.band is not None and r.band not in bands:
            raise ctx.fail(f"{rfield}.band", f"unknown band {r.band!r}")
        if r.rate not in rates:
            raise ctx.fail(f"{rfield}.rate", f"unknown rate {r.rate!r}")
        key = (r.service, r.destinations, r.band)
        if key in keys:
            raise ctx.fail(rfield, "duplicate rule for the same service, destinations and band")
        keys.add(key)
    if not pricing:
        raise ctx.fail(f"{field}pricing", "at least one pricing rule is required")
    return TariffVersion(
        version,
        active_from,
        tuple(destinations.values()),
        tuple(sorted(bands.values(), key=lambda b: -b.weight)),
        tuple(rates.values()),
        tuple(pricing),
    )


def parse_tariff(doc: dict[str, Any], source: str, content_hash: str = "") -> Tariff:
    """Validate a parsed TOML document into a :class:`Tariff` (``source`` names it in errors)."""
    ctx = _Ctx(source)
    _check_keys(
        ctx,
        doc,
        {
            "tariff",
            "destinations",
            "bands",
            "rates",
            "pricing",
            "allowances",
            "versions",
            "period_pricing",
        },
        "",
    )
    head = _get(ctx, doc, "tariff", "", dict)
    tid = _get(ctx, head, "id", "tariff", str)
    if not _ID.match(tid):
        raise ctx.fail("tariff.id", "ids use letters, digits and _ . : -")
    ctx.tariff = tid
    _check_keys(
        ctx,
        head,
        {
            "id",
            "name",
            "currency",
            "timezone",
            "version",
            "active_from",
            "rounding_method",
            "rounding_decimals",
            "increment_rounding_method",
            "increment_decimals",
        },
        "tariff",
    )
    currency = _get(ctx, head, "currency", "tariff", str)
    if not re.fullmatch(r"[A-Z]{3}", currency):
        raise ctx.fail("tariff.currency", "expected an ISO 4217 code such as EUR")
    tz_name = _get(ctx, head, "timezone", "tariff", str)
    try:
        zone = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ctx.fail("tariff.timezone", f"unknown IANA time zone {tz_name!r}") from None
    defaults = {
        "rounding_method": head.get("rounding_method", "half-up"),
        "rounding_decimals": head.get("rounding_decimals", 6),
        "increment_rounding_method": head.get("increment_rounding_method", "half-up"),
        "increment_decimals": head.get("increment_decimals"),
    }
    _rounding(ctx, defaults["rounding_method"], defaults["rounding_decimals"], "tariff.rounding")

    destinations = _destinations(ctx, doc.get("destinations", {}), "destinations")
    bands_raw = _get(ctx, doc, "bands", "", dict)
    bands = {n: _band(ctx, n, t) for n, t in bands_raw.items()}
    rates = {n: _rate(ctx, n, t, defaults) for n, t in _get(ctx, doc, "rates", "", dict).items()}
    pricing = _pricing(ctx, doc.get("pricing", []), "pricing")
    first = _resolve_version(
        ctx,
        str(_get(ctx, head, "version", "tariff", str)),
        _timestamp(
            ctx, _get(ctx, head, "active_from", "tariff", object), zone, "tariff.active_from"
        ),
        destinations,
        bands,
        rates,
        pricing,
        "",
    )
    versions = [first]
    for i, v in enumerate(_get(ctx, doc, "versions", "", list, [])):
        vfield = f"versions[{i}]"
        if not isinstance(v, dict):
            raise ctx.fail(vfield, "expected a table [[versions]]")
        _check_keys(
            ctx, v, {"version", "active_from", "destinations", "bands", "rates", "pricing"}, vfield
        )
        vid = str(_get(ctx, v, "version", vfield, str))
        if any(x.version == vid for x in versions):
            raise ctx.fail(f"{vfield}.version", f"duplicate version {vid!r}")
        start = _timestamp(
            ctx, _get(ctx, v, "active_from", vfield, object), zone, f"{vfield}.active_from"
        )
        if start <= versions[-1].active_from:
            raise ctx.fail(f"{vfield}.active_from", "versions must be in ascending active_from")
        # A version merges over the base: sets, bands and rates by name; pricing replaces.
        v_dest = {
            **destinations,
            **_destinations(ctx, v.get("destinations", {}), f"{vfield}.destinations"),
        }
        v_bands = {**bands, **{n: _band(ctx, n, t) for n, t in v.get("bands", {}).items()}}
        v_rates = {
            **rates,
            **{n: _rate(ctx, n, t, defaults) for n, t in v.get("rates", {}).items()},
        }
        v_pricing = _pricing(ctx, v["pricing"], f"{vfield}.pricing") if "pricing" in v else pricing
        versions.append(
            _resolve_version(ctx, vid, start, v_dest, v_bands, v_rates, v_pricing, f"{vfield}.")
        )
    allowances = []
    for name, a in _get(ctx, doc, "allowances", "", dict, {}).items():
        afield = f"allowances.{name}"
        if not isinstance(a, dict):
            raise ctx.fail(afield, "expected a table")
        _check_keys(ctx, a, {"service", "destinations", "units"}, afield)
        service = _get(ctx, a, "service", afield, str)
        if service not in SERVICES:
            raise ctx.fail(f"{afield}.service", f"must be one of {', '.join(SERVICES)}")
        sets = tuple(_get(ctx, a, "destinations", afield, list, []))
        for s in sets:
            if not any(s == d.name for ver in versions for d in ver.destinations):
                raise ctx.fail(f"{afield}.destinations", f"unknown destination set {s!r}")
        units = _get(ctx, a, "units", afield, int)
        if not 0 < units < 2**62:
            raise ctx.fail(f"{afield}.units", "must be a positive integer")
        allowances.append(Allowance(name, service, sets, units))
    set_names = {d.name for ver in versions for d in ver.destinations}
    period = [
        _period_pricing(ctx, n, t, set_names, defaults)
        for n, t in _get(ctx, doc, "period_pricing", "", dict, {}).items()
    ]
    return Tariff(
        tid,
        str(head.get("name", tid)),
        currency,
        tz_name,
        tuple(versions),
        tuple(allowances),
        source,
        content_hash,
        tuple(period),
    )


def _period_pricing(
    ctx: _Ctx, name: str, t: Any, set_names: set[str], defaults: dict[str, Any]
) -> PeriodPricing:
    field = f"period_pricing.{name}"
    if not isinstance(t, dict):
        raise ctx.fail(field, "expected a table")
    _check_keys(
        ctx,
        t,
        {
            "service",
            "destinations",
            "mode",
            "unit",
            "tiers",
            "rounding_method",
            "rounding_decimals",
        },
        field,
    )
    service = _get(ctx, t, "service", field, str)
    if service not in SERVICES:
        raise ctx.fail(f"{field}.service", f"must be one of {', '.join(SERVICES)}")
    sets = tuple(_get(ctx, t, "destinations", field, list, []))
    for s in sets:
        if s not in set_names:
            raise ctx.fail(f"{field}.destinations", f"unknown destination set {s!r}")
    mode = _get(ctx, t, "mode", field, str)
    if mode not in ("graduated", "volume"):
        raise ctx.fail(f"{field}.mode", 'must be "graduated" or "volume"')
    unit = _get(ctx, t, "unit", field, int, 1)
    if not 1 <= unit <= 10**13:
        raise ctx.fail(f"{field}.unit", "must be an integer 1..1e13")
    tiers: list[Tier] = []
    raw = _get(ctx, t, "tiers", field, list)
    for i, tier in enumerate(raw):
        tfield = f"{field}.tiers[{i}]"
        if not isinstance(tier, dict):
            raise ctx.fail(tfield, "expected an inline table")
        _check_keys(ctx, tier, {"upto", "rate"}, tfield)
        upto = _get(ctx, tier, "upto", tfield, int, None)
        last = i == len(raw) - 1
        if (upto is None) != last:
            raise ctx.fail(f"{tfield}.upto", "every tier but the last needs upto; the last none")
        if upto is not None and (upto <= 0 or (tiers and upto <= (tiers[-1].upto or 0))):
            raise ctx.fail(f"{tfield}.upto", "tier limits must be positive and increase")
        rate = _money(ctx, _get(ctx, tier, "rate", tfield, str), f"{tfield}.rate", RATE_DECIMALS)
        tiers.append(Tier(upto, rate))
    if not tiers:
        raise ctx.fail(f"{field}.tiers", "at least one tier is required")
    rounding = _rounding(
        ctx,
        t.get("rounding_method", defaults["rounding_method"]),
        t.get("rounding_decimals", defaults["rounding_decimals"]),
        f"{field}.rounding",
    )
    return PeriodPricing(name, service, sets, mode, unit, tuple(tiers), rounding)


def load_tariff_file(path: Path) -> Tariff:
    """Read and validate one TOML tariff file."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise TariffError(f"cannot read tariff: {exc} (file {path})") from exc
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise TariffError(f"invalid TOML: {exc} (file {path})") from exc
    return parse_tariff(doc, str(path), hashlib.blake2b(raw, digest_size=16).hexdigest())
