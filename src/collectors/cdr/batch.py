"""One reader batch of CDR string columns -> usage rows and the checks that put rows aside.

:class:`BatchTransformer` applies a mapping to a batch with Arrow compute and the Numba
kernels (:mod:`collectors.cdr.transforms`); every reason a row can be refused is a
:class:`Check` (a mask over the batch), and :func:`rejects_from_checks` turns the first
failing check of each row into a reject row (its raw bytes are added by the reader).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from collectors.cdr.kernels import record_ids
from collectors.cdr.mapping import CdrMapping
from collectors.cdr.text_kernels import longest_value, read_digits, read_lookup
from collectors.cdr.transforms import (
    compose_key,
    map_values,
    none_if_empty,
    normalise_numbers,
    parse_duration_ms,
    parse_price,
    parse_times,
    parse_unsigned,
)
from collectors.schemas import TIMESTAMP, USAGE_PRICED_SCHEMA, USAGE_SCHEMA

__all__ = [
    "CHUNK_REJECT_SCHEMA",
    "MAX_FIELD_BYTES",
    "BatchTransformer",
    "Check",
    "rejects_from_checks",
]

#: Rejects as produced per chunk; the ingest adds stage, source_file and rejected_at.
CHUNK_REJECT_SCHEMA = pa.schema(
    [
        pa.field("record_no", pa.int64()),
        pa.field("record_id", pa.int64()),
        pa.field("field", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("message", pa.string()),
        pa.field("raw", pa.binary()),
    ]
)
_MAX_MSISDN = 15
#: Duration units read by :func:`read_digits`: milliseconds' digits after the point.
_DURATION_SCALE = {"s": 3, "ms": 0}
#: Longest field accepted (bytes); a longer one rejects its row with ``field_too_long``.
MAX_FIELD_BYTES = 4096


@dataclass
class Check:
    mask: np.ndarray
    field: str
    column: str | None
    reason: str
    what: str
    skip: bool = False  # a filter with action "skip": counted, written nowhere


def _mask(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(pc.fill_null(arr, False).to_numpy(zero_copy_only=False), dtype=np.bool_)


def _valid_mask(arr: pa.Array) -> np.ndarray:
    """Where ``arr`` is not null (no compute call when it has no nulls: the usual batch)."""
    if arr.null_count == 0:
        return np.ones(len(arr), dtype=np.bool_)
    return _mask(pc.is_valid(arr))


def _longer_than(arr: pa.Array, limit: int) -> np.ndarray:
    """Where a value is longer than ``limit`` bytes; one max() decides for a clean batch."""
    longest = longest_value(arr)  # no Arrow call for the usual column
    if longest is not None and longest <= limit:
        return np.zeros(len(arr), dtype=np.bool_)
    lengths = pc.binary_length(arr)
    if (pc.max(lengths).as_py() or 0) <= limit:
        return np.zeros(len(arr), dtype=np.bool_)
    return _mask(pc.greater(lengths, limit))


class _Trimmed(dict[str, pa.Array]):
    """Column name -> :func:`none_if_empty` of the column, made when first asked for (the
    columns a text kernel reads need none)."""

    def __init__(self, columns: dict[str, pa.Array]) -> None:
        super().__init__()
        self.columns = columns

    def __missing__(self, name: str) -> pa.Array:
        trimmed = self[name] = none_if_empty(self.columns[name])
        return trimmed


def _const(value: str | None, n: int) -> pa.Array:
    return pa.nulls(n, pa.string()) if value is None else pa.repeat(pa.scalar(value), n)


class BatchTransformer:
    """Turns one batch of string columns into usage rows and rejects."""

    def __init__(self, mapping: CdrMapping, source_name: str) -> None:
        self.m = mapping
        self.source_name = source_name
        self._consts: dict[str, pa.Array] = {}
        self._field_column = {
            f: getattr(mapping, f).column
            for f in ("service", "duration", "volume_up", "volume_down")
        }

    def const(self, value: str | None, n: int) -> pa.Array:
        """``value`` n times: a slice of one array per value made once (repeating a string
        for every batch cost ~15 ns a row); transform threads share it read-only."""
        if value is None:
            return _const(None, n)
        made = self._consts.get(value)
        if made is None or len(made) < n:
            made = self._consts[value] = _const(value, n)
        return made.slice(0, n)

    def _fast_columns(self, col: dict[str, pa.Array]) -> dict[str, tuple[Any, np.ndarray]]:
        """Field -> (values, present) for the fields a text kernel read (see
        :mod:`collectors.cdr.text_kernels`); a field it could not read is left out."""
        m = self.m
        out: dict[str, tuple[Any, np.ndarray] | None] = {}
        if m.service.column is not None:
            out["service"] = read_lookup(col[m.service.column], m.service.values)
        if m.duration.column is not None and m.duration.unit in _DURATION_SCALE:
            out["duration"] = read_digits(
                col[m.duration.column], scale=_DURATION_SCALE[m.duration.unit], signed=True
            )
        for vname in ("volume_up", "volume_down"):
            vcol = getattr(m, vname).column
            if vcol is not None:
                out[vname] = read_digits(col[vcol], scale=0, signed=False)
        return {f: got for f, got in out.items() if got is not None}

    def run(self, batch: pa.RecordBatch, lines: np.ndarray) -> tuple[pa.Table, list[Check]]:
        m = self.m
        n = batch.num_rows
        col = {name: batch.column(name) for name in batch.schema.names}
        raw = _Trimmed(col)
        checks: list[Check] = []

        # the usual spellings read in one pass each (text_kernels); None: the Arrow path below
        fast = self._fast_columns(col)
        present_masks = {self._field_column[f]: p for f, (_, p) in fast.items()}

        def present(c: str) -> np.ndarray:
            if c not in present_masks:
                present_masks[c] = _valid_mask(raw[c])
            return present_masks[c]

        for flt in m.filters:
            accepted = pc.is_in(raw[flt.column], value_set=pa.array(flt.accept, pa.string()))
            checks.append(
                Check(
                    ~_mask(accepted),
                    flt.column,
                    flt.column,
                    flt.reason,
                    f"not one of {', '.join(flt.accept)}",
                    skip=flt.action == "skip",
                )
            )

        def required(field_name: str, column: str | None) -> None:
            if column is not None:
                checks.append(Check(~present(column), field_name, column, "missing_field", "empty"))

        for c in m.record_key.columns:
            required("record_key", c)
        required("subscriber", m.subscriber.column)
        required("service", m.service.column)
        required("start_time", m.start_time.column)
        for fname in ("duration", "volume_up", "volume_down", "destination", "origin", "location",
                      "price"):  # fmt: skip
            spec = getattr(m, fname)
            if spec.required:
                required(fname, spec.column)

        for c in m.used_columns():  # a field this long is garbage, whichever field it is
            checks.append(
                Check(
                    _longer_than(col[c], MAX_FIELD_BYTES),
                    c,
                    c,
                    "field_too_long",
                    f"longer than {MAX_FIELD_BYTES} bytes",
                )
            )

        def bad(
            field_name: str, column: str, parsed: pa.Array | None, reason: str, what: str
        ) -> None:
            # parsed None: read by a text kernel, which reads every value present
            mask = (
                np.zeros(n, dtype=np.bool_)
                if parsed is None
                else present(column) & ~_valid_mask(parsed)
            )
            checks.append(Check(mask, field_name, column, reason, what))

        sub_col = m.subscriber.column
        normalised: dict[tuple[str, str], pa.Array] = {}

        def numbers_of(column: str, mode: str) -> pa.Array:
            # a column read as two fields (the generic layout's msisdn is the origin too) is
            # normalised once
            if (column, mode) not in normalised:
                normalised[column, mode] = normalise_numbers(raw[column], mode, m.numbers)
            return normalised[column, mode]

        subscriber = numbers_of(sub_col, m.subscriber.normalise)
        if m.subscriber.key_type in ("msisdn", "imsi"):
            no_number = pa.scalar(None, pa.string())
            if m.subscriber.normalise in ("digits", "e164"):
                # the normalised text is ASCII digits or null already: only the length can fail
                lengths = pc.binary_length(subscriber)
                if (pc.max(lengths).as_py() or 0) > _MAX_MSISDN:
                    subscriber = pc.if_else(
                        pc.less_equal(lengths, _MAX_MSISDN), subscriber, no_number
                    )
            else:
                digits_ok = pc.and_(
                    pc.utf8_is_digit(subscriber),
                    pc.less_equal(pc.utf8_length(subscriber), _MAX_MSISDN),
                )
                subscriber = pc.if_else(digits_ok, subscriber, no_number)
        bad("subscriber", sub_col, subscriber, "bad_number", f"not a {m.subscriber.key_type}")

        if m.service.column is not None:
            svc_col = m.service.column
            if "service" in fast:
                service, svc_checked = fast["service"][0], None
            else:
                service = svc_checked = map_values(raw[svc_col], m.service.values)
            bad("service", svc_col, svc_checked, "bad_service", "unknown service")
        else:
            service = self.const(m.service.constant, n)

        ts_spec = m.start_time
        start = parse_times(raw[ts_spec.column], ts_spec)
        bad(
            "start_time",
            ts_spec.column,
            start,
            "bad_time",
            f"not a valid {ts_spec.format} time in {ts_spec.zone}",
        )

        duration = pa.repeat(pa.scalar(0, pa.int64()), n)
        if m.duration.column is not None:
            dur_col = m.duration.column
            if "duration" in fast:
                millis = fast["duration"][0]
                duration, dur_checked, negative = pa.array(millis), None, millis < 0
            else:
                duration = dur_checked = parse_duration_ms(raw[dur_col], m.duration.unit)
                negative = _mask(pc.less(duration, 0))
            bad("duration", dur_col, dur_checked, "bad_number", f"not a {m.duration.unit} duration")
            checks.append(Check(negative, "duration", dur_col, "negative_duration", "negative"))
            if dur_checked is not None:
                duration = pc.fill_null(duration, 0)

        volumes: dict[str, pa.Array] = {}
        for vname in ("volume_up", "volume_down"):
            vspec = getattr(m, vname)
            if vspec.column is None:
                volumes[vname] = pa.repeat(pa.scalar(0, pa.uint64()), n)
                continue
            if vname in fast:
                volumes[vname] = pa.array(fast[vname][0])
                bad(vname, vspec.column, None, "bad_number", "not a non-negative byte count")
                continue
            vol = parse_unsigned(raw[vspec.column])
            bad(vname, vspec.column, vol, "bad_number", "not a non-negative byte count")
            volumes[vname] = pc.fill_null(vol, 0)

        numbers: dict[str, pa.Array] = {}
        for nname in ("destination", "origin"):
            nspec = getattr(m, nname)
            numbers[nname] = (
                _const(None, n)
                if nspec.column is None
                else numbers_of(nspec.column, nspec.normalise)
            )
        loc = m.location
        location = raw[loc.column] if loc.column is not None else self.const(loc.constant, n)
        price = None
        if m.price.column is not None:  # issue #25: the price a pass-through rate charges
            price = parse_price(raw[m.price.column], m.price.unit)
            what = "a decimal price" if m.price.unit == "currency" else "integer micro-units"
            bad("price", m.price.column, price, "bad_price", f"not {what}")

        rejected = np.zeros(n, dtype=np.bool_)
        for chk in checks:
            rejected |= chk.mask
        good_mask = pa.array(~rejected)

        def good(arr: pa.Array) -> pa.Array:
            # the usual batch has no bad row: its columns are used as they are, not copied
            return pc.filter(arr, good_mask) if rejected.any() else arr

        key = compose_key([good(raw[c]) for c in m.record_key.columns], m.record_key.prefix)
        if key.null_count:  # only if a key column has null, which `required` rejected
            raise AssertionError("record key null after checks")
        n_good = len(key)
        table = pa.Table.from_arrays(
            [
                pa.array(record_ids(key), pa.int64()),
                key,
                self.const(self.source_name, n_good),
                pa.array(lines[~rejected], pa.int64()),
                good(subscriber),
                self.const(m.subscriber.key_type, n_good),
                good(service),
                good(start).cast(TIMESTAMP),
                good(duration).cast(pa.int64()),
                good(volumes["volume_up"]),
                good(volumes["volume_down"]),
                good(numbers["destination"]),
                good(numbers["origin"]),
                good(location).cast(pa.string()),
                *([] if price is None else [good(price)]),
            ],
            schema=USAGE_SCHEMA if price is None else USAGE_PRICED_SCHEMA,
        )
        return table, checks


def rejects_from_checks(
    batch: pa.RecordBatch, lines: np.ndarray, checks: list[Check]
) -> tuple[pa.Table, dict[str, int]]:
    """First failing check per row -> reject rows (raw filled later); skip-filters counted."""
    n = batch.num_rows
    if not any(chk.mask.any() for chk in checks):  # the usual batch: nothing put aside
        return CHUNK_REJECT_SCHEMA.empty_table(), {}
    which = np.full(n, -1, dtype=np.int64)
    taken = np.zeros(n, dtype=np.bool_)
    for i, chk in enumerate(checks):
        new = chk.mask & ~taken
        which[new] = i
        taken |= chk.mask
    rows: dict[str, list[object]] = {k: [] for k in ("record_no", "field", "reason", "message")}
    skipped: dict[str, int] = {}
    for i, chk in enumerate(checks):
        idx = np.flatnonzero(which == i)
        if idx.size == 0:
            continue
        if chk.skip:
            skipped[chk.reason] = skipped.get(chk.reason, 0) + int(idx.size)
            continue
        values = (
            batch.column(chk.column).take(pa.array(idx)).to_pylist()
            if chk.column is not None
            else [None] * idx.size
        )
        for line, value in zip(lines[idx].tolist(), values, strict=True):
            rows["record_no"].append(line)
            rows["field"].append(chk.field)
            rows["reason"].append(chk.reason)
            where = chk.field if chk.field == chk.column else f"{chk.field} (column {chk.column})"
            shown = repr(value) if value is None or len(value) <= 200 else f"{value[:200]!r}..."
            rows["message"].append(f"{where}: {chk.what}: {shown}")
    table = pa.table(
        {
            "record_no": pa.array(rows["record_no"], pa.int64()),
            "record_id": pa.nulls(len(rows["record_no"]), pa.int64()),
            "field": pa.array(rows["field"], pa.string()),
            "reason": pa.array(rows["reason"], pa.string()),
            "message": pa.array(rows["message"], pa.string()),
            "raw": pa.nulls(len(rows["record_no"]), pa.binary()),
        },
        schema=CHUNK_REJECT_SCHEMA,
    )
    return table, skipped
