"""The issue's Done-when scenario: three weeks of normal traffic, then a spike and an exporter
that goes silent; alarms rise with the expected severities, clear when traffic returns,
and the linked ticket is opened and resolved."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from assurance_builders import customers_with_ip_blocks, flow_table

from bss.assurance.alarms import Alarm, list_alarms
from bss.assurance.run import AssurancePolicy, run_assurance
from bss.assurance.tickets import get_ticket, list_tickets
from bss.errors import ValidationError
from collectors.dataset import write_partitioned
from collectors.schemas import TIMESTAMP
from collectors.udp.stats import STATS_SCHEMA
from collectors.workspace import WorkspacePaths
from rating_engine.traffic.anomaly import INTERFACE_SPEED_SCHEMA

R = datetime(2026, 3, 23, 12, 0, tzinfo=UTC)  # a Monday noon
R_US = int(R.timestamp()) * 1_000_000
B_US = 300_000_000  # 5 min
EXP_A, EXP_B = "192.0.2.1", "192.0.2.2"
SUB1_HOST, SUB2_HOST = "198.51.100.5", "198.51.100.20"
SCANNER = "203.0.113.66"


def _normal(start_us: int, end_us: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    t = np.arange(start_us, end_us, B_US, dtype=np.int64)
    hour = (t // 3_600_000_000) % 24
    base = 2_000_000 + 1_500_000 * np.sin(hour / 24 * 2 * np.pi)  # a daily cycle
    return t, (base * rng.uniform(0.9, 1.1, t.size)).astype(np.int64)


def _traffic(workspace: WorkspacePaths) -> None:
    """Sub 1 behind exporter A, sub 2 behind exporter B, one flow per 5 min each from three
    weeks before R to R + 30 min; sub 1 spikes 50x in [R, R+5m); exporter B is silent in
    [R, R+15m); a port scan hits sub 1 in [R, R+5m)."""
    rng = np.random.default_rng(7)
    tables = []
    for host, exporter in ((SUB1_HOST, EXP_A), (SUB2_HOST, EXP_B)):
        t, nbytes = _normal(R_US - 21 * 86_400_000_000, R_US + 30 * 60_000_000, rng)
        if exporter == EXP_B:
            keep = (t < R_US) | (t >= R_US + 3 * B_US)
            t, nbytes = t[keep], nbytes[keep]
        else:
            nbytes = np.where((t >= R_US) & (t < R_US + B_US), nbytes * 50, nbytes)
        tables.append(flow_table(t + 1_000_000, "203.0.113.5", host, nbytes, exporter))
    ports = np.arange(1, 301)
    tables.append(
        flow_table(np.full(300, R_US + 60_000_000), SCANNER, SUB1_HOST, np.full(300, 60),
                   EXP_A, dst_port=ports, tcp_flags=0x02)
    )  # fmt: skip
    write_partitioned(
        pa.concat_tables(tables), workspace.flows, time_column="flow_start", part_name="synth"
    )


def _open(conn: duckdb.DuckDBPyConnection) -> dict[tuple[str, str], Alarm]:
    return {(a.alarmed_object, a.specific_problem): a for a in list_alarms(conn, open_only=True)}


def test_spike_and_silent_exporter(
    workspace: WorkspacePaths, conn: duckdb.DuckDBPyConnection
) -> None:
    sub1, sub2 = customers_with_ip_blocks(conn, ["198.51.100.0/28", "198.51.100.16/28"])
    _traffic(workspace)
    policy = AssurancePolicy(silence_minutes=10)
    lookback = timedelta(days=21)

    # 1. a normal five minutes: nothing to say
    quiet = run_assurance(conn, workspace, window_end=R, lookback=lookback, policy=policy)
    assert quiet.flows_read > 2 * 20 * 288
    assert quiet.detections == {}
    assert list_alarms(conn) == []

    # 2. spike on sub 1 (and its exporter), exporter B and sub 2 drop to zero, a port scan
    s2 = run_assurance(conn, workspace, window_end=R + timedelta(minutes=5),
                       lookback=lookback, policy=policy)  # fmt: skip
    alarms = _open(conn)
    expected = {
        (f"subscription:{sub1}", "traffic_high/bytes"): "critical",
        (f"exporter:{EXP_A}", "traffic_high/bytes"): "critical",
        (f"subscription:{sub2}", "traffic_low/bytes"): "critical",
        (f"exporter:{EXP_B}", "traffic_low/bytes"): "critical",
        (f"source:{SCANNER}", "port_scan/distinct_dst_ports"): "minor",
    }
    assert {k: a.perceived_severity for k, a in alarms.items()} == expected
    spike = alarms[(f"subscription:{sub1}", "traffic_high/bytes")]
    assert (spike.alarm_type, spike.probable_cause, spike.direction) == (
        "qualityOfServiceAlarm",
        "thresholdCrossed",
        "above",
    )
    assert spike.observed_value is not None
    assert spike.threshold_value is not None
    assert spike.observed_value > spike.threshold_value
    # one ticket: the exporter's drop, with the subscription it carries correlated into it
    assert len(s2.tickets.opened) == 1
    ticket = get_ticket(conn, s2.tickets.opened[0])
    low_b = alarms[(f"exporter:{EXP_B}", "traffic_low/bytes")]
    low_2 = alarms[(f"subscription:{sub2}", "traffic_low/bytes")]
    assert ticket.alarm_ids == tuple(sorted((low_b.id, low_2.id)))
    assert ticket.customer_ids == (2,)
    assert (ticket.status, ticket.severity, ticket.resolvable) == (
        "acknowledged",
        "critical",
        False,
    )

    # 3. the spike is over; exporter B has now been silent for 10 minutes
    s3 = run_assurance(conn, workspace, window_end=R + timedelta(minutes=10),
                       lookback=lookback, policy=policy)  # fmt: skip
    assert spike.id in s3.alarms.cleared
    alarms = _open(conn)
    silent = alarms[(f"exporter:{EXP_B}", "exporter_silent/silent_minutes")]
    assert (silent.perceived_severity, silent.alarm_type, silent.probable_cause) == (
        "major",
        "communicationsAlarm",
        "lossOfSignal",
    )
    assert (f"subscription:{sub1}", "traffic_high/bytes") not in alarms
    assert alarms[(f"exporter:{EXP_B}", "traffic_low/bytes")].occurrences == 2
    assert s3.tickets.opened == ()
    assert s3.tickets.linked == ((ticket.id, silent.id),)

    # 4. still silent: the same alarms are updated, nothing new
    s4 = run_assurance(conn, workspace, window_end=R + timedelta(minutes=15),
                       lookback=lookback, policy=policy)  # fmt: skip
    assert s4.alarms.raised == ()
    assert silent.id in s4.alarms.updated

    # 5. traffic is back: everything clears and the ticket is resolved
    s5 = run_assurance(conn, workspace, window_end=R + timedelta(minutes=20),
                       lookback=lookback, policy=policy)  # fmt: skip
    assert _open(conn) == {}
    assert set(s5.alarms.cleared) == {silent.id, low_b.id, low_2.id}
    assert s5.tickets.resolved == (ticket.id,)
    done = get_ticket(conn, ticket.id)
    assert (done.status, done.resolvable) == ("resolved", True)
    assert [t.id for t in list_tickets(conn)] == [ticket.id]
    history = conn.execute(
        "SELECT to_state FROM state_history WHERE entity = 'trouble_ticket' AND entity_id = ? "
        "ORDER BY id",
        [str(ticket.id)],
    ).fetchall()
    assert [h[0] for h in history] == ["acknowledged", "acknowledged", "inProgress", "resolved"]

    # 6. a later recurrence of the spike raises a new alarm, not the cleared one again
    cleared = [a for a in list_alarms(conn) if a.alarmed_object == f"subscription:{sub1}"]
    assert len(cleared) == 1


def test_needs_aware_times_and_a_window(
    workspace: WorkspacePaths, conn: duckdb.DuckDBPyConnection
) -> None:
    with pytest.raises(ValidationError, match="time zone"):
        run_assurance(conn, workspace, window_end=datetime(2026, 3, 23, 12))
    with pytest.raises(ValidationError, match="lookback"):
        run_assurance(conn, workspace, window_end=R, lookback=timedelta(minutes=1))
    with pytest.raises(ValidationError, match="one bucket"):
        run_assurance(conn, workspace, window_end=R,
                      policy=AssurancePolicy(window=timedelta(minutes=1)))  # fmt: skip
    # an empty workspace: no flows, no detections, nothing raised
    empty = run_assurance(conn, workspace, window_end=R + timedelta(minutes=3, seconds=1))
    assert (empty.flows_read, empty.detections, empty.alarms.raised) == (0, {}, ())
    assert (empty.window_start, empty.window_end) == (R - timedelta(minutes=5), R)


def test_utilisation_and_sequence_loss_paths(
    workspace: WorkspacePaths, conn: duckdb.DuckDBPyConnection
) -> None:
    (sub1,) = customers_with_ip_blocks(conn, ["198.51.100.0/28"])
    start = R_US - B_US + 1_000_000
    # 1 Gbit/s interface 3 carrying 36 GB in five minutes: 96 % -> major (critical from 98 %)
    big = flow_table(np.array([start]), "203.0.113.5", SUB1_HOST, np.array([36_000_000_000]),
                     EXP_A, input_if=3)  # fmt: skip
    write_partitioned(big, workspace.flows, time_column="flow_start", part_name="synth")
    stats = pa.table(
        {
            "interval_start": pa.array([R_US - B_US] * 3).cast(TIMESTAMP),
            "interval_end": pa.array([R_US] * 3).cast(TIMESTAMP),
            "collector": ["c1"] * 3,
            "exporter": [EXP_A, EXP_A, None],
            "metric": ["datagrams", "sequence_missing", "datagrams"],
            "value": pa.array([900, 100, 5000], pa.int64()),
        },
        schema=STATS_SCHEMA,
    )
    write_partitioned(stats, workspace.collector_stats, time_column="interval_start",
                      part_name="c1")  # fmt: skip
    speeds = pa.table(
        {"exporter": [EXP_A], "if_index": pa.array([3], pa.uint32()),
         "speed_bps": pa.array([10**9], pa.uint64())},
        schema=INTERFACE_SPEED_SCHEMA,
    )  # fmt: skip
    out = run_assurance(conn, workspace, window_end=R, lookback=timedelta(days=1),
                        policy=AssurancePolicy(interface_speeds=speeds))  # fmt: skip
    alarms = _open(conn)
    util = alarms[(f"interface:{EXP_A}/3", "interface_utilisation/in_utilisation")]
    loss = alarms[(f"exporter:{EXP_A}", "sequence_loss/loss_rate")]
    assert (util.perceived_severity, util.probable_cause) == ("major", "congestion")
    assert util.observed_value == pytest.approx(0.96)
    assert (loss.perceived_severity, loss.observed_value) == ("major", pytest.approx(0.1))
    # the congested interface carried sub 1's traffic: its customer is on the ticket
    (tid,) = out.tickets.opened
    assert get_ticket(conn, tid).customer_ids == (1,)
    assert get_ticket(conn, tid).alarm_ids == (util.id,)
    assert sub1 == 1
