"""Errors of the rating engine (one base, ``RatingError``, under the common root)."""

from __future__ import annotations

from collectors.errors import RatingEngineError

__all__ = ["RatingError", "TariffError"]


class RatingError(RatingEngineError):
    """Base for the rating_engine package."""


class TariffError(RatingError):
    """A tariff file or tariff definition is invalid; the message names file, tariff and field."""
