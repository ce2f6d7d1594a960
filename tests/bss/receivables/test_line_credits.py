"""Credit notes by bill line (review findings 3 and 4 of issue #23): a discounted charge
is credited net of its discount, and the tax of credited lines follows the bill's
rounding policy, so crediting every line gives back exactly the bill's amount due."""

from __future__ import annotations

import shutil
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from package_data import DEMO
from receivables_business import BUSINESS, NOW, copy_workspace

from bss.billing.run import run_billing
from bss.db import connect
from bss.errors import ValidationError
from bss.invoice.settings import InvoiceSettings, put_settings
from bss.receivables.credit_notes import credit_bill, credited_on
from bss.seed import apply_seed
from collectors.workspace import WorkspacePaths

SINCE = datetime(2026, 1, 1, tzinfo=UTC)

# A1 also buys a 59.00 fee with a 10 % discount and two 0.03 tokens (tax per line:
# 0.006 -> 0.01 each, where the tax of their sum, 0.012, is 0.01)
EXTRA = """
[[offering]]
id = "promo"
specification = "link"
name = "Promo"
valid_from = "2026-01-01T00:00:00Z"

[[offering.price]]
id = "promo-monthly"
name = "monthly fee"
type = "recurring"
amount = "59.00"
currency = "EUR"

[[offering.price]]
id = "promo-discount"
name = "discount 10 %"
type = "discount"
percentage = "0.10"

[[offering]]
id = "token"
specification = "link"
name = "Token"
valid_from = "2026-01-01T00:00:00Z"

[[offering.price]]
id = "token-monthly"
name = "token fee"
type = "recurring"
amount = "0.03"
currency = "EUR"

[[order]]
id = "O3"
account = "A1"
requested_start = "2026-10-01T00:00:00Z"
item = [ { offering = "promo", service_ids = [] }, { offering = "token", service_ids = [] },
         { offering = "token", service_ids = [] } ]
"""


def _billed(folder: Path, policy: InvoiceSettings) -> Path:
    workspace = WorkspacePaths(folder).ensure()
    shutil.copytree(DEMO / "tariffs", workspace.tariffs, dirs_exist_ok=True)
    conn = connect(workspace)
    try:
        seed = tomllib.loads(BUSINESS)
        extra = tomllib.loads(EXTRA)
        for key in ("offering", "order"):
            seed[key] = seed[key] + extra[key]
        apply_seed(conn, seed, "business.toml")
        put_settings(conn, policy)
        run_billing(conn, workspace, "2026-10", now=NOW, export=False)
    finally:
        conn.close()
    return workspace.database


@pytest.fixture(scope="module")
def line_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Billed with tax per line (half-even)."""
    return _billed(tmp_path_factory.mktemp("lines") / "ws",
                   InvoiceSettings(SINCE, "Seller SA", tax_basis="line"))  # fmt: skip


@pytest.fixture
def lines(line_db: Path, tmp_path: Path) -> duckdb.DuckDBPyConnection:
    conn = connect(copy_workspace(line_db, tmp_path / "ws"))
    yield conn
    conn.close()


def _lines(conn: duckdb.DuckDBPyConnection) -> dict[str, list[int]]:
    """Description -> line numbers of A1's bill (363.16 + 72.64 tax per line = 435.80)."""
    found: dict[str, list[int]] = {}
    for n, text in conn.execute(
        "SELECT line_no, description FROM bill_line "
        "WHERE bill_no = 'B202610-000001' ORDER BY line_no"
    ).fetchall():
        found.setdefault(text, []).append(n)  # fmt: skip
    return found


def test_a_discounted_charge_is_credited_net(lines: duckdb.DuckDBPyConnection) -> None:
    found = _lines(lines)
    (fee,), (discount,) = found["Promo: monthly fee"], found["Promo: discount 10 %"]
    note = credit_bill(lines, "B202610-000001", reason="x", issue_date=NOW.date(), lines=[fee])
    assert (note.amount_excl_tax, note.tax_amount) == (5310, 1062)  # 59.00 - 5.90, + 20 %
    assert note.lines[0][1] == f"Promo: monthly fee (net of line {discount})"
    with pytest.raises(ValidationError, match="credited already with its product's charge"):
        credit_bill(lines, "B202610-000001", reason="x", issue_date=NOW.date(), lines=[discount])
    # a charge without discount is credited at its price
    rest = credit_bill(lines, "B202610-000001", reason="x", issue_date=NOW.date(), lines=[1])
    assert rest.amount_excl_tax == 31000


@settings(max_examples=25, deadline=None)
@given(st.permutations([1, 2, 4, 5]), st.lists(st.booleans(), min_size=3, max_size=3))
def test_crediting_every_line_gives_back_the_amount_due(
    line_db: Path, tmp_path_factory: pytest.TempPathFactory, order: list[int], cuts: list[bool]
) -> None:
    """Under tax per line (72.64 where the tax of the sum is 72.63), in any grouping of
    the lines into credit notes and any order, the notes add up to the bill."""
    conn = connect(copy_workspace(line_db, tmp_path_factory.mktemp("all")))
    try:
        notes: list[list[int]] = [[order[0]]]
        for n, cut in zip(order[1:], cuts, strict=True):
            notes[-1:] = [notes[-1], [n]] if cut else [[*notes[-1], n]]
        for named in notes:
            note = credit_bill(conn, "B202610-000001", reason="x", issue_date=NOW.date(),
                               lines=named)  # fmt: skip
            assert note.tax_amount >= 0
        assert note.remaining == 0
        assert credited_on(conn, "B202610-000001") == 43580  # the amount due, 435.80
    finally:
        conn.close()


def test_line_credits_round_half_up_as_the_bill_did(tmp_path: Path) -> None:
    """A2's 12345 JPY at 10 %: 1234.5 yen of tax, 1235 half-up (1234 half-even); its
    credit note gives back the whole 13580."""
    db = _billed(tmp_path / "up", InvoiceSettings(SINCE, "Seller SA", rounding="half-up"))
    conn = connect(copy_workspace(db, tmp_path / "ws"))
    try:
        note = credit_bill(conn, "B202610-000002", reason="x", issue_date=NOW.date(), lines=[1])
        assert (note.amount_excl_tax, note.tax_amount, note.remaining) == (12345, 1235, 0)
    finally:
        conn.close()
