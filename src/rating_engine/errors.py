"""Errors of the rating engine (one base, ``RatingError``, under the common root)."""

from __future__ import annotations

from collectors.errors import RatingEngineError

__all__ = ["FilterError", "RatingError", "ScaleOutError", "TariffError"]


class RatingError(RatingEngineError):
    """Base for the rating_engine package."""


class FilterError(RatingError):
    """A flow filter expression that does not parse or asks for something flows lack.

    ``position`` is the 0-based character offset of the offending token in ``text``;
    the message repeats the expression with a caret under that position.
    """

    def __init__(self, message: str, text: str = "", position: int | None = None) -> None:
        shown = message
        if position is not None:
            shown += f" at position {position}\n  {text}\n  {' ' * position}^"
        super().__init__(shown)
        self.text = text
        self.position = position
        self.details = {"filter": text, "position": position}


class TariffError(RatingError):
    """A tariff file or tariff definition is invalid; the message names file, tariff and field."""


class ScaleOutError(RatingError):
    """Work cannot run on the cluster asked for: the scheduler is unreachable, a worker
    cannot import the package or cannot see the workspace, or a task was lost too often."""
