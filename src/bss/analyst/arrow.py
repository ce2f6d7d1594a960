"""The reads behind :class:`bss.analyst.api.Workspace`, as Arrow tables with canonical types.

:class:`ArrowWorkspace` reads the Parquet datasets (FLOW_SCHEMA, USAGE_SCHEMA, ...), the
bss tables and the assurance tables, runs DuckDB SQL over all of them, and computes the
traffic aggregations of :mod:`rating_engine.traffic.aggregate` over the flows dataset.

Read-only by construction: Parquet datasets are only read, and the bss DuckDB file is
attached ``READ_ONLY`` to a private in-memory connection for the length of one call, then
detached - a notebook left open never holds a lock that would stop the collector, the
rater or a billing run from writing.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
from duckdb.func import PythonUDFType

from bss.analyst.query import (
    BY_KEYS,
    TimeLike,
    address_text,
    flow_buckets,
    prefix_index,
    top_talkers,
    window_of,
)
from bss.billing.period import parse_period
from bss.errors import BssError, ValidationError, WorkspaceLockedError
from collectors.dataset import dataset_files
from collectors.schemas import FLOW_SCHEMA, REJECT_SCHEMA, USAGE_SCHEMA
from collectors.workspace import WorkspacePaths
from rating_engine.schemas import RATED_SCHEMA
from rating_engine.traffic.aggregate import combine_peer_pairs, count_peers, peer_pairs
from rating_engine.traffic.aggregate import hour_of_week_profile as _profile
from rating_engine.traffic.attribution import PrefixIndex
from rating_engine.traffic.flow_query import scan_flows
from rating_engine.traffic.percentile import combine_samples, p95_from_samples, percentile_samples

__all__ = ["ALARM_COLUMNS", "TICKET_COLUMNS", "ArrowWorkspace"]

_TS = pa.timestamp("us", tz="UTC")
#: Flows may start before a percentile period and still send bytes into it.
_P95_LOOKBACK = timedelta(days=1)

# Datasets, their canonical schema (None: read as written) and their time column.
_DATASETS: dict[str, tuple[pa.Schema | None, str | None]] = {
    "flows": (FLOW_SCHEMA, "flow_start"),
    "usage": (USAGE_SCHEMA, "start_time"),
    "rated": (RATED_SCHEMA, "start_time"),
    "suspense": (REJECT_SCHEMA, "rejected_at"),
    "rejected": (REJECT_SCHEMA, "rejected_at"),
    "collector_stats": (None, None),
    "counters": (None, None),
}

#: Columns of ``alarms()`` before the assurance migration (bss 0002, TMF642 / X.733) ran.
ALARM_COLUMNS: dict[str, pa.DataType] = {
    "id": pa.int64(),
    "alarmed_object": pa.string(),
    "alarm_type": pa.string(),
    "probable_cause": pa.string(),
    "specific_problem": pa.string(),
    "perceived_severity": pa.string(),
    "state": pa.string(),
    "ack_state": pa.string(),
    "ack_user": pa.string(),
    "ack_time": _TS,
    "service_affecting": pa.bool_(),
    "raised_time": _TS,
    "changed_time": _TS,
    "cleared_time": _TS,
    "occurrences": pa.int32(),
    "detection_kind": pa.string(),
    "observed_value": pa.float64(),
    "threshold_value": pa.float64(),
    "direction": pa.string(),
    "window_start": _TS,
    "window_end": _TS,
    "details": pa.string(),
}
#: Columns of ``tickets()`` before the assurance migration ran (TMF621), plus the links.
TICKET_COLUMNS: dict[str, pa.DataType] = {
    "id": pa.int64(),
    "name": pa.string(),
    "description": pa.string(),
    "severity": pa.string(),
    "priority": pa.int32(),
    "ticket_type": pa.string(),
    "status": pa.string(),
    "status_reason": pa.string(),
    "origin": pa.string(),
    "resolvable": pa.bool_(),
    "created_at": _TS,
    "updated_at": _TS,
    "resolved_at": _TS,
    "closed_at": _TS,
    "alarm_ids": pa.list_(pa.int64()),
    "customer_ids": pa.list_(pa.int64()),
}


def _ip_text_udf(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    return address_text(column)


@dataclass
class ArrowWorkspace:
    """Every read of :class:`Workspace`, returning Arrow tables with the canonical types."""

    paths: WorkspacePaths
    _con: duckdb.DuckDBPyConnection = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._con = duckdb.connect(":memory:")
        self._con.execute("SET TimeZone = 'UTC'")
        # text for people in SQL too: ip_text(src_addr) -> '192.0.2.1'
        self._con.create_function(
            "ip_text",
            _ip_text_udf,
            [duckdb.sqltype("BLOB")],
            duckdb.sqltype("VARCHAR"),
            type=PythonUDFType.ARROW,
        )
        self._views: dict[str, bool] = {}

    def close(self) -> None:
        """Close the private DuckDB connection."""
        self._con.close()

    # -- Parquet datasets -------------------------------------------------------------

    def _root(self, name: str) -> Path:
        return cast(Path, getattr(self.paths, name))

    def _read(
        self,
        name: str,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        columns: Sequence[str] | None = None,
    ) -> pa.Table:
        schema, time_col = _DATASETS[name]
        files = [str(f) for f in dataset_files(self._root(name))]
        if schema is None:
            if not files:
                return pa.table({})
            return pads.dataset(files, format="parquet").to_table(columns=columns)
        cols = list(columns) if columns is not None else schema.names
        if not files:
            return schema.empty_table().select(cols)
        expr = None
        win = window_of(start, end)
        if win is not None and time_col is not None:
            f = pc.field(time_col)
            expr = (f >= pa.scalar(win[0], _TS)) & (f < pa.scalar(win[1], _TS))
        ds = pads.dataset(files, schema=schema, format="parquet")
        table = ds.to_table(columns=cols, filter=expr)
        if time_col is not None and time_col in cols:
            table = table.sort_by(time_col)
        return table

    def flows(
        self,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        *,
        columns: Sequence[str] | None = None,
    ) -> pa.Table:
        """Flows starting in ``[start, end)`` (FLOW_SCHEMA), in start-time order."""
        return self._read("flows", start, end, columns)

    def usage(
        self,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        *,
        columns: Sequence[str] | None = None,
    ) -> pa.Table:
        """Usage records (CDRs and usage derived from flows) starting in ``[start, end)``."""
        return self._read("usage", start, end, columns)

    def rated(
        self,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        *,
        columns: Sequence[str] | None = None,
    ) -> pa.Table:
        """Rated usage (RATED_SCHEMA; cost in int64 micro-units) starting in ``[start, end)``."""
        return self._read("rated", start, end, columns)

    def suspense(self) -> pa.Table:
        """Usage the rater refused, with its reason (REJECT_SCHEMA, stage ``rating``)."""
        return self._read("suspense")

    def rejected(self) -> pa.Table:
        """Input records refused at ingest or decode (REJECT_SCHEMA)."""
        return self._read("rejected")

    # -- bss tables -------------------------------------------------------------------

    @contextmanager
    def _attached(self) -> Iterator[bool]:
        """The bss database attached read-only as ``bss`` (False if there is none yet)."""
        db = self.paths.database
        if not db.exists():
            yield False
            return
        try:
            self._con.execute(f"ATTACH '{_quote(str(db))}' AS bss (READ_ONLY)")
        except duckdb.Error as exc:
            text = str(exc)
            if "lock" in text.lower():
                raise WorkspaceLockedError(
                    f"workspace {self.paths.root}: {db.name} is being written by another "
                    f"process; read again when it has finished ({text.splitlines()[0]})"
                ) from exc
            raise BssError(f"cannot attach {db} read-only: {text}") from exc
        try:
            self._con.execute("SET search_path = 'memory.main,bss.main'")
            yield True
        finally:
            self._con.execute("SET search_path = 'memory.main'")
            self._con.execute("DETACH bss")

    def _bss_tables(self) -> set[str]:
        rows = self._con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_catalog = 'bss'"
        ).fetchall()
        return {str(r[0]) for r in rows}

    def _bss(self, query: str, params: Sequence[Any] = (), *, needs: str = "") -> pa.Table | None:
        """``query`` over the bss tables; None if the database or table ``needs`` is absent."""
        with self._attached() as ok:
            if not ok or (needs and needs not in self._bss_tables()):
                return None
            return self._con.sql(query, params=list(params)).to_arrow_table()

    def _bss_or_empty(
        self, query: str, params: Sequence[Any], needs: str, empty: pa.Schema
    ) -> pa.Table:
        table = self._bss(query, params, needs=needs)
        return empty.empty_table() if table is None else table

    def bills(self, period: str | None = None) -> pa.Table:
        """Bills (TMF678), one row per account and period, amounts as exact decimals."""
        where, params = _period_filter(period)
        return self._bss_or_empty(
            f"SELECT * FROM bss.bill {where} ORDER BY period, bill_no", params, "bill", _BILL
        )

    def bill_lines(self, period: str | None = None) -> pa.Table:
        """Bill lines with their bill's period and account."""
        where, params = _period_filter(period, "b.")
        return self._bss_or_empty(
            "SELECT l.*, b.period, b.account_id FROM bss.bill_line l "
            f"JOIN bss.bill b USING (bill_no) {where} ORDER BY l.bill_no, l.line_no",
            params,
            "bill_line",
            _BILL_LINE,
        )

    def customers(self) -> pa.Table:
        """Customers (TMF629)."""
        return self._bss_or_empty("SELECT * FROM bss.customer ORDER BY id", (), "customer", _CUST)

    def accounts(self) -> pa.Table:
        """Billing accounts (TMF666) with their customer's name."""
        return self._bss_or_empty(
            "SELECT a.*, c.name AS customer_name FROM bss.billing_account a "
            "JOIN bss.customer c ON c.id = a.customer_id ORDER BY a.id",
            (),
            "billing_account",
            _ACCOUNT,
        )

    def subscriptions(self) -> pa.Table:
        """Products and their service identifiers (MSISDN, IMSI, IP block) with customers."""
        return self._bss_or_empty(_SUBSCRIPTIONS_SQL, (), "service_identifier", _SUBS)

    def alarms(self) -> pa.Table:
        """Alarms (TMF642 / X.733), newest first; empty with :data:`ALARM_COLUMNS` if none."""
        return self._bss_or_empty(
            "SELECT * FROM bss.alarm ORDER BY raised_time DESC, id DESC",
            (),
            "alarm",
            pa.schema(list(ALARM_COLUMNS.items())),
        )

    def tickets(self) -> pa.Table:
        """Trouble tickets (TMF621) with their linked alarm and customer ids, newest first."""
        return self._bss_or_empty(
            _TICKETS_SQL, (), "trouble_ticket", pa.schema(list(TICKET_COLUMNS.items()))
        )

    # -- SQL over everything ----------------------------------------------------------

    def _refresh_views(self) -> None:
        for name, (schema, _t) in _DATASETS.items():
            root = self._root(name)
            present = bool(dataset_files(root))
            if self._views.get(name) == present:
                continue
            self._views[name] = present
            if present:
                extra = _FLOW_TEXT if name == "flows" else ""
                glob = _quote(str(root / "**" / "*.parquet"))
                self._con.execute(
                    f"CREATE OR REPLACE VIEW {name} AS SELECT *{extra} FROM read_parquet("
                    f"'{glob}', hive_partitioning = true, union_by_name = true)"
                )
            elif schema is not None:
                # an empty dataset still answers queries (count(*) = 0)
                self._con.register(f"_empty_{name}", schema.empty_table())
                extra = _FLOW_TEXT if name == "flows" else ""
                self._con.execute(
                    f"CREATE OR REPLACE VIEW {name} AS SELECT *{extra} FROM _empty_{name}"
                )
            else:
                self._con.execute(f"DROP VIEW IF EXISTS {name}")

    def sql(self, query: str, params: Sequence[Any] = ()) -> pa.Table:
        """Run DuckDB SQL over views of every dataset plus the bss tables (read-only).

        Views: ``flows`` (with text columns ``src_ip``, ``dst_ip``, ``exporter_ip``,
        ``next_hop_ip``), ``usage``, ``rated``, ``suspense``, ``rejected``, and
        ``collector_stats`` / ``counters`` when present; every bss table by its name
        (``bill``, ``customer``, ...). ``ip_text(blob)`` turns any address into text.
        """
        self._refresh_views()
        with self._attached():
            try:
                return self._con.sql(query, params=list(params)).to_arrow_table()
            except duckdb.Error as exc:
                raise ValidationError(f"sql: {exc}") from exc

    def tables(self) -> list[str]:
        """Names ``sql`` can query: the dataset views and the bss tables."""
        self._refresh_views()
        views = [n for n in _DATASETS if self._views.get(n) or _DATASETS[n][0] is not None]
        with self._attached() as ok:
            bss = sorted(self._bss_tables()) if ok else []
        return [*views, *bss]

    # -- aggregations (rating_engine.traffic.aggregate over the flows dataset) ----------------

    def _index(self) -> PrefixIndex:
        return prefix_index(self.paths)

    def top_n(
        self,
        by: str = "src_ip",
        metric: str = "bytes",
        n: int = 10,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        *,
        renormalise: bool = True,
        flow_filter: str | None = None,
    ) -> pa.Table:
        """Top-N talkers (``nfdump -s``): see :func:`bss.analyst.query.top_talkers` for ``by``."""
        window = None if start is None and end is None else (_lo(start), _hi(end))
        return top_talkers(self.paths, by, metric, n, window, renormalise=renormalise,
                           text=False, flow_filter=flow_filter)  # fmt: skip

    def top_conversations(
        self,
        metric: str = "bytes",
        n: int = 10,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
    ) -> pa.Table:
        """Top-N address pairs, both directions of a conversation merged."""
        return self.top_n("conversation", metric, n, start, end)

    def bucket_traffic(
        self,
        key: str = "subscription",
        bucket: str | int | None = "hour",
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        *,
        renormalise: bool = True,
    ) -> pa.Table:
        """Bytes, packets, flows per key (a ``by`` name of top-N) and time bucket."""
        window = None if start is None and end is None else (_lo(start), _hi(end))
        return flow_buckets(self.paths, key, bucket, window, renormalise=renormalise, text=False)

    def hour_of_week_profile(
        self, start: TimeLike | None = None, end: TimeLike | None = None
    ) -> pa.Table:
        """Per subscription and hour of week (0 = Monday 00 UTC): bytes/flows down and up."""
        index = self._index()
        cols = ["src_addr", "dst_addr", "flow_start", "bytes", "packets", "sampling_interval"]
        parts = [_profile(b, index) for b in self._scan(cols, start, end) if b.num_rows]
        if not parts:
            return _profile(FLOW_SCHEMA.empty_table().select(cols), index)
        table = pa.concat_tables(parts)
        sums = ["bytes_down", "bytes_up", "flows_down", "flows_up"]
        out = table.group_by(["subscription_id", "hour_of_week"]).aggregate(
            [(c, "sum") for c in sums]
        )
        out = out.rename_columns(["subscription_id", "hour_of_week", *sums])
        return out.sort_by([("subscription_id", "ascending"), ("hour_of_week", "ascending")])

    def distinct_peers(
        self,
        by: str = "src_ip",
        peer: str = "dst_ip",
        start: TimeLike | None = None,
        end: TimeLike | None = None,
    ) -> pa.Table:
        """Exact number of distinct ``peer`` values per ``by`` value, largest first."""
        k, p = _single_key(by), _single_key(peer)
        cols = list(dict.fromkeys([k, p, "flow_start", "bytes", "packets"]))
        parts = [peer_pairs(b, k, p) for b in self._scan(cols, start, end)]
        if not parts:
            parts = [peer_pairs(FLOW_SCHEMA.empty_table().select(cols), k, p)]
        return count_peers(combine_peer_pairs(parts))

    def percentile_95(self, period: str) -> pa.Table:
        """95th percentile of 5-minute rates per subscription for a billing period (YYYY-MM)."""
        bounds = parse_period(period)
        p0, p1 = bounds.start_us(), bounds.end_us()
        index = self._index()
        cols = ["src_addr", "dst_addr", "flow_start", "flow_end", "bytes", "sampling_interval"]
        scan = self._scan(cols, bounds.start - _P95_LOOKBACK, bounds.end)
        parts = [percentile_samples(b, index, p0, p1) for b in scan if b.num_rows]
        if not parts:
            parts = [percentile_samples(FLOW_SCHEMA.empty_table().select(cols), index, p0, p1)]
        return p95_from_samples(combine_samples(parts), index, p0, p1)

    def _scan(
        self, cols: list[str], start: TimeLike | None, end: TimeLike | None
    ) -> Iterator[pa.RecordBatch]:
        if not dataset_files(self.paths.flows):
            return iter(())
        return scan_flows(self.paths.flows, cols, window_of(start, end))

    def subscription_labels(self) -> dict[int, str]:
        """``subscription_id -> "customer (id)"`` for legends and tables."""
        subs = self.subscriptions()
        out: dict[int, str] = {}
        for sid, name in zip(
            subs.column("subscription_id").to_pylist(),
            subs.column("customer_name").to_pylist(),
            strict=True,
        ):
            out[int(sid)] = f"{name} ({sid})"
        return out


def _quote(text: str) -> str:
    return text.replace("'", "''")


def _lo(value: TimeLike | None) -> TimeLike:
    return -(2**63) if value is None else value


def _hi(value: TimeLike | None) -> TimeLike:
    return 2**63 - 1 if value is None else value


def _single_key(name: str) -> str:
    key = BY_KEYS.get(name, (name,))
    if len(key) != 1 or key[0] in ("subscription", "input_if", "output_if"):
        raise ValidationError(f"distinct peers: {name!r} is not a single flow column")
    return key[0]


def _period_filter(period: str | None, prefix: str = "") -> tuple[str, list[Any]]:
    if period is None:
        return "", []
    parse_period(period)  # validates the name
    return f"WHERE {prefix}period = ?", [period]


_FLOW_TEXT = (
    ", ip_text(src_addr) AS src_ip, ip_text(dst_addr) AS dst_ip,"
    " ip_text(exporter) AS exporter_ip, ip_text(next_hop) AS next_hop_ip"
)

_TICKETS_SQL = """
SELECT t.*,
       coalesce((SELECT list(l.alarm_id ORDER BY l.alarm_id) FROM bss.ticket_alarm l
                 WHERE l.ticket_id = t.id), []::BIGINT[]) AS alarm_ids,
       coalesce((SELECT list(c.customer_id ORDER BY c.customer_id) FROM bss.ticket_customer c
                 WHERE c.ticket_id = t.id), []::BIGINT[]) AS customer_ids
FROM bss.trouble_ticket t
ORDER BY t.created_at DESC, t.id DESC
"""

_SUBSCRIPTIONS_SQL = """
SELECT p.id AS subscription_id, p.account_id, a.customer_id, c.name AS customer_name,
       p.offering_id, p.status, s.key_type, s.key, s.active_from, s.active_to
FROM bss.product p
JOIN bss.service_identifier s ON s.product_id = p.id
JOIN bss.billing_account a ON a.id = p.account_id
JOIN bss.customer c ON c.id = a.customer_id
ORDER BY subscription_id, s.key_type, s.key, s.active_from
"""

_MONEY = pa.decimal128(18, 6)
_BILL = pa.schema(
    [
        ("bill_no", pa.string()),
        ("account_id", pa.int64()),
        ("period", pa.string()),
        ("period_start", _TS),
        ("period_end", _TS),
        ("bill_date", pa.date32()),
        ("due_date", pa.date32()),
        ("currency", pa.string()),
        ("amount_excl_tax", _MONEY),
        ("tax_rate", pa.decimal128(9, 6)),
        ("tax_amount", _MONEY),
        ("amount_incl_tax", _MONEY),
        ("amount_due", _MONEY),
        ("state", pa.string()),
    ]
)
_BILL_LINE = pa.schema(
    [
        ("bill_no", pa.string()),
        ("line_no", pa.int32()),
        ("line_type", pa.string()),
        ("product_id", pa.int64()),
        ("description", pa.string()),
        ("quantity", pa.int64()),
        ("unit", pa.string()),
        ("amount", _MONEY),
        ("period", pa.string()),
        ("account_id", pa.int64()),
    ]
)
_CUST = pa.schema(
    [
        ("id", pa.int64()),
        ("external_id", pa.string()),
        ("name", pa.string()),
        ("status", pa.string()),
        ("created_at", _TS),
    ]
)
_ACCOUNT = pa.schema(
    [
        ("id", pa.int64()),
        ("external_id", pa.string()),
        ("customer_id", pa.int64()),
        ("name", pa.string()),
        ("currency", pa.string()),
        ("bill_cycle", pa.string()),
        ("payment_terms_days", pa.int32()),
        ("tax_jurisdiction", pa.string()),
        ("status", pa.string()),
        ("created_at", _TS),
        ("customer_name", pa.string()),
    ]
)
_SUBS = pa.schema(
    [
        ("subscription_id", pa.int64()),
        ("account_id", pa.int64()),
        ("customer_id", pa.int64()),
        ("customer_name", pa.string()),
        ("offering_id", pa.string()),
        ("status", pa.string()),
        ("key_type", pa.string()),
        ("key", pa.string()),
        ("active_from", _TS),
        ("active_to", _TS),
    ]
)
