"""Errors of the business layer (one base, ``BssError``, under the common root)."""

from __future__ import annotations

from collectors.errors import RatingEngineError

__all__ = [
    "BillingError",
    "BssError",
    "IllegalTransitionError",
    "NotFoundError",
    "ValidationError",
    "WorkspaceLockedError",
]


class BssError(RatingEngineError):
    """Base for the bss package."""


class NotFoundError(BssError):
    """An entity (customer, account, offering, order, bill) does not exist."""


class ValidationError(BssError):
    """Input refused before anything was written."""


class IllegalTransitionError(BssError):
    """A lifecycle transition that the state machine does not allow."""


class BillingError(BssError):
    """A billing run cannot proceed (period not ended, nothing to bill against, ...)."""


class WorkspaceLockedError(BssError):
    """Another process holds the workspace's DuckDB file for writing."""
