"""Declarative CDR column mappings: a TOML file says how a CSV layout becomes usage records.

A mapping names the CSV dialect (header or fixed column list, delimiter, quote, encoding),
then for each usage field the column it comes from and how to read it::

    [mapping]
    name = "generic"

    [csv]
    header = true                   # false: give `columns = [...]` in file order

    [numbers]                       # national -> E.164 rules for `normalise = "e164"`
    country_code = "49"
    trunk_prefix = "0"
    international_prefix = "00"

    [fields]
    record_key = { columns = ["id"] }
    subscriber = { column = "msisdn", type = "msisdn", normalise = "e164" }
    service = { column = "service", values = { voice = ["voice"], sms = ["sms"] } }
    start_time = { column = "start", format = "iso8601", zone = "Europe/Berlin" }
    duration = { column = "duration", unit = "s" }
    volume_up = "bytes_up"          # a bare string is a column name
    destination = { column = "destination", normalise = "e164" }
    price = { column = "charge", unit = "currency" }   # optional: pass-through rates

    [[filters]]                     # rows whose column is not in `accept` are kept out
    column = "disposition"
    accept = ["ANSWERED"]
    reason = "not_answered"
    action = "reject"               # or "skip": counted but not written anywhere

Time formats: ``iso8601`` (offset optional; naive times are in ``zone``), ``epoch_s`` (fraction
allowed), ``epoch_ms``, ``epoch_us``, or a strptime pattern (with ``%z``: offset in the value;
without: local time in ``zone``). Naive local times are converted to UTC with the zone's rules,
DST included; ``ambiguous`` decides the repeated autumn hour (``earliest`` = zoneinfo
``fold=0``, ``latest``, or ``reject``); local times inside the spring gap are rejected.
Duration units: ``s`` (fraction allowed, truncated to ms), ``ms``, ``hms`` (``H:MM:SS``).
Price units (the usage column ``price``, micro-units): ``currency`` (decimal text such as
``1.25`` or ``-0.000001``, at most 12 integer and 6 significant fraction digits, read exactly
as text, never through a float) or ``micro`` (integer micro-units). A price that is not such a
number rejects its row ``bad_price``; an empty one is null (``required = true`` rejects it).
A mapping without ``price`` writes no price column (null prices to the rating).

Every problem raises :class:`~collectors.errors.IngestError` naming the file and the key.
"""

from __future__ import annotations

import tomllib
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from importlib.resources import files
from pathlib import Path
from typing import Any, NoReturn

from collectors.errors import IngestError

__all__ = [
    "AMBIGUOUS_CHOICES",
    "DURATION_UNITS",
    "KEY_TYPES",
    "NORMALISATIONS",
    "PRICE_UNITS",
    "SERVICES",
    "CdrMapping",
    "ColumnSpec",
    "CsvSpec",
    "DurationSpec",
    "KeySpec",
    "NumberRules",
    "NumberSpec",
    "PriceSpec",
    "RecordFilter",
    "ServiceSpec",
    "SubscriberSpec",
    "TimeSpec",
    "find_mapping",
    "load_mapping",
    "parse_mapping",
]

SERVICES = ("voice", "sms", "data")
KEY_TYPES = ("msisdn", "imsi", "ip")
NORMALISATIONS = ("e164", "digits", "none")
DURATION_UNITS = ("s", "ms", "hms")
AMBIGUOUS_CHOICES = ("earliest", "latest", "reject")
TIME_KEYWORDS = ("iso8601", "epoch_s", "epoch_ms", "epoch_us")
FILTER_ACTIONS = ("reject", "skip")
PRICE_UNITS = ("currency", "micro")
# the mappings shipped inside the package (generic, asterisk): package data
_SHIPPED_MAPPINGS = Path(str(files("collectors.cdr") / "mappings"))


@dataclass(frozen=True)
class CsvSpec:
    """CSV dialect. ``columns`` names the columns in order when the file has no header."""

    header: bool = True
    columns: tuple[str, ...] | None = None
    delimiter: str = ","
    quote: str = '"'
    encoding: str = "utf-8"


@dataclass(frozen=True)
class NumberRules:
    """National -> E.164: ``+`` kept as international, then ``international_prefix`` stripped,
    else ``trunk_prefix`` replaced by ``country_code``; only digits are kept."""

    country_code: str
    trunk_prefix: str = "0"
    international_prefix: str = "00"


@dataclass(frozen=True)
class KeySpec:
    """Columns whose values (joined with ``|``, ``|`` and ``\\`` escaped) make the record key."""

    columns: tuple[str, ...]
    prefix: str = ""


@dataclass(frozen=True)
class SubscriberSpec:
    column: str
    key_type: str = "msisdn"
    normalise: str = "e164"


@dataclass(frozen=True)
class ServiceSpec:
    """Either a constant service or a column whose (case-folded) values map to services."""

    column: str | None = None
    constant: str | None = None
    values: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TimeSpec:
    column: str
    format: str = "iso8601"
    zone: str = "UTC"
    ambiguous: str = "earliest"


@dataclass(frozen=True)
class DurationSpec:
    column: str | None = None
    unit: str = "s"
    required: bool = False


@dataclass(frozen=True)
class ColumnSpec:
    """A plain column (volumes, location), or a constant, or nothing (zero / null)."""

    column: str | None = None
    constant: str | None = None
    required: bool = False


@dataclass(frozen=True)
class NumberSpec:
    column: str | None = None
    normalise: str = "e164"
    required: bool = False


@dataclass(frozen=True)
class PriceSpec:
    """The price a record carries (pass-through rates): column and unit, or none."""

    column: str | None = None
    unit: str = "currency"
    required: bool = False


@dataclass(frozen=True)
class RecordFilter:
    """Rows whose ``column`` value is not in ``accept`` go aside with ``reason``."""

    column: str
    accept: tuple[str, ...]
    reason: str
    action: str = "reject"


@dataclass(frozen=True)
class CdrMapping:
    """A validated mapping; see the module docstring for the file format."""

    name: str
    source: str
    csv: CsvSpec
    record_key: KeySpec
    subscriber: SubscriberSpec
    service: ServiceSpec
    start_time: TimeSpec
    duration: DurationSpec = DurationSpec()
    volume_up: ColumnSpec = ColumnSpec()
    volume_down: ColumnSpec = ColumnSpec()
    destination: NumberSpec = NumberSpec()
    origin: NumberSpec = NumberSpec()
    location: ColumnSpec = ColumnSpec()
    price: PriceSpec = PriceSpec()
    numbers: NumberRules | None = None
    filters: tuple[RecordFilter, ...] = ()
    description: str = ""

    def used_columns(self) -> tuple[str, ...]:
        """Every CSV column the mapping reads, in first-use order."""
        cols: list[str] = list(self.record_key.columns)
        for c in (
            self.subscriber.column,
            self.service.column,
            self.start_time.column,
            self.duration.column,
            self.volume_up.column,
            self.volume_down.column,
            self.destination.column,
            self.origin.column,
            self.location.column,
            self.price.column,
            *(f.column for f in self.filters),
        ):
            if c is not None and c not in cols:
                cols.append(c)
        return tuple(cols)

    def with_country_code(self, country_code: str) -> CdrMapping:
        """The same mapping with another E.164 country code."""
        if not country_code.isdigit() or not 1 <= len(country_code) <= 3:
            raise IngestError(
                f"mapping {self.source}: numbers.country_code: {country_code!r} is not 1-3 digits"
            )
        rules = self.numbers or NumberRules(country_code=country_code)
        return replace(self, numbers=replace(rules, country_code=country_code))


class _Table:
    """A TOML table being validated: typed getters, and unknown keys are errors."""

    def __init__(self, source: str, path: str, data: Any) -> None:
        self.source = source
        self.path = path
        if not isinstance(data, dict):
            self.fail("", f"must be a table, got {type(data).__name__}")
        self.data: dict[str, Any] = data
        self.seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def fail(self, name: str, problem: str) -> NoReturn:
        where = self.key(name) if name else self.path or "(top level)"
        raise IngestError(f"mapping {self.source}: {where}: {problem}")

    def get(self, name: str, kind: type, default: Any = None, *, required: bool = False) -> Any:
        self.seen.add(name)
        if name not in self.data:
            if required:
                self.fail(name, "is required")
            return default
        value = self.data[name]
        if kind is float and isinstance(value, int):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            self.fail(name, f"must be {kind.__name__}, got {type(value).__name__}")
        return value

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        value: str = self.get(name, str, default)
        if value not in choices:
            self.fail(name, f"{value!r} is not one of {', '.join(choices)}")
        return value

    def strings(self, name: str, *, required: bool = False) -> tuple[str, ...] | None:
        value = self.get(name, list, None, required=required)
        if value is None:
            return None
        if not value or not all(isinstance(v, str) and v for v in value):
            self.fail(name, "must be a non-empty list of non-empty strings")
        return tuple(value)

    def sub(self, name: str) -> _Table | None:
        self.seen.add(name)
        if name not in self.data:
            return None
        return _Table(self.source, self.key(name), self.data[name])

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.seen)
        if unknown:
            self.fail(unknown[0], "unknown key (typo?)")


def _field_table(fields: _Table, name: str) -> _Table | None:
    """A field given as a bare column name becomes ``{column = name}``."""
    raw = fields.data.get(name)
    if isinstance(raw, str):
        fields.seen.add(name)
        return _Table(fields.source, fields.key(name), {"column": raw})
    return fields.sub(name)


def _column(t: _Table, *, required: bool) -> str | None:
    col: str | None = t.get("column", str, None, required=required)
    if col is not None and not col:
        t.fail("column", "must not be empty")
    return col


def _time_spec(t: _Table) -> TimeSpec:
    column = _column(t, required=True)
    assert column is not None
    fmt: str = t.get("format", str, "iso8601")
    if fmt not in TIME_KEYWORDS and "%" not in fmt:
        t.fail("format", f"{fmt!r} is not {', '.join(TIME_KEYWORDS)} or a strptime pattern")
    zone: str = t.get("zone", str, "UTC")
    try:
        zoneinfo.ZoneInfo(zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        t.fail("zone", f"{zone!r} is not an IANA time zone")
    ambiguous = t.choice("ambiguous", AMBIGUOUS_CHOICES, "earliest")
    t.done()
    return TimeSpec(column=column, format=fmt, zone=zone, ambiguous=ambiguous)


def _service_spec(t: _Table) -> ServiceSpec:
    column = _column(t, required=False)
    constant: str | None = t.get("constant", str, None)
    values_t = t.sub("values")
    if (column is None) == (constant is None):
        t.fail("", "give exactly one of `column` or `constant`")
    if constant is not None and constant not in SERVICES:
        t.fail("constant", f"{constant!r} is not one of {', '.join(SERVICES)}")
    lookup: dict[str, str] = {}
    if values_t is not None:
        if column is None:
            values_t.fail("", "needs `column`")
        for service in list(values_t.data):
            if service not in SERVICES:
                values_t.fail(service, f"is not one of {', '.join(SERVICES)}")
            for raw in values_t.strings(service, required=True) or ():
                key = raw.strip().lower()  # matched with Arrow utf8_lower
                if lookup.get(key, service) != service:
                    values_t.fail(service, f"value {raw!r} is mapped to two services")
                lookup[key] = service
        values_t.done()
    elif column is not None:
        lookup = {s: s for s in SERVICES}
    t.done()
    return ServiceSpec(column=column, constant=constant, values=lookup)


def _filter(t: _Table) -> RecordFilter:
    column = _column(t, required=True)
    assert column is not None
    accept = t.strings("accept", required=True)
    assert accept is not None
    reason: str = t.get("reason", str, "filtered")
    if not reason.replace("_", "").isalnum():
        t.fail("reason", f"{reason!r} must be a code of letters, digits and _")
    action = t.choice("action", FILTER_ACTIONS, "reject")
    t.done()
    return RecordFilter(column=column, accept=accept, reason=reason, action=action)


def parse_mapping(data: Mapping[str, Any], *, source: str = "<mapping>") -> CdrMapping:
    """Validate a mapping already read from TOML (``source`` names it in errors)."""
    top = _Table(source, "", dict(data))
    meta = top.sub("mapping")
    mapping_name, description = Path(source).stem, ""
    if meta is not None:
        mapping_name = meta.get("name", str, mapping_name)
        description = meta.get("description", str, "")
        meta.done()

    csv_t = top.sub("csv") or _Table(source, "csv", {})
    header: bool = csv_t.get("header", bool, True)
    columns = csv_t.strings("columns")
    delimiter: str = csv_t.get("delimiter", str, ",")
    quote: str = csv_t.get("quote", str, '"')
    encoding: str = csv_t.get("encoding", str, "utf-8")
    if len(delimiter) != 1 or len(quote) != 1 or delimiter == quote:
        csv_t.fail("delimiter", "delimiter and quote must be two different single characters")
    if not header and columns is None:
        csv_t.fail("columns", "is required when header = false")
    if columns is not None and len(set(columns)) != len(columns):
        csv_t.fail("columns", "has repeated names")
    try:
        "".encode(encoding)
    except LookupError:
        csv_t.fail("encoding", f"{encoding!r} is not a known encoding")
    csv_t.done()
    csv = CsvSpec(header, columns, delimiter, quote, encoding)

    numbers: NumberRules | None = None
    num_t = top.sub("numbers")
    if num_t is not None:
        cc: str = num_t.get("country_code", str, required=True)
        trunk: str = num_t.get("trunk_prefix", str, "0")
        intl: str = num_t.get("international_prefix", str, "00")
        for key, value in (("country_code", cc), ("trunk_prefix", trunk)):
            if not value.isdigit() and not (key == "trunk_prefix" and value == ""):
                num_t.fail(key, f"{value!r} must be digits")
        if not cc.isdigit() or not 1 <= len(cc) <= 3:
            num_t.fail("country_code", f"{cc!r} must be 1-3 digits")
        if not intl.isdigit():
            num_t.fail("international_prefix", f"{intl!r} must be digits")
        num_t.done()
        numbers = NumberRules(cc, trunk, intl)

    fields = top.sub("fields")
    if fields is None:
        top.fail("fields", "is required")
    assert fields is not None

    def need(name: str) -> _Table:
        t = _field_table(fields, name)
        if t is None:
            fields.fail(name, "is required")
        assert t is not None
        return t

    key_t = need("record_key")
    key_cols = key_t.strings("columns", required=True)
    assert key_cols is not None
    key_spec = KeySpec(columns=key_cols, prefix=key_t.get("prefix", str, ""))
    key_t.done()

    sub_t = need("subscriber")
    sub_col = _column(sub_t, required=True)
    assert sub_col is not None
    key_type = sub_t.choice("type", KEY_TYPES, "msisdn")
    sub_norm = sub_t.choice("normalise", NORMALISATIONS, "e164" if key_type == "msisdn" else "none")
    sub_t.done()
    subscriber = SubscriberSpec(sub_col, key_type, sub_norm)

    service = _service_spec(need("service"))
    start_time = _time_spec(need("start_time"))

    duration = DurationSpec()
    if (t := _field_table(fields, "duration")) is not None:
        duration = DurationSpec(
            _column(t, required=True),
            t.choice("unit", DURATION_UNITS, "s"),
            t.get("required", bool, False),
        )
        t.done()

    plain: dict[str, ColumnSpec] = {}
    for name in ("volume_up", "volume_down", "location"):
        plain[name] = ColumnSpec()
        if (t := _field_table(fields, name)) is not None:
            col = _column(t, required=False)
            const: str | None = t.get("constant", str, None) if name == "location" else None
            if (col is None) == (const is None):
                t.fail("", "give `column`" + (" or `constant`" if name == "location" else ""))
            plain[name] = ColumnSpec(col, const, t.get("required", bool, False))
            t.done()

    numbered: dict[str, NumberSpec] = {}
    for name in ("destination", "origin"):
        numbered[name] = NumberSpec()
        if (t := _field_table(fields, name)) is not None:
            numbered[name] = NumberSpec(
                _column(t, required=True),
                t.choice("normalise", NORMALISATIONS, "e164"),
                t.get("required", bool, False),
            )
            t.done()
    price = PriceSpec()
    if (t := _field_table(fields, "price")) is not None:
        price_col = _column(t, required=True)
        price = PriceSpec(price_col, t.choice("unit", PRICE_UNITS, "currency"),
                          t.get("required", bool, False))  # fmt: skip
        t.done()
    fields.done()

    filters: list[RecordFilter] = []
    raw_filters = top.get("filters", list, [])
    for i, item in enumerate(raw_filters):
        filters.append(_filter(_Table(source, f"filters[{i}]", item)))
    top.done()

    uses_e164 = [
        n
        for n, norm in (
            ("subscriber", subscriber.normalise),
            (
                "destination",
                numbered["destination"].normalise if numbered["destination"].column else "",
            ),
            ("origin", numbered["origin"].normalise if numbered["origin"].column else ""),
        )
        if norm == "e164"
    ]
    if uses_e164 and numbers is None:
        top.fail("numbers", f"is required: fields {', '.join(uses_e164)} use normalise = 'e164'")

    mapping = CdrMapping(
        name=mapping_name,
        source=source,
        csv=csv,
        record_key=key_spec,
        subscriber=subscriber,
        service=service,
        start_time=start_time,
        duration=duration,
        volume_up=plain["volume_up"],
        volume_down=plain["volume_down"],
        destination=numbered["destination"],
        origin=numbered["origin"],
        location=plain["location"],
        price=price,
        numbers=numbers,
        filters=tuple(filters),
        description=description,
    )
    if csv.columns is not None:
        missing = [c for c in mapping.used_columns() if c not in csv.columns]
        if missing:
            top.fail("fields", f"columns {', '.join(missing)} are not in csv.columns")
    return mapping


def find_mapping(name_or_path: str | Path) -> Path:
    """A mapping file: the path itself if it exists, else ``<name>.toml`` in
    ``./data/mappings`` or among the mappings shipped with the package (so ``generic`` and
    ``asterisk`` name the shipped mappings from any folder)."""
    path = Path(name_or_path)
    if path.exists() or path.suffix:
        return path
    for folder in (Path("data") / "mappings", _SHIPPED_MAPPINGS):
        candidate = folder / f"{path.name}.toml"
        if candidate.is_file():
            return candidate
    return path


def load_mapping(path: str | Path, *, country_code: str | None = None) -> CdrMapping:
    """Read and validate a mapping file (a path, or a shipped mapping's name such as
    ``generic``); ``country_code`` overrides ``numbers.country_code``."""
    path = find_mapping(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise IngestError(f"mapping {path}: cannot read: {exc.strerror or exc}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise IngestError(f"mapping {path}: not valid TOML: {exc}") from exc
    mapping = parse_mapping(data, source=str(path))
    return mapping.with_country_code(country_code) if country_code is not None else mapping
