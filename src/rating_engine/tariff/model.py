"""The tariff model: frozen dataclasses of a validated tariff.

A tariff has a currency, an IANA time zone, named destination sets (digit prefixes),
time bands, named rates (connect fee + rate groups), pricing rules binding
(service, destination set, band) to a rate, allowances, and versions with
activation times. The format is documented field by field in ``docs/tariffs.md``.

Tariffs are read and validated by :mod:`rating_engine.tariff.load`. Amounts stay exact:
money is held as :class:`~decimal.Decimal` and compiled to integers later.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

__all__ = [
    "BAND_SELECTIONS",
    "PERIOD_MEASURES",
    "PERIOD_MODES",
    "ROUNDING_METHODS",
    "SERVICES",
    "Allowance",
    "Band",
    "DestinationSet",
    "PassThrough",
    "PeriodPricing",
    "PricingRule",
    "Rate",
    "RateGroup",
    "Rounding",
    "Tariff",
    "TariffVersion",
    "Tier",
    "band_priority",
]

#: Services a tariff prices; the unit of each is seconds, events and bytes.
SERVICES = ("voice", "sms", "data")
#: Rounding methods (costs are never negative, so "up" is the ceiling).
ROUNDING_METHODS = ("up", "down", "half-up", "half-even")
#: How the band that prices an instant is chosen: "global" - the highest-weight band in
#: force, then the most specific rule for it; "per-destination" - among the bands in force
#: that the destination set's rules name, the highest weight, then the latest start
#: (CGRateS's rate intervals).
BAND_SELECTIONS = ("global", "per-destination")
#: How a period's total is priced: by tiers (each prices its part / the tier of the total
#: prices all of it), or per started package of ``package_size`` units.
PERIOD_MODES = ("graduated", "volume", "package")
#: What a period pricing sums per subscription: units left after allowances (seconds,
#: events, bytes), events (records), or the records' cost (micro-units; percentage tiers).
#: ``prorated``: a quantity living over the period (lines, seats, IP blocks), priced on the
#: time-weighted average of its level (:mod:`rating_engine.rating.prorated`).
PERIOD_MEASURES = ("units", "events", "cost", "prorated")


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
class PassThrough:
    """A record priced by the amount it carries (its ``price`` column): the price plus
    ``markup_percent`` percent of it plus ``markup_fixed`` (either may be negative, never
    so far that a price could come out below zero), then the rate's rounding and its
    ``min_charge`` / ``max_cost``."""

    markup_percent: Decimal
    markup_fixed: Decimal


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
    #: whether a record of no usage (0 s, 0 bytes) pays the connect fee and minimum charge;
    #: CGRateS charges it nothing
    charge_zero_usage: bool = True
    #: set: the record's own price (marked up) is its cost instead of the rate groups
    pass_through: PassThrough | None = None


@dataclass(frozen=True)
class Band:
    """A time band in the tariff's zone: on matching days, from ``start`` to ``end`` (seconds).

    A day matches if its ISO weekday (1 = Monday) is in ``weekdays`` or it equals one of
    ``dates`` ((year or None for every year, month, day)) - any day when both are empty -
    and its year, month and day of the month are in ``years``, ``months`` and
    ``month_days`` (each: empty = any), like a CGRateS Timing. The highest ``weight`` wins.
    ``active_from``/``active_until`` bound when the band exists at all.
    """

    name: str
    weekdays: frozenset[int]
    dates: tuple[tuple[int | None, int, int], ...]
    start: int
    end: int
    weight: int
    years: frozenset[int] = frozenset()
    months: frozenset[int] = frozenset()
    month_days: frozenset[int] = frozenset()
    #: in force only from/until these UTC instants (microseconds, whole seconds; None =
    #: unbounded): a CGRateS RatingPlan activation inside a tariff splits calls there
    active_from: int | None = None
    active_until: int | None = None

    def in_window(self, t_us: int) -> bool:
        """Whether the instant lies inside the band's active window."""
        return (self.active_from is None or self.active_from <= t_us) and (
            self.active_until is None or t_us < self.active_until
        )

    def on_day(self, year: int, month: int, day: int, weekday: int) -> bool:
        """Whether the band applies on this local date (``weekday``: ISO, 1 = Monday)."""
        if self.years and year not in self.years:
            return False
        if self.months and month not in self.months:
            return False
        if self.month_days and day not in self.month_days:
            return False
        if not self.weekdays and not self.dates:
            return True
        return weekday in self.weekdays or any(
            (y is None or y == year) and m == month and d == day for y, m, d in self.dates
        )


def band_priority(band: Band) -> tuple[int, int, str]:
    """Sort key of a version's bands, highest priority first: the higher weight, then the
    later start of day, then the name (so the order is total even where weights tie)."""
    return (-band.weight, -band.start, band.name)


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
    """A tier of period pricing: quantities up to ``upto`` (None = no limit) at ``rate``,
    plus ``flat`` once when the tier is reached (graduated) or holds the total (volume)."""

    upto: int | None
    rate: Decimal
    flat: Decimal = Decimal(0)


@dataclass(frozen=True)
class PeriodPricing:
    """Tiered pricing of a billing period's total ``service`` quantity per subscription.

    ``graduated``: each tier prices the part of the total inside it and adds its flat fee;
    ``volume``: the tier the total falls into prices all of it (and adds its flat fee);
    ``package``: ``package_price`` per started block of ``package_size``. ``rate`` is per
    ``unit`` of the ``measure`` (one of :data:`PERIOD_MEASURES`). Before pricing, the
    ``free_events`` earliest records (start time, then record id) and then ``free_units``
    are taken off the total.
    """

    name: str
    service: str
    destinations: tuple[str, ...]
    mode: str
    unit: int
    tiers: tuple[Tier, ...]
    rounding: Rounding
    measure: str = "units"
    free_units: int = 0
    free_events: int = 0
    package_size: int = 0
    package_price: Decimal = Decimal(0)
    #: the quantity a ``prorated`` measure averages (quantity-change records' ``metric``)
    metric: str = ""


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
    #: one of :data:`BAND_SELECTIONS`
    band_selection: str = "global"
