"""Global options before and after the command words; flags shown as flags; exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_runs import run

from bss.cli.main import EXIT_CODES, build_cli


@pytest.fixture
def ws(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    root = tmp_path / "ws"
    assert run(["-w", str(root), "customers", "tax", "DE", "USt 19 %", "0.19"], capsys)[0] == 0
    assert run(["-w", str(root), "customers", "add", "C1", "Ada"], capsys)[0] == 0
    assert run(["customers", "account", "A1", "C1", "Ada home", "-w", str(root)], capsys)[0] == 0
    return root


@pytest.mark.parametrize(
    "argv",
    [
        ["--json", "-w", "{ws}", "customers", "list"],
        ["customers", "list", "--json", "-w", "{ws}"],
        ["-w", "{ws}", "customers", "--json", "list"],
        ["customers", "list", "--workspace={ws}", "--json"],
        ["-w", "/nowhere/else", "customers", "list", "--json", "-w", "{ws}"],
    ],
)
def test_global_options_anywhere(
    ws: Path, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run([a.replace("{ws}", str(ws)) for a in argv], capsys)
    assert code == 0
    accounts = json.loads(out.strip().splitlines()[-1])["accounts"]
    assert [a["external_id"] for a in accounts] == ["A1"]


def test_workspace_after_command_beats_environment(
    ws: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "other"
    monkeypatch.setenv("RATING_ENGINE_WORKSPACE", str(other))
    code, out, _ = run(["customers", "list", "--json", "-w", str(ws)], capsys)
    assert code == 0
    assert len(json.loads(out)["accounts"]) == 1
    assert not other.exists()
    # and the environment alone still works
    monkeypatch.setenv("RATING_ENGINE_WORKSPACE", str(ws))
    code, out, _ = run(["--json", "customers", "list"], capsys)
    assert code == 0
    assert len(json.loads(out)["accounts"]) == 1


def test_quiet_after_command(ws: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, loud, _ = run(["-w", str(ws), "customers", "list"], capsys)
    assert code == 0
    assert "A1" in loud
    code, quiet, _ = run(["customers", "list", "-w", str(ws), "-q"], capsys)
    assert code == 0
    assert quiet == ""


def _every_command(command: object, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [path]
    for name, sub in getattr(command, "commands", {}).items():
        out += _every_command(sub, (*path, name))
    return out


@pytest.mark.parametrize("path", _every_command(build_cli()), ids=" ".join)
def test_help_shows_flags_as_flags(
    path: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run([*path, "--help"], capsys)
    assert code == 0
    assert "<bool>" not in out
    for option in ("--workspace", "--json", "--quiet", "--debug"):
        assert option in out, f"{' '.join(path)} --help does not list {option}"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["--version"], capsys)
    assert code == 0
    assert out.startswith("rating-engine ")


def test_completion_is_offered(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["--help"], capsys)
    assert code == 0
    assert "--install-completion" in out


def test_error_under_json_is_one_object(ws: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        ["customers", "account", "A2", "NOPE", "x", "-w", str(ws), "--json"], capsys
    )
    assert code == 3
    assert json.loads(out) == {
        "error": {"code": 3, "kind": "NotFoundError", "message": "unknown customer NOPE"}
    }
    code, out, err = run(["customers", "account", "A2", "NOPE", "x", "-w", str(ws)], capsys)
    assert code == 3
    assert out == ""
    assert err.strip() == "error: unknown customer NOPE"


def test_usage_error_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["bill", "--no-such-option"], capsys)
    assert code == 2
    assert "No such option" in err


def test_exit_codes_documented() -> None:
    doc = (Path(__file__).resolve().parents[3] / "docs" / "cli.md").read_text()
    for code in {c for _, c in EXIT_CODES} | {0, 2, 8, 9, 130}:
        assert f"\n| {code} |" in doc, f"exit code {code} missing from docs/cli.md"
