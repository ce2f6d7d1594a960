"""Quantities for people: bytes as the tariff counts them, seconds as h:mm:ss, "20 SMS".

A bill line keeps its raw quantity and unit (``188512256 B``, ``5852 s``, ``20 event``);
an invoice prints it humanised. Whether a megabyte is 10^6 or 2^20 bytes is the tariff's
choice: a data rate per ``unit = 1048576`` bytes counts in binary multiples, printed with
their IEC names (KiB, MiB, GiB), one per ``1000000`` in decimal ones (kB, MB, GB), so the
quantity on the invoice is in the unit the price was quoted in.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

from rating_engine.tariff.model import Tariff

__all__ = ["BINARY", "DECIMAL", "data_base", "duration_text", "quantity_text", "volume_text"]

BINARY, DECIMAL = 1024, 1000
_NAMES = {
    BINARY: ("B", "KiB", "MiB", "GiB", "TiB", "PiB"),
    DECIMAL: ("B", "kB", "MB", "GB", "TB", "PB"),
}


def data_base(tariff: Tariff | None) -> int:
    """1024 when the tariff prices data per a binary multiple of bytes, else 1000."""
    if tariff is None:
        return DECIMAL
    units: list[int] = []
    for version in tariff.versions:
        data_rates = {rule.rate for rule in version.pricing if rule.service == "data"}
        for rate in version.rates:
            if rate.name in data_rates:
                units += [g.unit for g in rate.groups]
    units += [p.unit for p in tariff.period_pricing if p.service == "data"]
    binary = [u for u in units if u >= BINARY and u % BINARY == 0]
    return BINARY if binary and len(binary) >= len(units) - len(binary) else DECIMAL


def volume_text(octets: int, base: int = DECIMAL) -> str:
    """``188512256`` -> ``179.78 MiB`` (base 1024) or ``188.51 MB`` (base 1000)."""
    names = _NAMES[base]
    size, power = abs(octets), 0
    while power + 1 < len(names) and size >= base ** (power + 1):
        power += 1
    if power == 0:
        return f"{octets} B"
    value = (Decimal(octets) / base**power).quantize(Decimal("0.01"), ROUND_HALF_EVEN)
    return f"{value} {names[power]}"


def duration_text(seconds: int) -> str:
    """``5852`` -> ``1:37:32`` (hours are not wrapped at 24)."""
    sign = "-" if seconds < 0 else ""
    hours, rest = divmod(abs(seconds), 3600)
    return f"{sign}{hours}:{rest // 60:02d}:{rest % 60:02d}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if abs(n) == 1 else "s")


def quantity_text(quantity: int, unit: str, base: int = DECIMAL) -> str:
    """A bill line's quantity for people, by its unit (``B``, ``s``, ``event``, ``day``)."""
    if unit == "B":
        return volume_text(quantity, base)
    if unit == "s":
        return duration_text(quantity)
    if unit == "event":
        return f"{quantity} SMS"
    if unit in ("day", "record", "records"):
        return _plural(quantity, unit.rstrip("s"))
    if not unit:
        return "" if quantity == 1 else str(quantity)
    return f"{quantity} {unit}"
