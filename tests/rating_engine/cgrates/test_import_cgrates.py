"""import_cgrates: a CGRateS TariffPlan folder (written for these tests in CGRateS's CSV
format) becomes tariffs, bindings and a report; imported tariffs cost what CGRateS costs."""

from __future__ import annotations

import csv
import json
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cgrates_oracle import cgrates_cost
from reference_rater import reference_rate, subscriptions_table, usage_table

from rating_engine.cgrates import import_cgrates
from rating_engine.cgrates.tariff_plan import read_tariff_plan
from rating_engine.errors import TariffError
from rating_engine.rating.rate import compile_plan, load_tariffs, rate_usage

DATA = Path(__file__).resolve().parents[2] / "data" / "cgrates"
YEARS = (2025, 2027)


@pytest.fixture(scope="module")
def retail(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("retail")
    import_cgrates(DATA / "retail", out)
    return out


def test_writes_a_tariff_per_plan_the_bindings_and_what_it_left_out(tmp_path: Path) -> None:
    report = import_cgrates(DATA / "retail", tmp_path)
    assert [t.id for t in report.tariffs] == ["RP_CAPPED", "RP_RETAIL", "RP_SMS", "RP_VOICEMAIL"]
    assert sorted(p.name for p in tmp_path.glob("RP_*.toml")) == [
        "RP_CAPPED.toml",
        "RP_RETAIL.toml",
        "RP_SMS.toml",
        "RP_VOICEMAIL.toml",
    ]
    # and one per subject (its categories, fallbacks, activations; see test_subscriber_tariffs)
    assert [t.id for t in report.subscriber_tariffs] == [
        "example.net:ANY",
        "example.net:1001",
        "example.net:capped",
        "example.net:voicemail_users",
    ]
    assert {t.id: t.services for t in report.tariffs} == {
        "RP_CAPPED": ("voice",),
        "RP_RETAIL": ("voice",),
        "RP_SMS": ("sms",),
        "RP_VOICEMAIL": ("voice",),
    }
    skipped = {s.what: s.reason for s in report.skipped}
    assert "Actions.csv" in skipped
    assert "Thresholds.csv" in skipped
    # MaxCost *disconnect: charged in full (as CGRateS charges the CDR), said in a warning
    (capped,) = [t for t in report.tariffs if t.id == "RP_CAPPED"]
    assert any("*disconnect" in w for w in capped.warnings)
    assert (
        "warning: DR_UK_CAPPED: MaxCost 2 with *disconnect"
        in (tmp_path / "RP_CAPPED.toml").read_text()
    )
    assert skipped["Destination DST_UK_MOBILE"] == "used by no RatingPlan"
    with (tmp_path / "bindings.csv").open() as f:
        bindings = list(csv.DictReader(f))
    assert [(b["category"], b["subject"], b["tariff_id"]) for b in bindings] == [
        ("call", "*any", "RP_RETAIL"),
        ("call", "1001", "RP_RETAIL"),
        ("sms", "*any", "RP_SMS"),
        ("call", "voicemail_users", "RP_VOICEMAIL"),
        ("call", "capped", "RP_CAPPED"),
    ]
    assert bindings[1]["activation_time"] == "2012-06-01T00:00:00Z"
    assert bindings[1]["fallback_subjects"] == "1002;*any"
    written = json.loads((tmp_path / "import_report.json").read_text())
    assert written["bindings"] == 5
    # a destination that is no number stays as it is written
    voicemail = tomllib.loads((tmp_path / "RP_VOICEMAIL.toml").read_text())
    assert voicemail["destinations"]["DST_VOICEMAIL"] == ["voicemail"]
    assert any("fallback subjects" in n for n in report.notes)
    # the written tariff: CGRateS's timings as bands, its rounding per increment
    doc = tomllib.loads((tmp_path / "RP_RETAIL.toml").read_text())
    assert doc["tariff"]["band_selection"] == "per-destination"
    assert doc["tariff"]["increment_decimals"] == 5
    assert doc["destinations"]["DST_DE_MOBILE"] == ["49151", "49160"]  # '+' dropped
    assert "DST_UK_MOBILE" not in doc["destinations"]  # not in this plan: 447 -> DST_UK
    assert doc["bands"]["TM_NEW_YEAR"] == {
        "months": [1],
        "month_days": [1],
        "start": "00:00:00",
        "weight": 20,
    }


def test_exact_arithmetic_option(tmp_path: Path) -> None:
    import_cgrates(DATA / "retail", tmp_path, rounding_decimals=None)
    doc = tomllib.loads((tmp_path / "RP_RETAIL.toml").read_text())
    assert "increment_decimals" not in doc["tariff"]


def test_older_layouts_and_header_names(tmp_path: Path) -> None:
    # #Tag headers, Rates with rounding columns, DestinationRates without MaxCost,
    # DestinationRateTimings.csv, RatingProfiles with Direction and CdrStatQueueIds
    report = import_cgrates(DATA / "legacy", tmp_path)
    assert [t.id for t in report.tariffs] == ["RETAIL"]
    assert {s.what for s in report.skipped} == {"CdrStats.csv"}
    with (tmp_path / "bindings.csv").open() as f:
        (binding,) = list(csv.DictReader(f))
    # an activation time without an offset is read in the importer's time zone
    assert binding["activation_time"] == "2013-01-06T00:00:00Z"
    assert binding["direction"] == "*out"


def _rate(
    folder: Path, calls: list[tuple[str, datetime, int]], tariff: str = "RP_RETAIL"
) -> list[int | None]:
    tariffs = load_tariffs(folder)
    plan = compile_plan(tariffs, years=YEARS)
    subs = subscriptions_table([{"tariff_id": tariff}])
    usage = usage_table(
        [
            {"start_time": start, "duration_ms": seconds * 1000, "destination": dest}
            for dest, start, seconds in calls
        ]
    )
    result = rate_usage(usage, subs, plan)
    ref = reference_rate(usage, subs, tariffs, years=YEARS)
    costs = {r["record_id"]: r["cost"] for r in result.rated.to_pylist()}
    assert costs == {rid: row["cost"] for rid, row in ref.rated.items()}
    return [costs.get(i + 1) for i in range(len(calls))]


def test_hand_computed_costs(retail: Path) -> None:
    wednesday_10 = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)
    costs = _rate(
        retail,
        [
            # peak mobile, 62 s: 0.15 + 0.12 (first minute), then a timespan of 2 s at
            # 0.07/60: 2 x 0.0011666.. = 0.0023333 -> 0.00233, / 2 = 0.001165 -> 0.00117
            # each: 0.27234 -> *up to 4 decimals: 0.2724
            ("4915112345", wednesday_10, 62),
            # a UK mobile number: DST_UK_MOBILE has no rates in RP_RETAIL, so the shorter
            # prefix 44 (DST_UK) prices it: 0.1 + 13 x 6 s at 0.25/60 (0.025 each) = 0.425
            # -> *down to 2 decimals: 0.42
            ("447700900123", wednesday_10, 73),
            # New Year's Day: the heavier timing (weight 20) makes mobile calls free
            ("4915112345", datetime(2026, 1, 1, 10, 0, tzinfo=UTC), 300),
            # 40 min to a German landline: 2400 x 0.019/60 = 0.76, MaxCost 0.5 *free
            ("4930123456", wednesday_10, 2400),
        ],
    )
    assert costs == [272_400, 420_000, 0, 500_000]


def test_imported_costs_are_cgrates_costs(retail: Path) -> None:
    """A grid of calls - every destination kind, peak/off-peak edges, midnight, New Year,
    1 s to 6.5 min - rated by the imported tariff and by the CGRateS oracle (its Go
    arithmetic in binary floats): identical to the micro-unit."""
    tp = read_tariff_plan(DATA / "retail")
    starts = [
        datetime(2026, 3, 4, 10, 0, tzinfo=UTC),  # Wednesday peak
        datetime(2026, 3, 4, 7, 59, 30, tzinfo=UTC),  # into peak
        datetime(2026, 3, 4, 18, 59, 45, tzinfo=UTC),  # out of peak
        datetime(2026, 3, 6, 23, 59, 50, tzinfo=UTC),  # Friday into Saturday
        datetime(2026, 3, 7, 12, 0, tzinfo=UTC),  # weekend
        datetime(2025, 12, 31, 23, 59, 30, tzinfo=UTC),  # into New Year
    ]
    destinations = [
        "4915112345",
        "4916099",
        "4930123456",
        "442079460000",
        "447700900",
        "3312",
        "3912",
    ]
    durations = [0, 1, 2, 29, 30, 31, 59, 60, 61, 62, 89, 121, 187, 299, 391]
    calls = [(d, s, n) for d in destinations for s in starts for n in durations]
    ours = _rate(retail, calls)
    theirs = [cgrates_cost(tp, "RP_RETAIL", d, s, n, "UTC") for d, s, n in calls]
    expected = [None if c is None else round(c * 1_000_000) for c in theirs]
    mismatches = [
        (calls[i], ours[i], expected[i]) for i in range(len(calls)) if ours[i] != expected[i]
    ]
    assert not mismatches, mismatches[:10]


def test_errors_name_file_line_and_field(tmp_path: Path) -> None:
    tp = tmp_path / "tp"
    tp.mkdir()
    for f in (DATA / "legacy").iterdir():
        (tp / f.name).write_text(f.read_text())
    rates = tp / "Rates.csv"
    rates.write_text(rates.read_text().replace("60s,10s", "60s,10x"))
    with pytest.raises(TariffError, match="not a duration") as err:
        import_cgrates(tp, tmp_path / "out")
    assert f"file {rates}, line 3, field rate_increment" in str(err.value)
    rates.write_text(rates.read_text().replace("60s,10x", "60s,10s"))
    plans = tp / "DestinationRateTimings.csv"
    plans.write_text(plans.read_text().replace("DR_MOBILE,", "DR_NOPE,"))
    with pytest.raises(TariffError, match="unknown DestinationRates id 'DR_NOPE'") as err:
        import_cgrates(tp, tmp_path / "out")
    assert "line 3, field destination_rates_id" in str(err.value)
    (tp / "Timings.csv").write_text("ALWAYS,*any,*any,*any,00:00:00\n")
    with pytest.raises(TariffError, match="5 columns, expected 6") as err:
        import_cgrates(tp, tmp_path / "out")
    assert "line 1" in str(err.value)


def test_max_cost_disconnect_and_debits(tmp_path: Path) -> None:
    """*disconnect: CGRateS's GetCost (and a postpaid debit) charge the call in full, the
    strategy only ends live calls; ``debit=True`` prices the increments' sum unrounded."""
    tp = read_tariff_plan(DATA / "retail")
    wednesday = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)
    calls = [("447700900", wednesday, n) for n in (0, 5, 61, 479, 600, 1203)]
    import_cgrates(DATA / "retail", tmp_path / "cost")
    # 1203 s: 0.1 + 201 x 0.025 = 5.125 -> *up 5.125, beyond MaxCost 2 and not capped
    capped = _rate(tmp_path / "cost", calls, "RP_CAPPED")
    theirs = [cgrates_cost(tp, "RP_CAPPED", d, s, n, "UTC") for d, s, n in calls]
    assert capped == [None if c is None else round(c * 1_000_000) for c in theirs]
    assert capped[-1] == 5_125_000
    report = import_cgrates(DATA / "retail", tmp_path / "debit", debit=True)
    # RP_RETAIL caps with *free, which debits cannot say: not imported, and said why
    skipped = {s.what: s.reason for s in report.skipped}
    assert "*free when pricing debits" in skipped["RatingPlan RP_RETAIL"]
    # debits of a German landline in RP_BASIC (0.05 + 0.02 a minute by the second): 61 s
    # is 0.05 + 61 x round(round(61 x 0.000333.., 5) / 61, 5) = 0.05 + 61 x 0.00033 =
    # 0.07013 debited, where GetCost reports it *up to 4 decimals: 0.0702
    subjects = read_tariff_plan(DATA / "subjects")
    import_cgrates(DATA / "subjects", tmp_path / "s_cost")
    import_cgrates(DATA / "subjects", tmp_path / "s_debit", debit=True)
    calls = [("4930123456", wednesday, n) for n in (0, 1, 40, 61, 95, 187)]
    for folder, debit in (("s_cost", False), ("s_debit", True)):
        ours = _rate(tmp_path / folder, calls, "RP_BASIC")
        theirs = [
            cgrates_cost(subjects, "RP_BASIC", d, s, n, "UTC", debit=debit) for d, s, n in calls
        ]
        assert ours == [None if c is None else round(c * 1_000_000) for c in theirs]
        assert ours[3] == (70_130 if debit else 70_200)
