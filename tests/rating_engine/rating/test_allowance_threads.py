"""Allowances re-priced on threads over subscription ranges give what one pass gives."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest
from billing_workspaces import synthetic_usage
from package_data import DEMO

from rating_engine.rating.rate import compile_plan, load_tariffs, rate_usage
from rating_engine.schemas import SUBSCRIPTION_SCHEMA
from rating_engine.tariff import allowances
from rating_engine.tariff.allowances import AllowanceState


def _subscriptions(n: int) -> pa.Table:
    return pa.Table.from_pylist(
        [{"subscription_id": i, "account_id": i, "key_type": "msisdn",
          "key": str(4915000000000 + i), "tariff_id": "mobile-2026",
          "active_from": datetime(2026, 9, 1, tzinfo=UTC), "active_to": None}
         for i in range(1, n + 1)],
        schema=SUBSCRIPTION_SCHEMA,
    )  # fmt: skip


@pytest.mark.parametrize("threads", [2, 5])
def test_threads_change_nothing(
    threads: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = compile_plan(load_tariffs(DEMO / "tariffs"), cache_dir=tmp_path)
    usage = synthetic_usage(60, 5000, seed=threads)
    subs = _subscriptions(60)
    one_state = AllowanceState()
    monkeypatch.setattr(allowances, "_MIN_PIECE", 1 << 40)
    one = rate_usage(usage, subs, plan, allowances=one_state)
    monkeypatch.setattr(allowances, "_MIN_PIECE", 1)
    monkeypatch.setattr(allowances.numba, "get_num_threads", lambda: threads)
    cuts: list[int] = []
    real = allowances.apply_allowances

    def spy(*args: object, **kwargs: object) -> object:
        cuts.append(len(args[8]))  # type: ignore[arg-type]
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(allowances, "apply_allowances", spy)
    many_state = AllowanceState()
    many = rate_usage(usage, subs, plan, allowances=many_state)
    assert cuts == [threads - 1]  # the records were re-priced in ``threads`` pieces
    assert many.rated.equals(one.rated)
    assert many.allowance_ledger.equals(one.allowance_ledger)
    assert many_state.remaining == one_state.remaining
    assert one.allowance_ledger.num_rows > 100  # allowances were drawn on, and ran out
    assert (one.rated.column("allowance_units").to_numpy() == 0).any()
