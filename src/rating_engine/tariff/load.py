"""Load a tariff: read TOML, validate every table, resolve the versions into a Tariff.

Every validation failure raises :class:`TariffError` naming the file, the tariff and the
field. Amounts stay exact: money is parsed from decimal strings into
:class:`~decimal.Decimal` and compiled to integers later.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from rating_engine.errors import TariffError
from rating_engine.tariff.fields import (
    ID_PATTERN,
    FieldContext,
    check_keys,
    get_field,
    parse_rounding,
    parse_timestamp,
)
from rating_engine.tariff.model import (
    BAND_SELECTIONS,
    SERVICES,
    Allowance,
    Band,
    DestinationSet,
    PricingRule,
    Rate,
    Tariff,
    TariffVersion,
    band_priority,
)
from rating_engine.tariff.sections import (
    parse_band,
    parse_destinations,
    parse_period_pricing,
    parse_pricing,
    parse_rate,
)

__all__ = ["load_tariff_file", "parse_tariff"]


def _resolve_version(
    ctx: FieldContext,
    version: str,
    active_from: int,
    destinations: dict[str, DestinationSet],
    bands: dict[str, Band],
    rates: dict[str, Rate],
    pricing: list[PricingRule],
    field: str,
    band_selection: str,
) -> TariffVersion:
    seen: dict[str, str] = {}
    for s in destinations.values():
        for p in s.prefixes:
            if p in seen and band_selection == "global":
                raise ctx.fail(
                    f"{field}destinations.{s.name}",
                    f"prefix {p} is already in set {seen[p]}; a prefix belongs to one set "
                    '(with band_selection = "per-destination" it goes to the heaviest)',
                )
            seen[p] = s.name
    weights: dict[int, str] = {}
    for b in bands.values():
        if b.weight in weights and band_selection == "global":
            raise ctx.fail(
                f"{field}bands.{b.name}.weight",
                f"weight {b.weight} is also band {weights[b.weight]}'s; weights decide overlaps "
                'and must differ (or set band_selection = "per-destination": equal weights '
                "then go to the later start)",
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
        tuple(sorted(bands.values(), key=band_priority)),
        tuple(rates.values()),
        tuple(pricing),
    )


def parse_tariff(doc: dict[str, Any], source: str, content_hash: str = "") -> Tariff:
    """Validate a parsed TOML document into a :class:`Tariff` (``source`` names it in errors)."""
    ctx = FieldContext(source)
    check_keys(
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
    head = get_field(ctx, doc, "tariff", "", dict)
    tid = get_field(ctx, head, "id", "tariff", str)
    if not ID_PATTERN.match(tid):
        raise ctx.fail("tariff.id", "ids use letters, digits and _ . : -")
    ctx.tariff = tid
    check_keys(
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
            "band_selection",
            "charge_zero_usage",
        },
        "tariff",
    )
    band_selection = get_field(ctx, head, "band_selection", "tariff", str, "global")
    if band_selection not in BAND_SELECTIONS:
        raise ctx.fail("tariff.band_selection", f"must be one of {', '.join(BAND_SELECTIONS)}")
    currency = get_field(ctx, head, "currency", "tariff", str)
    if not re.fullmatch(r"[A-Z]{3}", currency):
        raise ctx.fail("tariff.currency", "expected an ISO 4217 code such as EUR")
    tz_name = get_field(ctx, head, "timezone", "tariff", str)
    try:
        zone = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ctx.fail("tariff.timezone", f"unknown IANA time zone {tz_name!r}") from None
    defaults = {
        "rounding_method": head.get("rounding_method", "half-up"),
        "rounding_decimals": head.get("rounding_decimals", 6),
        "increment_rounding_method": head.get("increment_rounding_method", "half-up"),
        "increment_decimals": head.get("increment_decimals"),
        "charge_zero_usage": head.get("charge_zero_usage", True),
    }
    parse_rounding(
        ctx, defaults["rounding_method"], defaults["rounding_decimals"], "tariff.rounding"
    )

    destinations = parse_destinations(ctx, doc.get("destinations", {}), "destinations")
    bands_raw = get_field(ctx, doc, "bands", "", dict)
    bands = {n: parse_band(ctx, n, t, zone) for n, t in bands_raw.items()}
    rates = {
        n: parse_rate(ctx, n, t, defaults)
        for n, t in get_field(ctx, doc, "rates", "", dict).items()
    }
    pricing = parse_pricing(ctx, doc.get("pricing", []), "pricing")
    first = _resolve_version(
        ctx,
        str(get_field(ctx, head, "version", "tariff", str)),
        parse_timestamp(
            ctx, get_field(ctx, head, "active_from", "tariff", object), zone, "tariff.active_from"
        ),
        destinations,
        bands,
        rates,
        pricing,
        "",
        band_selection,
    )
    versions = [first]
    for i, v in enumerate(get_field(ctx, doc, "versions", "", list, [])):
        vfield = f"versions[{i}]"
        if not isinstance(v, dict):
            raise ctx.fail(vfield, "expected a table [[versions]]")
        check_keys(
            ctx, v, {"version", "active_from", "destinations", "bands", "rates", "pricing"}, vfield
        )
        vid = str(get_field(ctx, v, "version", vfield, str))
        if any(x.version == vid for x in versions):
            raise ctx.fail(f"{vfield}.version", f"duplicate version {vid!r}")
        start = parse_timestamp(
            ctx, get_field(ctx, v, "active_from", vfield, object), zone, f"{vfield}.active_from"
        )
        if start <= versions[-1].active_from:
            raise ctx.fail(f"{vfield}.active_from", "versions must be in ascending active_from")
        # A version merges over the base: sets, bands and rates by name; pricing replaces.
        v_dest = {
            **destinations,
            **parse_destinations(ctx, v.get("destinations", {}), f"{vfield}.destinations"),
        }
        v_bands = {
            **bands,
            **{n: parse_band(ctx, n, t, zone) for n, t in v.get("bands", {}).items()},
        }
        v_rates = {
            **rates,
            **{n: parse_rate(ctx, n, t, defaults) for n, t in v.get("rates", {}).items()},
        }
        v_pricing = (
            parse_pricing(ctx, v["pricing"], f"{vfield}.pricing") if "pricing" in v else pricing
        )
        versions.append(
            _resolve_version(
                ctx, vid, start, v_dest, v_bands, v_rates, v_pricing, f"{vfield}.", band_selection
            )
        )
    allowances = []
    for name, a in get_field(ctx, doc, "allowances", "", dict, {}).items():
        afield = f"allowances.{name}"
        if not isinstance(a, dict):
            raise ctx.fail(afield, "expected a table")
        check_keys(ctx, a, {"service", "destinations", "units"}, afield)
        service = get_field(ctx, a, "service", afield, str)
        if service not in SERVICES:
            raise ctx.fail(f"{afield}.service", f"must be one of {', '.join(SERVICES)}")
        sets = tuple(get_field(ctx, a, "destinations", afield, list, []))
        for s in sets:
            if not any(s == d.name for ver in versions for d in ver.destinations):
                raise ctx.fail(f"{afield}.destinations", f"unknown destination set {s!r}")
        units = get_field(ctx, a, "units", afield, int)
        if not 0 < units < 2**62:
            raise ctx.fail(f"{afield}.units", "must be a positive integer")
        allowances.append(Allowance(name, service, sets, units))
    set_names = {d.name for ver in versions for d in ver.destinations}
    period = [
        parse_period_pricing(ctx, n, t, set_names, defaults)
        for n, t in get_field(ctx, doc, "period_pricing", "", dict, {}).items()
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
        band_selection,
    )


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
