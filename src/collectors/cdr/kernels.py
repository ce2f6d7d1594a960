"""Numba kernels for CDR ingest: record ids, a duplicate-id set, raw-line lookup.

* :func:`record_ids` - the usage ``record_id``: the first 8 bytes of the BLAKE2b-512 digest
  (RFC 7693, no key, default 64-byte digest) of the record key's UTF-8 bytes, read as a
  little-endian signed int64. Same as
  ``int.from_bytes(hashlib.blake2b(key).digest()[:8], "little", signed=True)`` - stable across
  runs, machines and versions; :func:`record_id_reference` is that reference twin.
  The hashing itself is :mod:`collectors.cdr.blake2b`.
* :class:`IdSet` - an open-addressing hash set of int64 ids (one array, an empty-slot marker:
  one cache miss per look-up); inserting a batch tells which ids were already present
  (earlier in the batch included), so the first occurrence wins.
* :func:`empty_as_null` - empty values as null without copying a column that needs no
  trimming (the usual CSV column), reading two bytes per value.
* :func:`record_spans` - byte spans of given 1-based CSV record numbers, quote-aware, with the
  same record counting as pyarrow's CSV reader (``\\n``, ``\\r\\n`` and lone ``\\r`` end a
  record outside quotes; empty lines count).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
from numba import njit

from collectors.cdr.blake2b import blake2b_first8
from collectors.kernel_arrays import readonly_all

__all__ = [
    "IdSet",
    "empty_as_null",
    "normalise_kernel",
    "record_id_reference",
    "record_ids",
    "record_spans",
    "string_buffers",
    "string_views",
    "trimmed",
]


def record_ids(keys: pa.Array) -> np.ndarray:
    """int64 record ids of a non-null string array (see the module docstring)."""
    if keys.null_count:
        raise ValueError("record keys must not be null")
    if pa.types.is_large_string(keys.type):
        keys = keys.cast(pa.string())
    n = len(keys)
    if n == 0:
        return np.empty(0, dtype=np.int64)
    # read-only either way (Arrow's buffers or the stand-in): the kernel compiles once
    return blake2b_first8(*readonly_all(*string_views(keys))).view(np.int64)


def record_id_reference(key: str) -> int:
    """Pure-Python twin of :func:`record_ids` for one key (tests)."""
    return int.from_bytes(hashlib.blake2b(key.encode()).digest()[:8], "little", signed=True)


# An empty slot holds this value; the id equal to it (one in 2**64) is kept in a flag instead.
# Zero: a new table is calloc'ed memory, never written before the ids are (a 64 MB table for
# a 4M-line file was one more pass over fresh pages).
_EMPTY = np.int64(0)


@njit(cache=True, nogil=True, inline="always")
def _slot(key: np.int64, mask: np.uint64) -> np.uint64:
    # ids are hash outputs already; mix anyway so patterned test ids spread too
    return ((np.uint64(key) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(20)) & mask


@njit(cache=True, nogil=True)
def _set_insert(
    table: np.ndarray, special: np.ndarray, ids: np.ndarray, take: np.ndarray, seen: np.ndarray
) -> int:
    mask = np.uint64(table.shape[0] - 1)
    empty = np.int64(_EMPTY)
    added = 0
    for i in range(ids.shape[0]):
        if not take[i]:
            continue
        key = ids[i]
        if key == empty:
            if special[0]:
                seen[i] = True
            else:
                special[0] = True
                added += 1
            continue
        slot = _slot(key, mask)
        while True:
            here = table[slot]
            if here == empty:
                table[slot] = key
                added += 1
                break
            if here == key:
                seen[i] = True
                break
            slot = (slot + np.uint64(1)) & mask
    return added


@njit(cache=True, nogil=True)
def _set_contains(table: np.ndarray, special: np.ndarray, ids: np.ndarray, out: np.ndarray) -> None:
    mask = np.uint64(table.shape[0] - 1)
    empty = np.int64(_EMPTY)
    for i in range(ids.shape[0]):
        key = ids[i]
        if key == empty:
            out[i] = special[0]
            continue
        slot = _slot(key, mask)
        while True:
            here = table[slot]
            if here == key:
                out[i] = True
                break
            if here == empty:
                break
            slot = (slot + np.uint64(1)) & mask


class IdSet:
    """A growable set of int64 ids (open addressing in one array, load factor <= 1/2)."""

    def __init__(self, capacity: int = 1 << 16) -> None:
        size = 1 << max(4, (2 * max(capacity, 1) - 1).bit_length())
        self._table = np.zeros(size, dtype=np.int64)
        self._special = np.zeros(1, dtype=np.bool_)  # holds the id equal to _EMPTY
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def _grow(self, need: int) -> None:
        if 2 * need <= self._table.shape[0]:
            return
        keys = self.keys()
        size = self._table.shape[0]
        while 2 * need > size:
            size *= 2
        self._table = np.zeros(size, dtype=np.int64)
        self._special[0] = False
        self._count = 0
        self.add(keys)

    def add(self, ids: np.ndarray, take: np.ndarray | None = None) -> np.ndarray:
        """Insert ``ids`` (where ``take``); returns a bool mask of those already present."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        take_mask = (
            np.ones(ids.shape[0], dtype=np.bool_)
            if take is None
            else np.ascontiguousarray(take, dtype=np.bool_)
        )
        self._grow(self._count + int(ids.shape[0]))
        seen = np.zeros(ids.shape[0], dtype=np.bool_)
        self._count += _set_insert(self._table, self._special, ids, take_mask, seen)
        return seen

    def contains(self, ids: np.ndarray) -> np.ndarray:
        """Bool mask of the ``ids`` present in the set."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        out = np.zeros(ids.shape[0], dtype=np.bool_)
        if self._count:
            _set_contains(self._table, self._special, ids, out)
        return out

    def keys(self) -> np.ndarray:
        """The ids in the set (table order; the id equal to the empty marker last)."""
        keys: np.ndarray = self._table[self._table != _EMPTY]
        if self._special[0]:
            keys = np.append(keys, np.int64(_EMPTY))
        return keys


@njit(cache=True, nogil=True)
def _spans(
    buf: np.ndarray, pos: int, record: int, wanted: np.ndarray, quote: np.uint8, delim: np.uint8
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """From byte ``pos`` at the start of record number ``record``, find each wanted record's
    [start, end) (end excludes the terminator). Returns spans and the resume position/record.

    Like pyarrow, a quote opens quoting only at the start of a field, and a doubled quote
    inside quotes is a literal quote."""
    n = buf.shape[0]
    starts = np.full(wanted.shape[0], -1, dtype=np.int64)
    ends = np.full(wanted.shape[0], -1, dtype=np.int64)
    j = 0
    while j < wanted.shape[0] and wanted[j] < record:
        j += 1
    in_quote = False
    field_start = True
    rec_start = pos
    i = pos
    while i < n and j < wanted.shape[0]:
        c = buf[i]
        i += 1
        if in_quote:
            if c == quote:
                if i < n and buf[i] == quote:
                    i += 1
                else:
                    in_quote = False
            continue
        if c == 10 or c == 13:
            end = i - 1
            if c == 13 and i < n and buf[i] == 10:
                i += 1
            if wanted[j] == record:
                starts[j] = rec_start
                ends[j] = end
                j += 1
            record += 1
            rec_start = i
            field_start = True
        elif c == quote and field_start:
            in_quote = True
            field_start = False
        else:
            field_start = c == delim
    if j < wanted.shape[0] and wanted[j] == record and rec_start < n:
        # last record without a terminator
        starts[j] = rec_start
        ends[j] = n
        j += 1
    return starts, ends, rec_start, record


def record_spans(
    buf: np.ndarray,
    wanted: np.ndarray,
    *,
    quote: str = '"',
    delimiter: str = ",",
    pos: int = 0,
    record: int = 1,
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Byte spans of the sorted 1-based record numbers ``wanted`` in ``buf`` (uint8).

    Scanning starts at byte ``pos`` which begins record ``record``; the returned position and
    record number let the next call resume there (records before it cannot be asked again).
    Spans not found are -1.
    """
    return _spans(
        buf,
        pos,
        record,
        np.ascontiguousarray(wanted, dtype=np.int64),
        np.uint8(ord(quote)),
        np.uint8(ord(delimiter)),
    )


def string_views(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, data) of a non-empty ``string`` array's buffers as numpy views (no copy;
    data a one-byte stand-in when the array holds no bytes)."""
    bufs = arr.buffers()
    offsets = np.frombuffer(bufs[1], dtype=np.int32, count=len(arr) + 1, offset=arr.offset * 4)
    data = (
        np.frombuffer(bufs[2], dtype=np.uint8)
        if bufs[2] is not None and bufs[2].size
        else np.zeros(1, dtype=np.uint8)
    )
    return offsets, data


def string_buffers(arr: pa.Array) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`string_views` of a string array without nulls, read-only; None for anything
    else."""
    if arr.null_count or not pa.types.is_string(arr.type):
        return None
    return readonly_all(*string_views(arr))


@njit(cache=True, nogil=True, inline="always")
def _is_space(c: np.uint8) -> bool:
    return bool(c == 32 or (c >= 9 and c <= 13))


@njit(cache=True, nogil=True, inline="always")
def trimmed(data: np.ndarray, lo: int, hi: int) -> tuple[int, int]:
    """``data[lo:hi]`` without leading and trailing ASCII whitespace, as (lo, hi)."""
    while lo < hi and _is_space(data[lo]):
        lo += 1
    while hi > lo and _is_space(data[hi - 1]):
        hi -= 1
    return lo, hi


@njit(cache=True, nogil=True)
def _trim_state(offsets: np.ndarray, data: np.ndarray) -> int:
    empty = False
    for i in range(offsets.shape[0] - 1):
        lo, hi = offsets[i], offsets[i + 1]
        if lo == hi:
            empty = True
        elif _is_space(data[lo]) or _is_space(data[hi - 1]):
            return 2
    return 1 if empty else 0


def empty_as_null(arr: pa.Array) -> pa.Array | None:
    """``arr`` with empty values as null, sharing its buffers, when no value needs trimming
    (no leading or trailing ASCII whitespace; only the first and last byte of each value are
    read); None when one does, or ``arr`` has nulls already (the caller then trims)."""
    n = len(arr)
    if n == 0:
        return arr if pa.types.is_string(arr.type) else None
    buffers = string_buffers(arr)
    if buffers is None:
        return None
    offsets, data = buffers
    state = _trim_state(offsets, data)
    if state == 0:
        return arr
    if state == 2:
        return None
    present = offsets[1:] != offsets[:-1]
    nulls = n - int(np.count_nonzero(present))
    bitmap = pa.py_buffer(np.packbits(present, bitorder="little"))
    return pa.Array.from_buffers(
        pa.string(), n, [bitmap, pa.py_buffer(offsets), arr.buffers()[2]], null_count=nulls
    )


@njit(cache=True, nogil=True)
def _normalise_kernel(
    offsets: np.ndarray,
    data: np.ndarray,
    valid: np.ndarray,
    mode: int,
    cc: np.ndarray,
    trunk: np.ndarray,
    intl: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = offsets.shape[0] - 1
    ncc = cc.shape[0]
    out_off = np.zeros(n + 1, dtype=np.int32)
    out_valid = np.zeros(n, dtype=np.bool_)
    # each value's output fits in its own bytes plus a country code
    # (32 bytes to spare: a country code and a value's digits are copied as whole words)
    out = np.empty(max(1, offsets[n] - offsets[0] + n * ncc) + 32, dtype=np.uint8)
    end_of_data = data.shape[0]
    nintl, ntrunk = intl.shape[0], trunk.shape[0]
    # prefixes of up to 8 bytes are told from the value's first word, without a branch each
    by_words = nintl <= 8 and ntrunk <= 8 and ncc <= 8
    intl_word, intl_mask = _prefix_word(intl)
    trunk_word, trunk_mask = _prefix_word(trunk)
    cc_word = _prefix_word(cc)[0]
    pos = 0
    for i in range(n):
        out_off[i] = pos
        if not valid[i]:
            continue
        lo, hi = trimmed(data, offsets[i], offsets[i + 1])
        if lo == hi:
            continue
        if mode == 0:  # none: trimmed text
            for k in range(lo, hi):
                out[pos] = data[k]
                pos += 1
            out_valid[i] = True
            continue
        # The usual value: digits only, maybe after one '+'. The prefix rules are decided on
        # the text itself and the digits copied once, checked as they go; a value with any
        # other byte is undone and takes the general path below.
        plus = data[lo] == 43
        start = lo + 1 if plus else lo
        if mode == 2 and by_words and lo + 8 <= end_of_data:
            # the same rules as below: international prefix first, else the trunk prefix
            # (which the country code replaces); the code is always written, and kept
            # (pos moves past it) only for a trunk prefix
            word = _load8(data, lo)
            nd = hi - lo
            other = np.int64(data[lo] != 43)
            intl_at = other & (nd >= nintl) & (((word ^ intl_word) & intl_mask) == 0)
            trunk_at = (
                other
                & (1 - intl_at)
                & (ntrunk > 0)
                & (nd >= ntrunk)
                & (((word ^ trunk_word) & trunk_mask) == 0)
            )
            _store8(out, pos, cc_word)
            start = lo + (1 - other) + intl_at * nintl + trunk_at * ntrunk
            pos += trunk_at * ncc
        elif mode == 2 and not plus:
            nd = hi - start
            if nd >= intl.shape[0] and _has_prefix_at(data, start, intl):
                start += intl.shape[0]
            elif trunk.shape[0] and nd >= trunk.shape[0] and _has_prefix_at(data, start, trunk):
                start += trunk.shape[0]
                for k in range(ncc):  # the country code replaces the trunk prefix
                    out[pos] = cc[k]
                    pos += 1
        clean = True
        count = hi - start
        if count <= 16 and start + 16 <= end_of_data:
            # up to 16 digits checked and copied as two words: no loop over the bytes, whose
            # varying count cost a mispredicted branch a value
            w0, w1 = _load8(data, start), _load8(data, start + 8)
            if (_non_digits(w0, count) | _non_digits(w1, count - 8)) == 0:
                _store8(out, pos, w0)
                _store8(out, pos + 8, w1)
                pos += count
            else:
                clean = False
        else:
            for k in range(start, hi):
                c = data[k]
                if np.uint8(c - 48) >= 10:
                    clean = False
                    break
                out[pos] = c
                pos += 1
        if clean:
            out_valid[i] = pos > out_off[i]  # nothing left (no digit, no country code): null
            continue
        pos = out_off[i]
        # The digits go straight to the output, behind room for a country code: every byte
        # is stored and the write position only moves past a digit (no branch per byte).
        first = pos + ncc
        end = first
        for k in range(lo, hi):
            c = data[k]
            out[end] = c
            end += np.uint8(c - 48) < 10
        start = first  # the first digit kept
        if mode == 2 and data[lo] != 43:  # e164 without a leading '+'
            nd = end - first
            if nd >= intl.shape[0] and _has_prefix(out[first:], intl):
                start += intl.shape[0]
            elif trunk.shape[0] and nd >= trunk.shape[0] and _has_prefix(out[first:], trunk):
                start += trunk.shape[0]
                for k in range(ncc):  # the country code replaces the trunk prefix
                    out[pos] = cc[k]
                    pos += 1
                for k in range(start, end):
                    out[pos] = out[k]
                    pos += 1
                out_valid[i] = pos > out_off[i]  # empty (no country code, no digit): null
                continue
        if end - start <= 0:
            continue
        for k in range(start, end):  # moves left: never overwrites a digit not yet moved
            out[pos] = out[k]
            pos += 1
        out_valid[i] = True
    out_off[n] = pos
    return out_off, out[: max(pos, 1)], out_valid


@njit(cache=True, nogil=True, inline="always")
def _load8(data: np.ndarray, at: int) -> np.uint64:
    """Little-endian word of ``data[at:at + 8]`` (one load: unsigned indices, fixed count)."""
    word = np.uint64(0)
    for k in range(8):
        word |= np.uint64(data[np.uint64(at + k)]) << np.uint64(8 * k)
    return word


@njit(cache=True, nogil=True, inline="always")
def _store8(out: np.ndarray, at: int, word: np.uint64) -> None:
    for k in range(8):
        out[np.uint64(at + k)] = np.uint8((word >> np.uint64(8 * k)) & np.uint64(0xFF))


@njit(cache=True, nogil=True)
def _prefix_word(prefix: np.ndarray) -> tuple[np.uint64, np.uint64]:
    """A prefix of up to 8 bytes as a little-endian word and the mask of its bytes."""
    word, mask = np.uint64(0), np.uint64(0)
    for k in range(min(prefix.shape[0], 8)):
        word |= np.uint64(prefix[k]) << np.uint64(8 * k)
        mask |= np.uint64(0xFF) << np.uint64(8 * k)
    return word, mask


@njit(cache=True, nogil=True, inline="always")
def _non_digits(word: np.uint64, count: int) -> np.uint64:
    """Non-zero if one of the first ``count`` bytes of ``word`` is not an ASCII digit."""
    if count <= 0:
        return np.uint64(0)
    high = np.uint64(0xF0F0F0F0F0F0F0F0)
    threes = np.uint64(0x3030303030303030)
    # a byte is a digit iff its high nibble is 3 and adding 6 keeps it 3 (low nibble <= 9);
    # a carry out of a byte only comes from a byte that already failed the first test
    x = ((word & high) ^ threes) | (((word + np.uint64(0x0606060606060606)) & high) ^ threes)
    if count < 8:
        x &= (np.uint64(1) << np.uint64(8 * count)) - np.uint64(1)
    return x


@njit(cache=True, nogil=True, inline="always")
def _has_prefix_at(data: np.ndarray, at: int, prefix: np.ndarray) -> bool:
    for k in range(prefix.shape[0]):  # noqa: SIM110 - numba has no all() over generators
        if data[at + k] != prefix[k]:
            return False
    return True


@njit(cache=True, nogil=True, inline="always")
def _has_prefix(digits: np.ndarray, prefix: np.ndarray) -> bool:
    for k in range(prefix.shape[0]):  # noqa: SIM110 - numba has no all() over generators
        if digits[k] != prefix[k]:
            return False
    return True


_MODES = {"none": 0, "digits": 1, "e164": 2}


def normalise_kernel(
    arr: pa.Array, mode: str, country_code: str = "", trunk: str = "", intl: str = ""
) -> pa.Array:
    """Phone numbers in one pass: trim; ``digits``/``e164`` keep ASCII digits only, ``e164``
    applies the prefix rules (see :func:`collectors.cdr.transforms.normalise_numbers`);
    empty results are null."""
    if pa.types.is_large_string(arr.type):
        arr = arr.cast(pa.string())
    n = len(arr)
    if n == 0:
        return pa.array([], pa.string())
    offsets, data = string_views(arr)
    valid = (
        np.ones(n, dtype=np.bool_)
        if arr.null_count == 0
        else np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), dtype=np.bool_)
    )

    def enc(s: str) -> np.ndarray:
        return np.frombuffer(s.encode(), dtype=np.uint8).copy()

    out_off, out_data, out_valid = _normalise_kernel(
        offsets, data, valid, _MODES[mode], enc(country_code), enc(trunk), enc(intl)
    )
    nulls = n - int(out_valid.sum())
    bitmap = pa.py_buffer(np.packbits(out_valid, bitorder="little")) if nulls else None
    return pa.Array.from_buffers(
        pa.string(), n, [bitmap, pa.py_buffer(out_off), pa.py_buffer(out_data)], null_count=nulls
    )
