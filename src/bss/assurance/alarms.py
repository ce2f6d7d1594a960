"""Alarms (TMF642 / ITU-T X.733): raise, repeat, clear, acknowledge, comment; detection sync.

An alarm is identified while open by (alarmed object, alarm type, probable cause, specific
problem). Raising one that is open already *updates* it: state ``updated``, one more
occurrence, the new severity and measurements. Clearing sets severity ``cleared`` and the
clear time; a later recurrence raises a new alarm. The acknowledgement state
(``unacknowledged`` / ``acknowledged``) is separate from the state and survives updates.
Every state and acknowledgement change is written to ``state_history`` (entities
``alarm`` and ``alarm_ack``).

DuckDB has no partial unique index, so "one open alarm per key" is enforced here: the
lookup and the insert run in one transaction on the single writing connection.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import duckdb
import pyarrow as pa

from bss.db import record_transition, transaction, utc_now
from bss.errors import IllegalTransitionError, NotFoundError, ValidationError
from rating_engine.traffic.detections import SEVERITIES as DETECTION_SEVERITIES

__all__ = [
    "ALARM_TYPES",
    "DEFAULT_ALARM_CLASSES",
    "PERCEIVED_SEVERITIES",
    "PROBABLE_CAUSES",
    "Alarm",
    "AlarmClass",
    "AlarmComment",
    "AlarmPolicy",
    "AlarmSyncSummary",
    "acknowledge_alarm",
    "alarm_comments",
    "apply_detections",
    "clear_alarm",
    "comment_alarm",
    "get_alarm",
    "list_alarms",
    "raise_alarm",
    "unacknowledge_alarm",
]

#: X.733 event types (and the X.736 security alarm types).
ALARM_TYPES = (
    "communicationsAlarm",
    "qualityOfServiceAlarm",
    "processingErrorAlarm",
    "equipmentAlarm",
    "environmentalAlarm",
    "integrityViolation",
    "operationalViolation",
    "physicalViolation",
    "securityServiceOrMechanismViolation",
    "timeDomainViolation",
)

#: The X.733 / X.736 probable causes this system uses (the schema CHECK lists the same).
PROBABLE_CAUSES = (
    "thresholdCrossed", "congestion", "bandwidthReduced", "performanceDegraded",
    "excessiveResponseTime", "queueSizeExceeded", "lossOfSignal", "lossOfFrame",
    "degradedSignal", "communicationsProtocolError", "communicationsSubsystemFailure",
    "callEstablishmentError", "remoteNodeTransmissionError", "transmissionError",
    "equipmentMalfunction", "powerProblem", "processorProblem", "receiverFailure",
    "transmitterFailure", "storageCapacityProblem", "softwareError", "outOfMemory",
    "configurationOrCustomizationError", "corruptData", "temperatureUnacceptable",
    "denialOfService", "intrusionDetection", "unauthorizedAccessAttempt", "other",
)  # fmt: skip

#: Perceived severities, most severe first.
PERCEIVED_SEVERITIES = ("critical", "major", "minor", "warning", "indeterminate", "cleared")
_RANK = {s: i for i, s in enumerate(DETECTION_SEVERITIES)}

_COLUMNS = (
    "id, alarmed_object, alarm_type, probable_cause, specific_problem, perceived_severity, "
    "state, ack_state, ack_user, ack_time, service_affecting, raised_time, changed_time, "
    "cleared_time, occurrences, detection_kind, observed_value, threshold_value, direction, "
    "window_start, window_end, details"
)


@dataclass(frozen=True)
class Alarm:
    id: int
    alarmed_object: str
    alarm_type: str
    probable_cause: str
    specific_problem: str
    perceived_severity: str
    state: str
    ack_state: str
    ack_user: str | None
    ack_time: datetime | None
    service_affecting: bool
    raised_time: datetime
    changed_time: datetime
    cleared_time: datetime | None
    occurrences: int
    detection_kind: str | None
    observed_value: float | None
    threshold_value: float | None
    direction: str | None
    window_start: datetime | None
    window_end: datetime | None
    details: str

    @property
    def is_open(self) -> bool:
        """Not cleared."""
        return self.state != "cleared"


@dataclass(frozen=True)
class AlarmComment:
    alarm_id: int
    comment_no: int
    author: str
    text: str
    at: datetime


@dataclass(frozen=True)
class AlarmClass:
    """How detections of one kind become alarms."""

    alarm_type: str
    probable_cause: str
    service_affecting: bool


#: Detection kind (``rating_engine.traffic.detections.DETECTION_KINDS``) -> alarm class.
DEFAULT_ALARM_CLASSES: Mapping[str, AlarmClass] = {
    "traffic_high": AlarmClass("qualityOfServiceAlarm", "thresholdCrossed", False),
    "traffic_low": AlarmClass("qualityOfServiceAlarm", "bandwidthReduced", True),
    "exporter_silent": AlarmClass("communicationsAlarm", "lossOfSignal", True),
    "sequence_loss": AlarmClass("communicationsAlarm", "degradedSignal", False),
    "interface_utilisation": AlarmClass("qualityOfServiceAlarm", "congestion", True),
    "syn_flood": AlarmClass("securityServiceOrMechanismViolation", "denialOfService", True),
    "port_scan": AlarmClass("securityServiceOrMechanismViolation", "intrusionDetection", False),
}


@dataclass(frozen=True)
class AlarmPolicy:
    """Mapping of detection kinds to alarm classes; ``scope`` = kinds a run is authoritative
    for (their open alarms not detected again are cleared); None = every mapped kind."""

    classes: Mapping[str, AlarmClass] = field(default_factory=lambda: dict(DEFAULT_ALARM_CLASSES))
    scope: frozenset[str] | None = None

    def scope_kinds(self) -> frozenset[str]:
        """The kinds whose open alarms a run may clear."""
        return frozenset(self.classes) if self.scope is None else self.scope


@dataclass(frozen=True)
class AlarmSyncSummary:
    raised: tuple[int, ...]
    updated: tuple[int, ...]
    cleared: tuple[int, ...]
    ignored: dict[str, int]


def _alarm(row: tuple[Any, ...]) -> Alarm:
    return Alarm(*row)


def get_alarm(conn: duckdb.DuckDBPyConnection, alarm_id: int) -> Alarm:
    """One alarm by id."""
    row = conn.execute(f"SELECT {_COLUMNS} FROM alarm WHERE id = ?", [alarm_id]).fetchone()
    if row is None:
        raise NotFoundError(f"unknown alarm {alarm_id}")
    return _alarm(row)


def list_alarms(
    conn: duckdb.DuckDBPyConnection,
    *,
    open_only: bool = False,
    alarmed_object: str | None = None,
    severity: str | None = None,
) -> list[Alarm]:
    """Alarms, most recently changed first."""
    where, args = ["true"], []
    if open_only:
        where.append("state <> 'cleared'")
    if alarmed_object is not None:
        where.append("alarmed_object = ?")
        args.append(alarmed_object)
    if severity is not None:
        where.append("perceived_severity = ?")
        args.append(severity)
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM alarm WHERE {' AND '.join(where)} "
        "ORDER BY changed_time DESC, id DESC",
        args,
    ).fetchall()
    return [_alarm(r) for r in rows]


def _validate(alarm_type: str, probable_cause: str, severity: str, obj: str) -> None:
    if not obj:
        raise ValidationError("alarm: the alarmed object is empty")
    if alarm_type not in ALARM_TYPES:
        raise ValidationError(f"alarm {obj}: alarm type {alarm_type!r} is not an X.733 type")
    if probable_cause not in PROBABLE_CAUSES:
        raise ValidationError(f"alarm {obj}: probable cause {probable_cause!r} not known")
    if severity not in PERCEIVED_SEVERITIES or severity == "cleared":
        raise ValidationError(f"alarm {obj}: cannot raise with severity {severity!r}")


def raise_alarm(
    conn: duckdb.DuckDBPyConnection,
    alarmed_object: str,
    alarm_type: str,
    probable_cause: str,
    specific_problem: str = "",
    perceived_severity: str = "indeterminate",
    *,
    at: datetime | None = None,
    service_affecting: bool = False,
    details: str = "",
    detection: Mapping[str, Any] | None = None,
) -> Alarm:
    """Raise an alarm, or update the open one with the same key (counting the occurrence).

    ``detection``: the detection row behind it (``kind``, ``observed``, ``threshold``,
    ``direction``, ``window_start``, ``window_end``), stored with the alarm.
    """
    _validate(alarm_type, probable_cause, perceived_severity, alarmed_object)
    when = at or utc_now()
    d = detection or {}
    measures = [
        d.get("observed"), d.get("threshold"), d.get("direction"),
        d.get("window_start"), d.get("window_end"),
    ]  # fmt: skip
    with transaction(conn):
        found = conn.execute(
            "SELECT id, raised_time FROM alarm WHERE alarmed_object = ? AND alarm_type = ? "
            "AND probable_cause = ? AND specific_problem = ? AND state <> 'cleared'",
            [alarmed_object, alarm_type, probable_cause, specific_problem],
        ).fetchall()
        if len(found) > 1:
            raise ValidationError(
                f"alarm {alarmed_object}: {len(found)} open alarms share one key "
                f"(ids {', '.join(str(f[0]) for f in found)})"
            )
        if found:
            alarm_id, raised = found[0]
            prev = get_alarm(conn, alarm_id)
            conn.execute(
                "UPDATE alarm SET state = 'updated', perceived_severity = ?, changed_time = ?, "
                "occurrences = occurrences + 1, service_affecting = ?, details = ?, "
                "observed_value = ?, threshold_value = ?, direction = ?, window_start = "
                "coalesce(window_start, ?), window_end = ? WHERE id = ?",
                [perceived_severity, max(when, raised), service_affecting, details,
                 *measures, alarm_id],
            )  # fmt: skip
            record_transition(conn, "alarm", alarm_id, prev.state, "updated",
                              f"occurrence {prev.occurrences + 1}, {perceived_severity}",
                              at=when)  # fmt: skip
            return get_alarm(conn, alarm_id)
        row = conn.execute(
            "INSERT INTO alarm (alarmed_object, alarm_type, probable_cause, specific_problem, "
            "perceived_severity, state, service_affecting, raised_time, changed_time, "
            "detection_kind, observed_value, threshold_value, direction, window_start, "
            "window_end, details) VALUES (?, ?, ?, ?, ?, 'raised', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "RETURNING id",
            [alarmed_object, alarm_type, probable_cause, specific_problem, perceived_severity,
             service_affecting, when, when, d.get("kind"), *measures, details],
        ).fetchone()  # fmt: skip
        assert row is not None
        record_transition(conn, "alarm", row[0], None, "raised", perceived_severity, at=when)
        return get_alarm(conn, row[0])


def clear_alarm(
    conn: duckdb.DuckDBPyConnection,
    alarm_id: int,
    *,
    at: datetime | None = None,
    reason: str = "cleared by operator",
) -> Alarm:
    """Clear an open alarm (severity ``cleared``, clear time set); clearing twice is refused."""
    alarm = get_alarm(conn, alarm_id)
    if not alarm.is_open:
        raise IllegalTransitionError(f"alarm {alarm_id} is cleared already")
    when = max(at or utc_now(), alarm.raised_time)
    with transaction(conn):
        conn.execute(
            "UPDATE alarm SET state = 'cleared', perceived_severity = 'cleared', "
            "cleared_time = ?, changed_time = ? WHERE id = ?",
            [when, when, alarm_id],
        )
        record_transition(conn, "alarm", alarm_id, alarm.state, "cleared", reason, at=when)
    return get_alarm(conn, alarm_id)


def _set_ack(
    conn: duckdb.DuckDBPyConnection, alarm_id: int, user: str, to: str, at: datetime | None
) -> Alarm:
    alarm = get_alarm(conn, alarm_id)
    if not user:
        raise ValidationError(f"alarm {alarm_id}: acknowledgement needs a user")
    if alarm.ack_state == to:
        raise IllegalTransitionError(f"alarm {alarm_id} is {to} already")
    when = at or utc_now()
    acked = to == "acknowledged"
    with transaction(conn):
        conn.execute(
            "UPDATE alarm SET ack_state = ?, ack_user = ?, ack_time = ? WHERE id = ?",
            [to, user, when if acked else None, alarm_id],
        )
        record_transition(conn, "alarm_ack", alarm_id, alarm.ack_state, to, f"by {user}", at=when)
    return get_alarm(conn, alarm_id)


def acknowledge_alarm(
    conn: duckdb.DuckDBPyConnection, alarm_id: int, user: str, *, at: datetime | None = None
) -> Alarm:
    """Mark an alarm acknowledged by ``user`` (open or cleared alike, as X.733 allows)."""
    return _set_ack(conn, alarm_id, user, "acknowledged", at)


def unacknowledge_alarm(
    conn: duckdb.DuckDBPyConnection, alarm_id: int, user: str, *, at: datetime | None = None
) -> Alarm:
    """Withdraw an acknowledgement."""
    return _set_ack(conn, alarm_id, user, "unacknowledged", at)


def comment_alarm(
    conn: duckdb.DuckDBPyConnection,
    alarm_id: int,
    author: str,
    text: str,
    *,
    at: datetime | None = None,
) -> AlarmComment:
    """Append a comment to an alarm."""
    get_alarm(conn, alarm_id)
    if not author or not text.strip():
        raise ValidationError(f"alarm {alarm_id}: a comment needs an author and text")
    when = at or utc_now()
    with transaction(conn):
        row = conn.execute(
            "SELECT coalesce(max(comment_no), 0) + 1 FROM alarm_comment WHERE alarm_id = ?",
            [alarm_id],
        ).fetchone()
        assert row is not None
        conn.execute(
            "INSERT INTO alarm_comment VALUES (?, ?, ?, ?, ?)",
            [alarm_id, row[0], author, text, when],
        )
    return AlarmComment(alarm_id, int(row[0]), author, text, when)


def alarm_comments(conn: duckdb.DuckDBPyConnection, alarm_id: int) -> list[AlarmComment]:
    """An alarm's comments in order."""
    rows = conn.execute(
        "SELECT alarm_id, comment_no, author, text, created_at FROM alarm_comment "
        "WHERE alarm_id = ? ORDER BY comment_no",
        [alarm_id],
    ).fetchall()
    return [AlarmComment(*r) for r in rows]


_Keyed = dict[tuple[str, ...], dict[str, Any]]


def _collapse(detections: pa.Table, policy: AlarmPolicy) -> tuple[_Keyed, dict[str, int]]:
    """One entry per alarm key: the worst severity wins, windows are merged."""
    keyed: _Keyed = {}
    ignored: dict[str, int] = {}
    for d in detections.to_pylist():
        cls = policy.classes.get(d["kind"])
        if cls is None or d["severity"] not in _RANK:
            reason = "unmapped_kind" if cls is None else "unknown_severity"
            ignored[reason] = ignored.get(reason, 0) + 1
            continue
        key = (d["object"], cls.alarm_type, cls.probable_cause, f"{d['kind']}/{d['metric']}")
        prev = keyed.get(key)
        if prev is None:
            keyed[key] = dict(d)
            continue
        start = min(prev["window_start"], d["window_start"])
        if (_RANK[d["severity"]], d["window_end"]) >= (_RANK[prev["severity"]], prev["window_end"]):
            prev.update(d)
        prev["window_start"] = start
    return keyed, ignored


def apply_detections(
    conn: duckdb.DuckDBPyConnection,
    detections: pa.Table,
    *,
    at: datetime,
    policy: AlarmPolicy | None = None,
) -> AlarmSyncSummary:
    """Turn one detection run (``DETECTION_SCHEMA``) into alarm raises, updates and clears.

    Detections sharing an alarm key collapse into one (worst severity). Open alarms raised
    by detections of the policy's scope whose key was not detected in this run are
    cleared (return to normal); alarms raised by hand are never cleared here. Atomic.
    """
    p = policy or AlarmPolicy()
    for name in ("object", "kind", "metric", "severity", "window_start", "window_end"):
        if name not in detections.schema.names:
            raise ValidationError(f"detections: missing field {name}")
    keyed, ignored = _collapse(detections, p)
    raised: list[int] = []
    updated: list[int] = []
    cleared: list[int] = []
    with transaction(conn):
        for key, d in sorted(keyed.items()):
            cls = p.classes[d["kind"]]
            alarm = raise_alarm(
                conn, key[0], key[1], key[2], key[3], d["severity"], at=at,
                service_affecting=cls.service_affecting, details=d.get("detail") or "",
                detection=d,
            )  # fmt: skip
            (raised if alarm.state == "raised" else updated).append(alarm.id)
        kinds = sorted(p.scope_kinds())
        if kinds:
            marks = ", ".join("?" for _ in kinds)
            rows = conn.execute(
                "SELECT id, alarmed_object, alarm_type, probable_cause, specific_problem "
                f"FROM alarm WHERE state <> 'cleared' AND detection_kind IN ({marks}) "
                "ORDER BY id",
                kinds,
            ).fetchall()
            for alarm_id, *open_key in rows:
                if tuple(open_key) not in keyed:
                    clear_alarm(conn, alarm_id, at=at, reason="condition no longer detected")
                    cleared.append(alarm_id)
    return AlarmSyncSummary(tuple(raised), tuple(updated), tuple(cleared), ignored)
