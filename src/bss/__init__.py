"""BSS on DuckDB: customers, catalog, orders, subscriptions, billing runs, bills."""

from .errors import BssError

__all__ = ["BssError"]
