"""BLAKE2b (RFC 7693) of many short byte strings at once: the first 8 digest bytes of each.

The record ids of CDR ingest (:func:`collectors.cdr.kernels.record_ids`) are the first 8 bytes
of the unkeyed 64-byte BLAKE2b digest of each record key. The compression function here has
its twelve rounds written out with the message schedule (sigma) applied at compile time, so
the 16 message words and 16 state words stay in registers: about three times faster than
indexing a sigma table at run time. Equal to ``hashlib.blake2b(key).digest()[:8]`` (tests).

Keys of at most one block (128 bytes: every CDR id seen so far) are hashed ``_LANES`` at a
time, word ``k`` of every lane side by side: each step of the G function is then one loop
over the lanes, which LLVM's loop vectoriser turns into SIMD (AVX2/AVX-512 rotates and adds),
~3x faster than one key at a time. Longer keys take the one-at-a-time path.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["blake2b_first8"]

_IV0 = np.uint64(0x6A09E667F3BCC908)
_IV1 = np.uint64(0xBB67AE8584CAA73B)
_IV2 = np.uint64(0x3C6EF372FE94F82B)
_IV3 = np.uint64(0xA54FF53A5F1D36F1)
_IV4 = np.uint64(0x510E527FADE682D1)
_IV5 = np.uint64(0x9B05688C2B3E6C1F)
_IV6 = np.uint64(0x1F83D9ABFB41BD6B)
_IV7 = np.uint64(0x5BE0CD19137E2179)
# Parameter block word 0 for an unkeyed 64-byte digest: digest length | fanout 1 | depth 1.
_P0 = np.uint64(0x01010040)
_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)
# Keys hashed side by side: 16 lanes of 64 bits are two AVX-512 or four AVX2 registers a word
# (with 8 LLVM unrolls the lane loop fully and, SLP vectorising being off in Numba, not at all).
_LANES = 16


@njit(cache=True, nogil=True, inline="always")
def _rotr(x: np.uint64, n: np.uint64) -> np.uint64:
    return (x >> n) | (x << (np.uint64(64) - n))


@njit(cache=True, nogil=True)
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


@njit(cache=True, nogil=True, inline="always")
def _word(data: np.ndarray, at: int, avail: int) -> np.uint64:
    """Little-endian 64-bit word at ``at`` of which ``avail`` bytes exist (zero padded)."""
    word = np.uint64(0)
    if avail <= 0:
        return word
    if avail >= 8:  # a whole word: a fixed count of bytes, which LLVM reads as one load
        for k in range(8):
            word |= np.uint64(data[at + k]) << np.uint64(8 * k)
        return word
    for k in range(avail):
        word |= np.uint64(data[at + k]) << np.uint64(8 * k)
    return word


@njit(cache=True, nogil=True)
def blake2b_first8(offsets: np.ndarray, data: np.ndarray) -> np.ndarray:
    """First 8 digest bytes (little-endian uint64) of each ``data[offsets[i]:offsets[i + 1]]``."""
    n = offsets.shape[0] - 1
    out = np.empty(n, dtype=np.uint64)
    vm = np.empty(32 * _LANES, dtype=np.uint64)  # state words 0-15, message words 16-31
    rows = np.empty(_LANES, dtype=np.int64)
    count = 0
    for row in range(n):
        length = offsets[row + 1] - offsets[row]
        if length > 128:
            out[row] = _first8_one(data, offsets[row], length)
            continue
        rows[count] = row
        count += 1
        if count == _LANES:
            _first8_lanes(offsets, data, rows, count, vm, out)
            count = 0
    if count:
        _first8_lanes(offsets, data, rows, count, vm, out)
    return out


@njit(cache=True, nogil=True)
def _first8_one(data: np.ndarray, start: int, length: int) -> np.uint64:
    """First 8 digest bytes of ``data[start:start + length]``, one block after another."""
    h0, h1, h2, h3 = _IV0 ^ _P0, _IV1, _IV2, _IV3
    h4, h5, h6, h7 = _IV4, _IV5, _IV6, _IV7
    done = 0
    # every block but the last is full; an empty message is one empty last block
    while True:
        remaining = length - done
        last = remaining <= 128
        take = remaining if last else 128
        at = start + done
        m0 = _word(data, at + 0, take - 0)
        m1 = _word(data, at + 8, take - 8)
        m2 = _word(data, at + 16, take - 16)
        m3 = _word(data, at + 24, take - 24)
        m4 = _word(data, at + 32, take - 32)
        m5 = _word(data, at + 40, take - 40)
        m6 = _word(data, at + 48, take - 48)
        m7 = _word(data, at + 56, take - 56)
        m8 = _word(data, at + 64, take - 64)
        m9 = _word(data, at + 72, take - 72)
        m10 = _word(data, at + 80, take - 80)
        m11 = _word(data, at + 88, take - 88)
        m12 = _word(data, at + 96, take - 96)
        m13 = _word(data, at + 104, take - 104)
        m14 = _word(data, at + 112, take - 112)
        m15 = _word(data, at + 120, take - 120)
        done += take
        v0, v1, v2, v3, v4, v5, v6, v7 = h0, h1, h2, h3, h4, h5, h6, h7
        v8, v9, v10, v11 = _IV0, _IV1, _IV2, _IV3
        v12, v13, v14, v15 = _IV4 ^ np.uint64(done), _IV5, _IV6, _IV7
        if last:
            v14 = v14 ^ _ALL
        v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15 = _rounds(
            v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15,
            m0, m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15,
        )  # fmt: skip
        h0 ^= v0 ^ v8
        h1 ^= v1 ^ v9
        h2 ^= v2 ^ v10
        h3 ^= v3 ^ v11
        h4 ^= v4 ^ v12
        h5 ^= v5 ^ v13
        h6 ^= v6 ^ v14
        h7 ^= v7 ^ v15
        if last:
            break
    return h0


@njit(cache=True, nogil=True)
def _rounds(  # the 32 words are registers, not an array, on purpose
    v0: np.uint64, v1: np.uint64, v2: np.uint64, v3: np.uint64,
    v4: np.uint64, v5: np.uint64, v6: np.uint64, v7: np.uint64,
    v8: np.uint64, v9: np.uint64, v10: np.uint64, v11: np.uint64,
    v12: np.uint64, v13: np.uint64, v14: np.uint64, v15: np.uint64,
    m0: np.uint64, m1: np.uint64, m2: np.uint64, m3: np.uint64,
    m4: np.uint64, m5: np.uint64, m6: np.uint64, m7: np.uint64,
    m8: np.uint64, m9: np.uint64, m10: np.uint64, m11: np.uint64,
    m12: np.uint64, m13: np.uint64, m14: np.uint64, m15: np.uint64,
) -> tuple[
    np.uint64, np.uint64, np.uint64, np.uint64, np.uint64, np.uint64, np.uint64, np.uint64,
    np.uint64, np.uint64, np.uint64, np.uint64, np.uint64, np.uint64, np.uint64, np.uint64,
]:  # fmt: skip
    # RFC 7693 section 3.2: per round, columns then diagonals; sigma row = round mod 10
    # round 0
    v0, v4, v8, v12 = _g(v0, v4, v8, v12, m0, m1)
    v1, v5, v9, v13 = _g(v1, v5, v9, v13, m2, m3)
    v2, v6, v10, v14 = _g(v2, v6, v10, v14, m4, m5)
    v3, v7, v11, v15 = _g(v3, v7, v11, v15, m6, m7)
    v0, v5, v10, v15 = _g(v0, v5, v10, v15, m8, m9)
    v1, v6, v11, v12 = _g(v1, v6, v11, v12, m10, m11)
    v2, v7, v8, v13 = _g(v2, v7, v8, v13, m12, m13)
    v3, v4, v9, v14 = _g(v3, v4, v9, v14, m14, m15)
    # round 1
    v0, v4, v8, v12 = _g(v0, v4, v8, v12, m14, m10)
    v1, v5, v9, v13 = _g(v1, v5, v9, v13, m4, m8)
    v2, v6, v10, v14 = _g(v2, v6, v10, v14, m9, m15)
    v3, v7, v11, v15 = _g(v3, v7, v11, v15, m13, m6)
    v0, v5, v10, v15 = _g(v0, v5, v10, v15, m1, m12)
    v1, v6, v11, v12 = _g(v1, v6, v11, v12, m0, m2)
    v2, v7, v8, v13 = _g(v2, v7, v8, v13, m11, m7)
    v3, v4, v9, v14 = _g(v3, v4, v9, v14, m5, m3)
    # round 2
    v0, v4, v8, v12 = _g(v0, v4, v8, v12, m11, m8)
    v1, v5, v9, v13 = _g(v1, v5, v9, v13, m12, m0)
    v2, v6, v10, v14 = _g(v2, v6, v10, v14, m5, m2)
    v3, v7, v11, v15 = _g(v3, v7, v11, v15, m15, m13)
    v0, v5, v10, v15 = _g(v0, v5, v10, v15, m10, m14)
    v1, v6, v11, v12 = _g(v1, v6, v11, v12, m3, m6)
    v2, v7, v8, v13 = _g(v2, v7, v8, v13, m7, m1)
    v3, v4, v9, v14 = _g(v3, v4, v9, v14, m9, m4)
    # round 3
    v0, v4, v8, v12 = _g(v0, v4, v8, v12, m7, m9)
    v1, v5, v9, v13 = _g(v1, v5, v9, v13, m3, m1)
    v2, v6, v10, v14 = _g(v2, v6, v10, v14, m13, m12)
    v3, v7, v11, v15 = _g(v3, v7, v11, v15, m11, m14)
    v0, v5, v10, v15 = _g(v0, v5, v10, v15, m2, m6)
    v1, v6, v11, v12 = _g(v1, v6, v11, v12, m5, m10)
    v2, v7, v8, v13 = _g(v2, v7, v8, v13, m4, m0)
    v3, v4, v9, v14 = _g(v3, v4, v9, v14, m15, m8)
    # round 4
    v0, v4, v8, v12 = _g(v0, v4, v8, v12, m9, m0)
    v1, v5, v9, v13 = _g(v1, v5, v9, v13, m5, m7)
    v2, v6, v10, v14 = _g(v2, v6, v10, v14, m2, m4)
    v3, v7, v11, v15 = _g(v3, v7, v11, v15, m10, m15)
    v0, v5, v10, v15 = _g(v0, v5, v10, v15, m14, m1)
    v1, v6, v11, v12 = _g(v1, v6, v11, v12, m11, m12)
    v2, v7, v8, v13 = _g(v2, v7, v8, v13, m6, m8)
    v3, v4, v9, v14 = _g(v3, v4, v9, v14, m3, m13)
    # round 5
    v0, v4, v8, v12 = _g(v0, v4, v8, v12, m2, m12)
    v1, v5, v9, v13 = _g(v1, v5, v9, v13, m6, m10)
    v2, v6, v10, v14 = _g(v2, v6, v10, v14, m0, m11)
    v3, v7, v11, v15 = _g(v3, v7, v11, v15, m8, m3)
    v0, v5, v10, v15 = _g(v0, v5, v10, v15, m4, m13)
    v1, v6, v11, v12 = _g(v1, v6, v11, v12, m7, m5)
    v2, v7, v8, v13 = _g(v2, v7, v8, v13, m15, m14)
    v3, v4, v9, v14 = _g(v3, v4, v9, v14, m1, m9)
    # round 6
    v0, v4, v8, v12 = _g(v0, v4, v8, v12, m12, m5)
    v1, v5, v9, v13 = _g(v1, v5, v9, v13, m1, m15)
    v2, v6, v10, v14 = _g(v2, v6, v10, v14, m14, m13)
    v3, v7, v11, v15 = _g(v3, v7, v11, v15, m4, m10)
    v0, v5, v10, v15 = _g(v0, v5, v10, v15, m0, m7)
    v1, v6, v11, v12 = _g(v1, v6, v11, v12, m6, m3)
    v2, v7, v8, v13 = _g(v2, v7, v8, v13, m9, m2)
    v3, v4, v9, v14 = _g(v3, v4, v9, v14, m8, m11)
    # round 7
    v0, v4, v8, v12 = _g(v0, v4, v8, v12, m13, m11)
    v1, v5, v9, v13 = _g(v1, v5, v9, v13, m7, m14)
    v2, v6, v10, v14 = _g(v2, v6, v10, v14, m12, m1)
    v3, v7, v11, v15 = _g(v3, v7, v11, v15, m3, m9)
    v0, v5, v10, v15 = _g(v0, v5, v10, v15, m5, m0)
    v1, v6, v11, v12 = _g(v1, v6, v11, v12, m15, m4)
    v2, v7, v8, v13 = _g(v2, v7, v8, v13, m8, m6)
    v3, v4, v9, v14 = _g(v3, v4, v9, v14, m2, m10)
    # round 8
    v0, v4, v8, v12 = _g(v0, v4, v8, v12, m6, m15)
    v1, v5, v9, v13 = _g(v1, v5, v9, v13, m14, m9)
    v2, v6, v10, v14 = _g(v2, v6, v10, v14, m11, m3)
    v3, v7, v11, v15 = _g(v3, v7, v11, v15, m0, m8)
    v0, v5, v10, v15 = _g(v0, v5, v10, v15, m12, m2)
    v1, v6, v11, v12 = _g(v1, v6, v11, v12, m13, m7)
    v2, v7, v8, v13 = _g(v2, v7, v8, v13, m1, m4)
    v3, v4, v9, v14 = _g(v3, v4, v9, v14, m10, m5)
    # round 9
    v0, v4, v8, v12 = _g(v0, v4, v8, v12, m10, m2)
    v1, v5, v9, v13 = _g(v1, v5, v9, v13, m8, m4)
    v2, v6, v10, v14 = _g(v2, v6, v10, v14, m7, m6)
    v3, v7, v11, v15 = _g(v3, v7, v11, v15, m1, m5)
    v0, v5, v10, v15 = _g(v0, v5, v10, v15, m15, m11)
    v1, v6, v11, v12 = _g(v1, v6, v11, v12, m9, m14)
    v2, v7, v8, v13 = _g(v2, v7, v8, v13, m3, m12)
    v3, v4, v9, v14 = _g(v3, v4, v9, v14, m13, m0)
    # round 10
    v0, v4, v8, v12 = _g(v0, v4, v8, v12, m0, m1)
    v1, v5, v9, v13 = _g(v1, v5, v9, v13, m2, m3)
    v2, v6, v10, v14 = _g(v2, v6, v10, v14, m4, m5)
    v3, v7, v11, v15 = _g(v3, v7, v11, v15, m6, m7)
    v0, v5, v10, v15 = _g(v0, v5, v10, v15, m8, m9)
    v1, v6, v11, v12 = _g(v1, v6, v11, v12, m10, m11)
    v2, v7, v8, v13 = _g(v2, v7, v8, v13, m12, m13)
    v3, v4, v9, v14 = _g(v3, v4, v9, v14, m14, m15)
    # round 11
    v0, v4, v8, v12 = _g(v0, v4, v8, v12, m14, m10)
    v1, v5, v9, v13 = _g(v1, v5, v9, v13, m4, m8)
    v2, v6, v10, v14 = _g(v2, v6, v10, v14, m9, m15)
    v3, v7, v11, v15 = _g(v3, v7, v11, v15, m13, m6)
    v0, v5, v10, v15 = _g(v0, v5, v10, v15, m1, m12)
    v1, v6, v11, v12 = _g(v1, v6, v11, v12, m0, m2)
    v2, v7, v8, v13 = _g(v2, v7, v8, v13, m11, m7)
    v3, v4, v9, v14 = _g(v3, v4, v9, v14, m5, m3)
    return v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15


@njit(cache=True, nogil=True)
def _first8_lanes(
    offsets: np.ndarray,
    data: np.ndarray,
    rows: np.ndarray,
    count: int,
    vm: np.ndarray,
    out: np.ndarray,
) -> None:
    """``out[rows[l]]`` for the first ``count`` lanes: keys of at most 128 bytes (one last
    block each). Word ``k`` of lane ``l`` is ``vm[k * _LANES + l]``; unused lanes repeat
    lane 0 (hashed, never written)."""
    for lane in range(_LANES):
        row = rows[lane if lane < count else 0]
        start = offsets[row]
        length = offsets[row + 1] - start
        for k in range(16):
            vm[(16 + k) * _LANES + lane] = _word(data, start + 8 * k, length - 8 * k)
        vm[12 * _LANES + lane] = _IV4 ^ np.uint64(length)  # the byte counter
    for lane in range(_LANES):  # constant rows apart: a loop LLVM writes with vector stores
        vm[0 * _LANES + lane] = _IV0 ^ _P0
        vm[1 * _LANES + lane] = _IV1
        vm[2 * _LANES + lane] = _IV2
        vm[3 * _LANES + lane] = _IV3
        vm[4 * _LANES + lane] = _IV4
        vm[5 * _LANES + lane] = _IV5
        vm[6 * _LANES + lane] = _IV6
        vm[7 * _LANES + lane] = _IV7
        vm[8 * _LANES + lane] = _IV0
        vm[9 * _LANES + lane] = _IV1
        vm[10 * _LANES + lane] = _IV2
        vm[11 * _LANES + lane] = _IV3
        vm[13 * _LANES + lane] = _IV5
        vm[14 * _LANES + lane] = _IV6 ^ _ALL  # the last-block flag
        vm[15 * _LANES + lane] = _IV7
    _rounds_lanes(vm)
    for lane in range(count):
        out[rows[lane]] = (_IV0 ^ _P0) ^ vm[0 * _LANES + lane] ^ vm[8 * _LANES + lane]


@njit(cache=True, nogil=True, inline="always")
def _g_lanes(vm: np.ndarray, a: int, b: int, c: int, d: int, x: int, y: int) -> None:
    # constant word numbers (inlined): one array, fixed offsets, so LLVM sees no aliasing
    for lane in range(_LANES):
        va = vm[a * _LANES + lane]
        vb = vm[b * _LANES + lane]
        vc = vm[c * _LANES + lane]
        vd = vm[d * _LANES + lane]
        va = va + vb + vm[x * _LANES + lane]
        vd = _rotr(vd ^ va, np.uint64(32))
        vc = vc + vd
        vb = _rotr(vb ^ vc, np.uint64(24))
        va = va + vb + vm[y * _LANES + lane]
        vd = _rotr(vd ^ va, np.uint64(16))
        vc = vc + vd
        vb = _rotr(vb ^ vc, np.uint64(63))
        vm[a * _LANES + lane] = va
        vm[b * _LANES + lane] = vb
        vm[c * _LANES + lane] = vc
        vm[d * _LANES + lane] = vd


@njit(cache=True, nogil=True)
def _rounds_lanes(vm: np.ndarray) -> None:
    """The twelve rounds of :func:`_rounds` over all lanes (message word k is word 16 + k)."""
    # round 0
    _g_lanes(vm, 0, 4, 8, 12, 16, 17)
    _g_lanes(vm, 1, 5, 9, 13, 18, 19)
    _g_lanes(vm, 2, 6, 10, 14, 20, 21)
    _g_lanes(vm, 3, 7, 11, 15, 22, 23)
    _g_lanes(vm, 0, 5, 10, 15, 24, 25)
    _g_lanes(vm, 1, 6, 11, 12, 26, 27)
    _g_lanes(vm, 2, 7, 8, 13, 28, 29)
    _g_lanes(vm, 3, 4, 9, 14, 30, 31)
    # round 1
    _g_lanes(vm, 0, 4, 8, 12, 30, 26)
    _g_lanes(vm, 1, 5, 9, 13, 20, 24)
    _g_lanes(vm, 2, 6, 10, 14, 25, 31)
    _g_lanes(vm, 3, 7, 11, 15, 29, 22)
    _g_lanes(vm, 0, 5, 10, 15, 17, 28)
    _g_lanes(vm, 1, 6, 11, 12, 16, 18)
    _g_lanes(vm, 2, 7, 8, 13, 27, 23)
    _g_lanes(vm, 3, 4, 9, 14, 21, 19)
    # round 2
    _g_lanes(vm, 0, 4, 8, 12, 27, 24)
    _g_lanes(vm, 1, 5, 9, 13, 28, 16)
    _g_lanes(vm, 2, 6, 10, 14, 21, 18)
    _g_lanes(vm, 3, 7, 11, 15, 31, 29)
    _g_lanes(vm, 0, 5, 10, 15, 26, 30)
    _g_lanes(vm, 1, 6, 11, 12, 19, 22)
    _g_lanes(vm, 2, 7, 8, 13, 23, 17)
    _g_lanes(vm, 3, 4, 9, 14, 25, 20)
    # round 3
    _g_lanes(vm, 0, 4, 8, 12, 23, 25)
    _g_lanes(vm, 1, 5, 9, 13, 19, 17)
    _g_lanes(vm, 2, 6, 10, 14, 29, 28)
    _g_lanes(vm, 3, 7, 11, 15, 27, 30)
    _g_lanes(vm, 0, 5, 10, 15, 18, 22)
    _g_lanes(vm, 1, 6, 11, 12, 21, 26)
    _g_lanes(vm, 2, 7, 8, 13, 20, 16)
    _g_lanes(vm, 3, 4, 9, 14, 31, 24)
    # round 4
    _g_lanes(vm, 0, 4, 8, 12, 25, 16)
    _g_lanes(vm, 1, 5, 9, 13, 21, 23)
    _g_lanes(vm, 2, 6, 10, 14, 18, 20)
    _g_lanes(vm, 3, 7, 11, 15, 26, 31)
    _g_lanes(vm, 0, 5, 10, 15, 30, 17)
    _g_lanes(vm, 1, 6, 11, 12, 27, 28)
    _g_lanes(vm, 2, 7, 8, 13, 22, 24)
    _g_lanes(vm, 3, 4, 9, 14, 19, 29)
    # round 5
    _g_lanes(vm, 0, 4, 8, 12, 18, 28)
    _g_lanes(vm, 1, 5, 9, 13, 22, 26)
    _g_lanes(vm, 2, 6, 10, 14, 16, 27)
    _g_lanes(vm, 3, 7, 11, 15, 24, 19)
    _g_lanes(vm, 0, 5, 10, 15, 20, 29)
    _g_lanes(vm, 1, 6, 11, 12, 23, 21)
    _g_lanes(vm, 2, 7, 8, 13, 31, 30)
    _g_lanes(vm, 3, 4, 9, 14, 17, 25)
    # round 6
    _g_lanes(vm, 0, 4, 8, 12, 28, 21)
    _g_lanes(vm, 1, 5, 9, 13, 17, 31)
    _g_lanes(vm, 2, 6, 10, 14, 30, 29)
    _g_lanes(vm, 3, 7, 11, 15, 20, 26)
    _g_lanes(vm, 0, 5, 10, 15, 16, 23)
    _g_lanes(vm, 1, 6, 11, 12, 22, 19)
    _g_lanes(vm, 2, 7, 8, 13, 25, 18)
    _g_lanes(vm, 3, 4, 9, 14, 24, 27)
    # round 7
    _g_lanes(vm, 0, 4, 8, 12, 29, 27)
    _g_lanes(vm, 1, 5, 9, 13, 23, 30)
    _g_lanes(vm, 2, 6, 10, 14, 28, 17)
    _g_lanes(vm, 3, 7, 11, 15, 19, 25)
    _g_lanes(vm, 0, 5, 10, 15, 21, 16)
    _g_lanes(vm, 1, 6, 11, 12, 31, 20)
    _g_lanes(vm, 2, 7, 8, 13, 24, 22)
    _g_lanes(vm, 3, 4, 9, 14, 18, 26)
    # round 8
    _g_lanes(vm, 0, 4, 8, 12, 22, 31)
    _g_lanes(vm, 1, 5, 9, 13, 30, 25)
    _g_lanes(vm, 2, 6, 10, 14, 27, 19)
    _g_lanes(vm, 3, 7, 11, 15, 16, 24)
    _g_lanes(vm, 0, 5, 10, 15, 28, 18)
    _g_lanes(vm, 1, 6, 11, 12, 29, 23)
    _g_lanes(vm, 2, 7, 8, 13, 17, 20)
    _g_lanes(vm, 3, 4, 9, 14, 26, 21)
    # round 9
    _g_lanes(vm, 0, 4, 8, 12, 26, 18)
    _g_lanes(vm, 1, 5, 9, 13, 24, 20)
    _g_lanes(vm, 2, 6, 10, 14, 23, 22)
    _g_lanes(vm, 3, 7, 11, 15, 17, 21)
    _g_lanes(vm, 0, 5, 10, 15, 31, 27)
    _g_lanes(vm, 1, 6, 11, 12, 25, 30)
    _g_lanes(vm, 2, 7, 8, 13, 19, 28)
    _g_lanes(vm, 3, 4, 9, 14, 29, 16)
    # round 10
    _g_lanes(vm, 0, 4, 8, 12, 16, 17)
    _g_lanes(vm, 1, 5, 9, 13, 18, 19)
    _g_lanes(vm, 2, 6, 10, 14, 20, 21)
    _g_lanes(vm, 3, 7, 11, 15, 22, 23)
    _g_lanes(vm, 0, 5, 10, 15, 24, 25)
    _g_lanes(vm, 1, 6, 11, 12, 26, 27)
    _g_lanes(vm, 2, 7, 8, 13, 28, 29)
    _g_lanes(vm, 3, 4, 9, 14, 30, 31)
    # round 11
    _g_lanes(vm, 0, 4, 8, 12, 30, 26)
    _g_lanes(vm, 1, 5, 9, 13, 20, 24)
    _g_lanes(vm, 2, 6, 10, 14, 25, 31)
    _g_lanes(vm, 3, 7, 11, 15, 29, 22)
    _g_lanes(vm, 0, 5, 10, 15, 17, 28)
    _g_lanes(vm, 1, 6, 11, 12, 16, 18)
    _g_lanes(vm, 2, 7, 8, 13, 27, 23)
    _g_lanes(vm, 3, 4, 9, 14, 21, 19)
