"""The notebook entry point: a workspace opened read-only, as polars DataFrames and Arrow tables.

    from bss.analyst.api import Workspace
    ws = Workspace.open()                      # $RATING_ENGINE_WORKSPACE, ./ or ../workspace
    ws.flows("2026-10-05", "2026-10-06")       # polars, addresses as text
    ws.arrow.flows()                           # the same as Arrow, canonical FLOW_SCHEMA
    ws.top_n("src_ip", "bytes", 10)            # nfdump -s srcip/bytes
    ws.stats("srcip/bytes", "dstport/flows", flow_filter="proto tcp")   # nfdump -s ... 'proto tcp'
    ws.list_flows("dst port 443", order="tstart", limit=20)           # nfdump -c 20 -O tstart
    ws.sql("SELECT c.name, b.amount_due FROM bill b JOIN billing_account a ON ...")

Read-only by construction (see :mod:`bss.analyst.arrow`): a notebook left open never
holds a lock that would stop the collector, the rater or a billing run from writing.
Polars frames show addresses as text (for people); the ``arrow`` variants keep the
canonical types (16-byte addresses, uint64 volumes, int64 micro-units of money).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import polars as pl
import pyarrow as pa

from bss.analyst.arrow import ALARM_COLUMNS, TICKET_COLUMNS, ArrowWorkspace
from bss.analyst.query import TimeLike, addresses_as_text
from bss.errors import ValidationError
from collectors.workspace import (
    DEFAULT_WORKSPACE,
    WORKSPACE_ENV,
    WorkspacePaths,
    resolve_workspace,
)

__all__ = ["ALARM_COLUMNS", "TICKET_COLUMNS", "ArrowWorkspace", "Workspace"]


def _pl(table: pa.Table) -> pl.DataFrame:
    return cast(pl.DataFrame, pl.from_arrow(table))


@dataclass
class Workspace:
    """A workspace opened read-only for analysis; every method returns a polars DataFrame.

    ``ws.arrow`` has the same methods returning Arrow tables with canonical types.
    """

    arrow: ArrowWorkspace
    text_addresses: bool = True

    @classmethod
    def open(cls, path: str | os.PathLike[str] | None = None) -> Workspace:
        """Open ``path``, else ``$RATING_ENGINE_WORKSPACE``, else ``./workspace``, else
        ``../workspace``: a notebook in ``examples/`` (Jupyter starts it there) finds the
        workspace ``rating-engine demo`` made in the folder above."""
        if path is not None or os.environ.get(WORKSPACE_ENV):
            paths = resolve_workspace(path)
            if not paths.root.is_dir():
                raise ValidationError(f"workspace {paths.root} does not exist")
            return cls(ArrowWorkspace(paths))
        tried = [Path.cwd() / DEFAULT_WORKSPACE, Path.cwd().parent / DEFAULT_WORKSPACE]
        for root in tried:
            if root.is_dir():
                return cls(ArrowWorkspace(resolve_workspace(root)))
        raise ValidationError(
            f"no workspace: neither {tried[0]} nor {tried[1]} exists and "
            f"${WORKSPACE_ENV} is not set (make one with `rating-engine demo`, or pass a path)"
        )

    @property
    def paths(self) -> WorkspacePaths:
        """The workspace's folder layout."""
        return self.arrow.paths

    def close(self) -> None:
        """Release the private DuckDB connection."""
        self.arrow.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Workspace({str(self.paths.root)!r})"

    def _df(self, table: pa.Table) -> pl.DataFrame:
        return _pl(addresses_as_text(table) if self.text_addresses else table)

    def flows(
        self,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        *,
        columns: Sequence[str] | None = None,
    ) -> pl.DataFrame:
        """Flows starting in ``[start, end)``; addresses as text."""
        return self._df(self.arrow.flows(start, end, columns=columns))

    def usage(
        self,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        *,
        columns: Sequence[str] | None = None,
    ) -> pl.DataFrame:
        """Usage records starting in ``[start, end)``."""
        return self._df(self.arrow.usage(start, end, columns=columns))

    def rated(
        self,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        *,
        columns: Sequence[str] | None = None,
    ) -> pl.DataFrame:
        """Rated usage starting in ``[start, end)`` (cost in int64 micro-units)."""
        return self._df(self.arrow.rated(start, end, columns=columns))

    def suspense(self) -> pl.DataFrame:
        """Usage refused by rating, with reasons."""
        return self._df(self.arrow.suspense())

    def rejected(self) -> pl.DataFrame:
        """Input refused at ingest or decode, with reasons."""
        return self._df(self.arrow.rejected())

    def bills(self, period: str | None = None) -> pl.DataFrame:
        """Bills of a period (``YYYY-MM``) or of all periods."""
        return self._df(self.arrow.bills(period))

    def bill_lines(self, period: str | None = None) -> pl.DataFrame:
        """Bill lines of a period or of all periods."""
        return self._df(self.arrow.bill_lines(period))

    def customers(self) -> pl.DataFrame:
        """Customers."""
        return self._df(self.arrow.customers())

    def accounts(self) -> pl.DataFrame:
        """Billing accounts with their customer's name."""
        return self._df(self.arrow.accounts())

    def subscriptions(self) -> pl.DataFrame:
        """Products with their service identifiers and customers."""
        return self._df(self.arrow.subscriptions())

    def alarms(self) -> pl.DataFrame:
        """Alarms, newest first (empty if the workspace has none)."""
        return self._df(self.arrow.alarms())

    def tickets(self) -> pl.DataFrame:
        """Trouble tickets (empty if the workspace has none)."""
        return self._df(self.arrow.tickets())

    def sql(self, query: str, params: Sequence[Any] = ()) -> pl.DataFrame:
        """DuckDB SQL over every dataset and bss table (see :meth:`ArrowWorkspace.sql`)."""
        return self._df(self.arrow.sql(query, params))

    def tables(self) -> list[str]:
        """Names ``sql`` can query."""
        return self.arrow.tables()

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
    ) -> pl.DataFrame:
        """Top-N talkers with percentages of the window's totals (``nfdump -s``), of the
        flows an nfdump ``flow_filter`` matches (all without one)."""
        return self._df(self.arrow.top_n(by, metric, n, start, end, renormalise=renormalise,
                                         flow_filter=flow_filter))  # fmt: skip

    def stats(
        self,
        *stats: str,
        aggregate: Sequence[str] = (),
        order: Sequence[str] = (),
        flow_filter: str | None = None,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        n: int = 10,
        renormalise: bool = True,
    ) -> list[pl.DataFrame]:
        """``nfdump -s srcip/bytes -s dstport/flows -A ... 'filter'``: one frame per
        statistic and order, all from one scan (:func:`bss.analyst.nfdump_queries.flow_stats`)."""
        from bss.analyst.nfdump_queries import flow_stats

        window = None if start is None and end is None else (start, end)
        tables, _totals = flow_stats(
            self.paths, list(stats), aggregate=aggregate, order=order, flow_filter=flow_filter,
            window=window, n=n, renormalise=renormalise, text=self.text_addresses,
        )  # fmt: skip
        return [_pl(t) for t in tables]

    def list_flows(
        self,
        flow_filter: str | None = None,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        *,
        order: str | None = None,
        limit: int | None = None,
    ) -> pl.DataFrame:
        """The flows an nfdump filter matches (``nfdump -c limit -O tstart 'filter'``)."""
        from bss.analyst.nfdump_queries import list_flows

        window = None if start is None and end is None else (start, end)
        return self._df(list_flows(self.paths, flow_filter=flow_filter, window=window,
                                   order=order, limit=limit))  # fmt: skip

    def top_conversations(
        self,
        metric: str = "bytes",
        n: int = 10,
        start: TimeLike | None = None,
        end: TimeLike | None = None,
    ) -> pl.DataFrame:
        """Top-N conversations (address pairs, both directions merged)."""
        return self._df(self.arrow.top_conversations(metric, n, start, end))

    def bucket_traffic(
        self,
        key: str = "subscription",
        bucket: str | int | None = "hour",
        start: TimeLike | None = None,
        end: TimeLike | None = None,
        *,
        renormalise: bool = True,
    ) -> pl.DataFrame:
        """Bytes, packets, flows per key and time bucket."""
        return self._df(self.arrow.bucket_traffic(key, bucket, start, end, renormalise=renormalise))

    def hour_of_week_profile(
        self, start: TimeLike | None = None, end: TimeLike | None = None
    ) -> pl.DataFrame:
        """Usage per subscription and hour of week (168 cells)."""
        return self._df(self.arrow.hour_of_week_profile(start, end))

    def distinct_peers(
        self,
        by: str = "src_ip",
        peer: str = "dst_ip",
        start: TimeLike | None = None,
        end: TimeLike | None = None,
    ) -> pl.DataFrame:
        """Distinct peers per key, largest first."""
        return self._df(self.arrow.distinct_peers(by, peer, start, end))

    def percentile_95(self, period: str) -> pl.DataFrame:
        """95th-percentile rates per subscription for a billing period."""
        return self._df(self.arrow.percentile_95(period))

    def subscription_labels(self) -> dict[int, str]:
        """``subscription_id -> "customer (id)"``."""
        return self.arrow.subscription_labels()
