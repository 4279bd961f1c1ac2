"""A scenario: the sites and fleets, the users, the period, the SLO and the preference.

``default_scenario`` is the embedded default the main job runs: the 15 regions as both user
origins and sites, Llama-3.1-70B served on H100 (TP4) or A100 (TP8) replicas, each site's fleet
sized to serve its own region's peak demand at about 70 % utilisation, so that no site has spare
capacity by construction and every gain comes from time zones, signals and routing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from slit.data.regions import DEFAULT_REGION_IDS, get_region
from slit.data.source import EMBEDDED, DataSource
from slit.errors import SlitInputError
from slit.experiment.settings import ScenarioFile, Workload, validate_settings
from slit.footprint import CarbonBasis, CoolingType, SiteFootprintParams
from slit.optimise.metaheuristic import SearchSettings
from slit.optimise.preference import Preference
from slit.serving.catalog import ReplicaSpec, make_replica
from slit.simulate.capacity import slo_capacity_rps
from slit.timeutil import to_utc
from slit.workload.demand import DemandModel

# Newer GPUs in the largest hyperscale markets, the previous generation elsewhere.
DEFAULT_H100_REGIONS = frozenset(
    {"US-CAL-CISO", "US-MIDA-PJM", "US-NY-NYIS", "US-TEX-ERCO", "DE-LU", "JP-TK", "KR", "SG"}
)
H100 = "H100-SXM5-80GB"
A100 = "A100-SXM4-80GB"
DEFAULT_START_UTC = pd.Timestamp("2023-07-12 00:00", tz="UTC")  # a mid-week summer day
DEFAULT_PEAK_UTILISATION = 0.7
# The settings' defaults, read from their one description (slit.experiment.settings).
DEFAULT_MODEL: str = ScenarioFile.model_fields["model"].default
DEFAULT_GLOBAL_RATE_RPS: float = Workload.model_fields["global_rate_rps"].default


@dataclass(frozen=True)
class Site:
    """A datacenter: where it is, what it serves with, how many replicas it has."""

    region_id: str
    replica: ReplicaSpec
    installed: int
    footprint: SiteFootprintParams


@dataclass(frozen=True)
class Scenario:
    """Everything a run needs. Times are UTC.

    Built only from validated settings (``scenario_from_settings``, ``default_scenario``), so
    the checks and defaults of every user setting are those of ``slit.experiment.settings``; the
    fields with defaults here are not user settings.
    """

    sites: tuple[Site, ...]
    demand: DemandModel
    start_utc: pd.Timestamp
    hours: float
    interval_s: float
    slo_ttft_s: float
    slo_percentile: int  # the SLO: this share of requests gets its first token in time
    preference: Preference
    # origin -> the only sites allowed to serve it (data residency); absent origins are free.
    pins: dict[str, tuple[str, ...]]
    data: DataSource
    seed: int
    carbon_basis: CarbonBasis
    search: SearchSettings
    name: str
    # Plans are sized for the SLO less this share, to absorb forecast error and the load swings
    # of a Poisson stream inside an interval.
    slo_planning_margin: float = 0.1
    history_days: int = 28  # signal history before the start, to train the forecasters

    @property
    def data_dir(self) -> Path | None:
        """The real-data folder, None for the embedded default."""
        return self.data.data_dir

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
    data_dir: DataSource | Path | None = None, hours: float = 24.0, seed: int = 0,
    global_rate_rps: float = DEFAULT_GLOBAL_RATE_RPS, start_utc: pd.Timestamp | None = None,
) -> Scenario:
    """The embedded default: 15 regions, fleets sized to own-region peak at ~70 % utilisation;
    every other setting at its default."""
    start = DEFAULT_START_UTC if start_utc is None else to_utc(start_utc)
    settings = validate_settings({
        "name": "default", "seed": seed, "fleet": "default",
        "workload": {"global_rate_rps": global_rate_rps},
        "period": {"start_utc": f"{start.floor('h'):%Y-%m-%dT%H:%M}", "hours": hours},
    })
    source = data_dir if isinstance(data_dir, DataSource) else DataSource(data_dir)
    return scenario_from_settings(settings, source=source, start_utc=start)


def default_sites(global_rate_rps: float, start_utc: pd.Timestamp) -> tuple[Site, ...]:
    """The 15 default sites, each sized to its own region's peak over the week from
    ``start_utc`` at ``DEFAULT_PEAK_UTILISATION``."""
    demand = DemandModel(origins=DEFAULT_REGION_IDS, global_rate_rps=global_rate_rps)
    week = pd.date_range(start_utc, periods=7 * 24 * 4, freq="15min")
    peak_rps = demand.rate_rps(week).max(axis=0)
    sites = []
    for k, region_id in enumerate(DEFAULT_REGION_IDS):
        get_region(region_id)
        replica = (make_replica(DEFAULT_MODEL, H100, 4) if region_id in DEFAULT_H100_REGIONS
                   else make_replica(DEFAULT_MODEL, A100, 8))
        installed = size_fleet(float(peak_rps[k]), replica, float(demand.trace_mix.get("code", 0)))
        sites.append(Site(region_id, replica, installed,
                          SiteFootprintParams.for_region(region_id, CoolingType.EVAPORATIVE)))
    return tuple(sites)


def scenario_from_settings(settings: ScenarioFile, base_dir: Path | None = None,
                           source: DataSource | None = None,
                           start_utc: pd.Timestamp | None = None, hours: float | None = None
                           ) -> Scenario:
    """The frozen ``Scenario`` of validated settings. ``source``, ``start_utc`` and ``hours``,
    when given, replace the settings' (the command line wins over the file); a relative
    ``data_dir`` resolves against ``base_dir`` (the file's folder)."""
    if source is None:
        source = EMBEDDED
        if settings.data_dir is not None:
            folder = settings.data_dir
            if not folder.is_absolute() and base_dir is not None:
                folder = base_dir / folder
            try:
                source = DataSource.resolve(folder)
            except SlitInputError as err:
                raise SlitInputError("data_dir", f"{folder} {err.problem}", err.fix) from None
    workload = settings.workload
    demand = DemandModel(
        origins=settings.origin_ids,
        weights=None if workload.weights is None else tuple(workload.weights),
        global_rate_rps=workload.global_rate_rps,
        trace_mix=dict(workload.trace_mix),
    )
    if settings.fleet == "default":
        if settings.model != DEFAULT_MODEL:
            raise SlitInputError("model", f"fleet: default serves {DEFAULT_MODEL}, not "
                                 f"{settings.model}", "list the sites to serve another model")
        # Sized for the settings' own period start even when a command moves the start, so the
        # installed fleet does not depend on which interval is asked about.
        sites = default_sites(workload.global_rate_rps, settings.period.start)
    else:
        sites = tuple(_site(settings, i) for i in range(len(settings.sites or ())))
    pref = settings.preference
    return Scenario(
        sites=sites,
        demand=demand,
        start_utc=settings.period.start if start_utc is None else to_utc(start_utc),
        hours=settings.period.hours if hours is None else hours,
        interval_s=float(settings.interval_s),
        slo_ttft_s=settings.slo.ttft_s,
        slo_percentile=settings.slo.percentile,
        preference=Preference(mode=pref.mode, weights=pref.weight_tuple(),
                              ttft_cap_s=pref.ttft_cap_s, minimise=pref.minimise),
        pins={origin: tuple(allowed) for origin, allowed in settings.pins.items()},
        data=source,
        seed=settings.seed,
        carbon_basis=settings.carbon_basis,
        search=SearchSettings(population=settings.search.population,
                              generations=settings.search.generations),
        name=settings.name,
    )


def _site(settings: ScenarioFile, i: int) -> Site:
    entry = (settings.sites or [])[i]
    try:
        replica = make_replica(entry.model or settings.model, entry.gpu, entry.tp)
    except SlitInputError as err:
        raise SlitInputError(f"sites[{i}] ({entry.region})", f"{err.where}: {err.problem}",
                             err.fix) from None
    return Site(entry.region, replica, entry.installed_replicas,
                SiteFootprintParams.for_region(entry.region, entry.cooling))


def origin_site_allowed(scenario: Scenario) -> np.ndarray:
    """[O, S] residency pins as a boolean matrix."""
    site_ids = scenario.site_ids
    allowed = np.ones((len(scenario.demand.origins), len(site_ids)), bool)
    for o, origin in enumerate(scenario.demand.origins):
        if origin in scenario.pins:
            allowed[o] = [s in scenario.pins[origin] for s in site_ids]
    return allowed
