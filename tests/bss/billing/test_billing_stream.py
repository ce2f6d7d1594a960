"""A streamed billing run gives the same bills however the work is cut.

The reference is the run that rates the whole period in one call and one partition (what
billing did before it streamed): cutting the usage into chunks of whole days, and into
account buckets split through scratch files, must change no bill, no rated record and no
count - in particular not which calls an allowance covered.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from billing_workspaces import demo_prebill, synthetic_workspace

from bss.billing.export import bills_sha256
from bss.billing.run import BillingRunResult, rate_unbilled, run_billing
from bss.db import connect
from bss.errors import BillingError
from collectors.dataset import dataset_files, read_dataset, write_partitioned
from collectors.schemas import USAGE_SCHEMA
from collectors.workspace import WorkspacePaths
from rating_engine.schemas import RATED_SCHEMA, decode_labels

NOW = datetime(2027, 3, 1, tzinfo=UTC)
WHOLE = {"chunk_rows": 1 << 40, "buckets": 1}
CUTS = [
    {"chunk_rows": 1, "buckets": 1},  # one day a call
    {"chunk_rows": 900, "buckets": 3},  # a few days a call, account buckets through scratch
    {"chunk_rows": 1, "buckets": 7},
]


def _rated(ws: WorkspacePaths) -> pa.Table:
    return decode_labels(read_dataset(ws.rated, RATED_SCHEMA)).sort_by("record_id")


def _bill(ws: WorkspacePaths, period: str = "2026-10", **cut: int) -> BillingRunResult:
    conn = connect(ws)
    try:
        return run_billing(conn, ws, period, now=NOW, export=False, **cut)
    finally:
        conn.close()


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("stream")
    return {
        "synthetic": synthetic_workspace(root / "synthetic", records=4000).root,
        "demo": demo_prebill(root / "demo").root,
    }


@pytest.fixture
def copy_of(tmp_path: Path, templates: dict[str, Path]) -> Callable[[str, str], WorkspacePaths]:
    def make(name: str, label: str) -> WorkspacePaths:
        target = tmp_path / label
        shutil.copytree(templates[name], target)
        return WorkspacePaths(target)

    return make


@pytest.fixture(scope="module")
def whole(tmp_path_factory: pytest.TempPathFactory, templates: dict[str, Path]) -> dict[str, tuple]:
    out = {}
    for name, path in templates.items():
        ws = WorkspacePaths(tmp_path_factory.mktemp("whole") / name)
        shutil.copytree(path, ws.root)
        out[name] = (_bill(ws, **WHOLE), _rated(ws))
    return out


@pytest.mark.parametrize(
    ("name", "cut"),
    [("synthetic", c) for c in CUTS] + [("demo", {"chunk_rows": 1, "buckets": 3})],
    ids=lambda v: v if isinstance(v, str) else f"chunk{v['chunk_rows']}-b{v['buckets']}",
)
def test_cutting_the_work_changes_nothing(
    name: str, cut: dict[str, int], whole: dict[str, tuple], copy_of: Callable
) -> None:
    reference, reference_rated = whole[name]
    ws = copy_of(name, "cut")
    result = _bill(ws, **cut)
    assert result.bills_sha256 == reference.bills_sha256
    assert (result.accounts, result.rated, result.suspense, result.suspense_by_reason) == (
        reference.accounts, reference.rated, reference.suspense, reference.suspense_by_reason,
    )  # fmt: skip
    assert _rated(ws).equals(reference_rated)
    names = [p.name for p in dataset_files(ws.rated)]
    if cut["buckets"] == 1:
        assert set(names) == {"part-run-2026-10.parquet"}
    else:  # one part per bucket and day, never two of one
        assert all(n.startswith("part-run-2026-10-b") for n in names)
    assert len({str(p) for p in dataset_files(ws.rated)}) == len(names)
    assert not (ws.state / "billing").exists() or not any((ws.state / "billing").iterdir())


def test_allowances_ran_out_mid_month(whole: dict[str, tuple]) -> None:
    """The synthetic month exercises the order: some calls free, later ones paid."""
    _, rated = whole["synthetic"]
    voice = rated.filter(pc.equal(rated.column("service"), "voice"))
    used = voice.column("allowance_units").to_numpy()
    assert (used > 0).any()
    assert ((used == 0) & (voice.column("cost").to_numpy() > 0)).any()


def test_late_records_and_a_second_period(copy_of: Callable) -> None:
    """Usage arriving after October was billed goes on November's bill, whatever the cut;
    October's bills stay as they were."""
    results = []
    for label, cut in (("a", WHOLE), ("b", CUTS[2])):
        ws = copy_of("synthetic", label)
        october = _bill(ws, **cut)
        late = read_dataset(ws.usage, USAGE_SCHEMA).slice(0, 40)
        late = late.set_column(0, "record_id", pa.array(range(10**12, 10**12 + 40), pa.int64()))
        write_partitioned(late, ws.usage, time_column="start_time", part_name="late")
        november = _bill(ws, "2026-11", **cut)
        conn = connect(ws)
        try:
            assert bills_sha256(conn, "2026-10") == october.bills_sha256
            late_lines = conn.execute(
                "SELECT count(*) FROM bill_line l JOIN bill b USING (bill_no) "
                "WHERE b.period = '2026-11' AND l.description LIKE '%earlier periods%'"
            ).fetchall()[0][0]
        finally:
            conn.close()
        assert late_lines > 0
        results.append((october.bills_sha256, november.bills_sha256, november.rated))
    assert results[0] == results[1]


def test_corrected_tariff_rerated_the_same_however_cut(copy_of: Callable) -> None:
    outcomes = []
    for label, cut in (("a", WHOLE), ("b", {"chunk_rows": 300, "buckets": 2})):
        ws = copy_of("synthetic", label)
        _bill(ws, **cut)
        tariff = ws.tariffs / "mobile-2026.toml"
        tariff.write_text(tariff.read_text().replace('max_cost = "15.00"', 'max_cost = "2.00"'))
        november = _bill(ws, "2026-11", **cut)
        assert november.adjusted_records > 0
        conn = connect(ws)
        try:
            deltas = conn.execute(
                "SELECT record_id, account_id, billed_period, adjusted_in, delta "
                "FROM usage_adjustment ORDER BY record_id"
            ).fetchall()
        finally:
            conn.close()
        outcomes.append((november.bills_sha256, november.adjusted_records, deltas))
    assert outcomes[0] == outcomes[1]


def test_rate_alone_then_bill(copy_of: Callable, whole: dict[str, tuple]) -> None:
    """``rate`` writes the parts the run would, the run replaces them; a billed period is
    not rated again (its parts are what its bills rest on)."""
    ws = copy_of("synthetic", "rate")
    conn = connect(ws)
    try:
        outcome = rate_unbilled(conn, ws, "2026-10", chunk_rows=500)
    finally:
        conn.close()
    reference, reference_rated = whole["synthetic"]
    assert outcome.rated == reference.rated
    assert _rated(ws).equals(reference_rated)
    assert _bill(ws).bills_sha256 == reference.bills_sha256
    assert _rated(ws).equals(reference_rated)
    conn = connect(ws)
    try:
        with pytest.raises(BillingError, match="is billed"):
            rate_unbilled(conn, ws, "2026-10")
    finally:
        conn.close()


def test_a_record_twice_is_refused_before_anything_is_billed(copy_of: Callable) -> None:
    ws = copy_of("synthetic", "twice")
    usage = read_dataset(ws.usage, USAGE_SCHEMA)
    # the same record copied into another file (and so into another rating chunk)
    write_partitioned(usage.slice(usage.num_rows - 1), ws.usage, time_column="start_time",
                      part_name="copy")  # fmt: skip
    with pytest.raises(BillingError, match="repeat a record_id"):
        _bill(ws, chunk_rows=1, buckets=2)
    conn = connect(ws)
    try:
        assert conn.execute("SELECT count(*) FROM bill").fetchall() == [(0,)]
        assert conn.execute("SELECT count(*) FROM billed_usage").fetchall() == [(0,)]
    finally:
        conn.close()
