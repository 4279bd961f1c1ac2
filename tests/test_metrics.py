"""Policy metrics: both water conventions from the same simulated energy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from slit.experiment.metrics import policy_metrics
from slit.footprint.grid_water import ewif_l_per_kwh
from slit.simulate.site import SiteSimResult


def _sim(n: int) -> SiteSimResult:
    ttft = np.full(n, 0.5)
    return SiteSimResult(
        ttft_s=ttft, ttft_with_network_s=ttft + 0.1, tpot_s=np.full(n, 0.02),
        e2e_s=np.full(n, 3.0), energy_j=np.full(n, 100.0), completed=np.ones(n, bool),
        arrived=np.ones(n, bool), arrival_s=np.arange(n, dtype=float),
        output_tokens=np.full(n, 100), interval_s=60.0, end_s=60.0,
        it_energy_j_per_interval=np.array([1.0]), replica_energy_j_per_interval=np.ones((1, 1)),
        busy_replica_s_per_interval=np.ones(1), request_area_s=1.0)


def test_water_is_reported_with_and_without_hydro_reservoir_evaporation() -> None:
    hourly = pd.DataFrame({
        "site": ["BR-SP", "DE-LU"], "it_energy_kwh": [8.0, 4.0],
        "facility_energy_kwh": [10.0, 5.0], "carbon_kg": [1.0, 2.0],
        "water_onsite_l": [3.0, 1.0],
        "water_offsite_l": [10.0 * ewif_l_per_kwh("BR-SP"), 5.0 * ewif_l_per_kwh("DE-LU")],
        "cost_usd": [1.0, 1.0]})
    m = policy_metrics([_sim(10)], hourly, slo_ttft_s=1.0)
    with_hydro = 10.0 * ewif_l_per_kwh("BR-SP", True) + 5.0 * ewif_l_per_kwh("DE-LU", True)
    assert m.water_offsite_with_hydro_l == pytest.approx(with_hydro)
    assert m.water_with_hydro_l == pytest.approx(4.0 + with_hydro)
    assert m.water_l == pytest.approx(4.0 + hourly["water_offsite_l"].sum())
    assert m.refused == 0 and m.preemptions == 0 and m.completed == 10
    # BR-SP's grid is mostly hydro: the convention changes its water intensity many-fold.
    assert ewif_l_per_kwh("BR-SP", True) > 10 * ewif_l_per_kwh("BR-SP")


def test_refusals_and_preemptions_are_summed_over_sites() -> None:
    from dataclasses import replace
    first = replace(_sim(4), refused=np.array([True, False, False, False]), n_preemptions=3)
    second = replace(_sim(2), n_preemptions=2)
    hourly = pd.DataFrame({"site": ["SG"], "it_energy_kwh": [1.0], "facility_energy_kwh": [1.1],
                           "carbon_kg": [0.1], "water_onsite_l": [0.1],
                           "water_offsite_l": [0.1], "cost_usd": [0.1]})
    m = policy_metrics([first, second], hourly, slo_ttft_s=1.0)
    assert (m.refused, m.preemptions, m.requests) == (1, 5, 6)
