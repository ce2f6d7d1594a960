"""``--scheduler``: the per-command option that runs a command's partition steps on Dask.

``tcp://HOST:PORT`` (a running ``dask scheduler``), ``local:N`` (a local cluster of N
worker processes for this command), or ``none``; ``$RATING_ENGINE_SCHEDULER`` is the
default. Dask is imported only when one is asked for, so commands start as fast as
before without it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer

from collectors.workspace import WorkspacePaths

__all__ = ["SchedulerOption", "scheduler_client"]

SchedulerOption = Annotated[
    str | None,
    typer.Option(
        "--scheduler",
        envvar="RATING_ENGINE_SCHEDULER",
        help="run the partition steps on Dask: tcp://HOST:PORT, local:N (N worker "
        "processes started for the command) or none",
        show_default=False,
    ),
]


@contextmanager
def scheduler_client(text: str | None, workspace: WorkspacePaths) -> Iterator[Any | None]:
    """A checked ``dask.distributed.Client`` for ``text``, or None to run in process.

    The scheduler is reached, and every worker checked to import the package and see the
    workspace, before the command writes anything.
    """
    from rating_engine.scale.cluster import parse_scheduler

    spec = parse_scheduler(text)
    if spec is None:
        yield None
        return
    from rating_engine.scale.cluster import open_client

    with open_client(spec, workspace.root) as client:
        yield client
