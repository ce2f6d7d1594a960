"""rating-engine payments / accounts / bills credit: results, refusals (exit 3, nothing
written), idempotence, ageing and dunning with the suspension order."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from receivables_business import billed_workspace, copy_workspace

from bss.cli.main import main


@pytest.fixture(scope="module")
def billed_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return billed_workspace(tmp_path_factory.mktemp("cli-ar") / "ws").database


@pytest.fixture
def ws(billed_db: Path, tmp_path: Path) -> list[str]:
    return ["-w", str(copy_workspace(billed_db, tmp_path / "ws").root)]


def run(argv: list[str], capsys: pytest.CaptureFixture[str], code: int = 0) -> dict[str, Any]:
    with pytest.raises(SystemExit) as done:
        main([*argv, "--json"])  # global options after the subcommand
    out, err = capsys.readouterr()
    assert (done.value.code or 0) == code, out + err
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def balance(ws: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    return run([*ws, "accounts", "balance", "A1"], capsys)


def test_payments_are_recorded_once_and_bad_ones_refused(
    ws: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert balance(ws, capsys)["balance_text"] == "372.00"
    pay = [*ws, "payments", "add", "A1", "100.50", "--date", "2026-11-05", "--reference", "T1"]
    first = run(pay, capsys)
    assert (first["created"], first["amount"], first["balance_text"]) == (True, 10050, "271.50")
    assert run(pay, capsys)["created"] is False  # the same payment again: nothing new
    refused = {
        "another currency": ([*ws, "payments", "add", "A1", "100.50 JPY", "--reference", "T2"],
                             "JPY is not the currency of account A1"),
        "unknown account": ([*ws, "payments", "add", "A9", "1", "--reference", "T3"],
                            "A9"),
        "negative": ([*ws, "payments", "add", "A1", "-5", "--reference", "T4"],
                     "must be positive"),
        "too precise": ([*ws, "payments", "add", "A1", "1.001", "--reference", "T5"],
                        "EUR has 2 decimals"),
        "reference reused": ([*ws, "payments", "add", "A1", "7", "--date", "2026-11-05",
                              "--reference", "T1"], "recorded already for account A1"),
    }  # fmt: skip
    for what, (argv, message) in refused.items():
        error = run(argv, capsys, code=3)["error"]
        assert message in error["message"], what
    after = balance(ws, capsys)
    assert after["balance_text"] == "271.50"
    assert [e["kind"] for e in after["entries"]] == ["bill", "payment"]


def test_credit_notes_never_exceed_the_bill(
    ws: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    bill = "B202610-000001"  # 310.00 + 62.00 TVA = 372.00
    note = run([*ws, "bills", "credit", bill, "--amount", "120.00", "--reason", "outage",
                "--date", "2026-11-06"], capsys)  # fmt: skip
    assert (note["credit_no"], note["amount_excl_tax_text"], note["tax_amount_text"]) == (
        "C202610-000001-1", "100.00", "20.00")  # fmt: skip
    assert note["remaining_text"] == "252.00"
    document = json.loads(Path(note["document"]).read_text())
    assert (document["credit_no"], document["bill_no"], document["amount_incl_tax"]) == (
        "C202610-000001-1", bill, "120.00")  # fmt: skip
    assert document["lines"] == [{"line_no": 1, "bill_line_no": None, "description": "outage",
                                  "amount": "100.00"}]  # fmt: skip
    too_much = run([*ws, "bills", "credit", bill, "--lines", "1", "--reason", "all"], capsys, 3)
    assert "more than what remains of the bill (252.00 EUR" in too_much["error"]["message"]
    for argv in (
        ["--reason", "x"],
        ["--amount", "1", "--lines", "1", "--reason", "x"],
        ["--amount", "1", "--reason", " "],
        ["--lines", "9", "--reason", "x"],
    ):
        run([*ws, "bills", "credit", bill, *argv], capsys, 3)  # fmt: skip
    run([*ws, "bills", "credit", "B209901-000001", "--amount", "1", "--reason", "x"], capsys, 3)
    shown = run([*ws, "bills", "show", "2026-10", "--bill-no", bill], capsys)["bills"][0]
    assert shown["amount_due"].startswith("372.00")  # the bill itself is untouched
    assert balance(ws, capsys)["balance_text"] == "252.00"


def test_ageing_and_dunning_suspend_then_resume(
    ws: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # due 2026-11-15 (14 days after the bill date)
    aged = run([*ws, "accounts", "ageing", "--as-of", "2026-12-20"], capsys)["accounts"]
    a1 = next(a for a in aged if a["account"] == "A1")
    assert a1["buckets_text"] == {"current": "0.00", "1-30": "0.00", "31-60": "372.00",
                                  "61-90": "0.00", "90+": "0.00"}  # fmt: skip
    early = run([*ws, "accounts", "dunning", "--as-of", "2026-11-20"], capsys)["changes"]
    assert {(c["account"], c["to_level"]) for c in early} == {("A1", "reminder"),
                                                              ("A2", "reminder")}  # fmt: skip
    # 372.00 EUR overdue is within a tolerance of 400; 13579 JPY is not
    let_be = run([*ws, "accounts", "dunning", "--as-of", "2026-12-20", "--dry-run",
                  "--tolerance", "400"], capsys)["changes"]  # fmt: skip
    assert [(c["account"], c["to_level"]) for c in let_be] == [("A1", "none"), ("A2", "suspended")]
    run([*ws, "accounts", "dunning", "--tolerance", "-1"], capsys, 3)
    dry = run([*ws, "accounts", "dunning", "--as-of", "2026-12-20", "--dry-run"], capsys)
    assert {c["to_level"] for c in dry["changes"]} == {"suspended"}
    assert all(c["order"] is None for c in dry["changes"])
    done = run([*ws, "accounts", "dunning", "--as-of", "2026-12-20"], capsys)["changes"]
    a1_step = next(c for c in done if c["account"] == "A1")
    assert (a1_step["from_level"], a1_step["to_level"], a1_step["order"]) == (
        "reminder", "suspended", "DUN-A1-2026-12-20")  # fmt: skip
    products = run([*ws, "orders", "products", "--account", "A1"], capsys)["products"]
    assert [p["status"] for p in products] == ["suspended"]
    assert run([*ws, "accounts", "dunning", "--as-of", "2026-12-20"], capsys)["changes"] == []
    run([*ws, "payments", "add", "A1", "372", "--date", "2026-12-21", "--reference", "P"], capsys)
    back = run([*ws, "accounts", "dunning", "--as-of", "2026-12-22"], capsys)["changes"]
    assert [(c["account"], c["to_level"], c["order"]) for c in back] == [
        ("A1", "none", "DUN-A1-2026-12-22-resume")]  # fmt: skip
    products = run([*ws, "orders", "products", "--account", "A1"], capsys)["products"]
    assert [p["status"] for p in products] == ["active"]


def test_adjustments_and_write_offs(ws: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    credit = run([*ws, "accounts", "adjust", "A1", "-2.00", "--reason", "goodwill"], capsys)
    assert (credit["reference"], credit["balance_text"]) == ("ADJ-A1-1", "370.00")
    run([*ws, "accounts", "write-off", "A1", "--amount", "400", "--reason", "x"], capsys, 3)
    gone = run([*ws, "accounts", "write-off", "A1", "--reason", "insolvent"], capsys)
    assert (gone["amount_text"], gone["balance_text"]) == ("-370.00", "0.00")
    run([*ws, "accounts", "adjust", "A1", "1.234", "--reason", "x"], capsys, 3)
    assert balance(ws, capsys)["balance_text"] == "0.00"


def test_a_credit_retried_after_a_failed_document_write_posts_once(
    ws: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    folder = Path(ws[1]) / "reports" / "credit-notes"
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.touch()  # a file where the folder goes: the document cannot be written
    argv = [*ws, "bills", "credit", "B202610-000001", "--amount", "10.00", "--reason", "g",
            "--date", "2026-11-06"]  # fmt: skip
    run(argv, capsys, 8)
    assert balance(ws, capsys)["balance_text"] == "372.00"  # nothing posted
    folder.unlink()
    note = run(argv, capsys)  # "run the same command again" (docs/cli.md, exit 8)
    assert note["credit_no"] == "C202610-000001-1"
    assert json.loads(Path(note["document"]).read_text())["amount_incl_tax"] == "10.00"
    assert balance(ws, capsys)["balance_text"] == "362.00"


def test_an_amount_takes_one_sign_at_most(
    ws: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    for text in ("+-5.00", "--5.00", "-+5", "++5", "5-"):
        error = run([*ws, "accounts", "adjust", "A1", text, "--reason", "x"], capsys, 3)["error"]
        assert "is not a decimal number" in error["message"], text
        run([*ws, "accounts", "write-off", "A1", "--amount", text, "--reason", "x"], capsys, 3)
    assert balance(ws, capsys)["balance_text"] == "372.00"  # nothing written
    assert (
        run([*ws, "accounts", "adjust", "A1", "+5.00", "--reason", "fee"], capsys)["amount"] == 500
    )
    assert run([*ws, "accounts", "adjust", "A1", "-2", "--reason", "x"], capsys)["amount"] == -200
    gone = run([*ws, "accounts", "write-off", "A1", "--amount", "+3.00", "--reason", "x"], capsys)
    assert (gone["amount"], gone["balance_text"]) == (-300, "372.00")


def test_dunning_never_goes_back_in_time(ws: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    done = run([*ws, "accounts", "dunning", "--as-of", "2026-12-20"], capsys)["changes"]
    assert {(c["account"], c["to_level"]) for c in done} == {("A1", "suspended"),
                                                             ("A2", "suspended")}  # fmt: skip
    for extra in ([], ["--dry-run"]):
        back = run([*ws, "accounts", "dunning", "--as-of", "2026-11-20", *extra], capsys, 3)
        assert "it ran as of 2026-12-20 already" in back["error"]["message"]
    assert run([*ws, "accounts", "dunning", "--as-of", "2026-12-20"], capsys)["changes"] == []
    products = run([*ws, "orders", "products", "--account", "A1"], capsys)["products"]
    assert [p["status"] for p in products] == ["suspended"]


def test_a_credit_note_cannot_precede_its_bill(
    ws: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [*ws, "bills", "credit", "B202610-000001", "--amount", "1.00", "--reason", "x"]
    early = run([*argv, "--date", "2020-01-01"], capsys, 3)["error"]["message"]
    assert "2020-01-01 is before the bill's date (2026-11-01)" in early
    assert balance(ws, capsys)["balance_text"] == "372.00"
    assert run([*argv, "--date", "2026-11-01"], capsys)["balance_text"] == "371.00"


def test_dunning_suspends_again_on_one_date(
    ws: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Suspended, paid and resumed, then overdue again (a charge dated back), all on one
    date: the second suspension is an order of its own, not a failed run."""
    dun = [*ws, "accounts", "dunning", "--as-of", "2026-12-20"]
    run(dun, capsys)
    run([*ws, "payments", "add", "A1", "372", "--date", "2026-12-20", "--reference", "P"], capsys)
    assert [c["order"] for c in run(dun, capsys)["changes"]] == ["DUN-A1-2026-12-20-resume"]
    run([*ws, "accounts", "adjust", "A1", "5", "--reason", "fee", "--date", "2026-11-01"], capsys)
    again = run(dun, capsys)["changes"]
    assert [(c["to_level"], c["order"]) for c in again] == [("suspended", "DUN-A1-2026-12-20-2")]
    products = run([*ws, "orders", "products", "--account", "A1"], capsys)["products"]
    assert [p["status"] for p in products] == ["suspended"]
