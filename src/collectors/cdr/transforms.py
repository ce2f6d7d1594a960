"""Vectorised value transforms for CDR columns (Arrow compute; no Python loop per row).

Each parser returns an array the length of its input with null where a value cannot be read,
so the caller can tell *missing* (input null) from *bad* (input present, output null). The
happy path is a single Arrow cast; a batch holding bad values is split in halves until the
bad values are isolated (:func:`cast_or_null`), so a few bad rows cost O(k log n) casts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from collectors.cdr.kernels import empty_as_null, normalise_kernel
from collectors.cdr.mapping import NumberRules, TimeSpec
from collectors.schemas import TIMESTAMP

__all__ = [
    "cast_or_null",
    "compose_key",
    "map_values",
    "none_if_empty",
    "normalise_numbers",
    "normalise_numbers_reference",
    "parse_duration_ms",
    "parse_price",
    "parse_scaled",
    "parse_times",
    "parse_unsigned",
]

_NAIVE = pa.timestamp("us")
_ZONE_SUFFIX = r"(Z|[+-]\d\d(:?\d\d)?)$"
_US_PER_MS = 1_000
_US_PER_S = 1_000_000


def none_if_empty(arr: pa.Array) -> pa.Array:
    """Trim ASCII whitespace; empty strings become null."""
    fast = empty_as_null(arr)  # the usual column: nothing to trim, no copy
    if fast is not None:
        return fast
    trimmed = pc.ascii_trim_whitespace(arr)
    empty = pc.equal(pc.binary_length(trimmed), 0)
    if not pc.any(empty).as_py():
        return trimmed
    return pc.if_else(empty, pa.scalar(None, arr.type), trimmed)


def cast_or_null(arr: pa.Array, to: pa.DataType) -> pa.Array:
    """Cast, with null for values that do not cast (found by bisection)."""
    try:
        return pc.cast(arr, to)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    if len(arr) <= 16:
        out = []
        for i in range(len(arr)):
            try:
                out.append(pc.cast(arr.slice(i, 1), to))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                out.append(pa.nulls(1, to))
        return pa.concat_arrays(out)
    half = len(arr) // 2
    return pa.concat_arrays(
        [cast_or_null(arr.slice(0, half), to), cast_or_null(arr.slice(half), to)]
    )


def parse_unsigned(arr: pa.Array) -> pa.Array:
    """Non-negative integers as uint64 (null where not one)."""
    return cast_or_null(arr, pa.uint64())


_INT64_MAX = 2**63 - 1


def _scalable(ints: pa.Array, digits: int) -> pa.Array:
    """``ints`` with null where ``value * 10**digits`` would not fit an int64: such a value
    is not a number this field can hold (the checked arithmetic after it raised instead,
    ending the whole ingest)."""
    if not digits:
        return ints
    limit = _INT64_MAX // 10**digits
    inside = pc.and_(pc.greater_equal(ints, -limit), pc.less_equal(ints, limit))
    return pc.if_else(inside, ints, pa.scalar(None, pa.int64()))


def parse_scaled(arr: pa.Array, digits: int) -> pa.Array:
    """Decimal text ``[-]I[.F]`` times 10**digits as int64, extra fraction digits truncated.

    Exact (no floats): integer and fraction parts are cast separately.
    """
    if not pc.any(pc.match_substring(arr, ".")).as_py():
        ints = cast_or_null(arr, pa.int64())
        return pc.multiply_checked(_scalable(ints, digits), 10**digits)
    parts = pc.extract_regex(arr, r"^(?P<neg>-?)(?P<whole>\d+)(?:\.(?P<frac>\d*))?$")
    whole = cast_or_null(pc.struct_field(parts, "whole"), pa.int64())
    value = pc.multiply_checked(_scalable(whole, digits), 10**digits)
    if digits:
        frac_text = pc.utf8_rpad(pc.struct_field(parts, "frac"), digits, "0")
        frac = cast_or_null(pc.utf8_slice_codeunits(frac_text, 0, digits), pa.int64())
        # the largest whole part leaves room for some fractions only: past int64 is null
        fits = pc.less_equal(frac, pc.subtract(_INT64_MAX, value))
        value = pc.if_else(fits, pc.add(value, frac), pa.scalar(None, pa.int64()))
    negative = pc.equal(pc.struct_field(parts, "neg"), "-")
    return pc.if_else(negative, pc.negate_checked(value), value)


#: Prices: sign, at most 12 integer digits (10^12 x 10^6 < 2^63) and 6 fraction digits
#: (trailing zeros beyond the sixth allowed); ``micro``: an integer of at most 18 digits.
_PRICE_CURRENCY = r"^(?P<neg>[-+]?)(?P<whole>\d{1,12})(?:\.(?P<frac>\d{0,6})0*)?$"
_PRICE_MICRO = r"^(?P<neg>[-+]?)(?P<whole>\d{1,18})$"


def parse_price(arr: pa.Array, unit: str) -> pa.Array:
    """Prices as int64 micro-units (null where not a price of ``unit``: ``currency`` decimal
    text or ``micro`` integers). Exact: the digits are joined as text and cast once, so no
    value goes through a float and none can overflow (the patterns bound the digits)."""
    parts = pc.extract_regex(arr, _PRICE_CURRENCY if unit == "currency" else _PRICE_MICRO)
    digits = pc.struct_field(parts, "whole")
    if unit == "currency":
        frac = pc.utf8_rpad(pc.fill_null(pc.struct_field(parts, "frac"), ""), 6, "0")
        digits = pc.binary_join_element_wise(digits, frac, "")
    value = pc.cast(pc.if_else(pc.is_valid(parts), digits, pa.scalar(None, pa.string())),
                    pa.int64())  # fmt: skip
    negative = pc.equal(pc.struct_field(parts, "neg"), "-")
    return pc.if_else(negative, pc.negate(value), value)


def parse_duration_ms(arr: pa.Array, unit: str) -> pa.Array:
    """Durations as int64 milliseconds: ``s`` (fraction truncated to ms), ``ms``, ``hms``."""
    if unit == "ms":
        return parse_scaled(arr, 0)
    if unit == "s":
        return parse_scaled(arr, 3)
    parts = pc.extract_regex(arr, r"^(?P<h>\d+):(?P<m>[0-5]\d):(?P<s>[0-5]\d)$")
    h = cast_or_null(pc.struct_field(parts, "h"), pa.int64())
    m = cast_or_null(pc.struct_field(parts, "m"), pa.int64())
    s = cast_or_null(pc.struct_field(parts, "s"), pa.int64())
    rest = pc.multiply(pc.add(pc.multiply(m, 60), s), 1000)
    # milliseconds past int64 are null (the checked product raised, ending the ingest)
    top = _INT64_MAX // 3_600_000
    fits = pc.or_(
        pc.less(h, top),
        pc.and_(pc.equal(h, top), pc.less_equal(rest, _INT64_MAX - top * 3_600_000)),
    )
    h = pc.if_else(fits, h, pa.scalar(None, pa.int64()))
    return pc.add(pc.multiply(h, 3_600_000), rest)


def _local_to_utc(naive: pa.Array, spec: TimeSpec) -> pa.Array:
    """Wall-clock times in ``spec.zone`` to UTC; gap times (and ambiguous ones if asked) null.

    A switch writes its CDRs in time order, several to a second: the zone's rules (~60 ns a
    value in Arrow) are applied once per run of equal times and the result repeated, the
    same value for value.
    """
    if spec.zone == "UTC":
        return pc.cast(naive, TIMESTAMP)
    n = len(naive)
    if n < 2:
        return _zone_rules(naive, spec)
    offset = _one_offset(naive, spec.zone)
    if offset is not None:
        return pc.subtract(naive.cast(pa.int64()), offset).cast(TIMESTAMP)
    micros = np.asarray(
        pc.fill_null(naive.cast(pa.int64()), 0).to_numpy(zero_copy_only=False), dtype=np.int64
    )
    starts = np.empty(n, dtype=np.bool_)
    starts[0] = True
    np.not_equal(micros[1:], micros[:-1], out=starts[1:])
    if naive.null_count:  # a null and a real 1970-01-01 00:00 are different runs
        valid = np.asarray(naive.is_valid().to_numpy(zero_copy_only=False), dtype=np.bool_)
        starts[1:] |= valid[1:] != valid[:-1]
    if 2 * int(np.count_nonzero(starts)) > n:  # mostly distinct: no gain
        return _zone_rules(naive, spec)
    once = _zone_rules(naive.filter(pa.array(starts)), spec)
    return once.take(pa.array(np.cumsum(starts, dtype=np.int64) - 1))


_US_PER_HOUR = 3_600 * _US_PER_S
#: Beyond the widest gap between two offsets of one zone (UTC-12 to UTC+14: 26 hours).
_OFFSET_MARGIN_US = 27 * _US_PER_HOUR
_MAX_PROBES = 24 * 8  # a batch spanning more than ~5 days takes the general path


def _one_offset(naive: pa.Array, zone: str) -> int | None:
    """The zone's UTC offset (microseconds) if it is the same for every time of ``naive``
    and none is ambiguous or inside a gap; None when that is not known.

    The zone's rules are asked for every hour from 27 hours before the earliest time to 27
    hours after the latest (at most ~200 values): one offset at all of them, none ambiguous
    or skipped, means no transition in between (a zone never changes its offset and back
    within an hour), so each time there is read with that offset - and only that one, as
    every other offset the zone has had would put the instant within 26 hours, where the
    offset is this one. A CDR batch spans minutes to hours: the usual case, one subtraction
    instead of ~60 ns a value for the rules.
    """
    bounds = pc.min_max(naive)
    lo, hi = bounds["min"].value, bounds["max"].value
    if lo is None or hi is None:
        return None
    first = (lo - _OFFSET_MARGIN_US) // _US_PER_HOUR * _US_PER_HOUR
    probes = np.arange(first, hi + _OFFSET_MARGIN_US + _US_PER_HOUR, _US_PER_HOUR)
    if probes.size > _MAX_PROBES:
        return None
    try:
        zoned = pc.assume_timezone(
            pa.array(probes, _NAIVE), timezone=zone, ambiguous="raise", nonexistent="raise"
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OverflowError):
        return None  # a probe is ambiguous or in a gap (or out of range): a transition near
    offsets = probes - np.asarray(zoned.cast(pa.int64()).to_numpy(zero_copy_only=False))
    if np.any(offsets != offsets[0]):
        return None
    return int(offsets[0])


def _zone_rules(naive: pa.Array, spec: TimeSpec) -> pa.Array:
    ambiguous = "earliest" if spec.ambiguous == "reject" else spec.ambiguous
    zoned = pc.assume_timezone(
        naive, timezone=spec.zone, ambiguous=ambiguous, nonexistent="earliest"
    )
    # a wall time inside the spring-forward gap does not round-trip
    bad = pc.not_equal(pc.local_timestamp(zoned), naive)
    if spec.ambiguous == "reject":
        other = pc.assume_timezone(
            naive, timezone=spec.zone, ambiguous="latest", nonexistent="earliest"
        )
        bad = pc.or_(bad, pc.not_equal(zoned, other))
    utc = pc.cast(zoned, TIMESTAMP)
    if not pc.any(bad).as_py():
        return utc
    return pc.if_else(bad, pa.scalar(None, TIMESTAMP), utc)


def _parse_iso(arr: pa.Array, spec: TimeSpec) -> pa.Array:
    # A failing Arrow cast costs as much as a full one, so guess from the first value which
    # of the two whole-array casts to try; mixed or bad batches take the classified path.
    first = pc.drop_null(arr)[:1].to_pylist()
    if first:
        zoned_first = pc.match_substring_regex(pa.array(first), _ZONE_SUFFIX)[0].as_py()
        try:
            if zoned_first:
                return pc.cast(arr, TIMESTAMP)  # every value carries an offset
            return _local_to_utc(pc.cast(arr, _NAIVE), spec)  # every value is local time
        except pa.ArrowInvalid:
            pass
    zoned = pc.match_substring_regex(arr, _ZONE_SUFFIX)
    with_zone = cast_or_null(pc.if_else(zoned, arr, pa.scalar(None, arr.type)), TIMESTAMP)
    naive = cast_or_null(pc.if_else(zoned, pa.scalar(None, arr.type), arr), _NAIVE)
    return pc.if_else(zoned, with_zone, _local_to_utc(naive, spec))


def parse_times(arr: pa.Array, spec: TimeSpec) -> pa.Array:
    """Times as ``timestamp[us, UTC]`` per ``spec.format`` (see :mod:`collectors.cdr.mapping`)."""
    fmt = spec.format
    if fmt == "iso8601":
        return _parse_iso(arr, spec)
    if fmt in ("epoch_s", "epoch_ms", "epoch_us"):
        digits = {"epoch_s": 6, "epoch_ms": 3, "epoch_us": 0}[fmt]
        micros = parse_scaled(arr, digits)
        return pc.cast(micros, pa.int64()).cast(TIMESTAMP)
    parsed = pc.strptime(arr, format=fmt, unit="us", error_is_null=True)
    if parsed.type.tz is not None:
        return pc.cast(parsed, TIMESTAMP)
    return _local_to_utc(parsed, spec)


def _strip_prefix(digits: pa.Array, prefix: str, replacement: str | None) -> pa.Array:
    rest = pc.utf8_slice_codeunits(digits, len(prefix))
    return rest if replacement is None else pc.binary_join_element_wise(replacement, rest, "")


def normalise_numbers(arr: pa.Array, mode: str, rules: NumberRules | None) -> pa.Array:
    """Phone numbers to digits (``digits``) or E.164 digits without ``+`` (``e164``).

    e164: a leading ``+`` marks an international number (kept as is); else a leading
    international prefix is stripped; else a leading trunk prefix becomes the country code;
    otherwise the digits stay as they are (short codes, extensions). Non-digits are dropped
    after that decision; an empty result is null. ``none`` only trims.
    """
    if mode == "e164" and rules is None:
        raise ValueError("e164 normalisation needs number rules")
    if rules is None or mode != "e164":
        return normalise_kernel(arr, mode)
    return normalise_kernel(
        arr, mode, rules.country_code, rules.trunk_prefix, rules.international_prefix
    )


def normalise_numbers_reference(
    value: str | None, mode: str, rules: NumberRules | None
) -> str | None:
    """Pure-Python twin of :func:`normalise_numbers` for one value (tests)."""
    if value is None:
        return None
    value = value.strip(" \t\r\n\v\f")
    if not value:
        return None
    if mode == "none":
        return value
    digits = "".join(c for c in value if "0" <= c <= "9")
    if mode == "e164" and rules is not None and not value.startswith("+"):
        if digits.startswith(rules.international_prefix):
            digits = digits[len(rules.international_prefix) :]
        elif rules.trunk_prefix and digits.startswith(rules.trunk_prefix):
            digits = rules.country_code + digits[len(rules.trunk_prefix) :]
    return digits or None


def map_values(arr: pa.Array, lookup: Mapping[str, str]) -> pa.Array:
    """Case-folded, trimmed values through ``lookup``; unknown values become null."""
    keys = list(lookup)
    values = pa.array([lookup[k] for k in keys], pa.string())
    # a column of a few distinct spellings: fold and look up the distinct ones only
    encoded = pc.dictionary_encode(arr)
    folded = pc.utf8_lower(pc.utf8_trim_whitespace(encoded.dictionary))
    index = pc.index_in(folded, value_set=pa.array(keys, pa.string()))
    return pc.take(pc.take(values, index), encoded.indices)


def compose_key(columns: Sequence[pa.Array], prefix: str) -> pa.Array:
    """Record key text: one column as is; several joined by ``|`` with ``\\`` and ``|`` escaped.

    Null if any part is null.
    """
    if len(columns) == 1:
        key = columns[0]
    else:
        parts = [
            pc.replace_substring(pc.replace_substring(c, "\\", "\\\\"), "|", "\\|") for c in columns
        ]
        key = pc.binary_join_element_wise(*parts, "|", null_handling="emit_null")
    if prefix:
        key = pc.binary_join_element_wise(prefix, key, "")
    return key
