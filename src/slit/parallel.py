"""Independent work of one run (site simulations, surrogate training runs) on Ray, when there is
a Ray runtime to use.

``parallel_map`` runs each item as a Ray task when this process is a Ray driver (``ray.init``
was called: by ``slit sweep``'s parent, a user's script, or ``slit run --workers``), and one
after another in this process otherwise, so a run needs no cluster and works on one core. Inside
a Ray task (a sweep's cell) it stays serial: the sweep already keeps every CPU busy with cells.
Results come back in the order of the items either way, so a run's figures do not depend on it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


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
