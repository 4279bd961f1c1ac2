"""A scenario: the sites and fleets, the users, the period, the SLO and the preference.

``default_scenario`` is the embedded default the main job runs: the 15 regions as both user
origins and sites, two served models (Llama-3.1-8B on one GPU, Llama-3.1-70B on 4 H100 or 8
A100), each site a pool of H100 or A100 GPUs in whole 8-GPU nodes, sized to serve its own
region's peak demand of each model at about 70 % utilisation, so that no site has spare capacity
by construction and every gain comes from time zones, signals, routing and placement.

A site is a GPU pool: ``gpus[type]`` GPUs, and per model the replica it runs it with
(``replica_for``). The decision per interval is ``replicas[s, m]`` (loaded replicas) with
    sum_m replicas[s, m] * replica_for[m].tp <= gpus[type]   for each GPU type.
Since tp is 1, 2, 4 or 8 and divides the 8 GPUs of a node, any set of replicas whose GPU count
fits the pool packs into whole nodes (first-fit decreasing by tp never leaves a replica split
across nodes), so the count constraint is the whole placement constraint.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from slit.data.regions import DEFAULT_REGION_IDS, get_region
from slit.data.source import EMBEDDED, DataSource
from slit.errors import SlitInputError
from slit.experiment.events import (
    SIGNAL_NAMES,
    Derate,
    Event,
    Outage,
    Partition,
    SignalGap,
)
from slit.experiment.settings import (
    GPUS_PER_NODE,
    ModelEntry,
    ScenarioFile,
    Workload,
    parse_utc,
    validate_settings,
)
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
class ServedModel:
    """A model the scenario serves: its share of all requests and its token profile."""

    name: str
    demand_share: float
    trace_mix: dict[str, float]

    @property
    def code_share(self) -> float:
        return float(self.trace_mix.get("code", 0.0))


@dataclass(frozen=True)
class Site:
    """A datacenter: where it is, its GPU pool, the replica it runs each model with.

    ``reserved[m]`` is the replicas of model m the fleet was sized for (the default fleet) or the
    model's demand-share split of the pool (a listed fleet): the fixed placement of the
    per-interval baselines, which plan each model on its own share of the pool. ``replica`` and
    ``installed`` are the single-model views (the first model's): code that plans one model
    works on ``Scenario.for_model`` views, where they are that model's.
    """

    region_id: str
    gpus: dict[str, int]
    replica_for: dict[str, ReplicaSpec]
    footprint: SiteFootprintParams
    reserved: dict[str, int] = field(default_factory=dict)

    @property
    def replica(self) -> ReplicaSpec:
        return next(iter(self.replica_for.values()))

    @property
    def installed(self) -> int:
        return self.reserved.get(self.replica.model, self.max_replicas(self.replica.model))

    def max_replicas(self, model: str) -> int:
        """Replicas of ``model`` the pool holds when it serves nothing else."""
        spec = self.replica_for[model]
        return self.gpus.get(spec.gpu, 0) // spec.tp

    def gpus_used(self, replicas: dict[str, int]) -> dict[str, int]:
        """GPUs per type that ``replicas`` (model -> loaded count) take."""
        used: dict[str, int] = {}
        for model, n in replicas.items():
            spec = self.replica_for[model]
            used[spec.gpu] = used.get(spec.gpu, 0) + int(n) * spec.tp
        return used

    def fits(self, replicas: dict[str, int]) -> bool:
        return all(n <= self.gpus.get(gpu, 0) for gpu, n in self.gpus_used(replicas).items())


@dataclass(frozen=True)
class Scenario:
    """Everything a run needs. Times are UTC.

    Built only from validated settings (``scenario_from_settings``, ``default_scenario``), so
    the checks and defaults of every user setting are those of ``slit.experiment.settings``; the
    fields with defaults here are not user settings.
    """

    sites: tuple[Site, ...]
    demand: DemandModel  # all requests (all models together)
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
    models: tuple[ServedModel, ...] = ()
    min_up_s: float = 900.0  # a loaded replica stays up at least this long
    # Plans are sized for the SLO less this share, to absorb forecast error and the load swings
    # of a Poisson stream inside an interval.
    slo_planning_margin: float = 0.1
    history_days: int = 28  # signal history before the start, to train the forecasters
    # Faults and data gaps during the period (slit.experiment.events), in time order.
    events: tuple[Event, ...] = ()
    # Admission control: a site sheds an arrival when the oldest request waiting ahead of it
    # has waited more than this many SLOs (None: never).
    shed_factor: float | None = 4.0

    @property
    def model_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.models)

    def model_demand(self, model: str) -> DemandModel:
        """The requests of one model: its share of the rate, its token profile."""
        served = self.models[self.model_names.index(model)]
        return replace(self.demand, global_rate_rps=self.demand.global_rate_rps
                       * served.demand_share, trace_mix=dict(served.trace_mix))

    def model_seed(self, model: str) -> int:
        """Seed of one model's draws, derived from the scenario's one seed (the first model
        keeps it, so a single-model scenario draws as before)."""
        m = self.model_names.index(model)
        return self.seed if m == 0 else int(
            np.random.SeedSequence([self.seed, m]).generate_state(1)[0])

    def for_model(self, model: str) -> Scenario:
        """The single-model view of one model: its demand and seed, and sites serving it with
        its replica and its reserved share of each pool."""
        if model not in self.model_names:
            raise SlitInputError("model", f"{model!r} is not served",
                                 f"use one of: {' '.join(self.model_names)}")
        served = self.models[self.model_names.index(model)]
        sites = tuple(replace(
            s, replica_for={model: s.replica_for[model]},
            reserved={model: max(1, s.reserved.get(model, s.max_replicas(model)))})
            for s in self.sites)
        return replace(self, sites=sites, demand=self.model_demand(model),
                       seed=self.model_seed(model),
                       models=(ServedModel(model, 1.0, dict(served.trace_mix)),))

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
        """Code share of the token profile (of a single-model view: its model's)."""
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


def default_replica(model: str, region_id: str,
                    h100_regions: frozenset[str] = DEFAULT_H100_REGIONS) -> ReplicaSpec:
    """The default replica of a model in a region: the region's GPU type (H100 in
    ``h100_regions``, by default the largest markets, else A100), one GPU when the model fits on
    one, else 4 H100 or 8 A100."""
    gpu = H100 if region_id in h100_regions else A100
    for tp in (1, 2, 4, 8):
        if tp == 1 or (gpu == H100 and tp == 4) or (gpu == A100 and tp == 8):
            try:
                return make_replica(model, gpu, tp)
            except SlitInputError:
                continue
    return make_replica(model, gpu, 8)


def default_sites(global_rate_rps: float, start_utc: pd.Timestamp,
                  models: tuple[ServedModel, ...] | None = None,
                  h100_regions: frozenset[str] = DEFAULT_H100_REGIONS) -> tuple[Site, ...]:
    """The 15 default sites: per region and model, the replicas that serve the model's share of
    the region's peak over the week from ``start_utc`` (any year) at
    ``DEFAULT_PEAK_UTILISATION``; the pool is their GPUs rounded up to whole 8-GPU nodes."""
    served = default_models() if models is None else models
    demand = DemandModel(origins=DEFAULT_REGION_IDS, global_rate_rps=global_rate_rps)
    week = pd.date_range(start_utc, periods=7 * 24 * 4, freq="15min")
    peak_rps = demand.rate_rps(week).max(axis=0)
    sites = []
    for k, region_id in enumerate(DEFAULT_REGION_IDS):
        get_region(region_id)
        replica_for = {m.name: default_replica(m.name, region_id, h100_regions)
                       for m in served}
        reserved = {m.name: size_fleet(float(peak_rps[k]) * m.demand_share,
                                       replica_for[m.name], m.code_share) for m in served}
        gpus: dict[str, int] = {}
        for m in served:
            spec = replica_for[m.name]
            gpus[spec.gpu] = gpus.get(spec.gpu, 0) + reserved[m.name] * spec.tp
        gpus = {g: GPUS_PER_NODE * math.ceil(n / GPUS_PER_NODE) for g, n in gpus.items()}
        sites.append(Site(region_id, gpus, replica_for,
                          SiteFootprintParams.for_region(region_id, CoolingType.EVAPORATIVE),
                          reserved))
    return tuple(sites)


def default_models() -> tuple[ServedModel, ...]:
    return _served(ScenarioFile.model_validate(
        {"fleet": "default",
         "period": {"start_utc": f"{DEFAULT_START_UTC:%Y-%m-%dT%H:%M}", "hours": 1}}))


def _served(settings: ScenarioFile) -> tuple[ServedModel, ...]:
    return tuple(ServedModel(m.name, m.demand_share, dict(m.trace_mix))
                 for m in settings.served_models())


def _models_from(entries: list[ModelEntry]) -> tuple[ServedModel, ...]:
    return tuple(ServedModel(m.name, m.demand_share, dict(m.trace_mix)) for m in entries)


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
    models = _served(settings)
    if settings.fleet == "default":
        if settings.model != DEFAULT_MODEL:
            raise SlitInputError("model", "fleet: default serves the `models` list, `model` "
                                 "applies to single-model sites only",
                                 "remove `model:` and list `models:`, or list the sites")
        # Sized on the run's own period: the week from the first day of the start the run uses
        # (a command's start wins over the file's), so a run or a plan in any year gets the
        # fleet of its own dates, and every interval of one day the same fleet.
        first_day = (settings.period.start if start_utc is None else to_utc(start_utc))
        sites = default_sites(workload.global_rate_rps, first_day.floor("D"), models)
    else:
        sites = tuple(_site(settings, i, models) for i in range(len(settings.sites or ())))
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
        models=models,
        min_up_s=float(settings.min_up_s),
        events=events_from_settings(settings),
        shed_factor=settings.slo.shed_factor,
    )


def events_from_settings(settings: ScenarioFile) -> tuple[Event, ...]:
    """The scenario's events (validated by ``ScenarioFile``), in time order."""
    out: list[Event] = []
    for entry in settings.events:
        start, end = parse_utc(entry.start_utc), parse_utc(entry.end_utc)
        event: Event
        if entry.kind == "outage":
            event = Outage(start, end, site=str(entry.site))
        elif entry.kind == "derate":
            event = Derate(start, end, site=str(entry.site),
                           gpu_fraction=float(entry.gpu_fraction or 0.0))
        elif entry.kind == "partition":
            event = Partition(start, end, origin=str(entry.origin), site=str(entry.site))
        else:
            event = SignalGap(start, end, region=str(entry.region),
                              signals=tuple(entry.signals or SIGNAL_NAMES))
        out.append(event)
    return tuple(sorted(out, key=lambda e: (e.start_utc, e.end_utc)))


def _site(settings: ScenarioFile, i: int, models: tuple[ServedModel, ...]) -> Site:
    entry = (settings.sites or [])[i]
    footprint = SiteFootprintParams.for_region(entry.region, entry.cooling)
    try:
        if not entry.pool_form:
            # Schema 1: one model on a pool of exactly installed x tp GPUs.
            assert entry.gpu is not None and entry.tp is not None
            assert entry.installed_replicas is not None
            replica = make_replica(entry.model or settings.model, entry.gpu, entry.tp)
            return Site(entry.region, {entry.gpu: entry.installed_replicas * entry.tp},
                        {replica.model: replica}, footprint,
                        {replica.model: entry.installed_replicas})
        replica_for = {m.name: make_replica(m.name, (entry.replica_for or {})[m.name].gpu,
                                            (entry.replica_for or {})[m.name].tp)
                       for m in models}
    except SlitInputError as err:
        raise SlitInputError(f"sites[{i}] ({entry.region})", f"{err.where}: {err.problem}",
                             err.fix) from None
    gpus = dict(entry.gpus or {})
    reserved = reserve_split(gpus, replica_for, models)
    reserved.update({m: n for m, n in (entry.reserved or {}).items() if m in replica_for})
    site = Site(entry.region, gpus, replica_for, footprint, reserved)
    if not site.fits(reserved):
        raise SlitInputError(f"sites[{i}] ({entry.region}).reserved",
                             f"the reserved replicas need {site.gpus_used(reserved)} GPUs, the "
                             f"pool has {gpus}", "reserve fewer replicas or add GPUs")
    return site


def reserve_split(gpus: dict[str, int], replica_for: dict[str, ReplicaSpec],
                  models: tuple[ServedModel, ...]) -> dict[str, int]:
    """Each model's fixed share of a listed pool: the GPUs of a type split among the models that
    run on it in proportion to their demand share, rounded down to whole replicas (at least
    one when one fits)."""
    reserved = {}
    for m in models:
        spec = replica_for[m.name]
        on_type = [x for x in models if replica_for[x.name].gpu == spec.gpu]
        share = m.demand_share / sum(x.demand_share for x in on_type)
        reserved[m.name] = max(min(1, gpus.get(spec.gpu, 0) // spec.tp),
                               int(gpus.get(spec.gpu, 0) * share // spec.tp))
    return reserved


def origin_site_allowed(scenario: Scenario) -> np.ndarray:
    """[O, S] residency pins as a boolean matrix."""
    site_ids = scenario.site_ids
    allowed = np.ones((len(scenario.demand.origins), len(site_ids)), bool)
    for o, origin in enumerate(scenario.demand.origins):
        if origin in scenario.pins:
            allowed[o] = [s in scenario.pins[origin] for s in site_ids]
    return allowed
