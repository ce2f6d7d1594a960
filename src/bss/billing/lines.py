"""Bill lines and bill totals as whole columns, from the partial sums of a billing pass.

Every source of lines gives a table in :data:`LINE_SCHEMA`: ``source`` and ``ord`` put
an account's lines in bill order (charges of its products, then usage per subscription,
service and late flag, then period pricing, then re-rating adjustments), as the bill
shows them; :func:`number_lines` sorts and numbers them, :func:`round_lines` rounds each
to its currency's minor unit by the invoice rounding policy (the exact amount kept as
``exact``), and :func:`bill_totals` sums them per account and adds the tax by that policy
(:mod:`bss.invoice.rounding`), exactly, in integer micro-units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from bss.invoice.rounding import (
    DEFAULT_POLICY,
    RoundingPolicy,
    group_tax,
    minor_steps,
    round_amounts,
)

__all__ = [
    "LINE_SCHEMA",
    "SOURCE_ADJUSTMENTS",
    "SOURCE_CHARGES",
    "SOURCE_PERIOD_PRICING",
    "SOURCE_USAGE",
    "BillTotals",
    "adjustment_lines",
    "bill_totals",
    "number_lines",
    "period_charge_lines",
    "round_lines",
    "usage_lines",
]

SOURCE_CHARGES, SOURCE_USAGE, SOURCE_PERIOD_PRICING, SOURCE_ADJUSTMENTS = 0, 1, 2, 3
LINE_SCHEMA = pa.schema(
    [
        pa.field("account_id", pa.int64(), nullable=False),
        pa.field("source", pa.int8(), nullable=False),
        pa.field("ord", pa.int64(), nullable=False),
        pa.field("line_type", pa.string(), nullable=False),
        pa.field("product_id", pa.int64()),
        pa.field("description", pa.string(), nullable=False),
        pa.field("quantity", pa.int64(), nullable=False),
        pa.field("unit", pa.string(), nullable=False),
        pa.field("micros", pa.int64(), nullable=False),
    ]
)
_UNITS = {"voice": "s", "sms": "event", "data": "B"}
I64 = npt.NDArray[np.int64]


def _label_of(products: pa.Array | pa.ChunkedArray, labels: pa.Table) -> pa.Array:
    """Each product's label text ('' if it has none)."""
    idx = pc.index_in(products, value_set=labels.column("product_id"))
    return pc.fill_null(labels.column("label").take(idx), "")


def _units(service: pa.Array | pa.ChunkedArray) -> pa.Array:
    idx = pc.index_in(service, value_set=pa.array(list(_UNITS)))
    return pc.fill_null(pa.array(list(_UNITS.values())).take(idx), "")


def usage_lines(usage: pa.Table, labels: pa.Table) -> pa.Table:
    """One line per account, subscription, service and late flag (a ``USAGE_PARTIAL``).

    ``<service> usage <identifiers> (<n> records[, <u> <unit> from allowance][, usage from
    earlier periods])``; the amount is the exact sum of the records' costs.
    """
    if usage.num_rows == 0:
        return LINE_SCHEMA.empty_table()
    usage = usage.sort_by([("account_id", "ascending"), ("subscription_id", "ascending"),
                           ("service", "ascending"), ("late", "ascending")])  # fmt: skip
    service = usage.column("service")
    unit = _units(service)
    what = pc.utf8_rtrim_whitespace(
        pc.binary_join_element_wise(
            service, _label_of(usage.column("subscription_id"), labels), " usage "
        )
    )
    str_ = pa.string()
    allowance = usage.column("allowance_units")
    allowance_note = pc.if_else(
        pc.not_equal(allowance, 0),
        pc.binary_join_element_wise(
            ", ", pc.cast(allowance, str_), " ", unit, " from allowance", ""
        ),
        "",
    )
    late_note = pc.if_else(usage.column("late"), ", usage from earlier periods", "")
    description = pc.binary_join_element_wise(
        what, " (", pc.cast(usage.column("records"), str_), " records", allowance_note,
        late_note, ")", "",
    )  # fmt: skip
    n = usage.num_rows
    return pa.table(
        [usage.column("account_id"), pa.array(np.full(n, SOURCE_USAGE, np.int8)),
         pa.array(np.arange(n, dtype=np.int64)), pa.repeat(pa.scalar("usage"), n),
         usage.column("subscription_id"), description, usage.column("billed_units"), unit,
         usage.column("cost")],
        schema=LINE_SCHEMA,
    )  # fmt: skip


def period_charge_lines(charges: pa.Table, labels: pa.Table) -> pa.Table:
    """Tiered / volume pricing of the period (``PERIOD_CHARGE_SCHEMA``), non-zero charges."""
    charges = charges.filter(pc.not_equal(charges.column("charge"), 0))
    if charges.num_rows == 0:
        return LINE_SCHEMA.empty_table()
    # price_period orders them by subscription and pricing; keep that order per account
    n = charges.num_rows
    service = charges.column("service")
    description = pc.binary_join_element_wise(
        service, " ", charges.column("mode"), " pricing ", charges.column("pricing"), " ",
        _label_of(charges.column("subscription_id"), labels), ": ", charges.column("detail"), "",
    )  # fmt: skip
    return pa.table(
        [charges.column("account_id"), pa.array(np.full(n, SOURCE_PERIOD_PRICING, np.int8)),
         pa.array(np.arange(n, dtype=np.int64)), pa.repeat(pa.scalar("usage"), n),
         charges.column("subscription_id"), description, charges.column("quantity"),
         _units(service), charges.column("charge")],
        schema=LINE_SCHEMA,
    )  # fmt: skip


def adjustment_lines(sums: pa.Table) -> pa.Table:
    """One line per account and re-rated period (``ADJUSTMENT_SUM_SCHEMA``), non-zero:
    a credit when the corrected price is lower, a usage line when higher."""
    sums = sums.filter(pc.not_equal(sums.column("delta"), 0)).sort_by(
        [("account_id", "ascending"), ("billed_period", "ascending")]
    )
    if sums.num_rows == 0:
        return LINE_SCHEMA.empty_table()
    n = sums.num_rows
    records = pc.cast(sums.column("records"), pa.string())
    description = pc.binary_join_element_wise(
        "re-rating of ", sums.column("billed_period"),
        " usage under corrected tariffs (", records, " records)", "",
    )  # fmt: skip
    kind = pc.if_else(pc.less(sums.column("delta"), 0), "credit", "usage")
    return pa.table(
        [sums.column("account_id"), pa.array(np.full(n, SOURCE_ADJUSTMENTS, np.int8)),
         pa.array(np.arange(n, dtype=np.int64)), kind, pa.nulls(n, pa.int64()), description,
         sums.column("records"), pa.repeat(pa.scalar("records"), n), sums.column("delta")],
        schema=LINE_SCHEMA,
    )  # fmt: skip


def number_lines(*tables: pa.Table) -> pa.Table:
    """All lines in bill order with ``line_no`` (1, 2, ... per account)."""
    lines = pa.concat_tables([t.cast(LINE_SCHEMA) for t in tables]).sort_by(
        [("account_id", "ascending"), ("source", "ascending"), ("ord", "ascending")]
    )
    acc = np.asarray(lines.column("account_id").to_numpy(), dtype=np.int64)
    n = acc.shape[0]
    first = np.flatnonzero(np.r_[True, acc[1:] != acc[:-1]]) if n else np.zeros(0, np.int64)
    line_no = np.arange(n, dtype=np.int64) - np.repeat(first, np.diff(np.r_[first, n]))
    return lines.append_column("line_no", pa.array(line_no + 1, pa.int32()))


@dataclass(frozen=True)
class BillTotals:
    """Per billed account (sorted): its totals in micro-units, and the sum of its lines'
    magnitudes (a float upper bound: the int64 sums are exact below 2^62)."""

    account_id: I64
    excl: I64
    tax: I64
    incl: I64
    due: I64
    bound: npt.NDArray[np.float64]

    def without(self, accounts: I64) -> BillTotals:
        keep = ~np.isin(self.account_id, accounts)
        return BillTotals(self.account_id[keep], self.excl[keep], self.tax[keep],
                          self.incl[keep], self.due[keep], self.bound[keep])  # fmt: skip


def round_lines(
    lines: pa.Table, account_id: I64, currencies: list[str],
    policy: RoundingPolicy = DEFAULT_POLICY,
) -> pa.Table:  # fmt: skip
    """``lines`` (in account order) with each amount (``micros``) rounded to its account's
    minor unit by the policy's mode, and the exact amount kept in a new ``exact`` column.
    ``account_id`` (sorted) and ``currencies`` describe the accounts."""
    exact = np.asarray(lines.column("micros").to_numpy(), dtype=np.int64)
    acc = np.asarray(lines.column("account_id").to_numpy(), dtype=np.int64)
    # lines come in account order: one look-up per account, repeated over its lines
    first = np.flatnonzero(np.r_[True, acc[1:] != acc[:-1]]) if len(acc) else \
        np.zeros(0, np.int64)  # fmt: skip
    per_account = minor_steps(currencies)[np.searchsorted(account_id, acc[first])]
    steps = np.repeat(per_account, np.diff(np.r_[first, len(acc)]))
    rounded = round_amounts(exact, steps, policy.mode)
    at = lines.schema.get_field_index("micros")
    out = lines.set_column(at, "micros", pa.array(rounded, pa.int64()))
    return out.append_column("exact", pa.array(exact, pa.int64()))


def bill_totals(
    lines: pa.Table, account_id: I64, rate_micros: I64, currencies: list[str],
    policy: RoundingPolicy = DEFAULT_POLICY,
) -> BillTotals:  # fmt: skip
    """Totals of every account with lines (``lines`` numbered and rounded by
    :func:`round_lines`, in account order).

    ``account_id`` (sorted), ``rate_micros`` and ``currencies`` describe the accounts; an
    account's lines are one tax group (one rate): excl is the sum of the rounded lines,
    the tax is computed by the policy's basis (:func:`~bss.invoice.rounding.group_tax`),
    ``incl = excl + tax`` and ``due = incl``, all on the minor-unit grid. A bill whose
    ``bound`` reaches 2^62 has no exact sum here (see
    :func:`~bss.billing.exceptions.amount_exceptions`): its totals are left 0.
    """
    acc = np.asarray(lines.column("account_id").to_numpy(), dtype=np.int64)
    micros = np.asarray(lines.column("micros").to_numpy(), dtype=np.int64)
    if acc.shape[0] == 0:
        empty = np.zeros(0, np.int64)
        return BillTotals(empty, empty, empty, empty, empty, np.zeros(0))
    first = np.flatnonzero(np.r_[True, acc[1:] != acc[:-1]])
    billed = acc[first]
    bound = np.add.reduceat(np.abs(micros).astype(np.float64), first)
    exact = bound < 2.0**62
    excl = np.where(exact, np.add.reduceat(micros, first), 0)
    pos = np.searchsorted(account_id, billed)
    safe = exact & (np.abs(excl) < 10**18)
    tax = np.zeros_like(excl)
    if safe.any():
        keep = np.repeat(safe, np.diff(np.r_[first, len(acc)]))
        kept_first = np.flatnonzero(np.r_[True, acc[keep][1:] != acc[keep][:-1]])
        steps = minor_steps(currencies)[pos[safe]]
        tax[safe] = group_tax(micros[keep], kept_first, rate_micros[pos][safe], steps,
                              policy).tax  # fmt: skip
    incl = excl + tax
    due = np.where(safe, incl, 0)
    return BillTotals(billed, excl, tax, incl, due, bound)
