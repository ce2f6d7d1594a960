"""`rating-engine tariffs show` and `tariffs validate`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cli_runs import run
from package_data import TARIFFS


@pytest.fixture
def ws(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    root = tmp_path / "ws"
    code, _, err = run(["-w", str(root), "tariffs", "add", str(TARIFFS / "mobile_classic.toml")],
                       capsys)  # fmt: skip
    assert code == 0, err
    return root


def test_show_describes_versions_rates_and_rules(
    ws: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(["-w", str(ws), "--json", "tariffs", "show", "mobile-classic"], capsys)
    assert code == 0
    info = json.loads(out.strip().splitlines()[-1])["tariff"]
    assert info["id"] == "mobile-classic"
    assert info["currency"] == "EUR"
    first = info["versions"][0]
    assert first["active_from"].endswith("+00:00")
    assert {r["service"] for r in first["pricing"]} == {"voice", "sms", "data"}
    # money stays a decimal string, never a float
    assert all(isinstance(r["connect_fee"], str) for r in first["rates"])
    code, out, _ = run(["-w", str(ws), "tariffs", "show", "mobile-classic"], capsys)
    assert code == 0
    assert "pricing" in out
    assert "mobile-classic" in out


def test_show_unknown_tariff_names_those_in_force(
    ws: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(["-w", str(ws), "tariffs", "show", "nope"], capsys)
    assert code == 3
    assert "nope" in err
    assert "mobile-classic" in err


def test_validate_accepts_good_files_and_installs_nothing(
    ws: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "flex.toml"
    shutil.copyfile(TARIFFS / "mobile_flex.toml", good)
    code, out, _ = run(["-w", str(ws), "--json", "tariffs", "validate", str(good)], capsys)
    assert code == 0
    (verdict,) = json.loads(out.strip().splitlines()[-1])["files"]
    assert verdict["error"] is None
    assert verdict["id"] == "mobile-flex"
    assert sorted(p.name for p in (ws / "tariffs").glob("*.toml")) == ["mobile-classic.toml"]


def test_validate_reports_each_bad_file(
    ws: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "flex.toml"
    shutil.copyfile(TARIFFS / "mobile_flex.toml", good)
    broken = tmp_path / "broken.toml"
    broken.write_text(
        (TARIFFS / "mobile_flex.toml").read_text().replace('currency = "EUR"', 'currency = "E"')
    )
    code, out, _ = run(
        ["-w", str(ws), "--json", "tariffs", "validate", str(good), str(broken)], capsys
    )
    assert code == 3
    error = json.loads(out.strip().splitlines()[-1])["error"]
    assert "1 of 2" in error["message"]
    verdicts = {Path(f["file"]).name: f for f in error["details"]["files"]}
    assert verdicts["flex.toml"]["error"] is None
    assert "tariff.currency" in verdicts["broken.toml"]["error"]
    assert "broken.toml" in verdicts["broken.toml"]["error"]


CGRATES = Path(__file__).resolve().parents[2] / "data" / "cgrates"


def test_import_cgrates_then_add_the_tariffs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "imported"
    code, stdout, _ = run(
        ["--json", "tariffs", "import-cgrates", str(CGRATES / "retail"), "--output", str(out),
         "--currency", "GBP", "--category", "sms=data"],
        capsys,
    )  # fmt: skip
    assert code == 0
    report = json.loads(stdout.strip().splitlines()[-1])["import"]
    # category sms mapped to data: RP_SMS prices data (1 ns of CGRateS usage = 1 byte)
    assert {t["id"]: t["services"] for t in report["tariffs"]} == {
        "RP_CAPPED": ["voice"],
        "RP_RETAIL": ["voice"],
        "RP_SMS": ["data"],
        "RP_VOICEMAIL": ["voice"],
    }
    assert any(s["what"] == "Actions.csv" for s in report["skipped"])
    files = sorted(str(p) for p in out.glob("*.toml"))
    ws = tmp_path / "ws"
    code, _, err = run(["-w", str(ws), "tariffs", "validate", *files], capsys)
    assert code == 0, err
    code, _, err = run(["-w", str(ws), "tariffs", "add", *files], capsys)
    assert code == 0, err
    code, stdout, _ = run(["-w", str(ws), "--json", "tariffs", "show", "RP_RETAIL"], capsys)
    info = json.loads(stdout.strip().splitlines()[-1])["tariff"]
    assert info["currency"] == "GBP"
    assert info["band_selection"] == "per-destination"
    # a subscriber tariff (issue #16): its bands show the window of their RatingPlan
    code, stdout, _ = run(["-w", str(ws), "--json", "tariffs", "show", "example.net:1001"], capsys)
    info = json.loads(stdout.strip().splitlines()[-1])["tariff"]
    bands = [b for v in info["versions"] for b in v["bands"]]
    windows = {b["name"]: b["active_from"] for b in bands}
    assert windows["RP_RETAIL.TM_PEAK@1-3"] == "2012-06-01T00:00:00+00:00"  # 1001's own
    assert windows["RP_SMS.*any@2-3"] == "2014-01-01T00:00:00+00:00"  # the *any subject's


def test_import_cgrates_refuses_a_bad_category_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(
        ["tariffs", "import-cgrates", str(CGRATES / "retail"), "-o", str(tmp_path),
         "--category", "sms"],
        capsys,
    )  # fmt: skip
    assert code == 3
    assert "NAME=voice|sms|data" in err
    assert not list(tmp_path.glob("*.toml"))
