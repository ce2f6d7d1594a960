"""The SLA an offering may carry: a monthly availability target and credit tiers.

``availability`` is the percentage of the billing period a product is promised to be in
service (``"99.9"``); each tier ``{ below = "99", credit = "25" }`` gives back ``credit``
percent of the product's recurring fee for a period whose availability is below
``below`` percent; the lowest tier the availability falls under applies. Tiers sit at or
under the target, and a lower availability never earns a smaller credit. An offering's
SLA is set once (by ``load`` from the business TOML, ``[offering.sla]``); a file that
describes it differently is refused, as bills may rest on it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import duckdb

from bss.errors import ValidationError

__all__ = ["Sla", "apply_sla_entry", "get_sla", "set_sla"]

_HUNDRED = Decimal(100)


@dataclass(frozen=True)
class Sla:
    offering_id: str
    availability: Decimal  # percent
    tiers: tuple[tuple[Decimal, Decimal], ...]  # (below, credit) percent, highest below first


def _percent(value: Any, where: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValidationError(f'{where}: {value!r}: write percentages as strings ("99.9")')
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise ValidationError(f"{where}: {value!r} is not a decimal percentage") from None
    if not number.is_finite() or not 0 < number <= _HUNDRED:
        raise ValidationError(f"{where}: {value} is not a percentage in (0, 100]")
    if number != number.quantize(Decimal("0.000001")):
        raise ValidationError(f"{where}: {value} has more than 6 decimals")
    return number.quantize(Decimal("0.000001"))


def _checked(offering_id: str, availability: Any, tiers: Sequence[Mapping[str, Any]],
             where: str) -> Sla:  # fmt: skip
    target = _percent(availability, f"{where}.availability")
    if not tiers:
        raise ValidationError(f"{where}: an SLA needs at least one credit tier")
    parsed = []
    for i, tier in enumerate(tiers):
        at = f"{where}.credits[{i}]"
        if not isinstance(tier, Mapping) or set(tier) != {"below", "credit"}:
            raise ValidationError(f'{at}: a tier is {{ below = "99.9", credit = "10" }}')
        parsed.append((_percent(tier["below"], f"{at}.below"),
                       _percent(tier["credit"], f"{at}.credit")))  # fmt: skip
    parsed.sort(reverse=True)
    belows = [b for b, _ in parsed]
    if len(set(belows)) != len(belows):
        raise ValidationError(f"{where}: two tiers have the same 'below'")
    if belows[0] > target:
        raise ValidationError(f"{where}: a tier below {belows[0]} % is above the target {target} %")
    credits = [c for _, c in parsed]
    if credits != sorted(credits):
        raise ValidationError(f"{where}: a lower availability must not earn a smaller credit")
    return Sla(offering_id, target, tuple(parsed))


def get_sla(conn: duckdb.DuckDBPyConnection, offering_id: str) -> Sla | None:
    """The offering's SLA, or None."""
    row = conn.execute("SELECT availability_target FROM offering_sla WHERE offering_id = ?",
                       [offering_id]).fetchone()  # fmt: skip
    if row is None:
        return None
    tiers = conn.execute(
        "SELECT below, credit FROM offering_sla_tier WHERE offering_id = ? ORDER BY below DESC",
        [offering_id],
    ).fetchall()
    return Sla(offering_id, Decimal(row[0]), tuple((Decimal(b), Decimal(c)) for b, c in tiers))


def set_sla(
    conn: duckdb.DuckDBPyConnection, offering_id: str, availability: Any,
    tiers: Sequence[Mapping[str, Any]], *, where: str | None = None,
) -> bool:  # fmt: skip
    """Give the offering its SLA; True if written, False if it had this one already.
    A different SLA already set is refused (bills may rest on it)."""
    where = where or f"offering {offering_id} sla"
    want = _checked(offering_id, availability, tiers, where)
    have = get_sla(conn, offering_id)
    if have == want:
        return False
    if have is not None:
        raise ValidationError(
            f"{where}: offering {offering_id} has another SLA already ({have.availability} %, "
            f"{len(have.tiers)} tiers); an SLA is not changed in place, give a new offering one"
        )
    if not conn.execute("SELECT 1 FROM product_offering WHERE id = ?", [offering_id]).fetchone():
        raise ValidationError(f"{where}: unknown offering {offering_id}")
    conn.execute("INSERT INTO offering_sla VALUES (?, ?)", [offering_id, want.availability])
    conn.executemany("INSERT INTO offering_sla_tier VALUES (?, ?, ?)",
                     [[offering_id, b, c] for b, c in want.tiers])  # fmt: skip
    return True


def apply_sla_entry(
    conn: duckdb.DuckDBPyConnection, offering_id: str, entry: Any, where: str
) -> bool:
    """``[offering.sla]`` of the business TOML (``availability``, ``credits``)."""
    if not isinstance(entry, Mapping) or set(entry) - {"availability", "credits"}:
        raise ValidationError(f"{where}: sla takes availability and credits")
    if "availability" not in entry or "credits" not in entry:
        raise ValidationError(f"{where}: sla needs availability and credits")
    credits = entry["credits"]
    if not isinstance(credits, list):
        raise ValidationError(f"{where}.credits: a list of {{ below, credit }} tiers")
    return set_sla(conn, offering_id, entry["availability"], credits, where=where)
