"""Subscriptions as the rating engine wants them: service identifiers bound to tariffs in time."""

from __future__ import annotations

from datetime import datetime

import duckdb
import pyarrow as pa

from bss.db import arrow_query
from rating_engine.schemas import SUBSCRIPTION_SCHEMA

__all__ = ["subscription_table"]


def subscription_table(conn: duckdb.DuckDBPyConnection, until: datetime) -> pa.Table:
    """Every binding of a service identifier to a tariff that starts before ``until``.

    A binding is the intersection of the identifier's activity and the validity of
    its product's usage price, so a tariff change mid-period rates each side with
    its own tariff. Identifiers of products without a usage price are left out: their
    usage is rejected by rating as ``unknown_subscription``.
    """
    table = arrow_query(
        conn,
        """
        SELECT p.id AS subscription_id, p.account_id, s.key_type, s.key, pr.tariff_id,
               greatest(s.active_from, pr.valid_from) AS active_from,
               CASE WHEN s.active_to IS NULL THEN pr.valid_to
                    WHEN pr.valid_to IS NULL THEN s.active_to
                    ELSE least(s.active_to, pr.valid_to) END AS active_to
        FROM service_identifier s
        JOIN product p ON p.id = s.product_id
        JOIN product_offering_price pr
          ON pr.offering_id = p.offering_id AND pr.price_type = 'usage'
        WHERE s.active_from < $until
          AND (s.active_to IS NULL OR pr.valid_from < s.active_to)
          AND (pr.valid_to IS NULL OR s.active_from < pr.valid_to)
        ORDER BY subscription_id, key_type, key, active_from
        """,
        {"until": until},
    )
    return table.cast(SUBSCRIPTION_SCHEMA)
