"""Scale-out: the per-partition steps of billing and traffic queries as tasks.

Per-partition functions (rate a bucket of usage days, attribute a day of flows, re-rate a
billed period) and associative partial results combined in a tree; an executor runs them
in this process or on a Dask cluster (``dask.distributed``, imported only when a
scheduler is asked for) with equal results. See ``docs/scale-out.md``.
"""

from __future__ import annotations

from rating_engine.scale.cluster import SCHEDULER_ENV, SchedulerSpec, open_client, parse_scheduler
from rating_engine.scale.executor import (
    DaskExecutor,
    Executor,
    InProcessExecutor,
    executor_for,
    tree_reduce,
)

__all__ = [
    "SCHEDULER_ENV",
    "DaskExecutor",
    "Executor",
    "InProcessExecutor",
    "SchedulerSpec",
    "executor_for",
    "open_client",
    "parse_scheduler",
    "tree_reduce",
]
