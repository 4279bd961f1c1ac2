"""``slit run``'s runtime: the machine's cores by default (Ray locally above one worker), one
process without Ray on ``--workers 1``, a cluster with ``--address``."""

from __future__ import annotations

from contextlib import contextmanager

import pytest

from slit.cli import run_commands


@pytest.fixture
def started(monkeypatch):
    """What ``ray_runtime`` was asked to start (address, workers), without starting Ray."""
    calls: list[tuple[str | None, int | None]] = []

    @contextmanager
    def fake(address, workers):
        calls.append((address, workers))
        yield

    monkeypatch.setattr(run_commands, "ray_runtime", fake)
    return calls


@pytest.mark.parametrize(("cpus", "address", "workers", "expected"), [
    (2, None, None, [(None, 2)]),  # default: every usable CPU, Ray locally
    (8, None, None, [(None, 8)]),
    (1, None, None, []),  # one CPU: no Ray
    (8, None, 1, []),  # --workers 1: the serial path
    (8, None, 3, [(None, 3)]),
    (8, "auto", None, [("auto", None)]),  # --address: join, whatever the local CPUs
])
def test_the_default_run_uses_the_machines_cores(started, monkeypatch, cpus, address, workers,
                                                 expected):
    monkeypatch.setattr(run_commands, "usable_cpus", lambda: cpus)
    with run_commands.local_runtime(address, workers):
        pass
    assert started == expected


def test_usable_cpus_counts_the_affinity():
    import os

    from slit.parallel import usable_cpus

    assert usable_cpus() == len(os.sched_getaffinity(0)) >= 1


def test_a_local_ray_runtime_defaults_to_the_usable_cpus(monkeypatch):
    """Without ``workers``, Ray starts as many workers as this process may run on (its affinity,
    e.g. a container's cpuset), not the machine's CPU count."""
    import ray

    from slit import parallel

    asked: dict[str, object] = {}
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: asked.update(kwargs))
    monkeypatch.setattr(parallel, "usable_cpus", lambda: 3)
    monkeypatch.setattr(parallel.os, "cpu_count", lambda: 64)
    assert parallel.start_ray(None, None) is True
    assert asked["num_cpus"] == 3
    asked.clear()
    parallel.start_ray(None, 5)
    assert asked["num_cpus"] == 5
