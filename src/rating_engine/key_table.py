"""Subscriber keys as 64-bit words, and the open-addressing table the kernel finds them in.

A key of 1..16 bytes (MSISDN, IMSI, IPv4 text) is identified by its type, length and two
little-endian words, compared as integers and hashed with a few multiplies; a longer key
hashes with FNV-1a and is compared byte by byte. The rating kernel reads keys (and the
short service and key-type texts) with aligned 8-byte loads from the Arrow string data
viewed as uint64 words, falling back to byte loads near a buffer's end.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = [
    "build_key_table",
    "key_code",
    "key_code_words",
    "key_hash",
    "key_tag",
    "key_type_code",
    "leaf",
    "service_code",
    "short_text",
    "uniform_text",
]

#: Helpers called per record that take arrays but never keep them: compiled without
#: reference counting, a call costs no atomic increment and decrement per array argument
#: (~10 ns a call with them, measured).
leaf = njit(cache=True, nogil=True, _nrt=False)  # type: ignore[call-overload]
FNV_OFFSET = np.uint64(0xCBF29CE484222325)
FNV_PRIME = np.uint64(0x100000001B3)


@leaf
def key_hash(type_code: int, data: np.ndarray, lo: int, hi: int) -> np.uint64:
    """FNV-1a over the key type and the key's bytes ``data[lo:hi]``."""
    h = FNV_OFFSET
    h = (h ^ np.uint64(type_code)) * FNV_PRIME
    for j in range(lo, hi):
        h = (h ^ np.uint64(data[j])) * FNV_PRIME
    return h


@leaf
def _mix(w0: np.uint64, w1: np.uint64, n: int, type_code: int) -> np.uint64:
    meta = np.uint64(n) | (np.uint64(type_code) << np.uint64(8))
    h = w0 * np.uint64(0x9E3779B97F4A7C15) ^ (w1 ^ meta) * np.uint64(0xC2B2AE3D27D4EB4F)
    h ^= h >> np.uint64(32)
    h *= np.uint64(0x165667B19E3779F9)
    return h ^ (h >> np.uint64(29))


@leaf
def key_code(
    type_code: int, data: np.ndarray, lo: int, hi: int
) -> tuple[np.uint64, np.uint64, np.uint64]:
    """(bytes 0-7, bytes 8-15, hash) of a subscriber key, the words little-endian.

    A key of 1..16 bytes (MSISDN, IMSI, IPv4 text) is identified by its type, length and
    the two words, compared as integers and hashed with a few multiplies. A longer key
    hashes its bytes with FNV-1a and is compared byte by byte.
    """
    n = hi - lo
    w0 = np.uint64(0)
    w1 = np.uint64(0)
    if 0 < n <= 16:
        for j in range(min(n, 8)):
            w0 |= np.uint64(data[lo + j]) << np.uint64(8 * j)
        for j in range(8, n):
            w1 |= np.uint64(data[lo + j]) << np.uint64(8 * (j - 8))
        return w0, w1, _mix(w0, w1, n, type_code)
    return w0, w1, key_hash(type_code, data, lo, hi)


@leaf
def _low_bytes(w: np.uint64, n: int) -> np.uint64:
    """The ``n`` (0..8) low bytes of ``w``."""
    if n >= 8:
        return w
    return w & ((np.uint64(1) << np.uint64(8 * n)) - np.uint64(1))


@njit(cache=True, nogil=True)
def _join_words(a: np.uint64, b: np.uint64, lo: int) -> np.uint64:
    """Bytes ``lo .. lo+7`` of a buffer from its aligned words ``a`` (holding ``lo``) and
    ``b`` (the next): (b << 1) << (63 - sh) is b << (64 - sh) without a shift by 64."""
    sh = np.uint64(8 * (lo & 7))
    return (a >> sh) | ((b << np.uint64(1)) << (np.uint64(63) - sh))


@njit(cache=True, nogil=True)
def key_code_words(
    a: np.uint64, b: np.uint64, c: np.uint64, lo: int, n: int, type_code: int
) -> tuple[np.uint64, np.uint64, np.uint64]:
    """:func:`key_code` of a 1..16-byte key at ``lo`` from the buffer's aligned words
    ``a, b, c`` starting at word ``lo >> 3``: three loads instead of one per byte."""
    w0 = _join_words(a, b, lo)
    w1 = _join_words(b, c, lo)
    if n <= 8:
        w0 = _low_bytes(w0, n)
        w1 = np.uint64(0)
    else:
        w1 = _low_bytes(w1, n - 8)
    return w0, w1, _mix(w0, w1, n, type_code)


def _word(text: bytes) -> np.uint64:
    return np.uint64(int.from_bytes(text, "little"))


_W_VOICE, _W_SMS, _W_DATA = _word(b"voice"), _word(b"sms"), _word(b"data")
_W_MSISDN, _W_IMSI, _W_IP = _word(b"msisdn"), _word(b"imsi"), _word(b"ip")


@leaf
def short_text(words: np.ndarray, data: np.ndarray, lo: int, hi: int) -> np.uint64:
    """The first (up to 8) bytes of ``data[lo:hi]`` as a little-endian word, 0-padded.

    Two aligned loads from ``words`` (``data`` viewed as uint64) and a shift; near the
    buffer's end, or when the buffer is not 8-aligned, byte by byte.
    """
    n = min(hi - lo, 8)
    wi = lo >> 3
    w: np.uint64 = np.uint64(0)
    if wi + 1 < len(words):
        w = _low_bytes(_join_words(words[wi], words[wi + 1], lo), max(n, 0))
        return w
    for j in range(n):
        w |= np.uint64(data[lo + j]) << np.uint64(8 * j)
    return w


@njit(cache=True, nogil=True)
def _one_of(
    w: np.uint64, n: int, a: np.uint64, na: int, b: np.uint64, nb: int, c: np.uint64, nc: int
) -> int:
    """Which of three short texts (first word, length) the text ``w``/``n`` is: 0, 1, 2 or -1."""
    if n == na and w == a:
        return 0
    if n == nb and w == b:
        return 1
    if n == nc and w == c:
        return 2
    return -1


@njit(cache=True, nogil=True)
def service_code(w: np.uint64, n: int) -> int:
    """0 voice, 1 sms, 2 data, -1 otherwise, from the text's first word and length."""
    return _one_of(w, n, _W_VOICE, 5, _W_SMS, 3, _W_DATA, 4)


@njit(cache=True, nogil=True)
def key_type_code(w: np.uint64, n: int) -> int:
    """0 msisdn, 1 imsi, 2 ip, -1 otherwise."""
    return _one_of(w, n, _W_MSISDN, 6, _W_IMSI, 4, _W_IP, 2)


@leaf
def uniform_text(off: np.ndarray, data: np.ndarray, lo: int, hi: int) -> bool:
    """Whether the texts ``lo..hi-1`` (Arrow offsets into ``data``) are all the same.

    Service and key type are usually one value for a whole file (an MSC writes voice, a
    PGW data): one check of a chunk then replaces a decode per record. The loops are
    plain reductions the compiler vectorises (unsigned indices: no negative-index
    fix-ups to stop it); a mixed chunk stops within its first 4,096 records or bytes.
    """
    if hi - lo < 2:
        return True
    u = np.uint64
    w = u(off[lo + 1] - off[lo])
    for s in range(u(lo), u(hi), u(4096)):
        bad = u(0)
        for i in range(s, min(s + u(4096), u(hi))):
            bad |= u(off[i + u(1)] - off[i]) ^ w
        if bad != 0:
            return False
    # equal lengths, so the texts are back to back: each byte equals the one w before
    end = u(off[hi])
    for s in range(u(off[lo]) + w, end, u(4096)):
        bad8 = np.uint8(0)
        for j in range(s, min(s + u(4096), end)):
            bad8 |= data[j] ^ data[j - w]
        if bad8 != 0:
            return False
    return True


@leaf
def key_tag(n: int, type_code: int) -> np.uint64:
    """A key table slot's tag: key length and type; never 0 (0 marks an empty slot)."""
    return np.uint64(n) | (np.uint64(type_code) << np.uint64(32)) | (np.uint64(1) << np.uint64(40))


def build_key_table(
    k_type: np.ndarray,
    k_off: np.ndarray,
    k_data: np.ndarray,
    key_first: np.ndarray,
    key_n: np.ndarray,
    b_from: np.ndarray,
    b_to: np.ndarray,
) -> np.ndarray:
    """Open-addressing key table (linear probing, load <= 1/2), hashed like the kernel.

    Slot row (int64, one 64-byte cache line): bytes 0-7, bytes 8-15, tag, key id, then the
    key's first binding's from, to, index and the number of bindings - one probe finds
    the key and, for the usual single binding, its period without further look-ups.
    """
    size = 8
    while size < 2 * len(k_type):
        size *= 2
    raw = np.zeros(size * 8 + 8, np.int64)
    skip = (-raw.ctypes.data % 64) // 8  # rows start on cache lines
    table = raw[skip : skip + size * 8].reshape(size, 8)
    _fill_key_table(table, k_type, k_off, k_data, key_first, key_n, b_from, b_to)
    return table


@njit(cache=True, nogil=True)
def _fill_key_table(
    table: np.ndarray,
    k_type: np.ndarray,
    k_off: np.ndarray,
    k_data: np.ndarray,
    key_first: np.ndarray,
    key_n: np.ndarray,
    b_from: np.ndarray,
    b_to: np.ndarray,
) -> None:
    mask = len(table) - 1
    for k in range(len(k_type)):
        lo = k_off[k]
        hi = k_off[k + 1]
        w0, w1, h = key_code(k_type[k], k_data, lo, hi)
        sl = np.int64(h & np.uint64(mask))
        while table[sl, 2] != 0:
            sl = (sl + 1) & mask
        j = key_first[k]
        table[sl, 0] = np.int64(w0)
        table[sl, 1] = np.int64(w1)
        table[sl, 2] = np.int64(key_tag(hi - lo, k_type[k]))
        table[sl, 3] = k
        table[sl, 4] = b_from[j]
        table[sl, 5] = b_to[j]
        table[sl, 6] = j
        table[sl, 7] = key_n[k]
