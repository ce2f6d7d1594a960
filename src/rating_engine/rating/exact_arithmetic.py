"""Integer arithmetic of exact costs: bounds, fast exact division, the one rounding of a total."""

from __future__ import annotations

import numpy as np

from rating_engine.tariff.key_table import leaf

__all__ = ["I64MAX", "LIMIT", "POW10", "div_inv", "round_total", "timespan_increment"]

I64MAX = 9_223_372_036_854_775_807
POW10 = np.array([10**k for k in range(10)], dtype=np.int64)
#: Exact sums stay below this so that adding fees and carries can never wrap.
LIMIT = 1 << 62


@leaf
def div_inv(a: int, b: int, inv_b: float) -> int:
    """a // b for 0 <= a < 2^62, 0 < b, given inv_b ~ 1/b.

    A 64-bit integer division costs tens of cycles on the hot path; the float estimate is
    within a few units of the truth and the loops make the result exact in every case.
    """
    q = np.int64(np.float64(a) * inv_b)
    r = a - q * b
    while r < 0:
        q -= 1
        r += b
    while r >= b:
        q += 1
        r -= b
    return int(q)


@leaf
def round_total(qt: int, numer: int, den: int, method: int) -> int:
    """``qt + numer/den`` (0 <= numer < den) rounded up (0), down (1), half-up (2) or
    half-even (3), as arithmetic: which way a remainder goes is data, a branch would
    guess."""
    twice = 2 * numer
    return qt + int(
        ((method == 0) & (numer > 0))
        | ((method == 2) & (twice >= den))
        | ((method == 3) & ((twice > den) | ((twice == den) & (qt & 1 == 1))))
    )


@leaf
def timespan_increment(n: int, inc_a: int, inc_b: int, method: int) -> int:
    """CGRateS's cost of one of a timespan's ``n`` increments, in grid steps (its rounding
    decimals): the timespan's exact cost ``n x inc_a / inc_b`` steps rounded to a step,
    spread back over the n increments and rounded again. -1 if ``n x inc_a`` would pass
    2^62 (the caller rejects the record as ``cost_overflow``)."""
    if inc_a > 0 and n > LIMIT // inc_a:
        return -1
    na = n * inc_a
    qa = na // inc_b
    a = round_total(qa, na - qa * inc_b, inc_b, method)
    qc = a // n
    return int(round_total(qc, a - qc * n, n, method))
