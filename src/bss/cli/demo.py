"""``rating-engine demo``: the whole path on the embedded data, end to end.

packets -> flows -> hourly data usage per subscribed IP block; CDR CSV -> usage;
orders -> subscriptions bound to phone numbers and IP blocks; a billing run for
October 2026; a chart of traffic per hour and per customer. Every step is idempotent,
so running the demo again (or after it was killed) gives the same bills.
"""

from __future__ import annotations

import filecmp
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from bss.billing.period import parse_period
from bss.billing.run import BillingRunResult, run_billing
from bss.errors import ValidationError
from bss.seed import apply_seed, load_seed_file
from bss.subscriptions import subscription_table
from collectors.cdr.ingest import ingest_cdr_files
from collectors.cdr.mapping import load_mapping
from collectors.dataset import read_dataset
from collectors.pcap.ingest import ingest_pcap_files
from collectors.schemas import USAGE_SCHEMA
from collectors.workspace import WorkspacePaths
from rating_engine.rating.warm_up import start as start_warm_up

__all__ = ["DEMO_PERIOD", "DemoResult", "data_dir", "run_demo"]

DEMO_PERIOD = "2026-10"
DATA_ENV = "RATING_ENGINE_DATA"


@dataclass
class DemoResult:
    billing: BillingRunResult
    steps: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)


def data_dir() -> Path:
    """The embedded default data: ``$RATING_ENGINE_DATA``, else the data shipped inside the
    package (``bss/data``: the demo, sample files and example tariffs)."""
    root = Path(os.environ.get(DATA_ENV) or str(files("bss") / "data"))
    if not (root / "demo" / "bss.toml").exists():
        raise ValidationError(f"demo data not found in {root} (set {DATA_ENV} to the data folder)")
    return root


def _install_tariffs(source: Path, workspace: WorkspacePaths) -> list[str]:
    workspace.tariffs.mkdir(parents=True, exist_ok=True)
    installed = []
    for tariff in sorted(source.glob("*.toml")):
        target = workspace.tariffs / tariff.name
        if not target.exists() or not filecmp.cmp(tariff, target, shallow=False):
            tmp = target.with_name(f".{target.name}.tmp")
            shutil.copyfile(tariff, tmp)
            os.replace(tmp, target)
        installed.append(tariff.name)
    return installed


def traffic_chart(
    conn: duckdb.DuckDBPyConnection, workspace: WorkspacePaths, period: str, path: Path
) -> Path:
    """PNG: attributed traffic per hour (stacked by customer) and per customer in total."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bounds = parse_period(period)
    usage = read_dataset(
        workspace.usage,
        USAGE_SCHEMA,
        filter=(pc.field("subscriber_key_type") == "ip")
        & (pc.field("start_time") >= pa.scalar(bounds.start, USAGE_SCHEMA.field("start_time").type))
        & (pc.field("start_time") < pa.scalar(bounds.end, USAGE_SCHEMA.field("start_time").type)),
        columns=["subscriber_key", "start_time", "volume_up", "volume_down"],
    )
    conn.register("_usage", usage)
    conn.register("_subs", subscription_table(conn, bounds.end))
    try:
        rows = conn.execute(
            """
            SELECT c.name, date_trunc('hour', u.start_time) AS hour,
                   sum(u.volume_up + u.volume_down)::DOUBLE / 1e6 AS mb
            FROM _usage u
            JOIN (SELECT DISTINCT key, account_id FROM _subs WHERE key_type = 'ip') s
              ON s.key = u.subscriber_key
            JOIN billing_account a ON a.id = s.account_id
            JOIN customer c ON c.id = a.customer_id
            GROUP BY ALL ORDER BY hour, c.name
            """
        ).fetchall()
    finally:
        conn.unregister("_usage")
        conn.unregister("_subs")
    customers = sorted({r[0] for r in rows})
    hours = sorted({r[1] for r in rows})
    per = {(r[0], r[1]): r[2] for r in rows}
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 7), height_ratios=[3, 1.3])
    base = [0.0] * len(hours)
    for name in customers:
        values = [per.get((name, h), 0.0) for h in hours]
        top.bar(hours, values, width=1 / 24, bottom=base, label=name, align="edge")
        base = [b + v for b, v in zip(base, values, strict=True)]
    top.set_title(f"Attributed traffic per hour, {period} (from metered packets)")
    top.set_ylabel("MB per hour")
    top.legend(loc="upper right")
    totals = [sum(per.get((name, h), 0.0) for h in hours) for name in customers]
    bottom.barh(customers, totals, color="tab:gray")
    bottom.set_xlabel("MB in the period")
    bottom.set_title("Traffic per customer")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def run_demo(
    conn: duckdb.DuckDBPyConnection,
    workspace: WorkspacePaths,
    *,
    step: Callable[[str], None] = lambda _: None,
    client: Any | None = None,
) -> DemoResult:
    """Fill ``workspace`` from the embedded data and bill the demo month (on ``client``'s
    Dask cluster if one is given: the same bills)."""
    data = data_dir()
    demo = data / "demo"
    workspace.ensure()
    steps: dict[str, Any] = {}

    step("tariffs and business data")
    steps["tariffs"] = _install_tariffs(demo / "tariffs", workspace)
    seed = apply_seed(conn, load_seed_file(demo / "bss.toml"), str(demo / "bss.toml"))
    steps["business_data"] = {"created": seed.created, "existing": seed.existing}
    # a cold cache: the rating kernel compiles on the other core while packets and CDRs
    # go in (about a third of a first demo's time, measured); nothing starts when cached
    warm_up = start_warm_up(workspace.tariffs) if client is None else None

    try:
        step("packets -> flows")
        pcap = ingest_pcap_files([demo / "traffic.pcap.gz"], workspace)
        steps["packets"] = {"packets": pcap.packets, "flows": pcap.flows,
                            "rejected": dict(pcap.rejected)}  # fmt: skip

        step("CDRs -> usage")
        mapping = load_mapping("generic")
        cdr = ingest_cdr_files([demo / "cdrs.csv"], mapping, workspace)
        steps["cdrs"] = cdr.to_dict()
    except BaseException:  # an error or Ctrl-C: the warm-up has nothing left to serve
        if warm_up is not None:
            warm_up.stop()
        raise

    step("rating and billing")
    if warm_up is not None:
        warm_up.wait()
    billing = run_billing(conn, workspace, DEMO_PERIOD, client=client)

    step("chart")
    chart = traffic_chart(
        conn, workspace, DEMO_PERIOD, workspace.reports / f"traffic_{DEMO_PERIOD}.png"
    )
    outputs = {
        "workspace": str(workspace.root),
        "flows": str(workspace.flows),
        "usage": str(workspace.usage),
        "rated": str(workspace.rated),
        "suspense": str(workspace.suspense),
        "rejected": str(workspace.rejected),
        "database": str(workspace.database),
        "bills": str(billing.exports),
        "chart": str(chart),
    }
    return DemoResult(billing, steps, outputs)
