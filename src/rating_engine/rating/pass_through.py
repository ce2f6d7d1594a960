"""Pass-through rates: a record priced by the amount it carries.

Roaming partner charges, premium-rate content and wholesale costs arrive on the record
(usage column ``price``: int64 micro-units of the tariff's currency, null = none). A rate
with ``pass_through = true`` prices such a record as

    cost = round(price x (100 + markup_percent) / 100 + markup_fixed), then min/max

rounded with the rate's rounding and limited by its ``min_charge`` / ``max_cost``. The
kernels select the rate as for any record (destination, band, version) and bill the
usage's units at a zero rate; this pass then finds the records whose rate passes through
and writes their cost. Such a record draws on no allowance (its price is owed as it is).
A record a pass-through rate prices without a price is rejected ``no_price``, one with a
negative price ``negative_price`` (field ``price``); a price too large to mark up exactly
is ``cost_overflow``.

Plans without pass-through rates skip all of it (one memoised look-up per batch).
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rating_engine.errors import TariffError
from rating_engine.rating.reasons import NEG_PRICE, NO_PRICE, OK, OVERFLOW
from rating_engine.tariff.model import ROUNDING_METHODS, SERVICES, Rate
from rating_engine.tariff.plan import RatingPlan

__all__ = [
    "PassThroughRates",
    "check_prices",
    "pass_through_rates",
    "price_pass_through",
    "record_prices",
]

_D = 1_000_000  # markup factors are (100 + percent) x 10^4 / 10^6
_LIMIT = 2**62


class PassThroughRates:
    """The plan's pass-through rates and which rated records they price.

    ``keys`` maps (tariff index, version label, service, set label or -1, band label) -
    what the kernel writes for a rated record - to a row of ``params``: markup factor
    numerator (over 10^6), fixed markup, rounding method, rounding step, minimum, maximum
    (micro-units; -1 / 2^63-1 when absent).
    """

    def __init__(self, keys: dict[tuple[int, ...], int], params: np.ndarray):
        self.keys = keys
        self.params = params


def pass_through_rates(plan: RatingPlan) -> PassThroughRates | None:
    """The plan's pass-through rates (memoised on the plan), None if it has none."""
    if "pass_through" not in plan.memo:
        plan.memo["pass_through"] = _build(plan)
    found = plan.memo["pass_through"]
    assert found is None or isinstance(found, PassThroughRates)
    return found


def _build(plan: RatingPlan) -> PassThroughRates | None:
    if not any(
        r.pass_through is not None
        for t in plan.tariffs.values()
        for v in t.versions
        for r in v.rates
    ):
        return None
    a = plan.arrays
    rows: dict[int, int] = {}  # rate index -> params row
    params: list[list[int]] = []
    keys: dict[tuple[int, ...], int] = {}
    plain: set[tuple[int, ...]] = set()  # keys priced by other rates
    for v in range(len(a["ver_active_from"])):
        ti = int(a["ver_tariff"][v])
        tariff = plan.tariffs[plan.tariff_ids[ti]]
        version = tariff.versions[v - int(a["tariff_first_ver"][ti])]
        rates = {r.name: r for r in version.rates}
        n_sets, n_classes = int(a["ver_n_sets"][v]), int(a["ver_class_n"][v])
        set_first = int(a["ver_set_first"][v])
        n_cols = n_sets + 1
        table = a["price"][2 * int(a["ver_price_first"][v]) :][: 3 * n_cols * n_classes * 2]
        table = table.reshape(3, n_cols, n_classes, 2)
        for svc in range(len(SERVICES)):
            for col in range(n_cols):
                set_code = int(a["set_label"][set_first + col]) if col < n_sets else -1
                for ci in range(n_classes):
                    ri, band = (int(x) for x in table[svc, col, ci])
                    if ri < 0:
                        continue
                    key = (ti, int(a["ver_label"][v]), svc, set_code, band)
                    rate = rates[plan.rate_names[ri]]
                    if rate.pass_through is None:
                        plain.add(key)
                        continue
                    if ri not in rows:
                        rows[ri] = len(params)
                        params.append(_params(rate))
                    if keys.setdefault(key, rows[ri]) != rows[ri]:
                        plain.add(key)  # two pass-through rates: ambiguous as well
    clash = sorted(set(keys) & plain)
    if clash:  # the rated row would not tell which rate priced the record
        ti = clash[0][0]
        raise TariffError(
            f"a pass-through rate and another rate price the same destination set and band "
            f"in different band combinations (tariff {plan.tariff_ids[ti]}, field rates)"
        )
    return PassThroughRates(keys, np.asarray(params, np.int64).reshape(-1, 6))


def _params(rate: Rate) -> list[int]:
    assert rate.pass_through is not None
    pt = rate.pass_through
    return [
        int((Decimal(100) + pt.markup_percent) * 10_000),
        int(pt.markup_fixed * _D),
        ROUNDING_METHODS.index(rate.rounding.method),
        10 ** (6 - rate.rounding.decimals),
        -1 if rate.min_charge is None else int(rate.min_charge * _D),
        _LIMIT * 2 - 1 if rate.max_cost is None else int(rate.max_cost * _D),
    ]


def record_prices(batch: pa.RecordBatch) -> tuple[np.ndarray, np.ndarray] | None:
    """The optional ``price`` column as (int64 micro-units, null mask), None if absent."""
    if "price" not in batch.schema.names:
        return None
    col = pc.cast(batch.column("price"), pa.int64())
    nulls = col.is_null().to_numpy(zero_copy_only=False)
    return np.asarray(col.fill_null(0).to_numpy(zero_copy_only=False), np.int64), nulls


def _rows(rates: PassThroughRates, out: tuple) -> tuple[np.ndarray, np.ndarray]:
    """(records a pass-through rate prices, their params rows) among the rated ones."""
    status = out[0]
    rated = np.flatnonzero(status == OK)
    if len(rated) == 0:
        return rated, rated
    set_code = np.where(out[5][rated] < 0, -1, out[4][rated])
    keys = np.stack(
        [out[13][rated], out[2][rated], out[1][rated], set_code, out[6][rated]], axis=1
    ).astype(np.int64)
    uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
    look = np.array([rates.keys.get(tuple(int(x) for x in k), -1) for k in uniq], np.int64)
    row = look[inverse.reshape(-1)]
    hit = row >= 0
    return rated[hit], row[hit]


def check_prices(
    rates: PassThroughRates, out: tuple, prices: tuple[np.ndarray, np.ndarray] | None
) -> tuple[np.ndarray, np.ndarray]:
    """Reject the pass-through records without a usable price (status in ``out[0]``) and
    take every pass-through record off the allowances; returns the ones left to price
    and their params rows."""
    idx, row = _rows(rates, out)
    if len(idx) == 0:
        return idx, row
    out[10][idx] = 0  # no allowance: the price is owed as it is
    if prices is None:
        out[0][idx] = NO_PRICE
        return idx[:0], row[:0]
    price, null = prices[0][idx], prices[1][idx]
    reason = np.where(null, NO_PRICE, np.where(price < 0, NEG_PRICE, OK))
    n = rates.params[row, 0]
    reason = np.where((reason == OK) & (price // _D > _LIMIT // n.clip(1)), OVERFLOW, reason)
    out[0][idx] = reason
    keep = reason == OK
    return idx[keep], row[keep]


def price_pass_through(
    rates: PassThroughRates, out: tuple, idx: np.ndarray, row: np.ndarray, price: np.ndarray
) -> None:
    """Write the cost of the pass-through records ``idx`` (checked by
    :func:`check_prices`) into ``out[8]``; their allowance units are 0."""
    if len(idx) == 0:
        return
    p = rates.params[row]
    n, fixed, method, step, lo, hi = (p[:, i] for i in range(6))
    q, r = np.divmod(price[idx], _D)
    frac = r * n
    micro = q * n + frac // _D + fixed  # exact: micro + rem / 10^6
    rem = frac % _D
    k, left = np.divmod(micro, step)  # floor, so a negative total rounds consistently
    num, den = left * _D + rem, step * _D  # the part above k steps, as num/den of a step
    odd = (k % 2) == 1
    up = np.select(
        [method == 0, method == 1, method == 2],
        [num > 0, np.zeros_like(odd), 2 * num >= den],
        (2 * num > den) | ((2 * num == den) & odd),
    )
    cost = (k + up) * step
    out[8][idx] = np.minimum(np.maximum(cost, lo), hi)
    out[9][idx] = 0
