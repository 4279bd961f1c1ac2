"""Independent work of one run (site simulations, surrogate training runs) on Ray, when there is
a Ray runtime to use.

``parallel_map`` runs each item as a Ray task when this process is a Ray driver (``ray.init``
was called: by ``slit sweep``'s parent, a user's script, or ``slit run --workers``), and one
after another in this process otherwise, so a run needs no cluster and works on one core. Inside
a Ray task (a sweep's cell) it stays serial: the sweep already keeps every CPU busy with cells.
Results come back in the order of the items either way, so a run's figures do not depend on it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

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
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=workers or os.cpu_count() or 1, include_dashboard=False,
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
