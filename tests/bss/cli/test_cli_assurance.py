from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from bss.assurance.alarms import raise_alarm
from bss.cli.assurance import register_assurance
from bss.cli.support import CliState
from bss.db import connect
from bss.errors import BssError, IllegalTransitionError, ValidationError
from collectors.workspace import WorkspacePaths


def _app() -> typer.Typer:
    app = typer.Typer()
    register_assurance(app)
    return app


def _run(ws: WorkspacePaths, *args: str) -> dict[str, Any]:
    result = CliRunner().invoke(_app(), list(args), obj=CliState(workspace_arg=ws.root, json=True))
    if result.exception is not None:
        raise result.exception
    assert result.exit_code == 0, result.output
    out: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return out


def test_alarm_and_ticket_commands(workspace: WorkspacePaths) -> None:
    conn = connect(workspace)
    alarm = raise_alarm(conn, "exporter:192.0.2.1", "communicationsAlarm", "lossOfSignal",
                        "exporter_silent/silent_minutes", "major")  # fmt: skip
    conn.close()
    listed = _run(workspace, "alarms", "list")
    assert [a["id"] for a in listed["alarms"]] == [alarm.id]
    assert _run(workspace, "alarms", "ack", str(alarm.id), "--user", "anna")["ack_user"] == "anna"
    assert (
        _run(workspace, "alarms", "comment", str(alarm.id), "on it", "--author", "anna")[
            "comment_no"
        ]
        == 1
    )
    shown = _run(workspace, "alarms", "show", str(alarm.id))
    assert [c["text"] for c in shown["comments"]] == ["on it"]
    assert [h[2] for h in shown["history"]] == ["raised", "acknowledged"]
    assert _run(workspace, "alarms", "clear", str(alarm.id))["state"] == "cleared"
    assert _run(workspace, "alarms", "list")["alarms"] == []
    assert len(_run(workspace, "alarms", "list", "--all")["alarms"]) == 1
    with pytest.raises(IllegalTransitionError):
        _run(workspace, "alarms", "clear", str(alarm.id))

    ticket = _run(workspace, "tickets", "open", "fibre cut", "--severity", "major",
                  "--alarm", str(alarm.id))  # fmt: skip
    assert (ticket["status"], ticket["alarm_ids"]) == ("acknowledged", [alarm.id])
    tid = str(ticket["id"])
    assert _run(workspace, "tickets", "transition", tid, "inProgress")["status"] == "inProgress"
    with pytest.raises(IllegalTransitionError):
        _run(workspace, "tickets", "transition", tid, "closed")
    _run(workspace, "tickets", "comment", tid, "splicing", "--author", "field")
    shown_t = _run(workspace, "tickets", "show", tid)
    assert [n["text"] for n in shown_t["notes"]] == ["splicing"]
    assert [t["id"] for t in _run(workspace, "tickets", "list")["tickets"]] == [ticket["id"]]


def test_detect_on_empty_workspace_and_speeds(workspace: WorkspacePaths, tmp_path: Path) -> None:
    out = _run(workspace, "alarms", "detect", "--window-end", "2026-03-23T12:00:00")
    assert (out["flows_read"], out["detections"]) == (0, {})
    speeds = tmp_path / "speeds.csv"
    speeds.write_text("exporter,if_index,speed_bps\n192.0.2.1,3,1000000000\n")
    out = _run(workspace, "alarms", "detect", "--window-end", "2026-03-23T12:00:00Z",
               "--speeds", str(speeds))  # fmt: skip
    assert out["alarms"]["raised"] == []
    speeds.write_text("exporter,if_index\n192.0.2.1,3\n")
    with pytest.raises(ValidationError, match="speeds"):
        _run(workspace, "alarms", "detect", "--window-end", "2026-03-23T12:00:00",
             "--speeds", str(speeds))  # fmt: skip
    with pytest.raises(ValidationError, match="ISO 8601"):
        _run(workspace, "alarms", "detect", "--window-end", "yesterday")
    for silence in ("nan", "inf", "0", "-5"):  # a message, not a ValueError from deep inside
        with pytest.raises(ValidationError, match="silence_minutes must be a positive"):
            _run(workspace, "alarms", "detect", "--window-end", "2026-03-23T12:00:00",
                 "--silence-minutes", silence)  # fmt: skip


def test_read_commands_refuse_a_database_without_assurance(workspace: WorkspacePaths) -> None:
    conn = connect(workspace)
    conn.execute("DELETE FROM schema_migrations WHERE version >= 2")  # as if made before 0002
    conn.close()
    with pytest.raises(BssError, match="predates"):
        _run(workspace, "alarms", "list")
    with pytest.raises(BssError, match="predates"):
        _run(workspace, "tickets", "list")
