"""Compiling tariffs: trie, DST-correct band timelines, exact fractions, disk cache."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from reference_rater import tariff_from_toml

from rating_engine.errors import TariffError
from rating_engine.rating.rate import compile_plan
from rating_engine.tariff.band_timeline import band_timeline
from rating_engine.tariff.model import Tariff
from rating_engine.tariff.plan import RatingPlan

T = """
[tariff]
id = "{id}"
currency = "EUR"
timezone = "{tz}"
version = "v1"
active_from = 2026-01-01T00:00:00

[destinations]
national = ["49"]
mobile = ["4915", "4917"]
special = ["491701"]

[bands.all]
weekdays = [1, 2, 3, 4, 5, 6, 7]

[bands.peak]
weekdays = [1, 2, 3, 4, 5]
start = "02:30"
end = "20:00"
weight = 10

[bands.holiday]
dates = ["*-12-25", "2026-03-29"]
start = "12:00"
weight = 20

[rates.r]
groups = [{{ start = 0, rate = "{rate}", unit = {unit}, increment = 1 }}]

[[pricing]]
service = "voice"
rate = "r"
"""


def make(tz: str = "Europe/Berlin", rate: str = "0.0125", unit: int = 60, id: str = "t") -> Tariff:
    return tariff_from_toml(T.format(tz=tz, rate=rate, unit=unit, id=id))


def walk(plan: RatingPlan, number: str) -> tuple[str | None, str | None]:
    a = plan.arrays
    node = int(a["ver_trie_root"][0])
    found: tuple[str | None, str | None] = (None, None)
    dead = len(a["trie_child"]) - 1  # missing children point at the dead-end row
    for ch in number:
        node = int(a["trie_child"][node, int(ch)])
        if node == dead:
            break
        if a["trie_child"][node, 10] >= 0:
            found = (
                plan.set_names[int(a["ver_set_first"][0] + a["trie_child"][node, 10])],
                plan.prefixes[int(a["trie_child"][node, 11])],
            )
    return found


def test_trie_longest_prefix_wins() -> None:
    plan = compile_plan({"t": make()}, years=(2026, 2026))
    assert walk(plan, "4930123") == ("national", "49")
    assert walk(plan, "4917555") == ("mobile", "4917")
    assert walk(plan, "4917015") == ("special", "491701")
    assert walk(plan, "491") == ("national", "49")
    assert walk(plan, "3312") == (None, None)


def expected_band(t: Tariff, instant: datetime) -> str:
    local = instant.astimezone(ZoneInfo(t.timezone))
    tod = local.hour * 3600 + local.minute * 60 + local.second
    best = None
    for b in t.versions[0].bands:
        on = local.isoweekday() in b.weekdays or any(
            (y is None or y == local.year) and m == local.month and d == local.day
            for y, m, d in b.dates
        )
        if on and b.start <= tod < b.end and (best is None or b.weight > best.weight):
            best = b
    assert best is not None
    return best.name


@pytest.mark.parametrize(
    "tz", ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "UTC"]
)
def test_band_timeline_matches_wall_clock_everywhere(tz: str) -> None:
    t = make(tz)
    bands = t.versions[0].bands
    starts, ids, _ = band_timeline(bands, tz, (2026, 2026))
    assert ids[-1] == -2
    assert np.all(np.diff(starts) > 0)
    rng = random.Random(5)
    instants = [datetime(2026, 3, 29, 0, 59, 59, tzinfo=UTC) + timedelta(seconds=s) for s in (0, 1)]
    instants += [
        datetime(2026, 1, 1, tzinfo=ZoneInfo(tz)) + timedelta(seconds=rng.randrange(365 * 86400))
        for _ in range(1500)
    ]
    for instant in instants:
        us = int(instant.timestamp()) * 1_000_000
        k = int(np.searchsorted(starts, us, side="right")) - 1
        assert bands[ids[k]].name == expected_band(t, instant), instant


def test_dst_spring_forward_starts_band_at_the_jump() -> None:
    # Europe/Berlin 29 March 2026: 02:00 CET -> 03:00 CEST at 01:00 UTC. "peak" starts at
    # 02:30 local, which does not exist that day; on a Sunday that is a holiday anyway,
    # so check Monday 30 March: 02:30 CEST = 00:30 UTC.
    t = make()
    starts, ids, _ = band_timeline(t.versions[0].bands, t.timezone, (2026, 2026))
    names = [t.versions[0].bands[i].name if i >= 0 else "?" for i in ids]
    monday = int(datetime(2026, 3, 30, 0, 30, tzinfo=UTC).timestamp()) * 1_000_000
    k = int(np.searchsorted(starts, monday))
    assert starts[k] == monday
    assert names[k] == "peak"
    # the holiday on Sunday 29 March begins at 12:00 CEST = 10:00 UTC
    sunday = int(datetime(2026, 3, 29, 10, tzinfo=UTC).timestamp()) * 1_000_000
    k = int(np.searchsorted(starts, sunday))
    assert (starts[k], names[k]) == (sunday, "holiday")


def test_exact_fraction_and_common_denominator() -> None:
    plan = compile_plan({"t": make(rate="0.0125", unit=60)}, years=(2026, 2026))
    a = plan.arrays
    # 0.0125 per 60 s = 12_500_000 nano per 60_000 ms = 625/3 nano per ms
    assert (int(a["grp_p"][0]), int(a["grp_q"][0])) == (625, 3)
    assert int(a["ver_Q"][0]) == 3  # voice
    assert int(a["grp_inc"][0]) == 1000  # 1 s increments in ms


def test_too_fine_rates_are_refused_naming_the_field() -> None:
    with pytest.raises(TariffError, match=r"tariff t, version v1, field rates\.r\.groups\[0\]"):
        compile_plan({"t": make(rate="7.123456789", unit=9_999_999_967)}, years=(2026, 2026))


def test_cache_by_content_hash(tmp_path: Path) -> None:
    t = make()
    first = compile_plan({"t": t}, cache_dir=tmp_path, years=(2026, 2026))
    files = list(tmp_path.glob("plan-*.npz"))
    assert len(files) == 1
    again = compile_plan({"t": make()}, cache_dir=tmp_path, years=(2026, 2026))
    assert again.content_hash == first.content_hash
    assert again.band_names == first.band_names
    assert again.prefixes == first.prefixes
    for k, v in first.arrays.items():
        np.testing.assert_array_equal(again.arrays[k], v, err_msg=k)
    # any change to the tariff is a new cache entry
    compile_plan({"t": make(rate="0.0130")}, cache_dir=tmp_path, years=(2026, 2026))
    assert len(list(tmp_path.glob("plan-*.npz"))) == 2
    # a corrupt cache file is recompiled, not trusted
    files[0].write_bytes(b"garbage")
    fresh = compile_plan({"t": make()}, cache_dir=tmp_path, years=(2026, 2026))
    assert fresh.version_names == ["v1"]


def test_several_tariffs_share_one_plan() -> None:
    plan = compile_plan({"b": make(id="b"), "a": make("UTC", id="a")}, years=(2026, 2026))
    assert plan.tariff_ids == ["a", "b"]
    assert plan.tariff_index("b") == 1
    assert plan.tariff_index("zzz") == -1
    with pytest.raises(TariffError, match="keyed"):
        compile_plan({"x": make()})
