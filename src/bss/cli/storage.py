"""``rating-engine expire`` and ``compact``: keep datasets bounded and their parts few.

Both are safe while a collector writes (they take the dataset's maintenance lock for
their visible steps, :mod:`collectors.retention.lock`) and never touch what issued
bills rest on (:mod:`bss.billed_data`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer

from bss.cli.support import emit, get_state, table
from bss.errors import ValidationError

__all__ = ["register_storage"]

#: Datasets retention may shorten; billing's own (usage, rated, suspense) are never expired.
EXPIRABLE = ("flows", "packets", "counters", "quarantine", "collector_stats")
#: Datasets whose collector parts compaction merges.
COMPACTABLE = ("flows", "counters", "quarantine", "collector_stats")


def _parse(option: str, text: str, parser: Callable[[str], int]) -> int:
    try:
        return parser(text)
    except ValueError as exc:
        raise ValidationError(f"{option}: {exc}") from exc


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def expire(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Option(help="dataset: " + ", ".join(EXPIRABLE))] = "flows",
    older_than: Annotated[
        str | None, typer.Option(help="remove partitions that ended this long ago: 90d, 12h, 2w")
    ] = None,
    max_size: Annotated[
        str | None, typer.Option(help="then remove the oldest until the dataset fits: 50G, 500M")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="say what would go")] = False,
) -> None:
    """Remove a dataset's oldest partitions by age and/or size, like nfexpire.

    Partitions still being written and flows that issued bills rest on (or that a period
    not yet billed will rest on) are kept and listed with the reason.
    """
    from bss.billed_data import BILLING_DATASETS, flow_guard
    from collectors.retention.expire import apply_expiry, plan_expiry
    from collectors.retention.partitions import parse_duration, parse_size

    state = get_state(ctx)
    if dataset in BILLING_DATASETS:
        raise ValidationError(
            f"--dataset {dataset}: billing data is never expired (issued bills rest on it)"
        )
    if dataset not in EXPIRABLE:
        raise ValidationError(f"--dataset {dataset!r}: expected one of {', '.join(EXPIRABLE)}")
    seconds = None if older_than is None else _parse("--older-than", older_than, parse_duration)
    limit = None if max_size is None else _parse("--max-size", max_size, parse_size)
    if seconds is None and limit is None:
        raise ValidationError("give --older-than DURATION, --max-size SIZE or both")
    workspace = state.workspace
    guard = flow_guard(workspace) if dataset == "flows" else None
    plan = plan_expiry(
        workspace.root / dataset, older_than_s=seconds, max_bytes=limit, protect=guard
    )
    if not dry_run:
        apply_expiry(plan)
    payload = {**plan.to_dict(), "dry_run": dry_run}
    if not state.json:
        verb = "would remove" if dry_run else "removed"
        if plan.protected:
            table(
                state,
                f"{dataset}: kept",
                ["partition", "size", "why"],
                [(p.name, _size(p.size), why) for p, why in plan.protected],
            )
        state.console.print(
            f"{dataset}: {verb} {len(plan.remove)} partitions ({_size(plan.removed_bytes)}), "
            f"{_size(plan.bytes_after)} left"
            + (
                ""
                if plan.size_limit_met
                else f"; still above --max-size {max_size}: the rest is kept (see above)"
            ),
            highlight=False,
        )
    emit(state, payload)


def compact(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Option(help="dataset: " + ", ".join(COMPACTABLE))] = "flows",
    target_size: Annotated[str, typer.Option(help="size of a merged part")] = "256M",
    min_age: Annotated[
        str, typer.Option(help="only partitions that ended this long ago (late data settles)")
    ] = "1h",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="say what would be merged")] = False,
) -> None:
    """Merge each settled partition's small collector parts into large ones, atomically.

    Every row is kept exactly once; a reader sees the partition before or after, never
    both; content-named parts (from `ingest`) are left as they are.
    """
    from collectors.retention.compact import compact_dataset
    from collectors.retention.partitions import parse_duration, parse_size

    state = get_state(ctx)
    if dataset not in COMPACTABLE:
        raise ValidationError(f"--dataset {dataset!r}: expected one of {', '.join(COMPACTABLE)}")
    target = _parse("--target-size", target_size, parse_size)
    age = _parse("--min-age", min_age, parse_duration)
    result = compact_dataset(
        state.workspace.root / dataset, target_bytes=target, min_age_s=age, dry_run=dry_run
    )
    if not state.json:
        for name, why in result.skipped:
            state.console.print(f"skipped {name}: {why}", highlight=False)
        state.console.print(
            f"{dataset}: {'would merge' if dry_run else 'merged'} {result.parts_before} parts "
            f"in {len(result.partitions)} partitions"
            + (
                ""
                if dry_run
                else f" into {result.parts_after} ({result.rows} rows, {_size(result.bytes_before)}"
                f" -> {_size(result.bytes_after)})"
            ),
            highlight=False,
        )
    emit(state, {**result.to_dict(), "dry_run": dry_run})


def register_storage(app: typer.Typer) -> None:
    """Attach ``expire`` and ``compact`` to the root app."""
    app.command("expire")(expire)
    app.command("compact")(compact)
