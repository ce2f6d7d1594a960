"""Command-line interface (filled in by the foundation work)."""

from __future__ import annotations


def main() -> None:
    raise SystemExit("not wired yet")
