"""Lifecycle figures: load time from the cited measurement, loading power."""

from __future__ import annotations

import pytest

from slit.serving.catalog import make_replica
from slit.serving.lifecycle import (
    STARTUP_S,
    load_time_s,
    loading_energy_kwh,
    loading_power_w,
)
from slit.serving.power import replica_power


def test_load_time_reproduces_the_measurement() -> None:
    # ServerlessLLM: Llama-2-70B loads in about 84 s (read as a 4-GPU replica).
    assert load_time_s(make_replica("Llama-2-70B", "A100-SXM4-80GB", 4)) == pytest.approx(84.0)


def test_load_time_grows_with_bytes_per_gpu() -> None:
    small = load_time_s(make_replica("Llama-3.1-8B", "H100-SXM5-80GB", 1))
    big_tp4 = load_time_s(make_replica("Llama-3.1-70B", "H100-SXM5-80GB", 4))
    big_tp8 = load_time_s(make_replica("Llama-3.1-70B", "A100-SXM4-80GB", 8))
    assert STARTUP_S < small < big_tp4
    assert big_tp8 < big_tp4  # half the bytes per GPU
    # The default replicas sit in the 50-110 s range observed in production stacks.
    for t in (small, big_tp4, big_tp8):
        assert 45.0 <= t <= 110.0


def test_loading_power_is_the_idle_draw_and_energy_is_power_times_time() -> None:
    spec = make_replica("Llama-3.1-70B", "H100-SXM5-80GB", 4)
    assert loading_power_w(spec) == pytest.approx(replica_power(spec).idle_w)
    assert loading_energy_kwh(spec) == pytest.approx(
        loading_power_w(spec) * load_time_s(spec) / 3.6e6)
