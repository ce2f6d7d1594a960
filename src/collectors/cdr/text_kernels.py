"""One-pass Numba readers for the usual CDR text columns; the Arrow path decides the rest.

A CDR batch is read by :class:`collectors.cdr.batch.BatchTransformer` with Arrow compute,
which costs several passes per column (trim, empty-as-null, a cast, checked arithmetic,
null fill, a validity mask each). The readers here take the column as the CSV reader gave it
and do all of that in one pass, for the spelling nearly every switch writes:

* :func:`read_digits` - counts and durations: ``[-]digits[.digits]`` scaled to an integer;
* :func:`read_lookup` - values spelled exactly as one of a lookup's (folded) keys.

Each returns None as soon as one present value of the batch is spelled otherwise (a sign,
more digits than can be exact, an offset, upper case, garbage): the caller then takes the
Arrow path for the whole batch, so every value these readers accept is read exactly as that
path reads it, and every value they do not accept is read (or rejected) by it alone. Values
are trimmed of ASCII whitespace first and an empty value is absent, as
:func:`collectors.cdr.transforms.none_if_empty` does.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pyarrow as pa
from numba import njit

from collectors.cdr.kernels import string_buffers, trimmed
from collectors.kernel_arrays import readonly_all

__all__ = ["longest_value", "read_digits", "read_lookup"]

#: Digits before the point a scaled value may have: 10^15 * 10^3 stays below 2^63, so no
#: value the Arrow path reads (checked arithmetic) could overflow here unnoticed.
_MAX_SCALED_DIGITS = 15
#: Digits of an unsigned count: 10^19 - 1 < 2^64.
_MAX_UNSIGNED_DIGITS = 19


@njit(cache=True, nogil=True)
def _digits_kernel(
    offsets: np.ndarray,
    data: np.ndarray,
    scale: int,
    signed: bool,
    max_digits: int,
    values: np.ndarray,
    present: np.ndarray,
) -> bool:
    """``values[i]`` = value i times 10^scale (fraction digits past ``scale`` dropped),
    ``present[i]`` = not empty; False as soon as a value is spelled otherwise."""
    ten = np.uint64(10)
    for i in range(offsets.shape[0] - 1):
        lo, hi = trimmed(data, offsets[i], offsets[i + 1])
        if lo == hi:
            values[i] = 0
            present[i] = False
            continue
        present[i] = True
        negative = signed and data[lo] == 45  # '-'
        if negative:
            lo += 1
        v = np.uint64(0)
        k = lo
        while k < hi:
            d = np.uint8(data[k] - 48)
            if d >= 10:
                break
            v = v * ten + np.uint64(d)
            k += 1
        whole = k - lo
        if whole == 0 or whole > max_digits:
            return False
        frac = 0
        if k < hi:
            if scale < 0 or data[k] != 46:  # '.'
                return False
            k += 1
            while k < hi:
                d = np.uint8(data[k] - 48)
                if d >= 10:
                    return False
                if frac < scale:
                    v = v * ten + np.uint64(d)
                    frac += 1
                k += 1
        while frac < scale:
            v = v * ten
            frac += 1
        values[i] = (np.uint64(0) - v) if negative else v
    return True


def read_digits(arr: pa.Array, *, scale: int, signed: bool) -> tuple[np.ndarray, np.ndarray] | None:
    """Decimal text times ``10**scale`` and where a value is present, or None (see the
    module docstring).

    ``signed``: ``-?\\d{1,15}(\\.\\d*)?`` as int64 (fraction digits beyond ``scale``
    truncated), the spelling on which :func:`collectors.cdr.transforms.parse_scaled` casts
    and matches alike; else ``\\d{1,19}`` as uint64 (``parse_unsigned``), ``scale`` 0.
    Absent values are 0.
    """
    bufs = string_buffers(arr)
    if bufs is None:
        return None
    n = len(arr)
    values = np.empty(n, dtype=np.uint64)
    present = np.empty(n, dtype=np.bool_)
    max_digits = _MAX_SCALED_DIGITS if signed else _MAX_UNSIGNED_DIGITS
    offsets, data = bufs
    if not _digits_kernel(
        offsets, data, scale if signed else -1, signed, max_digits, values, present
    ):
        return None
    return (values.view(np.int64) if signed else values), present


@njit(cache=True, nogil=True)
def _lookup_kernel(
    offsets: np.ndarray,
    data: np.ndarray,
    key_off: np.ndarray,
    key_data: np.ndarray,
    key_to: np.ndarray,
    val_off: np.ndarray,
    val_data: np.ndarray,
    out_off: np.ndarray,
    out_data: np.ndarray,
    present: np.ndarray,
) -> bool:
    pos = 0
    for i in range(offsets.shape[0] - 1):
        out_off[i] = pos
        lo, hi = trimmed(data, offsets[i], offsets[i + 1])
        if lo == hi:
            present[i] = False
            continue
        present[i] = True
        found = -1
        for k in range(key_off.shape[0] - 1):
            klo, khi = key_off[k], key_off[k + 1]
            if khi - klo != hi - lo:
                continue
            same = True
            for j in range(hi - lo):
                if data[lo + j] != key_data[klo + j]:
                    same = False
                    break
            if same:
                found = key_to[k]
                break
        if found < 0:
            return False
        for j in range(val_off[found], val_off[found + 1]):
            out_data[pos] = val_data[j]
            pos += 1
    out_off[offsets.shape[0] - 1] = pos
    return True


@njit(cache=True, nogil=True)
def _longest(offsets: np.ndarray) -> int:
    longest = 0
    for i in range(offsets.shape[0] - 1):
        longest = max(longest, offsets[i + 1] - offsets[i])
    return longest


def longest_value(arr: pa.Array) -> int | None:
    """Bytes of the longest value (untrimmed), straight from the offsets; None for an array
    with nulls or not of strings."""
    bufs = string_buffers(arr)
    return None if bufs is None else int(_longest(bufs[0]))


def _packed(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    raw = [t.encode() for t in texts]
    offsets = np.zeros(len(raw) + 1, dtype=np.int32)
    offsets[1:] = np.cumsum([len(b) for b in raw])
    return offsets, np.frombuffer(b"".join(raw) or b"\0", dtype=np.uint8).copy()


def read_lookup(arr: pa.Array, lookup: Mapping[str, str]) -> tuple[pa.Array, np.ndarray] | None:
    """Each value through ``lookup`` (null where empty) and where a value is present, or
    None (see the module docstring): a value spelled exactly as a key that is its own
    lower-cased, trimmed ASCII form is what :func:`collectors.cdr.transforms.map_values`
    folds it to."""
    bufs = string_buffers(arr)
    keys = [k for k in lookup if k.isascii() and k == k.strip().lower() and k]
    if bufs is None or not keys:
        return None
    targets = sorted(set(lookup.values()))
    key_off, key_data = _packed(keys)
    val_off, val_data = _packed(targets)
    key_to = np.array([targets.index(lookup[k]) for k in keys], dtype=np.int64)
    n = len(arr)
    longest = int(np.diff(val_off).max()) if targets else 0
    out_off = np.empty(n + 1, dtype=np.int32)
    out_data = np.empty(max(1, n * longest), dtype=np.uint8)
    present = np.empty(n, dtype=np.bool_)
    key_off, key_data, key_to, val_off, val_data = readonly_all(
        key_off, key_data, key_to, val_off, val_data
    )
    offsets, data = bufs
    found = _lookup_kernel(
        offsets, data, key_off, key_data, key_to, val_off, val_data, out_off, out_data, present
    )
    if not found:
        return None
    return _with_validity(pa.string(), out_off, present, out_data[: max(1, out_off[n])]), present


def _with_validity(
    type_: pa.DataType, values: np.ndarray, present: np.ndarray, data: np.ndarray | None = None
) -> pa.Array:
    """An Arrow array of ``values`` (string offsets when ``data`` is given), null where not
    ``present``."""
    n = present.shape[0]
    nulls = n - int(np.count_nonzero(present))
    bitmap = pa.py_buffer(np.packbits(present, bitorder="little")) if nulls else None
    buffers = [bitmap, pa.py_buffer(values)]
    if data is not None:
        buffers.append(pa.py_buffer(data))
    return pa.Array.from_buffers(type_, n, buffers, null_count=nulls)
