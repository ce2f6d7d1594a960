"""Reference twin of the rating kernels: plain Python, exact (Fraction/Decimal), slow.

It reads the :class:`~rating_engine.tariff.model.Tariff` objects directly (never the compiled
arrays) and evaluates time bands with ``zoneinfo`` instant by instant, walking voice
calls increment by increment. Used only by tests.
"""

from __future__ import annotations

import ipaddress
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, ROUND_HALF_UP, ROUND_UP, Decimal, localcontext
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa

from collectors.schemas import USAGE_SCHEMA
from rating_engine.schemas import SUBSCRIPTION_SCHEMA
from rating_engine.tariff.load import parse_tariff
from rating_engine.tariff.model import (
    Band,
    PricingRule,
    Rate,
    Rounding,
    Tariff,
    TariffVersion,
)

__all__ = ["RefResult", "reference_rate", "subscriptions_table", "tariff_from_toml", "usage_table"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MODES = {
    "up": ROUND_UP,
    "down": ROUND_DOWN,
    "half-up": ROUND_HALF_UP,
    "half-even": ROUND_HALF_EVEN,
}
_LIMIT = 1 << 62


class _RejectError(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason


@dataclass
class RefResult:
    """Per record id: the rated row (dict) or the rejection reason; and the ledger."""

    rated: dict[int, dict[str, Any]]
    rejected: dict[int, str]
    ledger: list[tuple[int, int, str, int]]


def tariff_from_toml(text: str, source: str = "test.toml") -> Tariff:
    """Parse and validate a tariff written inline in a test."""
    return parse_tariff(tomllib.loads(text), source)


def usage_table(rows: list[dict[str, Any]]) -> pa.Table:
    """A USAGE_SCHEMA table from partial dicts (defaults fill the rest)."""
    full = []
    for i, r in enumerate(rows):
        row = {
            "record_id": i + 1,
            "record_key": f"k{i + 1}",
            "source_file": "test.csv",
            "source_line": i + 2,
            "subscriber_key": "491700000001",
            "subscriber_key_type": "msisdn",
            "service": "voice",
            "duration_ms": 0,
            "volume_up": 0,
            "volume_down": 0,
            "destination": None,
            "origin": None,
            "location": None,
        }
        row.update(r)
        full.append(row)
    return pa.Table.from_pylist(full, schema=USAGE_SCHEMA)


def subscriptions_table(rows: list[dict[str, Any]]) -> pa.Table:
    """A SUBSCRIPTION_SCHEMA table from partial dicts."""
    full = []
    for i, r in enumerate(rows):
        row = {
            "subscription_id": 100 + i,
            "account_id": 1000 + i,
            "key_type": "msisdn",
            "key": "491700000001",
            "tariff_id": "t",
            "active_from": datetime(2000, 1, 1, tzinfo=UTC),
            "active_to": None,
        }
        row.update(r)
        full.append(row)
    return pa.Table.from_pylist(full, schema=SUBSCRIPTION_SCHEMA)


def _us(dt: datetime) -> int:
    d = dt - _EPOCH
    return (d.days * 86400 + d.seconds) * 1_000_000 + d.microseconds


def _bands_in_force(
    version: TariffVersion, zone: ZoneInfo, t_us: int, years: tuple[int, int]
) -> list[Band]:
    """The bands in force at ``t_us``, highest priority first: weight, then the later
    start, then the name."""
    if (
        not _us(datetime(years[0], 1, 1, tzinfo=zone))
        <= t_us
        < _us(datetime(years[1] + 1, 1, 1, tzinfo=zone))
    ):
        raise _RejectError("time_out_of_range")
    local = (_EPOCH + timedelta(microseconds=t_us)).astimezone(zone)
    tod = ((local.hour * 60 + local.minute) * 60 + local.second) * 1_000_000 + local.microsecond
    active = []
    for b in version.bands:
        day_ok = (
            (not b.years or local.year in b.years)
            and (not b.months or local.month in b.months)
            and (not b.month_days or local.day in b.month_days)
        )
        listed = local.isoweekday() in b.weekdays or any(
            (y is None or y == local.year) and m == local.month and d == local.day
            for y, m, d in b.dates
        )
        in_hours = b.start * 1_000_000 <= tod < b.end * 1_000_000
        in_window = (b.active_from is None or b.active_from <= t_us) and (
            b.active_until is None or t_us < b.active_until
        )
        if day_ok and (listed or not (b.weekdays or b.dates)) and in_hours and in_window:
            active.append(b)
    if not active:
        raise _RejectError("no_band")
    return sorted(active, key=lambda b: (-b.weight, -b.start, b.name))


def _choose(
    tariff: Tariff, version: TariffVersion, service: str, dset: str | None, active: list[Band]
) -> tuple[PricingRule, Band] | None:
    """The rule pricing ``service`` to ``dset`` while ``active`` are in force, and its band."""
    rules = [r for r in version.pricing if r.service == service]
    if tariff.band_selection == "global":
        band = active[0]
        best: tuple[int, PricingRule] | None = None
        for r in rules:
            if r.destinations not in (None, dset) or r.band not in (None, band.name):
                continue
            spec = (r.destinations is not None) * 2 + (r.band is not None)
            if best is None or spec > best[0]:
                best = (spec, r)
        return None if best is None else (best[1], band)
    # per destination: the set's own rules (if it has any), else the any-set rules; the
    # highest-priority band in force that one of them names, else their any-band rule
    own = [r for r in rules if dset is not None and r.destinations == dset]
    pool = own or [r for r in rules if r.destinations is None]
    for b in active:
        for r in pool:
            if r.band == b.name:
                return r, b
    for r in pool:
        if r.band is None:
            return r, active[0]
    return None


def _round(value: Fraction, rounding: Rounding) -> Fraction:
    with localcontext() as ctx:
        ctx.prec = 80
        d = Decimal(value.numerator) / Decimal(value.denominator)
        q = d.quantize(Decimal(1).scaleb(-rounding.decimals), rounding=_MODES[rounding.method])
    return Fraction(q)


def _increment_cost(rate: Rate, g_index: int, n: int) -> Fraction:
    """One increment's cost in a run (timespan) of ``n`` increments of the group; with
    increment rounding, CGRateS's: round(round(n x exact) / n)."""
    g = rate.groups[g_index]
    exact = Fraction(g.rate) * g.increment / g.unit
    if rate.increment_rounding is None:
        return exact
    return _round(_round(exact * n, rate.increment_rounding) / n, rate.increment_rounding)


def _stretch_end(
    tariff: Tariff,
    version: TariffVersion,
    zone: ZoneInfo,
    dset: str | None,
    t_us: int,
    until_us: int,
    years: tuple[int, int],
) -> int:
    """The first whole second after ``t_us`` (up to ``until_us``) at which a voice call is
    priced otherwise: another rule or band, no band, the end of the compiled years, or
    (in a version with increment rounding) a local midnight - found second by second."""
    split_days = any(r.increment_rounding is not None for r in version.rates)

    def pricing(at: int) -> object:
        try:
            chosen = _choose(
                tariff, version, "voice", dset, _bands_in_force(version, zone, at, years)
            )
        except _RejectError as err:
            return err.reason
        return None if chosen is None else (chosen[0].rate, chosen[1].name)

    here = pricing(t_us)
    s = (t_us // 1_000_000 + 1) * 1_000_000
    while s < until_us:
        local = (_EPOCH + timedelta(microseconds=s)).astimezone(zone)
        midnight = local.hour == local.minute == local.second == 0
        if (split_days and midnight) or pricing(s) != here:
            return s
        s += 1_000_000
    return until_us


def _group(rate: Rate, pos: int, scale: int) -> int:
    gi = 0
    for i, g in enumerate(rate.groups):
        if g.start * scale <= pos:
            gi = i
    return gi


def _rate_one(
    tariff: Tariff, rec: dict[str, Any], free: int, years: tuple[int, int]
) -> tuple[dict[str, Any], int]:
    """Price one record with ``free`` base units available; returns (row, units used)."""
    t0 = _us(rec["start_time"])
    version = None
    for v in tariff.versions:
        if v.active_from <= t0:
            version = v
    if version is None:
        raise _RejectError("no_tariff_version")
    if rec["duration_ms"] < 0:
        raise _RejectError("negative_duration")
    service = rec["service"]
    if service == "voice":
        qty, scale = rec["duration_ms"], 1000
    elif service == "sms":
        qty, scale = 1, 1
    else:
        if rec["volume_up"] >= _LIMIT or rec["volume_down"] >= _LIMIT:
            raise _RejectError("volume_out_of_range")
        qty, scale = rec["volume_up"] + rec["volume_down"], 1
    dset = prefix = None
    # per destination (as CGRateS): a set without pricing rules is invisible, so shorter
    # prefixes match; a prefix in several sets goes to the one whose rules' bands weigh most
    # (a rule for any band weighs least), then to the name first in order
    weight = {b.name: b.weight for b in version.bands}
    heft: dict[str, float] = {}
    for r in version.pricing:
        if r.destinations is not None:
            w = float("-inf") if r.band is None else float(weight[r.band])
            heft[r.destinations] = max(heft.get(r.destinations, w), w)
    per_destination = tariff.band_selection == "per-destination"
    if service != "data" and rec["destination"] is not None:
        for s in sorted(version.destinations, key=lambda d: d.name):
            if per_destination and s.name not in heft:
                continue
            for p in s.prefixes:
                if not rec["destination"].startswith(p):
                    continue
                longer = prefix is None or len(p) > len(prefix)
                heavier = p == prefix and per_destination and heft[s.name] > heft[dset or ""]
                if longer or heavier:
                    dset, prefix = s.name, p
    zone = ZoneInfo(tariff.timezone)
    rates = {r.name: r for r in version.rates}
    chosen = _choose(tariff, version, service, dset, _bands_in_force(version, zone, t0, years))
    if chosen is None:
        raise _RejectError("no_destination" if dset is None and service != "data" else "no_rate")
    rule0, band0 = chosen
    rate0 = rates[rule0.rate]
    rounding = rate0.rounding  # of the total; CGRateS's: the most decimals a call crossed
    total = Fraction(0)
    pos = 0
    used = 0
    priced = False
    stopped = free <= 0
    if service == "voice":
        # timespans: runs of increments in one stretch priced alike, within one group; each
        # increment is rated in the band in force at its first instant
        while pos < qty:
            t = t0 + pos * 1000
            here = _choose(tariff, version, service, dset, _bands_in_force(version, zone, t, years))
            if here is None:
                raise _RejectError("no_rate")
            rate = rates[here[0].rate]
            if rate.increment_rounding is not None and rate.rounding.decimals > rounding.decimals:
                rounding = rate.rounding
            gi = _group(rate, pos, scale)
            inc = rate.groups[gi].increment * scale
            end_ms = -(
                -(_stretch_end(tariff, version, zone, dset, t, t0 + qty * 1000, years) - t0) // 1000
            )
            limit = min(qty, end_ms)
            if gi + 1 < len(rate.groups):
                limit = min(limit, rate.groups[gi + 1].start * scale)
            n = -(-(limit - pos) // inc)
            kp = 0
            for _ in range(n):
                if not stopped and free - used >= inc:
                    used += inc
                else:
                    stopped = True
                    kp += 1
            if kp:
                priced = True
                total += kp * _increment_cost(rate, gi, n)
            pos += n * inc
    else:  # sms and data stay in their start band: whole groups at once
        for gi, g in enumerate(rate0.groups):
            end = rate0.groups[gi + 1].start if gi + 1 < len(rate0.groups) else None
            limit = qty if end is None else min(qty, end)
            if pos >= limit:
                continue
            n = -(-(limit - pos) // g.increment)
            m = 0
            if not stopped:
                m = min(n, (free - used) // g.increment)
                stopped = m < n
                used += m * g.increment
            if n - m:
                priced = True
                total += (n - m) * _increment_cost(rate0, gi, n)
            pos += n * g.increment
    if (used and not priced) or (qty == 0 and not rate0.charge_zero_usage):
        cost = 0
    else:
        # a continuation leg of a call (CGRateS's LoopIndex > 0) pays no connect fee
        fee = Fraction(rate0.connect_fee) if (rec.get("leg") or 0) <= 0 else Fraction(0)
        if rate0.increment_rounding is not None:  # CGRateS rounds it with the increments
            fee = _round(fee, rate0.increment_rounding)
        total += fee
        rounded = _round(total, rounding)
        if rate0.min_charge is not None:
            rounded = max(rounded, Fraction(rate0.min_charge))
        if rate0.max_cost is not None:
            rounded = min(rounded, Fraction(rate0.max_cost))
        micro = rounded * 1_000_000
        assert micro.denominator == 1
        cost = int(micro)
    if total * 1_000_000_000 >= _LIMIT:
        raise _RejectError("cost_overflow")
    row = {
        "tariff_id": tariff.id,
        "tariff_version": version.version,
        "destination_set": dset,
        "matched_prefix": prefix,
        "band": band0.name,
        "billed_units": pos // scale,
        "allowance_units": used // scale,
        "cost": cost,
        "currency": tariff.currency,
    }
    return row, used


def _canon(key: str) -> str | None:
    try:
        net = ipaddress.ip_network(key, strict=True)
    except ValueError:
        return None
    if net.num_addresses != 1:
        return str(net)  # a block: flow attribution keys its usage by the block's text
    a = net.network_address
    if isinstance(a, ipaddress.IPv6Address) and a.ipv4_mapped is not None:
        return str(a.ipv4_mapped)
    return str(a)


def reference_rate(
    usage: pa.Table,
    subscriptions: pa.Table,
    tariffs: dict[str, Tariff],
    *,
    remaining: dict[tuple[int, str], int] | None = None,
    years: tuple[int, int] = (2015, 2040),
) -> RefResult:
    """Rate ``usage`` like ``rate_usage``; ``remaining`` is the allowance state (base units)."""
    remaining = {} if remaining is None else remaining
    subs = subscriptions.to_pylist()
    recs = usage.to_pylist()
    out = RefResult({}, {}, [])
    resolved = []
    for rec in recs:
        try:
            if rec["service"] not in ("voice", "sms", "data"):
                raise _RejectError("unknown_service")
            if rec["subscriber_key_type"] not in ("msisdn", "imsi", "ip"):
                raise _RejectError("unknown_key_type")
            sub = None
            for s in subs:
                key = _canon(s["key"]) if s["key_type"] == "ip" else s["key"]
                to = s["active_to"]
                if (
                    s["key_type"] == rec["subscriber_key_type"]
                    and key == rec["subscriber_key"]
                    and s["active_from"] <= rec["start_time"]
                    and (to is None or rec["start_time"] < to)
                ):
                    sub = s
            if sub is None:
                raise _RejectError("unknown_subscription")
            if sub["tariff_id"] not in tariffs:
                raise _RejectError("unknown_tariff")
            resolved.append((rec, sub))
        except _RejectError as r:
            out.rejected[rec["record_id"]] = r.reason
    resolved.sort(key=lambda x: (x[1]["subscription_id"], x[0]["start_time"], x[0]["record_id"]))
    for rec, sub in resolved:
        tariff = tariffs[sub["tariff_id"]]
        try:
            row, _ = _rate_one(tariff, rec, 0, years)
            matching = [
                a
                for a in tariff.allowances
                if a.service == rec["service"]
                and (not a.destinations or row["destination_set"] in a.destinations)
            ]
            sid = sub["subscription_id"]
            if matching:
                scale = 1000 if rec["service"] == "voice" else 1
                keys = [(sid, f"{tariff.id}:{a.name}") for a in matching]
                left = [
                    remaining.get(k, a.units * scale) for k, a in zip(keys, matching, strict=True)
                ]
                if sum(left) > 0:
                    row, used = _rate_one(tariff, rec, sum(left), years)
                    for k, have in zip(keys, left, strict=True):
                        take = min(used, have)
                        remaining[k] = have - take
                        used -= take
                        if take:
                            out.ledger.append((sid, rec["record_id"], k[1], take // scale))
        except _RejectError as r:
            out.rejected[rec["record_id"]] = r.reason
            continue
        row.update(
            {
                "record_id": rec["record_id"],
                "subscription_id": sub["subscription_id"],
                "account_id": sub["account_id"],
                "service": rec["service"],
                "start_time": rec["start_time"],
            }
        )
        out.rated[rec["record_id"]] = row
    return out
