"""Numba kernels for CDR ingest: record ids, a duplicate-id set, raw-line lookup.

* :func:`record_ids` - the usage ``record_id``: the first 8 bytes of the BLAKE2b-512 digest
  (RFC 7693, no key, default 64-byte digest) of the record key's UTF-8 bytes, read as a
  little-endian signed int64. Same as
  ``int.from_bytes(hashlib.blake2b(key).digest()[:8], "little", signed=True)`` - stable across
  runs, machines and versions; :func:`record_id_reference` is that reference twin.
* :class:`IdSet` - an open-addressing hash set of int64 ids; inserting a batch tells which ids
  were already present (earlier in the batch included), so the first occurrence wins.
* :func:`record_spans` - byte spans of given 1-based CSV record numbers, quote-aware, with the
  same record counting as pyarrow's CSV reader (``\\n``, ``\\r\\n`` and lone ``\\r`` end a
  record outside quotes; empty lines count).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
from numba import njit

__all__ = ["IdSet", "normalise_kernel", "record_id_reference", "record_ids", "record_spans"]

_IV = np.array(
    [
        0x6A09E667F3BCC908,
        0xBB67AE8584CAA73B,
        0x3C6EF372FE94F82B,
        0xA54FF53A5F1D36F1,
        0x510E527FADE682D1,
        0x9B05688C2B3E6C1F,
        0x1F83D9ABFB41BD6B,
        0x5BE0CD19137E2179,
    ],
    dtype=np.uint64,
)
_SIGMA = np.array(
    [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
        [14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3],
        [11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4],
        [7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8],
        [9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13],
        [2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9],
        [12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11],
        [13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10],
        [6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5],
        [10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0],
    ],
    dtype=np.int64,
)
# Parameter block word 0 for an unkeyed 64-byte digest: digest length | fanout 1 | depth 1.
_P0 = np.uint64(0x01010040)


@njit(cache=True, nogil=True, inline="always")
def _rotr(x: np.uint64, n: np.uint64) -> np.uint64:
    return (x >> n) | (x << (np.uint64(64) - n))


@njit(cache=True, nogil=True, inline="always")
def _g(
    a: np.uint64, b: np.uint64, c: np.uint64, d: np.uint64, x: np.uint64, y: np.uint64
) -> tuple[np.uint64, np.uint64, np.uint64, np.uint64]:
    a = a + b + x
    d = _rotr(d ^ a, np.uint64(32))
    c = c + d
    b = _rotr(b ^ c, np.uint64(24))
    a = a + b + y
    d = _rotr(d ^ a, np.uint64(16))
    c = c + d
    b = _rotr(b ^ c, np.uint64(63))
    return a, b, c, d


@njit(cache=True, nogil=True)
def _compress(
    h: np.ndarray, m: np.ndarray, t: np.uint64, last: bool, iv: np.ndarray, sigma: np.ndarray
) -> None:
    # the 16 state words live in scalars (registers), not an array: ~2x faster
    v0, v1, v2, v3, v4, v5, v6, v7 = h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]
    v8, v9, v10, v11 = iv[0], iv[1], iv[2], iv[3]
    v12, v13, v14, v15 = iv[4] ^ t, iv[5], iv[6], iv[7]
    if last:
        v14 = ~v14
    for r in range(12):
        s = sigma[r % 10]
        # columns, then diagonals (RFC 7693 section 3.2)
        v0, v4, v8, v12 = _g(v0, v4, v8, v12, m[s[0]], m[s[1]])
        v1, v5, v9, v13 = _g(v1, v5, v9, v13, m[s[2]], m[s[3]])
        v2, v6, v10, v14 = _g(v2, v6, v10, v14, m[s[4]], m[s[5]])
        v3, v7, v11, v15 = _g(v3, v7, v11, v15, m[s[6]], m[s[7]])
        v0, v5, v10, v15 = _g(v0, v5, v10, v15, m[s[8]], m[s[9]])
        v1, v6, v11, v12 = _g(v1, v6, v11, v12, m[s[10]], m[s[11]])
        v2, v7, v8, v13 = _g(v2, v7, v8, v13, m[s[12]], m[s[13]])
        v3, v4, v9, v14 = _g(v3, v4, v9, v14, m[s[14]], m[s[15]])
    h[0] ^= v0 ^ v8
    h[1] ^= v1 ^ v9
    h[2] ^= v2 ^ v10
    h[3] ^= v3 ^ v11
    h[4] ^= v4 ^ v12
    h[5] ^= v5 ^ v13
    h[6] ^= v6 ^ v14
    h[7] ^= v7 ^ v15


@njit(cache=True, nogil=True)
def _blake2b_first8(
    offsets: np.ndarray, data: np.ndarray, iv: np.ndarray, sigma: np.ndarray, p0: np.uint64
) -> np.ndarray:
    n = offsets.shape[0] - 1
    out = np.empty(n, dtype=np.uint64)
    h = np.empty(8, dtype=np.uint64)
    m = np.empty(16, dtype=np.uint64)
    for row in range(n):
        start = offsets[row]
        length = offsets[row + 1] - start
        for i in range(8):
            h[i] = iv[i]
        h[0] ^= p0
        done = 0
        # every block but the last is full; an empty message is one empty last block
        while True:
            remaining = length - done
            last = remaining <= 128
            take = remaining if last else 128
            at = start + done
            for w in range(16):
                base = w * 8
                word = np.uint64(0)
                if base + 8 <= take:
                    for k in range(8):
                        word |= np.uint64(data[at + base + k]) << np.uint64(8 * k)
                elif base < take:
                    for k in range(take - base):
                        word |= np.uint64(data[at + base + k]) << np.uint64(8 * k)
                m[w] = word
            done += take
            _compress(h, m, np.uint64(done), last, iv, sigma)
            if last:
                break
        out[row] = h[0]
    return out


def record_ids(keys: pa.Array) -> np.ndarray:
    """int64 record ids of a non-null string array (see the module docstring)."""
    if keys.null_count:
        raise ValueError("record keys must not be null")
    if pa.types.is_large_string(keys.type):
        keys = keys.cast(pa.string())
    n = len(keys)
    if n == 0:
        return np.empty(0, dtype=np.int64)
    _, off_buf, data_buf = keys.buffers()
    offsets = np.frombuffer(off_buf, dtype=np.int32, count=n + 1, offset=keys.offset * 4)
    data = (
        np.frombuffer(data_buf, dtype=np.uint8)
        if data_buf is not None and data_buf.size
        else np.zeros(1, dtype=np.uint8)
    )
    return _blake2b_first8(offsets, data, _IV, _SIGMA, _P0).view(np.int64)


def record_id_reference(key: str) -> int:
    """Pure-Python twin of :func:`record_ids` for one key (tests)."""
    return int.from_bytes(hashlib.blake2b(key.encode()).digest()[:8], "little", signed=True)


@njit(cache=True, nogil=True)
def _set_insert(
    table: np.ndarray, used: np.ndarray, ids: np.ndarray, take: np.ndarray, seen: np.ndarray
) -> int:
    mask = np.uint64(table.shape[0] - 1)
    added = 0
    for i in range(ids.shape[0]):
        if not take[i]:
            continue
        key = ids[i]
        # ids are hash outputs already; mix anyway so patterned test ids spread too
        slot = (np.uint64(key) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(20)
        slot &= mask
        while True:
            if not used[slot]:
                used[slot] = 1
                table[slot] = key
                added += 1
                break
            if table[slot] == key:
                seen[i] = True
                break
            slot = (slot + np.uint64(1)) & mask
    return added


@njit(cache=True, nogil=True)
def _set_contains(table: np.ndarray, used: np.ndarray, ids: np.ndarray, out: np.ndarray) -> None:
    mask = np.uint64(table.shape[0] - 1)
    for i in range(ids.shape[0]):
        key = ids[i]
        slot = (np.uint64(key) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(20)
        slot &= mask
        while used[slot]:
            if table[slot] == key:
                out[i] = True
                break
            slot = (slot + np.uint64(1)) & mask


class IdSet:
    """A growable set of int64 ids (open addressing, load factor <= 1/2)."""

    def __init__(self, capacity: int = 1 << 16) -> None:
        size = 1 << max(4, (2 * max(capacity, 1) - 1).bit_length())
        self._table = np.zeros(size, dtype=np.int64)
        self._used = np.zeros(size, dtype=np.uint8)
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def _grow(self, need: int) -> None:
        if 2 * need <= self._table.shape[0]:
            return
        old_table, old_used = self._table, self._used
        size = self._table.shape[0]
        while 2 * need > size:
            size *= 2
        self._table = np.zeros(size, dtype=np.int64)
        self._used = np.zeros(size, dtype=np.uint8)
        keys = old_table[old_used.astype(bool)]
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
        self._count += _set_insert(self._table, self._used, ids, take_mask, seen)
        return seen

    def contains(self, ids: np.ndarray) -> np.ndarray:
        """Bool mask of the ``ids`` present in the set."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        out = np.zeros(ids.shape[0], dtype=np.bool_)
        _set_contains(self._table, self._used, ids, out)
        return out

    def keys(self) -> np.ndarray:
        """The ids in the set (table order)."""
        return self._table[self._used.astype(np.bool_)]


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


@njit(cache=True, nogil=True)
def _is_space(c: np.uint8) -> bool:
    return bool(c == 32 or (c >= 9 and c <= 13))


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
    out_off = np.zeros(n + 1, dtype=np.int32)
    out_valid = np.zeros(n, dtype=np.bool_)
    out = np.empty(max(1, offsets[n] - offsets[0] + n * cc.shape[0]), dtype=np.uint8)
    digits = np.empty(max(1, offsets[n] - offsets[0]), dtype=np.uint8)
    pos = 0
    for i in range(n):
        out_off[i] = pos
        if not valid[i]:
            continue
        lo, hi = offsets[i], offsets[i + 1]
        while lo < hi and _is_space(data[lo]):
            lo += 1
        while hi > lo and _is_space(data[hi - 1]):
            hi -= 1
        if lo == hi:
            continue
        if mode == 0:  # none: trimmed text
            for k in range(lo, hi):
                out[pos] = data[k]
                pos += 1
            out_valid[i] = True
            continue
        nd = 0
        for k in range(lo, hi):
            if 48 <= data[k] <= 57:
                digits[nd] = data[k]
                nd += 1
        start = 0
        if mode == 2 and data[lo] != 43:  # e164 without a leading '+'
            if nd >= intl.shape[0] and _has_prefix(digits, intl):
                start = intl.shape[0]
            elif trunk.shape[0] and nd >= trunk.shape[0] and _has_prefix(digits, trunk):
                start = trunk.shape[0]
                for k in range(cc.shape[0]):
                    out[pos] = cc[k]
                    pos += 1
        if nd - start <= 0 and pos == out_off[i]:
            continue
        for k in range(start, nd):
            out[pos] = digits[k]
            pos += 1
        out_valid[i] = True
    out_off[n] = pos
    return out_off, out[: max(pos, 1)], out_valid


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
    bufs = arr.buffers()
    offsets = np.frombuffer(bufs[1], dtype=np.int32, count=n + 1, offset=arr.offset * 4)
    data = (
        np.frombuffer(bufs[2], dtype=np.uint8)
        if bufs[2] is not None and bufs[2].size
        else np.zeros(1, dtype=np.uint8)
    )
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
