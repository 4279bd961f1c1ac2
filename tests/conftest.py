"""Shared fixtures: where the real data lives for tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _real_data_dir() -> Path:
    env = os.environ.get("SLIT_TEST_DATA_DIR")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real data folder (``../shared/data`` by default, or ``$SLIT_TEST_DATA_DIR``)."""
    path = _real_data_dir()
    if not (path / "regions").is_dir():
        pytest.skip(f"real data not found at {path}")
    return path


@pytest.fixture(scope="module")
def ray_local():
    """Ray's local runtime on two CPUs, loopback only, for one test module's tests; shut down
    after the module if started here."""
    import ray

    from slit.parallel import start_ray

    started = start_ray(None, 2)
    yield
    if started:
        ray.shutdown()
