"""Independent work of one run (site simulations, surrogate training runs) on Ray, when there is
a Ray runtime to use.

``parallel_map`` runs each item as a Ray task when this process is a Ray driver (``ray.init``
was called: by ``slit sweep``'s parent, a user's script, or ``slit run --workers``), and one
after another in this process otherwise, so a run needs no cluster and works on one core. Inside
a Ray task (a sweep's cell) it stays serial: the sweep already keeps every CPU busy with cells.
Results come back in the order of the items either way, so a run's figures do not depend on it.

``submit_each`` is the same choice for work whose results are wanted later, one at a time
(``plan_receding`` submits every interval's MILP solve before it plans SLIT): Ray tasks started
at once when this process drives Ray, else each call made when its result is first asked for,
at the point where a serial run has always made it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def start_ray(address: str | None = None, workers: int | None = None) -> bool:
    """Start Ray locally (loopback, no dashboard) or join ``address``; False if Ray was already
    running in this process (then the caller must not shut it down)."""
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no network calls home
    if address:
        ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
    else:
        # logging_level: Ray's own start-up lines (INFO, the token-auth WARNING) are not the
        # run's output; its errors still show.
        # usable_cpus: a process pinned to fewer CPUs (taskset, a container's cpuset) must not
        # start more Ray workers than it may run at once.
        ray.init(num_cpus=workers or usable_cpus(), include_dashboard=False,
                 logging_level=logging.ERROR,
                 log_to_driver=False, _node_ip_address="127.0.0.1")
    return True


@contextmanager
def ray_runtime(address: str | None = None, workers: int | None = None) -> Iterator[None]:
    """Ray for the duration of the block (``start_ray``), shut down after it if started here."""
    started_here = start_ray(address, workers)
    try:
        yield
    finally:
        if started_here:
            import ray

            ray.shutdown()


def ray_driver() -> bool:
    """Whether this process drives a Ray runtime (and is not itself a Ray worker)."""
    try:
        import ray
    except ImportError:  # Ray is a dependency, but a run never needs it
        return False
    if not ray.is_initialized():
        return False
    return bool(ray.get_runtime_context().worker.mode == ray.SCRIPT_MODE)


def ray_cpus() -> int:
    """CPUs of the Ray runtime this process drives (1 without one)."""
    if not ray_driver():
        return 1
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity where the OS tells it, else the CPU count)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


class Deferred(Generic[R]):
    """One call's result: a Ray task already running, or a call made here on first ``result()``
    (and kept)."""

    def __init__(self, fn: Callable[[Any], R], item: Any, ref: Any = None) -> None:
        self._fn: Callable[[Any], R] | None = None if ref is not None else fn
        self._item: Any = None if ref is not None else item
        self._ref = ref
        self._done = False
        self._value: R | None = None

    def result(self) -> R:
        if not self._done:
            if self._ref is not None:
                import ray

                self._value = ray.get(self._ref)
            else:
                assert self._fn is not None
                self._value = self._fn(self._item)
            self._done = True
            self._fn = self._item = self._ref = None  # drop the inputs once answered
        return self._value  # type: ignore[return-value]


def submit_each(fn: Callable[[T], R], items: Iterable[T]) -> list[Deferred[R]]:
    """``fn(item)`` for each item, as Ray tasks started now when this process drives Ray, else
    deferred: each call is made in this process when its ``result()`` is first asked for."""
    if not ray_driver():
        return [Deferred(fn, item) for item in items]
    import ray

    remote = ray.remote(num_cpus=1, max_retries=0)(fn)
    return [Deferred(fn, None, remote.remote(item)) for item in items]


def parallel_map(fn: Callable[[T], R], items: Iterable[T],
                 on_done: Callable[[int], None] | None = None) -> list[R]:
    """``[fn(item) for item in items]``, each call a Ray task when this process drives Ray.

    ``items`` may be a generator: run here, each item is built, used and dropped in turn, so
    only one is in memory at a time. ``on_done(n)`` is told how many calls have finished, after
    each one (in completion order on Ray; the results are in item order either way)."""
    if not ray_driver():
        out = []
        for item in items:
            out.append(fn(item))
            if on_done is not None:
                on_done(len(out))
        return out
    import ray

    remote = ray.remote(num_cpus=1, max_retries=0)(fn)
    refs = [remote.remote(item) for item in items]
    if on_done is not None:
        pending, done = list(refs), 0
        while pending:
            finished, pending = ray.wait(pending, num_returns=1)
            done += len(finished)
            on_done(done)
    return list(ray.get(refs))
