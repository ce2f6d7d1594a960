"""BLAKE2b (RFC 7693) in Numba, for record ids over Arrow string columns.

``record_id(key) = int.from_bytes(blake2b(key.utf8, digest_size=D).digest()[:8], "little",
signed=True)`` - the first 8 digest bytes are exactly the first state word ``h[0]``
after the final compression, read as int64, for any digest size ``D`` (8..64). The
kernel hashes every string of an Arrow ``string`` / ``large_string`` array straight
from its offsets and data buffers; the tests check it against :mod:`hashlib`.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pyarrow as pa
from numba import njit, prange

__all__ = ["blake2b_ids", "blake2b_ids_arrow"]

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


@njit(cache=True, nogil=True, inline="always")
def _rotr(x: np.uint64, n: int) -> np.uint64:
    return (x >> np.uint64(n)) | (x << np.uint64(64 - n))


@njit(cache=True, nogil=True, inline="always")
def _g(
    a: np.uint64, b: np.uint64, c: np.uint64, d: np.uint64, x: np.uint64, y: np.uint64
) -> tuple[np.uint64, np.uint64, np.uint64, np.uint64]:
    a = a + b + x
    d = _rotr(d ^ a, 32)
    c = c + d
    b = _rotr(b ^ c, 24)
    a = a + b + y
    d = _rotr(d ^ a, 16)
    c = c + d
    b = _rotr(b ^ c, 63)
    return a, b, c, d


@njit(cache=True, nogil=True)
def _compress(
    h: npt.NDArray[np.uint64],
    m: npt.NDArray[np.uint64],
    counter: int,
    last: bool,
    iv: npt.NDArray[np.uint64],
    sg: npt.NDArray[np.int64],
) -> None:
    # the 16 state words live in scalars (registers), not an array
    v0, v1, v2, v3, v4, v5, v6, v7 = h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]
    v8, v9, v10, v11, v12, v13, v14, v15 = iv[0], iv[1], iv[2], iv[3], iv[4], iv[5], iv[6], iv[7]
    v12 ^= np.uint64(counter)  # counters beyond 2**64 bytes do not occur here
    if last:
        v14 = ~v14
    for r in range(12):
        s = sg[r % 10]
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


@njit(cache=True, nogil=True, parallel=True)
def blake2b_ids(
    data: npt.NDArray[np.uint8],
    offsets: npt.NDArray[np.int64],
    iv: npt.NDArray[np.uint64],
    sigma: npt.NDArray[np.int64],
    digest_size: int,
) -> npt.NDArray[np.int64]:
    """First 8 digest bytes (int64 LE) of BLAKE2b(``digest_size``) over each string."""
    n = offsets.shape[0] - 1
    out = np.empty(n, dtype=np.int64)
    nchunks = 64
    step = (n + nchunks - 1) // nchunks
    for c in prange(nchunks):
        h = np.empty(8, dtype=np.uint64)
        m = np.zeros(16, dtype=np.uint64)
        for i in range(c * step, min(n, (c + 1) * step)):
            for k in range(8):
                h[k] = iv[k]
            # parameter block: digest length, no key, fanout 1, depth 1
            h[0] ^= np.uint64(0x01010000) | np.uint64(digest_size)
            lo = offsets[i]
            ln = offsets[i + 1] - lo
            done = 0
            while True:
                rest = ln - done
                final = rest <= 128
                for w in range(16):
                    m[w] = 0
                take = rest if final else 128
                for j in range(take):
                    m[j >> 3] |= np.uint64(data[lo + done + j]) << np.uint64(8 * (j & 7))
                done += take
                _compress(h, m, done, final, iv, sigma)
                if final:
                    break
            out[i] = np.int64(h[0])
    return out


def blake2b_ids_arrow(
    keys: pa.Array | pa.ChunkedArray, digest_size: int = 8
) -> npt.NDArray[np.int64]:
    """Record ids of a (non-null) Arrow string column, zero-copy from its buffers.

    The id is the first 8 bytes of the BLAKE2b digest of ``digest_size`` bytes (8 to 64;
    the digest size is part of BLAKE2b's parameter block, so 8 and 64 give different ids).
    """
    if not 8 <= digest_size <= 64:
        raise ValueError(f"digest_size must be 8..64, got {digest_size}")
    arr = keys.combine_chunks() if isinstance(keys, pa.ChunkedArray) else keys
    if arr.null_count:
        raise ValueError("record keys must not be null")
    if pa.types.is_string(arr.type) or pa.types.is_binary(arr.type):
        off_type: type = np.int32
    elif pa.types.is_large_string(arr.type) or pa.types.is_large_binary(arr.type):
        off_type = np.int64
    else:
        raise TypeError(f"expected a string column, got {arr.type}")
    n = len(arr)
    if n == 0:
        return np.empty(0, dtype=np.int64)
    bufs = arr.buffers()
    offsets = np.frombuffer(bufs[1], dtype=off_type, count=n + 1, offset=arr.offset * np.dtype(
        off_type).itemsize).astype(np.int64)  # fmt: skip
    data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None else np.zeros(1, np.uint8)
    return blake2b_ids(data, offsets, _IV, _SIGMA, digest_size)
