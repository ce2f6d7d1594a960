from __future__ import annotations

from datetime import UTC, datetime, timedelta

import duckdb
import pyarrow as pa
import pytest

from bss.assurance.alarms import (
    AlarmPolicy,
    acknowledge_alarm,
    alarm_comments,
    apply_detections,
    clear_alarm,
    comment_alarm,
    get_alarm,
    list_alarms,
    raise_alarm,
    unacknowledge_alarm,
)
from bss.db import schema_version
from bss.errors import IllegalTransitionError, NotFoundError, ValidationError
from rating_engine.traffic.detections import DETECTION_SCHEMA

T = datetime(2026, 3, 23, 12, 0, tzinfo=UTC)
KEY = ("exporter:192.0.2.1", "communicationsAlarm", "lossOfSignal", "exporter_silent/x")


def _history(conn: duckdb.DuckDBPyConnection, entity: str, eid: int) -> list[tuple[str, str]]:
    return conn.execute(
        "SELECT coalesce(from_state, ''), to_state FROM state_history "
        "WHERE entity = ? AND entity_id = ? ORDER BY id",
        [entity, str(eid)],
    ).fetchall()


def _detections(rows: list[tuple[str, str, str, str]], at: datetime) -> pa.Table:
    """(object, kind, metric, severity) rows ending at ``at``."""
    n = len(rows)
    return pa.table(
        {
            "object": [r[0] for r in rows],
            "kind": [r[1] for r in rows],
            "metric": [r[2] for r in rows],
            "observed": [10.0] * n,
            "threshold": [5.0] * n,
            "baseline": pa.nulls(n, pa.float64()),
            "direction": ["above"] * n,
            "window_start": [at - timedelta(minutes=5)] * n,
            "window_end": [at] * n,
            "severity": [r[3] for r in rows],
            "detail": ["d"] * n,
        },
        schema=DETECTION_SCHEMA,
    )


def test_migration_2_applied(conn: duckdb.DuckDBPyConnection) -> None:
    assert schema_version(conn) >= 2
    with pytest.raises(duckdb.ConstraintException):
        conn.execute(
            "INSERT INTO alarm (alarmed_object, alarm_type, probable_cause, perceived_severity, "
            "state, raised_time, changed_time) VALUES ('x', 'badType', 'congestion', 'major', "
            "'raised', now(), now())"
        )
    with pytest.raises(duckdb.ConstraintException):  # cleared state needs cleared severity
        conn.execute(
            "INSERT INTO alarm (alarmed_object, alarm_type, probable_cause, perceived_severity, "
            "state, raised_time, changed_time, cleared_time) VALUES ('x', 'equipmentAlarm', "
            "'congestion', 'major', 'cleared', now(), now(), now())"
        )


def test_raise_repeat_clear_recur(conn: duckdb.DuckDBPyConnection) -> None:
    a = raise_alarm(conn, *KEY, "major", at=T)
    assert (a.state, a.occurrences, a.perceived_severity) == ("raised", 1, "major")
    b = raise_alarm(conn, *KEY, "critical", at=T + timedelta(minutes=5))
    assert b.id == a.id
    assert (b.state, b.occurrences, b.perceived_severity) == ("updated", 2, "critical")
    assert b.changed_time == T + timedelta(minutes=5)
    c = clear_alarm(conn, a.id, at=T + timedelta(minutes=10))
    assert (c.state, c.perceived_severity, c.cleared_time) == (
        "cleared",
        "cleared",
        T + timedelta(minutes=10),
    )
    with pytest.raises(IllegalTransitionError):
        clear_alarm(conn, a.id)
    d = raise_alarm(conn, *KEY, "minor", at=T + timedelta(minutes=15))
    assert d.id != a.id
    assert d.state == "raised"
    assert _history(conn, "alarm", a.id) == [
        ("", "raised"),
        ("raised", "updated"),
        ("updated", "cleared"),
    ]
    assert [x.id for x in list_alarms(conn, open_only=True)] == [d.id]
    assert len(list_alarms(conn, alarmed_object=KEY[0])) == 2


def test_one_open_alarm_per_key_enforced(conn: duckdb.DuckDBPyConnection) -> None:
    raise_alarm(conn, *KEY, "major", at=T)
    # a different specific problem is a different alarm
    other = raise_alarm(conn, *KEY[:3], "other problem", "minor", at=T)
    assert len(list_alarms(conn, open_only=True)) == 2
    # a second open row with the same key slipped in behind the API's back is detected
    conn.execute(
        "INSERT INTO alarm (alarmed_object, alarm_type, probable_cause, specific_problem, "
        "perceived_severity, state, raised_time, changed_time) VALUES (?, ?, ?, ?, 'minor', "
        "'raised', ?, ?)",
        [*KEY, T, T],
    )
    with pytest.raises(ValidationError, match="share one key"):
        raise_alarm(conn, *KEY, "major", at=T + timedelta(minutes=1))
    # nothing was half-written by the refused call
    assert get_alarm(conn, other.id).occurrences == 1
    assert len(list_alarms(conn)) == 3


def test_validation_and_not_found(conn: duckdb.DuckDBPyConnection) -> None:
    with pytest.raises(ValidationError, match=r"X\.733"):
        raise_alarm(conn, "x", "weirdAlarm", "congestion", "", "major")
    with pytest.raises(ValidationError, match="probable cause"):
        raise_alarm(conn, "x", "equipmentAlarm", "gremlins", "", "major")
    with pytest.raises(ValidationError, match="severity"):
        raise_alarm(conn, "x", "equipmentAlarm", "congestion", "", "cleared")
    with pytest.raises(NotFoundError):
        get_alarm(conn, 999)


def test_ack_and_comments(conn: duckdb.DuckDBPyConnection) -> None:
    a = raise_alarm(conn, *KEY, "major", at=T)
    acked = acknowledge_alarm(conn, a.id, "noc-anna", at=T + timedelta(minutes=1))
    assert (acked.ack_state, acked.ack_user) == ("acknowledged", "noc-anna")
    with pytest.raises(IllegalTransitionError):
        acknowledge_alarm(conn, a.id, "noc-anna")
    # the acknowledgement survives an update of the alarm
    assert raise_alarm(conn, *KEY, "minor", at=T + timedelta(minutes=2)).ack_state == (
        "acknowledged"
    )
    assert unacknowledge_alarm(conn, a.id, "noc-bob").ack_time is None
    comment_alarm(conn, a.id, "noc-anna", "looking", at=T)
    comment_alarm(conn, a.id, "noc-bob", "fibre cut", at=T)
    assert [(c.comment_no, c.text) for c in alarm_comments(conn, a.id)] == [
        (1, "looking"),
        (2, "fibre cut"),
    ]
    with pytest.raises(ValidationError):
        comment_alarm(conn, a.id, "noc", "  ")
    clear_alarm(conn, a.id, at=T + timedelta(minutes=3))  # FK-referenced rows update fine
    assert _history(conn, "alarm_ack", a.id) == [
        ("unacknowledged", "acknowledged"),
        ("acknowledged", "unacknowledged"),
    ]


def test_apply_detections_raise_update_clear(conn: duckdb.DuckDBPyConnection) -> None:
    manual = raise_alarm(conn, "exporter:192.0.2.9", "equipmentAlarm", "powerProblem", "", "minor")
    run1 = _detections(
        [
            ("subscription:1", "traffic_high", "bytes", "minor"),
            ("subscription:1", "traffic_high", "bytes", "critical"),  # same key: worst wins
            ("exporter:192.0.2.2", "exporter_silent", "silent_minutes", "major"),
            ("source:x", "made_up", "x", "major"),
        ],
        T,
    )
    s1 = apply_detections(conn, run1, at=T)
    assert (len(s1.raised), s1.updated, s1.cleared) == (2, (), ())
    assert s1.ignored == {"unmapped_kind": 1}
    spike = next(a for a in list_alarms(conn) if a.alarmed_object == "subscription:1")
    assert (spike.perceived_severity, spike.alarm_type, spike.probable_cause) == (
        "critical",
        "qualityOfServiceAlarm",
        "thresholdCrossed",
    )
    assert spike.specific_problem == "traffic_high/bytes"
    assert spike.detection_kind == "traffic_high"
    assert not spike.service_affecting
    run2 = _detections([("subscription:1", "traffic_high", "bytes", "major")], T + timedelta(1))
    s2 = apply_detections(conn, run2, at=T + timedelta(1))
    assert s2.updated == (spike.id,)
    assert len(s2.cleared) == 1
    assert get_alarm(conn, spike.id).occurrences == 2
    s3 = apply_detections(conn, _detections([], T), at=T + timedelta(2))
    assert s3.cleared == (spike.id,)
    assert get_alarm(conn, manual.id).is_open  # raised by hand: never auto-cleared
    # a scope limited to other kinds leaves alarms of this kind alone
    apply_detections(conn, run2, at=T + timedelta(3))
    s4 = apply_detections(
        conn, _detections([], T), at=T + timedelta(4), policy=AlarmPolicy(scope=frozenset())
    )
    assert s4.cleared == ()
