"""Subscriber keys as 64-bit words, and the perfect-hash table the kernel finds them in.

A key of 1..16 bytes (MSISDN, IMSI, IPv4 text) is identified by its type, length and two
little-endian words, compared as integers and hashed with a few multiplies; a longer key
hashes with FNV-1a and is compared byte by byte. The rating kernel reads keys (and the
short service and key-type texts) with aligned 8-byte loads from the Arrow string data
viewed as uint64 words, falling back to byte loads near a buffer's end.

The table is a perfect hash (rows for 1.25x the keys) in the manner of PTHash (Pibiri and
Trani, 2021): keys fall into buckets by their hash's top bits; each bucket has a *pilot*,
chosen when the table is built, that sends its keys to free rows. A look-up is then one
pilot read and one row read, with no probe loop: nothing for the branch predictor to get
wrong, and the CPU can overlap the look-ups of many records. A key that is not in the
table lands on some row and fails the comparison.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = [
    "ROW_ACC",
    "ROW_BIND",
    "ROW_FROM",
    "ROW_SUB",
    "ROW_TAG",
    "ROW_TO",
    "build_key_table",
    "key_code",
    "key_code_words",
    "key_tag",
    "key_type_code",
    "leaf",
    "seed_of",
    "service_code",
    "short_text",
    "slot_of",
    "uniform_text",
]

#: Helpers called per record that take arrays but never keep them: compiled without
#: reference counting, a call costs no atomic increment and decrement per array argument
#: (~10 ns a call with them, measured).
leaf = njit(cache=True, nogil=True, _nrt=False)  # type: ignore[call-overload]
FNV_OFFSET = np.uint64(0xCBF29CE484222325)
FNV_PRIME = np.uint64(0x100000001B3)


#: Key table row (int64, one 64-byte cache line): key bytes 0-7 and 8-15, then the tag
#: (low 32 bits: length and type, see :func:`key_tag`; high 32: number of bindings), then
#: the key's first binding: from, to, subscription, account, and its index (low 32 bits)
#: with its tariff (high 32, -1 if not in the plan). One row read finds the key and, for
#: the usual single binding, everything the kernel needs of it.
ROW_TAG, ROW_FROM, ROW_TO, ROW_SUB, ROW_ACC, ROW_BIND = 2, 3, 4, 5, 6, 7
#: kdisp header: hash seed, number of rows, bucket shift; the pilots follow
_SEED, _ROWS, _SHIFT, _PILOTS = 0, 1, 2, 3
_LOAD = 0.8  # keys per row
_BUCKET = 3  # keys per bucket, on average
_MAX_PILOT = 1 << 22  # a bucket that finds no free rows within this many pilots: new seed


@leaf
def _key_hash(type_code: int, data: np.ndarray, lo: int, hi: int, seed: np.uint64) -> np.uint64:
    """FNV-1a (offset basis xor ``seed``) over the key type and the bytes ``data[lo:hi]``."""
    h = FNV_OFFSET ^ np.uint64(seed)  # a Python int would type as int64: mixed -> float
    h = (h ^ np.uint64(type_code)) * FNV_PRIME
    for j in range(lo, hi):
        h = (h ^ np.uint64(data[j])) * FNV_PRIME
    return h


@leaf
def _mix(w0: np.uint64, w1: np.uint64, n: int, type_code: int, seed: np.uint64) -> np.uint64:
    meta = np.uint64(n) | (np.uint64(type_code) << np.uint64(8))
    h = (w0 ^ np.uint64(seed)) * np.uint64(0x9E3779B97F4A7C15) ^ (w1 ^ meta) * np.uint64(
        0xC2B2AE3D27D4EB4F
    )
    h ^= h >> np.uint64(32)
    h *= np.uint64(0x165667B19E3779F9)
    return h ^ (h >> np.uint64(29))


@leaf
def key_code(
    type_code: int, data: np.ndarray, lo: int, hi: int, seed: np.uint64
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
        return w0, w1, _mix(w0, w1, n, type_code, seed)
    return w0, w1, _key_hash(type_code, data, lo, hi, seed)


@leaf
def _place(h: np.uint64, pilot: np.int64, rows: np.int64) -> np.int64:
    x = (h ^ (np.uint64(pilot) * np.uint64(0x9E3779B97F4A7C15))) * np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(31)
    # the top 32 bits scaled to [0, rows): a multiply instead of a modulo
    return np.int64(((x >> np.uint64(32)) * np.uint64(rows)) >> np.uint64(32))


@leaf
def seed_of(kdisp: np.ndarray) -> np.uint64:
    """The hash seed the table was built with."""
    return np.uint64(kdisp[_SEED])


@leaf
def slot_of(h: np.uint64, kdisp: np.ndarray) -> int:
    """The only row a key with hash ``h`` can occupy."""
    h = np.uint64(h)  # called from Python with an int: shift it unsigned all the same
    pilot = kdisp[_PILOTS + np.int64(h >> np.uint64(kdisp[_SHIFT]))]
    return int(_place(h, pilot, kdisp[_ROWS]))


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
    a: np.uint64, b: np.uint64, c: np.uint64, lo: int, n: int, type_code: int, seed: np.uint64
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
    return w0, w1, _mix(w0, w1, n, type_code, seed)


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
def key_tag(n: int, type_code: int) -> np.int64:
    """A key row's tag: key length and type; never 0 (0 marks an empty row)."""
    return np.int64(n) | (np.int64(type_code) << np.int64(24)) | (np.int64(1) << np.int64(30))


#: Keys longer than this are refused when the table is built (the tag holds the length).
MAX_KEY_BYTES = (1 << 24) - 1


def build_key_table(
    k_type: np.ndarray,
    k_off: np.ndarray,
    k_data: np.ndarray,
    key_first: np.ndarray,
    key_n: np.ndarray,
    b_from: np.ndarray,
    b_to: np.ndarray,
    bind: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The key table (rows, see ``ROW_*``) and its pilots (``kdisp``) for keys ``0..n-1``.

    Key ``k`` is type ``k_type[k]`` and bytes ``k_data[k_off[k]:k_off[k + 1]]``; its
    bindings are ``key_first[k]`` and the ``key_n[k] - 1`` after it, in time order, with
    periods ``b_from``/``b_to`` and rows of ``bind`` (tariff, subscription, account).
    """
    n = len(k_type)
    if n and int(np.max(np.diff(k_off))) > MAX_KEY_BYTES:
        raise ValueError(f"a subscriber key is longer than {MAX_KEY_BYTES} bytes")
    rows = max(1, int(np.ceil(n / _LOAD)))
    bits = 1
    while (1 << bits) * _BUCKET < n:
        bits += 1
    raw = np.zeros(rows * 8 + 8, np.int64)
    skip = (-raw.ctypes.data % 64) // 8  # rows start on cache lines
    table = raw[skip : skip + rows * 8].reshape(rows, 8)
    kdisp = np.zeros(_PILOTS + (1 << bits), np.int64)
    kdisp[_ROWS] = rows
    kdisp[_SHIFT] = 64 - bits
    rng = np.random.default_rng(0x5EED)  # deterministic: the same keys, the same table
    for _ in range(64):
        kdisp[_SEED] = np.int64(rng.integers(0, 1 << 62))
        hashes = _hashes(k_type, k_off, k_data, np.uint64(kdisp[_SEED]))
        if _choose_pilots(hashes, kdisp):
            _fill_rows(table, kdisp, hashes, k_type, k_off, k_data, key_first, key_n,
                       b_from, b_to, bind)  # fmt: skip
            return table, kdisp
    raise ValueError("no perfect hash found for the subscriber keys in 64 seeds")


@njit(cache=True, nogil=True)
def _hashes(
    k_type: np.ndarray, k_off: np.ndarray, k_data: np.ndarray, seed: np.uint64
) -> np.ndarray:
    out = np.empty(len(k_type), np.uint64)
    for k in range(len(k_type)):
        out[k] = key_code(k_type[k], k_data, k_off[k], k_off[k + 1], seed)[2]
    return out


def _choose_pilots(hashes: np.ndarray, kdisp: np.ndarray) -> bool:
    """Pilots for every bucket, largest buckets first; False if a bucket finds none.

    The buckets are sorted by numpy (stable sorts: the order the kernel's own gave); only
    the pilot search is compiled - Numba's mergesort and fancy indexing were most of this
    step's 4.7 s compile (CPU, cold cache; issue #22).
    """
    nb = len(kdisp) - _PILOTS
    bucket = (hashes >> np.uint64(kdisp[_SHIFT])).astype(np.int64)
    size = np.bincount(bucket, minlength=nb).astype(np.int64)
    start = np.zeros(nb + 1, np.int64)
    start[1:] = np.cumsum(size)
    hs = hashes[np.argsort(bucket, kind="stable")]  # a bucket's hashes side by side
    order = np.argsort(-size, kind="stable").astype(np.int64)
    return bool(_search_pilots(hs, size, start, order, kdisp))


@njit(cache=True, nogil=True)
def _search_pilots(
    hs: np.ndarray, size: np.ndarray, start: np.ndarray, order: np.ndarray, kdisp: np.ndarray
) -> bool:
    """The pilot search of :func:`_choose_pilots`, buckets in ``order``."""
    rows = kdisp[_ROWS]
    taken = np.zeros(rows, np.bool_)
    slots = np.empty(max(1, int(size.max())), np.int64)
    for b in order:
        m = size[b]
        if m == 0:
            break
        found = False
        for pilot in range(_MAX_PILOT):
            ok = True
            for j in range(m):
                sl = _place(hs[start[b] + j], pilot, rows)
                if taken[sl]:
                    ok = False
                    break
                for q in range(j):  # two keys of the bucket on one row
                    if slots[q] == sl:
                        ok = False
                        break
                if not ok:
                    break
                slots[j] = sl
            if ok:
                for j in range(m):
                    taken[slots[j]] = True
                kdisp[_PILOTS + b] = pilot
                found = True
                break
        if not found:
            return False
    return True


@njit(cache=True, nogil=True)
def _fill_rows(
    table: np.ndarray,
    kdisp: np.ndarray,
    hashes: np.ndarray,
    k_type: np.ndarray,
    k_off: np.ndarray,
    k_data: np.ndarray,
    key_first: np.ndarray,
    key_n: np.ndarray,
    b_from: np.ndarray,
    b_to: np.ndarray,
    bind: np.ndarray,
) -> None:
    seed = np.uint64(kdisp[_SEED])
    for k in range(len(k_type)):
        lo = k_off[k]
        hi = k_off[k + 1]
        w0, w1, _ = key_code(k_type[k], k_data, lo, hi, seed)
        sl = slot_of(hashes[k], kdisp)
        j = key_first[k]
        table[sl, 0] = np.int64(w0)
        table[sl, 1] = np.int64(w1)
        table[sl, ROW_TAG] = key_tag(hi - lo, k_type[k]) | (key_n[k] << 32)
        table[sl, ROW_FROM] = b_from[j]
        table[sl, ROW_TO] = b_to[j]
        table[sl, ROW_SUB] = bind[j, 1]
        table[sl, ROW_ACC] = bind[j, 2]
        table[sl, ROW_BIND] = j | (bind[j, 0] << 32)
