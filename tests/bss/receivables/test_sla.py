"""SLA credits: outage from alarms and tickets, merged and clipped, becomes a credit line."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime
from itertools import pairwise

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from receivables_business import NOW

from bss.assurance.alarms import clear_alarm, raise_alarm
from bss.assurance.tickets import open_ticket, transition_ticket
from bss.billing.export import bills_for_period
from bss.billing.period import parse_period
from bss.billing.run import run_billing
from bss.errors import ValidationError
from bss.receivables.sla_credits import merge_intervals, product_outages
from bss.receivables.sla_terms import get_sla, set_sla
from bss.seed import apply_seed
from collectors.workspace import WorkspacePaths


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 60), st.integers(0, 60)), max_size=8))
def test_merged_intervals_cover_exactly_the_union(spans: list[tuple[int, int]]) -> None:
    merged = merge_intervals(spans)
    covered = {t for lo, hi in spans for t in range(lo, hi)}
    assert {t for lo, hi in merged for t in range(lo, hi)} == covered
    assert all(a[1] < b[0] for a, b in pairwise(merged))  # disjoint, apart
    assert sum(hi - lo for lo, hi in merged) == len(covered)


def _outage(conn: duckdb.DuckDBPyConnection, obj: str, start: datetime, end: datetime,
            affecting: bool = True) -> int:  # fmt: skip
    alarm = raise_alarm(conn, obj, "communicationsAlarm", "lossOfSignal", "link down",
                        "major", at=start, service_affecting=affecting)  # fmt: skip
    clear_alarm(conn, alarm.id, at=end)
    return alarm.id


def _sla_lines(conn: duckdb.DuckDBPyConnection) -> list[dict[str, object]]:
    (bill,) = [b for b in bills_for_period(conn, "2026-11") if b["account"] == "A1"]
    return [ln for ln in bill["lines"] if str(ln["description"]).startswith("SLA credit")]


def test_an_hour_down_credits_ten_percent(
    billed: duckdb.DuckDBPyConnection, billed_ws: WorkspacePaths
) -> None:
    _outage(billed, "subscription:1", at(3, 10), at(3, 11))
    _outage(billed, "subscription:1", at(5, 10), at(5, 18), affecting=False)  # not an outage
    _outage(billed, "subscription:2", at(6, 10), at(6, 18))  # another product (A2, no SLA)
    _outage(billed, "subscription:1", datetime(2026, 10, 31, 23, 30, tzinfo=UTC), at(1, 0, 0))
    first = run_billing(billed, billed_ws, "2026-11", now=NOW, export=False)
    (line,) = _sla_lines(billed)
    # 60 of 43,200 minutes: 99.861 % < 99.9 % -> 10 % of 310.00
    assert line["description"] == ("SLA credit Link 100: availability 99.861 % below 99.9 % "
                                   "(outage 60 min), 10 % of the recurring fee")  # fmt: skip
    assert (line["line_type"], line["quantity"], line["unit"]) == ("credit", 60, "min")
    assert line["amount"].startswith("-31.00")  # type: ignore[union-attr]
    # issued: a later alarm in the period changes neither the bill nor the digest
    _outage(billed, "subscription:1", at(9, 0), at(9, 12))
    again = run_billing(billed, billed_ws, "2026-11", now=NOW, export=False)
    assert (again.changed, again.bills_sha256) == (False, first.bills_sha256)
    assert _sla_lines(billed) == [line]


def test_alarms_and_tickets_merge_into_one_outage(
    billed: duckdb.DuckDBPyConnection, billed_ws: WorkspacePaths
) -> None:
    _outage(billed, "subscription:1", at(3, 10), at(3, 11))
    # an exporter alarm assurance tied to the customer, overlapping by half an hour
    exporter = _outage(billed, "exporter:192.0.2.1", at(3, 10, 30), at(3, 11, 30))
    open_ticket(billed, "exporter down", severity="major", alarm_ids=[exporter],
                customer_ids=[1], at=at(3, 10, 31))  # fmt: skip
    # a ticket without alarms: from its creation to its resolution (8 h)
    manual = open_ticket(billed, "no service", severity="major", customer_ids=[1],
                         at=at(20, 0))  # fmt: skip
    transition_ticket(billed, manual.id, "inProgress", at=at(20, 1))
    transition_ticket(billed, manual.id, "resolved", at=at(20, 8))
    cancelled = open_ticket(billed, "false alarm", severity="minor", customer_ids=[1],
                            at=at(22, 0))  # fmt: skip
    transition_ticket(billed, cancelled.id, "cancelled", at=at(22, 1))
    (outage,) = [o for o in product_outages(billed, parse_period("2026-11"))
                 if o.product_id == 1]  # fmt: skip
    assert outage.outage_minutes == 90 + 480
    run_billing(billed, billed_ws, "2026-11", now=NOW, export=False)
    (line,) = _sla_lines(billed)
    assert "availability 98.680 % below 99 % (outage 570 min), 25 %" in str(line["description"])
    assert line["amount"].startswith("-77.50")  # type: ignore[union-attr]


def test_sla_terms_are_checked_and_set_once(billed: duckdb.DuckDBPyConnection) -> None:
    sla = get_sla(billed, "link-100")
    assert sla is not None
    assert str(sla.availability) == "99.900000"
    tiers = [{"below": "99.9", "credit": "10"}, {"below": "99", "credit": "25"}]
    assert set_sla(billed, "link-100", "99.9", tiers) is False  # the same: nothing to do
    with pytest.raises(ValidationError, match="another SLA"):
        set_sla(billed, "link-100", "99.95", tiers)
    with pytest.raises(ValidationError, match="smaller credit"):
        set_sla(billed, "link-jp", "99.9", [{"below": "99.9", "credit": "25"},
                                            {"below": "99", "credit": "10"}])  # fmt: skip
    with pytest.raises(ValidationError, match="above the target"):
        set_sla(billed, "link-jp", "99", [{"below": "99.9", "credit": "10"}])
    with pytest.raises(ValidationError, match="percentages as strings"):
        set_sla(billed, "link-jp", 99.9, [{"below": "99", "credit": "10"}])
    bad = tomllib.loads('[[offering]]\nid = "x"\nspecification = "link"\nname = "X"\n'
                        'valid_from = "2026-01-01T00:00:00Z"\nsla = { availability = "101", '
                        'credits = [] }\n')  # fmt: skip
    with pytest.raises(ValidationError, match=r"offering\[0\]\.sla\.availability"):
        apply_seed(billed, bad, "bad.toml")
    assert get_sla(billed, "x") is None
