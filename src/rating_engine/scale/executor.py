"""Where per-partition tasks run: in this process, or as tasks on a Dask cluster.

Both executors take the same top-level functions (defined in installed modules, so Dask
workers import them by name) and give the same results: :meth:`Executor.map` keeps the
order of its items, and :meth:`Executor.reduce` combines partial results in a tree of
fan-in ``fanin``. Every combine used with it is associative and its final result is put
in canonical order by the caller, so the shape of the tree never shows in a result.

Dask is imported only by :class:`DaskExecutor`'s user (a ``Client`` is passed in), so
the in-process path never loads it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from collectors.errors import RatingEngineError
from rating_engine.errors import ScaleOutError

__all__ = ["DaskExecutor", "Executor", "InProcessExecutor", "executor_for", "tree_reduce"]

T = TypeVar("T")
R = TypeVar("R")

#: Partial results combined at once in a reduction tree.
FANIN = 8


def tree_reduce(combine: Callable[..., T], parts: Sequence[T], fanin: int = FANIN) -> T:
    """Combine ``parts`` level by level, ``fanin`` at a time (``combine(*group)``)."""
    if not parts:
        raise ValueError("tree_reduce: nothing to combine")
    level = list(parts)
    while len(level) > 1:
        level = [
            level[i] if len(level[i : i + fanin]) == 1 else combine(*level[i : i + fanin])
            for i in range(0, len(level), fanin)
        ]
    return level[0]


class Executor(Protocol):
    """Runs top-level functions over items; ``shared`` values go to every call by keyword
    (named unlike ``Client.map``'s own parameters: ``key``, ``workers``, ``retries``, ...)."""

    workers: int

    def share(self, value: Any) -> Any:
        """A handle to ``value`` that every task can take (sent to each worker once)."""

    def map(
        self, fn: Callable[..., R], items: Iterable[Any], *, name: str, **shared: Any
    ) -> list[R]:
        """``[fn(item, **shared) for item in items]``, in the items' order."""

    def reduce(self, combine: Callable[..., T], parts: Sequence[Any], *, name: str) -> T:
        """``parts`` (results or the handles :meth:`map_partials` gave) combined as a tree."""

    def map_partials(
        self, fn: Callable[..., Any], items: Iterable[Any], *, name: str, **shared: Any
    ) -> list[Any]:
        """Like :meth:`map`, but the results may stay where they were computed (for
        :meth:`reduce`)."""


class InProcessExecutor:
    """Runs every task here, one after the other (the kernels use the cores themselves)."""

    workers = 1

    def share(self, value: Any) -> Any:
        return value

    def map(
        self, fn: Callable[..., R], items: Iterable[Any], *, name: str, **shared: Any
    ) -> list[R]:
        return [fn(item, **shared) for item in items]

    def map_partials(
        self, fn: Callable[..., Any], items: Iterable[Any], *, name: str, **shared: Any
    ) -> list[Any]:
        return self.map(fn, items, name=name, **shared)

    def reduce(self, combine: Callable[..., T], parts: Sequence[Any], *, name: str) -> T:
        result: T = tree_reduce(combine, parts)
        return result


class DaskExecutor:
    """Tasks on a ``dask.distributed`` cluster through ``client``.

    Task keys are ``<name>-<run>-<i>``: a task lost with its worker is run again by the
    scheduler under the same key, and the per-partition functions write files whose names
    depend only on their inputs, so a repeated task replaces its own output.
    """

    def __init__(self, client: Any, run: str) -> None:
        self.client = client
        self.run = run
        self.workers = max(1, len(client.scheduler_info(n_workers=-1).get("workers", {})))

    def share(self, value: Any) -> Any:
        return self.client.scatter(value, broadcast=True, hash=False)

    def _keys(self, name: str, n: int) -> list[str]:
        return [f"{name}-{self.run}-{i}" for i in range(n)]

    def map_partials(
        self, fn: Callable[..., Any], items: Iterable[Any], *, name: str, **shared: Any
    ) -> list[Any]:
        todo = list(items)
        return list(
            self.client.map(fn, todo, key=self._keys(name, len(todo)), retries=2, pure=False,
                            **shared)
        )  # fmt: skip

    def map(
        self, fn: Callable[..., R], items: Iterable[Any], *, name: str, **shared: Any
    ) -> list[R]:
        futures = self.map_partials(fn, items, name=name, **shared)
        return list(self._gather(futures))

    def reduce(self, combine: Callable[..., T], parts: Sequence[Any], *, name: str) -> T:
        if not parts:
            raise ValueError("reduce: nothing to combine")
        level, depth = list(parts), 0
        while len(level) > 1:
            groups = [level[i : i + FANIN] for i in range(0, len(level), FANIN)]
            keys = self._keys(f"{name}-combine{depth}", len(groups))
            level = [
                g[0] if len(g) == 1 else self.client.submit(combine, *g, key=k, retries=2)
                for g, k in zip(groups, keys, strict=True)
            ]
            depth += 1
        (result,) = self._gather(level)
        return result  # type: ignore[no-any-return]

    def _gather(self, futures: list[Any]) -> list[Any]:
        try:
            return list(self.client.gather(futures))
        except RatingEngineError:
            raise  # a task's own error (bad input): as the in-process run reports it
        except Exception as exc:  # the cluster's: a worker gone too often, a lost connection
            what = f"{type(exc).__name__}: {exc}"
            raise ScaleOutError(f"a task failed on the cluster: {what}") from exc


def executor_for(client: Any | None, run: str, root: Path | None = None) -> Executor:
    """The in-process executor for ``client=None``, else tasks on ``client``'s cluster,
    whose workers are first checked to import the package and see ``root``."""
    if client is None:
        return InProcessExecutor()
    if root is not None:
        from rating_engine.scale.cluster import check_workers

        check_workers(client, root)
    return DaskExecutor(client, run)
