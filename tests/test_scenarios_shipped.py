"""The scenario files shipped in scenarios/ load, and say what their comments claim."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from slit.config import load_scenario
from slit.experiment.scenario import default_scenario, size_fleet

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_scenario_loads(path: Path) -> None:
    scenario = load_scenario(path)
    assert scenario.sites


def test_homogeneous_fleet_is_one_gpu_generation_sized_like_the_default() -> None:
    homogeneous = load_scenario(SCENARIOS / "homogeneous.yaml")
    default = default_scenario()
    assert {s.replica for s in homogeneous.sites} == {homogeneous.sites[0].replica}
    assert homogeneous.sites[0].replica.gpu == "H100-SXM5-80GB"
    assert homogeneous.site_ids == default.site_ids
    assert homogeneous.demand.origins == default.demand.origins
    assert homogeneous.start_utc == default.start_utc and homogeneous.hours == default.hours
    week = pd.date_range(default.start_utc, periods=7 * 24 * 4, freq="15min")
    peak = homogeneous.demand.rate_rps(week).max(axis=0)
    for k, site in enumerate(homogeneous.sites):
        # Stale if the sizing rule changes: regenerate the file with the same rule.
        assert site.installed == size_fleet(float(peak[k]), site.replica,
                                            homogeneous.code_share), site.region_id
