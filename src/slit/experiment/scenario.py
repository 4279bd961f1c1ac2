"""A scenario: the sites and fleets, the users, the period, the SLO and the preference.

``default_scenario`` is the embedded default the main job runs: the 15 regions as both user
origins and sites, Llama-3.1-70B served on H100 (TP4) or A100 (TP8) replicas, each site's fleet
sized to serve its own region's peak demand at about 70 % utilisation, so that no site has spare
capacity by construction and every gain comes from time zones, signals and routing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from slit.data.regions import DEFAULT_REGION_IDS, get_region
from slit.errors import SlitInputError
from slit.footprint import CoolingType, SiteFootprintParams
from slit.optimise.metaheuristic import SearchSettings
from slit.optimise.preference import Preference
from slit.serving.catalog import ReplicaSpec, make_replica
from slit.simulate.capacity import slo_capacity_rps
from slit.workload.demand import DemandModel

DEFAULT_MODEL = "Llama-3.1-70B"
H100 = "H100-SXM5-80GB"
A100 = "A100-SXM4-80GB"
# Newer GPUs in the largest hyperscale markets, the previous generation elsewhere.
DEFAULT_H100_REGIONS = frozenset(
    {"US-CAL-CISO", "US-MIDA-PJM", "US-NY-NYIS", "US-TEX-ERCO", "DE-LU", "JP-TK", "KR", "SG"}
)
DEFAULT_START_UTC = pd.Timestamp("2023-07-12 00:00", tz="UTC")  # a mid-week summer day
DEFAULT_GLOBAL_RATE_RPS = 100.0
DEFAULT_PEAK_UTILISATION = 0.7
DEFAULT_SLO_TTFT_S = 1.5


@dataclass(frozen=True)
class Site:
    """A datacenter: where it is, what it serves with, how many replicas it has."""

    region_id: str
    replica: ReplicaSpec
    installed: int
    footprint: SiteFootprintParams

    def __post_init__(self) -> None:
        if self.installed < 1:
            raise SlitInputError(f"site {self.region_id}", f"installed replicas = "
                                 f"{self.installed}", "give at least 1 replica")


@dataclass(frozen=True)
class Scenario:
    """Everything a run needs. Times are UTC."""

    sites: tuple[Site, ...]
    demand: DemandModel
    start_utc: pd.Timestamp = DEFAULT_START_UTC
    hours: float = 24.0
    interval_s: float = 900.0
    slo_ttft_s: float = DEFAULT_SLO_TTFT_S
    slo_percentile: int = 99  # the SLO: this share of requests gets its first token in time
    # Plans are sized for the SLO less this share, to absorb forecast error and the load swings
    # of a Poisson stream inside an interval.
    slo_planning_margin: float = 0.1
    preference: Preference = field(default_factory=Preference)
    # origin -> the only sites allowed to serve it (data residency); absent origins are free.
    pins: dict[str, tuple[str, ...]] = field(default_factory=dict)
    data_dir: Path | None = None
    seed: int = 0
    carbon_basis: str = "direct"
    search: SearchSettings = field(default_factory=SearchSettings)
    history_days: int = 28  # signal history before the start, to train the forecasters
    name: str = "default"

    def __post_init__(self) -> None:
        site_ids = [s.region_id for s in self.sites]
        if len(set(site_ids)) != len(site_ids):
            raise SlitInputError("sites", "a region appears twice", "list each site once")
        for origin, allowed in self.pins.items():
            if origin not in self.demand.origins:
                raise SlitInputError(f"pins.{origin}", "is not a workload origin",
                                     f"pin one of: {' '.join(self.demand.origins)}")
            unknown = [s for s in allowed if s not in site_ids]
            if unknown or not allowed:
                raise SlitInputError(f"pins.{origin}", f"unknown or empty site list {allowed}",
                                     f"use sites from: {' '.join(site_ids)}")
        if not self.interval_s > 0 or not self.hours > 0:
            raise SlitInputError("period", "hours and interval_s must be positive",
                                 "e.g. hours: 24, interval_s: 900")
        if self.slo_percentile not in (95, 99):
            raise SlitInputError("slo_percentile", f"{self.slo_percentile} is not supported",
                                 "use 95 or 99")
        if not 0.0 <= self.slo_planning_margin < 1.0:
            raise SlitInputError("slo_planning_margin", f"{self.slo_planning_margin} is outside "
                                 "[0, 1)", "give a share such as 0.1")
        if not self.slo_ttft_s > 0:
            raise SlitInputError("slo_ttft_s", f"{self.slo_ttft_s} is not positive",
                                 "give the TTFT SLO in seconds, e.g. 1.5")

    @property
    def site_ids(self) -> tuple[str, ...]:
        return tuple(s.region_id for s in self.sites)

    @property
    def end_utc(self) -> pd.Timestamp:
        return self.start_utc + pd.Timedelta(hours=self.hours)

    @property
    def n_intervals(self) -> int:
        return int(math.ceil(self.hours * 3600.0 / self.interval_s))

    @property
    def planning_slo_ttft_s(self) -> float:
        return self.slo_ttft_s * (1.0 - self.slo_planning_margin)

    @property
    def code_share(self) -> float:
        return float(self.demand.trace_mix.get("code", 0.0))


def size_fleet(peak_rps: float, replica: ReplicaSpec, code_share: float,
               utilisation: float = DEFAULT_PEAK_UTILISATION) -> int:
    """Replicas that serve ``peak_rps`` at ``utilisation`` of their simulated SLO capacity."""
    capacity = slo_capacity_rps(replica, code_share)
    return max(1, math.ceil(peak_rps / (utilisation * capacity)))


def default_scenario(
    data_dir: Path | None = None, hours: float = 24.0, seed: int = 0,
    global_rate_rps: float = DEFAULT_GLOBAL_RATE_RPS, start_utc: pd.Timestamp | None = None,
) -> Scenario:
    """The embedded default: 15 regions, fleets sized to own-region peak at ~70 % utilisation."""
    start = DEFAULT_START_UTC if start_utc is None else start_utc
    demand = DemandModel(origins=DEFAULT_REGION_IDS, global_rate_rps=global_rate_rps)
    week = pd.date_range(start, periods=7 * 24 * 4, freq="15min")
    peak_rps = demand.rate_rps(week).max(axis=0)
    sites = []
    for k, region_id in enumerate(DEFAULT_REGION_IDS):
        get_region(region_id)
        replica = (make_replica(DEFAULT_MODEL, H100, 4) if region_id in DEFAULT_H100_REGIONS
                   else make_replica(DEFAULT_MODEL, A100, 8))
        installed = size_fleet(float(peak_rps[k]), replica, float(demand.trace_mix.get("code", 0)))
        sites.append(Site(region_id, replica, installed,
                          SiteFootprintParams.for_region(region_id, CoolingType.EVAPORATIVE)))
    return Scenario(sites=tuple(sites), demand=demand, start_utc=start, hours=hours,
                    data_dir=data_dir, seed=seed)


def origin_site_allowed(scenario: Scenario) -> np.ndarray:
    """[O, S] residency pins as a boolean matrix."""
    site_ids = scenario.site_ids
    allowed = np.ones((len(scenario.demand.origins), len(site_ids)), bool)
    for o, origin in enumerate(scenario.demand.origins):
        if origin in scenario.pins:
            allowed[o] = [s in scenario.pins[origin] for s in site_ids]
    return allowed
