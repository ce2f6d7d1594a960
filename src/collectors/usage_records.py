"""Usage records (``USAGE_SCHEMA``) from a minimal in-memory table, ids derived for you.

The CDR reader makes usage from files; :func:`usage_table` makes the same records from a
pyarrow Table or RecordBatch, a polars DataFrame, or a list of dicts that has only the
columns a person knows:

==================  ==========================================================  =========
column              values                                                      required
==================  ==========================================================  =========
``subscriber``      MSISDN (E.164 digits, a leading ``+`` is dropped), IMSI,    yes
                    or IP address / block text (``subscriber_key`` also read)
``service``         ``voice``, ``sms`` or ``data``                              yes
``start``           datetime (naive = UTC), Arrow timestamp, or ISO 8601 text   yes
                    (``start_time`` also read)
``duration``        whole seconds or a timedelta (or ``duration_ms``)           0
``volume``          bytes received (or ``volume_up`` / ``volume_down``)         0
``destination``     called number, E.164 digits (leading ``+`` dropped)         null
``subscriber_key_type``  ``msisdn``, ``imsi`` or ``ip``                         guessed
``origin``, ``location``, ``record_key``                                        null
==================  ==========================================================  =========

The key type, when not given, is ``ip`` for text with ``.`` or ``:`` and ``msisdn``
otherwise (IMSIs must say so). IP keys are written in the canonical form rating matches.
Filled in deterministically: ``record_key`` = the record's content (key type, subscriber,
service, start, duration, volumes, destination, origin) plus ``#n`` for the n-th repeat
of an identical row, so the same table always gets the same ids and a record seen in two
tables is recognisably the same; ``record_id`` from the key as the CDR reader computes it;
``source_file`` = ``source``; ``source_line`` = the 1-based row. Bad values raise
:class:`~collectors.errors.IngestError` naming the source, the row and the field.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from collectors.cdr.kernels import record_ids
from collectors.cdr.transforms import compose_key
from collectors.errors import IngestError
from collectors.schemas import TIMESTAMP, USAGE_SCHEMA

__all__ = ["usage_table"]

_SERVICES = ("voice", "sms", "data")
_KEY_TYPES = ("msisdn", "imsi", "ip")
_ALIASES = {"subscriber": "subscriber_key", "start": "start_time"}
_KNOWN = {
    *_ALIASES,
    *(f.name for f in USAGE_SCHEMA),
    "duration",
    "volume",
}


def _as_table(records: Any) -> pa.Table:
    if isinstance(records, pa.Table):
        return records
    if isinstance(records, pa.RecordBatch):
        return pa.Table.from_batches([records])
    if hasattr(records, "to_arrow"):  # a polars DataFrame (no import needed here)
        table = records.to_arrow()
        if isinstance(table, pa.Table):
            return table
    if isinstance(records, Sequence) and all(isinstance(r, Mapping) for r in records):
        return _from_dicts(records)
    raise IngestError(
        f"usage_table: expected a pyarrow Table, a polars DataFrame or a list of dicts, "
        f"got {type(records).__name__}"
    )


def _from_dicts(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """Column by column, so a column mixing datetimes and ISO text (or naive and aware
    datetimes) is read as text instead of failing the whole conversion."""
    names = list(dict.fromkeys(k for r in rows for k in r))
    arrays: dict[str, pa.Array] = {}
    for name in names:
        values = [r.get(name) for r in rows]
        try:
            arrays[name] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            if not all(v is None or isinstance(v, str | datetime) for v in values):
                raise IngestError(f"usage_table: column {name!r}: mixed values ({exc})") from exc
            texts = [v.isoformat() if isinstance(v, datetime) else v for v in values]
            arrays[name] = pa.array(texts, pa.string())
    return pa.table(arrays) if arrays else pa.table({})


class _Columns:
    """The input's columns under their canonical names, with errors that name the row."""

    def __init__(self, table: pa.Table, source: str) -> None:
        self.source = source
        self.n = table.num_rows
        self.cols: dict[str, pa.ChunkedArray] = {}
        given: dict[str, str] = {}
        for name in table.column_names:
            if name not in _KNOWN:
                raise IngestError(
                    f"{source}: unknown column {name!r} (known: {', '.join(sorted(_KNOWN))})"
                )
            canonical = _ALIASES.get(name, name)
            if canonical in self.cols:
                raise IngestError(f"{source}: columns {given[canonical]!r} and {name!r} both given")
            self.cols[canonical] = table.column(name)
            given[canonical] = name

    def fail(self, row: int, field: str, problem: str) -> IngestError:
        return IngestError(f"{self.source}: row {row + 1}, field {field}: {problem}")

    def required(self, name: str, alias: str) -> pa.ChunkedArray:
        if name not in self.cols:
            raise IngestError(f"{self.source}: column {alias!r} (or {name!r}) is required")
        col = self.cols[name]
        if col.null_count:
            row = pc.index(pc.is_null(col), True).as_py()
            raise self.fail(row, name, "empty")
        return col

    def text(self, name: str) -> list[str | None]:
        """A column as Python text (null where absent): text, dictionary or integer columns."""
        col = self.cols.get(name)
        if col is None:
            return [None] * self.n
        kind = col.type
        if pa.types.is_dictionary(kind):
            kind = kind.value_type
        if not (
            pa.types.is_string(kind)
            or pa.types.is_large_string(kind)
            or pa.types.is_integer(kind)
            or pa.types.is_null(kind)
        ):
            raise self.fail(0, name, f"expected text, got {col.type}")
        values: list[str | None] = col.cast(pa.string()).to_pylist()
        return values

    def count(self, name: str) -> pa.Array:
        """A non-negative integer column (bytes, ms) as uint64; 0 where absent."""
        col = self.cols.get(name)
        if col is None:
            return pa.array([0] * self.n, pa.uint64())
        if not (pa.types.is_integer(col.type) or pa.types.is_null(col.type)):
            raise self.fail(0, name, f"expected whole numbers, got {col.type}")
        values = pc.fill_null(col.cast(pa.int64()), 0)
        negative = pc.less(values, 0)
        if pc.any(negative).as_py():
            row = pc.index(negative, True).as_py()
            raise self.fail(row, name, f"{values[row].as_py()} is negative")
        return values.combine_chunks().cast(pa.uint64())


def _digits(value: str | None, cols: _Columns, row: int, field: str) -> str | None:
    if value is None:
        return None
    text = value.strip().removeprefix("+")
    if not text.isdigit():
        raise cols.fail(row, field, f"{value!r} is not a number in E.164 digits")
    return text


def _subscriber(value: str, kind: str | None, cols: _Columns, row: int) -> tuple[str, str]:
    """(canonical key, key type) of one subscriber."""
    text = value.strip()
    if kind is None:
        kind = "ip" if ("." in text or ":" in text) else "msisdn"
    if kind not in _KEY_TYPES:
        raise cols.fail(row, "subscriber_key_type", f"{kind!r} is not msisdn, imsi or ip")
    if kind != "ip":
        digits = _digits(text, cols, row, "subscriber_key")
        assert digits is not None
        return digits, kind
    try:
        net = ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        raise cols.fail(row, "subscriber_key", f"{value!r}: {exc}") from exc
    if net.num_addresses > 1:
        return str(net), kind
    addr = net.network_address
    mapped = addr.ipv4_mapped if isinstance(addr, ipaddress.IPv6Address) else None
    return str(mapped or addr), kind


def _start(cols: _Columns) -> pa.Array:
    col = cols.required("start_time", "start")
    if pa.types.is_timestamp(col.type):
        if col.type.tz is None:
            col = pc.assume_timezone(col, "UTC")  # naive datetimes are UTC
        return col.cast(TIMESTAMP, safe=False).combine_chunks()  # ns are floored to us
    times: list[datetime] = []
    for row, text in enumerate(cols.text("start_time")):
        try:
            value = datetime.fromisoformat(str(text))
        except ValueError as exc:
            raise cols.fail(row, "start_time", f"{text!r} is not an ISO 8601 time") from exc
        times.append(value if value.tzinfo else value.replace(tzinfo=UTC))
    return pa.array(times, TIMESTAMP)


def _duration_ms(cols: _Columns) -> pa.Array:
    if "duration_ms" in cols.cols and "duration" in cols.cols:
        raise IngestError(f"{cols.source}: columns 'duration' and 'duration_ms' both given")
    col = cols.cols.get("duration")
    if col is None:
        return cols.count("duration_ms").cast(pa.int64())
    if pa.types.is_duration(col.type):
        col = col.cast(pa.duration("ms"), safe=False).cast(pa.int64())
    elif pa.types.is_integer(col.type):
        col = pc.multiply_checked(col.cast(pa.int64()), 1000)
    elif not pa.types.is_null(col.type):
        raise IngestError(
            f"{cols.source}: column duration: whole seconds or a timedelta, got {col.type} "
            "(give milliseconds as duration_ms)"
        )
    cols.cols["duration_ms"] = col
    return cols.count("duration_ms").cast(pa.int64())


def usage_table(records: Any, *, source: str = "memory") -> pa.Table:
    """Usage records in ``USAGE_SCHEMA`` from a minimal table (see the module doc).

    >>> from datetime import datetime
    >>> from collectors import usage_table
    >>> usage = usage_table([
    ...     {"subscriber": "+491701234567", "service": "voice",
    ...      "start": datetime(2026, 3, 3, 9, 0), "duration": 61,
    ...      "destination": "4915112345678"},
    ...     {"subscriber": "491701234567", "service": "data",
    ...      "start": "2026-03-03T10:00:00+01:00", "volume": 5_000_000},
    ... ])
    >>> usage.num_rows, usage.schema.equals(USAGE_SCHEMA, check_metadata=True)
    (2, True)
    >>> row = usage.to_pylist()[1]
    >>> row["record_key"]
    'msisdn|491701234567|data|1772528400000000|0|0|5000000||'
    >>> row["start_time"].isoformat(), row["volume_down"], row["source_line"]
    ('2026-03-03T09:00:00+00:00', 5000000, 2)
    """
    table = _as_table(records)
    if table.num_columns == 0:  # an empty list: no records
        return USAGE_SCHEMA.empty_table()
    cols = _Columns(table, source)
    n = cols.n
    subscribers = cols.required("subscriber_key", "subscriber").cast(pa.string()).to_pylist()
    kinds = cols.text("subscriber_key_type")
    keys: list[str] = []
    types: list[str] = []
    for row in range(n):
        key, kind = _subscriber(subscribers[row], kinds[row], cols, row)
        keys.append(key)
        types.append(kind)
    cols.required("service", "service")
    services = cols.text("service")
    for row, service in enumerate(services):
        if service not in _SERVICES:
            raise cols.fail(row, "service", f"{service!r} is not voice, sms or data")
    start = _start(cols)
    duration = _duration_ms(cols)
    if "volume" in cols.cols:
        if "volume_down" in cols.cols:
            raise IngestError(f"{source}: columns 'volume' and 'volume_down' both given")
        cols.cols["volume_down"] = cols.cols["volume"]
    up, down = cols.count("volume_up"), cols.count("volume_down")
    numbers = {
        name: [_digits(v, cols, row, name) for row, v in enumerate(cols.text(name))]
        for name in ("destination", "origin")
    }
    location = cols.text("location")
    given_keys = cols.text("record_key")
    content = compose_key(
        [pa.array(types), pa.array(keys), pa.array(services, pa.string())]
        + [c.cast(pa.string()) for c in (start.cast(pa.int64()), duration, up, down)]
        + [pc.fill_null(pa.array(numbers[k], pa.string()), "") for k in ("destination", "origin")],
        "",
    ).to_pylist()
    seen: dict[str, int] = {}
    record_keys: list[str] = []
    for row in range(n):
        given = given_keys[row]
        if given is not None:
            record_keys.append(given)
            continue
        text = str(content[row])
        repeat = seen[text] = seen.get(text, 0) + 1
        record_keys.append(text if repeat == 1 else f"{text}#{repeat}")
    key_array = pa.array(record_keys, pa.string())
    return pa.Table.from_arrays(
        [
            pa.array(record_ids(key_array), pa.int64()),
            key_array,
            pa.array([source] * n, pa.string()),
            pa.array(range(1, n + 1), pa.int64()),
            pa.array(keys, pa.string()),
            pa.array(types, pa.string()),
            pa.array(services, pa.string()),
            start,
            duration,
            up,
            down,
            pa.array(numbers["destination"], pa.string()),
            pa.array(numbers["origin"], pa.string()),
            pa.array(location, pa.string()),
        ],
        schema=USAGE_SCHEMA,
    )
