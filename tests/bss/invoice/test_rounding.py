"""The invoice rounding policy against Decimal references: every line on the minor-unit
grid, tax per rate group (or per line), lines + tax = total = amount due exactly."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bss.billing.lines import LINE_SCHEMA, bill_totals, round_lines
from bss.currencies import minor_units
from bss.errors import ValidationError
from bss.invoice.rounding import (
    RoundingPolicy,
    group_tax,
    minor_steps,
    mul_ratio_round_array,
    round_amounts,
)

_DECIMAL_MODE = {"half-even": ROUND_HALF_EVEN, "half-up": ROUND_HALF_UP}
modes = st.sampled_from(["half-even", "half-up"])
amounts = st.integers(-(10**13), 10**13)


def _ref_round(micros: int, step: int, mode: str) -> int:
    return int((Decimal(micros) / step).quantize(Decimal(1), _DECIMAL_MODE[mode])) * step


def test_minor_units_of_iso_4217() -> None:
    assert [minor_units(c) for c in ("EUR", "JPY", "BHD", "KWD", "CLF", "ISK", "XAU")] == [
        2, 0, 3, 3, 4, 0, 6,
    ]  # fmt: skip
    assert minor_steps(["EUR", "JPY", "BHD"]).tolist() == [10_000, 1_000_000, 1_000]


def test_half_up_goes_away_from_zero_half_even_to_even() -> None:
    values = [25_000, -25_000, 15_000, -15_000, 14_999]
    assert round_amounts(values, 10_000, "half-up").tolist() == [30_000, -30_000, 20_000,
                                                                 -20_000, 10_000]  # fmt: skip
    assert round_amounts(values, 10_000, "half-even").tolist() == [20_000, -20_000, 20_000,
                                                                   -20_000, 10_000]  # fmt: skip


def test_an_unknown_policy_is_refused() -> None:
    with pytest.raises(ValidationError, match="half-even"):
        RoundingPolicy(mode="up")
    with pytest.raises(ValidationError, match="rate-group"):
        RoundingPolicy(tax_basis="invoice")


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(amounts, st.integers(1, 10**6), st.integers(1, 10**12)), max_size=20),
       modes)  # fmt: skip
def test_ratio_rounding_matches_decimal(rows: list[tuple[int, int, int]], mode: str) -> None:
    got = mul_ratio_round_array([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows],
                                mode)  # fmt: skip
    want = [int((Decimal(v) * n / d).quantize(Decimal(1), _DECIMAL_MODE[mode])) for v, n, d in rows]
    assert got.tolist() == want


def test_ratio_rounding_beyond_int64_products_is_exact() -> None:
    v = [9 * 10**17, -(9 * 10**17) - 5]
    got = mul_ratio_round_array(v, [999_999, 999_999], [10**6, 10**6], "half-up")
    assert got.tolist() == [
        int((Decimal(x) * 999_999 / 10**6).quantize(Decimal(1), ROUND_HALF_UP)) for x in v
    ]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.lists(amounts, min_size=1, max_size=6), min_size=1, max_size=5),
    st.lists(st.integers(0, 999_999), min_size=5, max_size=5),
    st.lists(st.sampled_from(["EUR", "JPY", "BHD", "CLF"]), min_size=5, max_size=5),
    modes,
    st.sampled_from(["rate-group", "line"]),
)
def test_group_tax_matches_decimal(
    groups: list[list[int]], rates: list[int], currencies: list[str], mode: str, basis: str
) -> None:
    policy = RoundingPolicy(mode, basis)
    steps = minor_steps(currencies[: len(groups)])
    rounded = np.array([_ref_round(v, int(steps[g]), mode)
                        for g, group in enumerate(groups) for v in group], np.int64)  # fmt: skip
    starts = np.cumsum([0] + [len(g) for g in groups[:-1]]).astype(np.int64)
    rate = np.array(rates[: len(groups)], np.int64)
    got = group_tax(rounded, starts, rate, steps, policy)
    for g in range(len(groups)):
        lines = rounded[starts[g] : starts[g] + len(groups[g])].tolist()
        share = Decimal(int(rate[g])) / 10**6
        step = int(steps[g])
        if basis == "rate-group":
            want = (
                int((Decimal(sum(lines)) * share / step).quantize(Decimal(1), _DECIMAL_MODE[mode]))
                * step
            )
        else:
            want = sum(int((Decimal(x) * share / step).quantize(Decimal(1), _DECIMAL_MODE[mode]))
                       * step for x in lines)  # fmt: skip
        assert int(got.taxable[g]) == sum(lines)
        assert int(got.tax[g]) == want
        assert want % step == 0


def _lines(accounts: list[list[int]]) -> pa.Table:
    rows = [(a + 1, k, v) for a, amounts_ in enumerate(accounts) for k, v in enumerate(amounts_)]
    n = len(rows)
    return pa.table({
        "account_id": pa.array([r[0] for r in rows], pa.int64()),
        "source": pa.array([0] * n, pa.int8()), "ord": pa.array([r[1] for r in rows], pa.int64()),
        "line_type": ["usage"] * n, "product_id": pa.nulls(n, pa.int64()),
        "description": ["x"] * n, "quantity": pa.array([1] * n, pa.int64()), "unit": ["s"] * n,
        "micros": pa.array([r[2] for r in rows], pa.int64()),
    }, schema=LINE_SCHEMA)  # fmt: skip


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.lists(amounts, min_size=1, max_size=8), min_size=1, max_size=4),
    st.sampled_from(["EUR", "JPY", "BHD"]),
    st.integers(0, 999_999),
    modes,
    st.sampled_from(["rate-group", "line"]),
)
def test_bill_lines_and_tax_add_up_to_the_amount_due(
    accounts: list[list[int]], currency: str, rate: int, mode: str, basis: str
) -> None:
    policy = RoundingPolicy(mode, basis)
    ids = np.arange(1, len(accounts) + 1, dtype=np.int64)
    currencies = [currency] * len(accounts)
    lines = round_lines(_lines(accounts), ids, currencies, policy)
    totals = bill_totals(lines, ids, np.full(len(ids), rate, np.int64), currencies, policy)
    step = 10 ** (6 - minor_units(currency))
    rounded = lines.column("micros").to_pylist()
    exact = lines.column("exact").to_pylist()
    assert exact == [v for a in accounts for v in a]  # the rated detail is kept exact
    assert rounded == [_ref_round(v, step, mode) for v in exact]
    assert all(abs(r - e) * 2 <= step for r, e in zip(rounded, exact, strict=True))
    at = 0
    for i, amounts_ in enumerate(accounts):
        mine = rounded[at : at + len(amounts_)]
        at += len(amounts_)
        assert int(totals.excl[i]) == sum(mine)
        assert int(totals.incl[i]) == sum(mine) + int(totals.tax[i]) == int(totals.due[i])
        assert int(totals.due[i]) % step == 0
        assert int(totals.tax[i]) % step == 0
