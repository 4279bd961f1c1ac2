"""The main job: plan every interval with SLIT and each baseline, judge all by simulation.

Planning: each interval, every policy gets the same inputs: forecast demand per origin and
forecast site signals (carbon, price, temperature, wet-bulb), turned into the interval problem
with the ML surrogate's serving tables. Until the horizon planner lands, each served model is
planned on its own (``Scenario.for_model``: its demand, its replica and its reserved share of each
pool), and a policy's fleet plan stacks the models' plans.

The judge (``judge_plans``): a policy's plan is, per interval k, ``replicas[k, s, m]`` (loaded
replicas: loading or serving) and ``routing[k, m, o, s]``. A plan whose replicas exceed a site's
GPU pool in any interval is refused (an error, not a result). Requests of each model are routed
by their model's routing rows on the *actual* stream (all policies share the same random
numbers) and every (site, model) is run through the request-level discrete-event simulation with
the per-minute schedule of loaded replicas: a rise at the start of interval k loads replicas that
serve only after ``load_time_s``, drawing loading power meanwhile (requests queue); a fall drains
and releases them. Footprints use the *actual* hourly signals.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from slit.data.regions import get_region
from slit.data.signals import PRICE, TEMP
from slit.data.source import missing_hours
from slit.errors import SlitInputError
from slit.experiment.gaps import (
    REASON_DATA,
    REASON_EVENT,
    SIGNAL_GROUPS,
    data_mask,
    event_mask,
    group_of,
    judge_interpolated,
    planner_fallbacks,
)
from slit.experiment.metrics import PolicyMetrics, policy_metrics
from slit.experiment.scenario import Scenario, origin_site_allowed
from slit.footprint import site_footprint
from slit.footprint.model import carbon_column, coefficients_from_weather
from slit.forecast.demand import DEFAULT_HISTORY_DAYS, DemandForecaster, observed_history
from slit.forecast.history import WET_BULB, load_history
from slit.forecast.signals import FALLBACK, SignalForecaster, prior_profiles
from slit.optimise.metaheuristic import Decision
from slit.optimise.policies import POLICIES as REGISTRY
from slit.optimise.policies import PlanContext, interval_seeds
from slit.optimise.problem import IntervalProblem, evaluate_plans
from slit.optimise.site_table import SiteServingTable
from slit.optimise.surrogate import SurrogateAccuracy, SurrogateSpec, train_surrogate
from slit.optimise.token_mix import TokenMix
from slit.parallel import parallel_map
from slit.simulate.site import SiteConfig, SiteSimResult, simulate_site
from slit.timeutil import to_utc
from slit.workload.demand import interval_counts
from slit.workload.network import rtt_ms_matrix
from slit.workload.requests import RequestBatch

POLICIES: tuple[str, ...] = tuple(REGISTRY)
AWAKE_BIN_S = 60.0  # resolution of the awake schedule handed to the simulation
TTFT_SAMPLE = 20_000


@dataclass(frozen=True)
class Failover:
    """A re-plan inside interval ``k`` when a fault starts or ends (``events.change_times``):
    from ``at_s`` (seconds from the run's start) to the end of interval ``k`` these replicas and
    routes replace the interval's."""

    k: int
    at_s: float
    replicas: np.ndarray  # [S, M]
    routing: np.ndarray  # [M, O, S]


@dataclass
class FleetPlan:
    """What one policy decided for the whole fleet, every interval."""

    replicas: np.ndarray  # [K, S, M] int: loaded replicas (loading or serving)
    routing: np.ndarray  # [K, M, O, S]: share of origin o's requests of model m sent to site s
    failovers: tuple[Failover, ...] = ()  # re-plans inside intervals, in time order


@dataclass
class PolicyPlan:
    """What one policy decided for every interval."""

    routing: np.ndarray  # [K, O, S]
    awake: np.ndarray  # [K, S]
    planned_objectives: np.ndarray  # [K, 4] under forecasts and the surrogate
    decision_s: np.ndarray  # [K] wall time of each interval's planning
    planned_it_energy_kwh: np.ndarray  # [K] IT energy the plan expects (forecasts, surrogate)


@dataclass
class ExperimentResult:
    scenario: Scenario
    metrics: dict[str, PolicyMetrics]
    plans: dict[str, PolicyPlan]
    slit_decisions: list[Decision]  # SLIT's front and choice per interval
    signals_actual: dict[str, pd.DataFrame]  # site -> hourly signals incl. wet-bulb
    site_hourly: dict[str, pd.DataFrame]  # policy -> per site-hour footprint rows
    ttft_s: dict[str, np.ndarray]  # policy -> sorted sample of TTFT with network (s)
    surrogate_accuracy: SurrogateAccuracy
    decision_s: list[float] = field(default_factory=list)
    fleet_plans: dict[str, FleetPlan] = field(default_factory=dict)
    # policy -> model -> metrics of that model's requests alone (footprint of its replicas)
    model_metrics: dict[str, dict[str, PolicyMetrics]] = field(default_factory=dict)
    # data gaps: the planner's flagged fallbacks, short histories, judge interpolation (data_gaps)
    data_gaps: dict = field(default_factory=dict)


@dataclass
class Prepared:
    """What every interval's planning needs, loaded once per run."""

    scenario: Scenario
    history: dict[str, pd.DataFrame]  # site -> signals before the start
    actual: dict[str, pd.DataFrame]  # site -> signals over the period
    requests: RequestBatch  # the actual request stream
    counts: np.ndarray  # [K, O] actual requests per interval and origin
    tables: tuple[SiteServingTable, ...]
    surrogate_accuracy: SurrogateAccuracy
    rtt_s: np.ndarray  # [O, S]
    pinned: np.ndarray  # [O, S]
    forecasters: dict[str, SignalForecaster]
    demand_forecaster: DemandForecaster
    # [3, S] forecast footprint per IT kWh by UTC hour: every interval of an hour shares it.
    hourly_coefficients: dict[pd.Timestamp, np.ndarray] = field(default_factory=dict)
    # site -> [hours, signal columns] True where the data lacks the hour (history and period):
    # the planner sees nothing there, the judge interpolates (slit.experiment.gaps).
    missing: dict[str, pd.DataFrame] = field(default_factory=dict)


def prepare(scenario: Scenario, progress: Callable[[str, int, int], None] | None = None
            ) -> Prepared:
    """Load signals and requests, train the surrogate and the forecasters (of a single-model
    scenario or view: ``Scenario.for_model``)."""
    report = progress or (lambda stage, done, total: None)
    if len(scenario.models) > 1:
        raise SlitInputError("prepare", f"the scenario serves {len(scenario.models)} models",
                             "prepare each model's view: scenario.for_model(name)")
    site_ids = scenario.site_ids
    origins = scenario.demand.origins
    history, actual, missing = _signals(scenario)
    requests = scenario.demand.generate(scenario.start_utc, scenario.end_utc, scenario.seed,
                                        scenario.data)
    spec = SurrogateSpec(
        replicas=tuple(sorted({s.replica for s in scenario.sites}, key=str)),
        code_shares=(scenario.code_share,), seed=scenario.seed,
        n_awake=tuple(sorted({1, 2, 3, 4, 6, 8, 12, 16} | {s.installed for s in scenario.sites})),
        token_source=scenario.data.key,
    )
    surrogate, accuracy = train_surrogate(spec, lambda d, t: report("surrogate", d, t))
    mix = TokenMix(scenario.code_share, spec.token_source)
    tables = tuple(surrogate.site_table(s.replica, s.installed, mix, scenario.slo_percentile)
                   for s in scenario.sites)
    signals = (carbon_column(scenario.carbon_basis), PRICE, TEMP, WET_BULB)
    # The planner never sees a missing hour (the data's or a SignalGap's); with a short or
    # gappy history the forecasters fall back, flagged (slit.experiment.gaps).
    forecasters = {
        s.region_id: SignalForecaster(
            signals=signals, timezone=get_region(s.region_id).timezone,
            prior=prior_profiles(s.region_id, signals),
        ).hide(missing[s.region_id] | event_mask(scenario.events, s.region_id,
                                                 pd.DatetimeIndex(missing[s.region_id].index))
               ).fit(history[s.region_id])
        for s in scenario.sites
    }
    return Prepared(
        scenario=scenario, history=history, actual=actual, requests=requests,
        counts=interval_counts(requests, len(origins), scenario.interval_s, scenario.n_intervals),
        tables=tables, surrogate_accuracy=accuracy,
        rtt_s=rtt_ms_matrix(origins, site_ids) / 1e3, pinned=origin_site_allowed(scenario),
        forecasters=forecasters, missing=missing,
        # Learns only from demand observed before the start, never from the demand model.
        demand_forecaster=DemandForecaster(scenario.interval_s).fit(observed_history(
            scenario.demand, scenario.start_utc, DEFAULT_HISTORY_DAYS, scenario.interval_s,
            scenario.seed)),
    )


def interval_problem(prepared: Prepared, k: int) -> IntervalProblem:
    """The problem of interval ``k`` as known at its start: forecasts only."""
    scenario = prepared.scenario
    t = scenario.start_utc + pd.Timedelta(seconds=k * scenario.interval_s)
    expected = prepared.demand_forecaster.predict_next(prepared.counts[:k])
    demand_rps = expected / scenario.interval_s
    hour = t.floor("h")
    if hour not in prepared.hourly_coefficients:
        prepared.hourly_coefficients[hour] = _forecast_coefficients(
            scenario, prepared.forecasters, prepared.actual, t)
    coefficients = prepared.hourly_coefficients[hour]
    tables = prepared.tables
    # A pair is reachable when the round trip plus the site's unloaded tail fits in the SLO.
    idle_tail = np.array([table.ttft_tail_s[0, 0] for table in tables])
    reachable = prepared.rtt_s + idle_tail[None, :] <= scenario.planning_slo_ttft_s
    return IntervalProblem(
        origin_ids=scenario.demand.origins, site_ids=scenario.site_ids,
        demand_rps=demand_rps, rtt_s=prepared.rtt_s, allowed=prepared.pinned & reachable,
        tables=tables, carbon_kg_per_kwh_it=coefficients[0],
        water_l_per_kwh_it=coefficients[1], cost_usd_per_kwh_it=coefficients[2],
        interval_s=scenario.interval_s, planning_slo_ttft_s=scenario.planning_slo_ttft_s,
    )


def plan_policies(
    prepared: Prepared, policies: tuple[str, ...] = POLICIES,
    progress: Callable[[str, int, int], None] | None = None,
) -> tuple[dict[str, PolicyPlan], dict[str, list[Decision]]]:
    """Plan every interval with every policy through the registry, on the same forecasts.

    Returns each policy's plans and, for policies that search a front (SLIT), their decisions.
    Interval k's random numbers come from the scenario's seed (``interval_seeds``).
    """
    report = progress or (lambda stage, done, total: None)
    scenario = prepared.scenario
    n_o, n_s, n_k = len(scenario.demand.origins), len(scenario.sites), scenario.n_intervals
    plans = {p: PolicyPlan(np.zeros((n_k, n_o, n_s)), np.zeros((n_k, n_s), np.int64),
                           np.zeros((n_k, 4)), np.zeros(n_k), np.zeros(n_k)) for p in policies}
    searches: dict[str, list[Decision]] = {}
    previous: dict[str, np.ndarray | None] = dict.fromkeys(policies)
    seeds = interval_seeds(scenario.seed, n_k)
    for k in range(n_k):
        problem = interval_problem(prepared, k)
        for policy in policies:
            context = PlanContext(scenario.preference, scenario.search, seeds[k],
                                  previous[policy])
            started = time.perf_counter()
            decided = REGISTRY[policy].plan(problem, context)
            plans[policy].decision_s[k] = time.perf_counter() - started
            previous[policy] = decided.routing
            if decided.search is not None:
                searches.setdefault(policy, []).append(decided.search)
            ev = evaluate_plans(problem, decided.routing)
            plans[policy].routing[k] = decided.routing
            plans[policy].awake[k] = ev.awake[0]
            plans[policy].planned_objectives[k] = ev.objectives[0]
            plans[policy].planned_it_energy_kwh[k] = ev.energy_kwh[0].sum()
        report("plan", k + 1, n_k)
    return plans, searches


def run_experiment(
    scenario: Scenario, policies: tuple[str, ...] = POLICIES,
    progress: Callable[[str, int, int], None] | None = None,
) -> ExperimentResult:
    """Run ``scenario`` for every policy and return its metrics and traces."""
    report = progress or (lambda stage, done, total: None)
    unknown = [p for p in policies if p not in POLICIES]
    if unknown:
        raise SlitInputError("policies", f"unknown policy {unknown[0]!r}",
                             f"use some of: {', '.join(POLICIES)}")
    prepared_by_model = [prepare(scenario.for_model(m), report) for m in scenario.model_names]
    planned = [plan_policies(p, policies, report) for p in prepared_by_model]
    fleet = {policy: FleetPlan(
        replicas=np.stack([plans[policy].awake for plans, _ in planned], axis=2),
        routing=np.stack([plans[policy].routing for plans, _ in planned], axis=1))
        for policy in policies}
    result = judge_plans(scenario, prepared_by_model, fleet, report)
    # Per-policy views over all models: demand-weighted routing, total replicas and objectives.
    weights = np.array([m.demand_share for m in scenario.models])
    for policy in policies:
        parts = [plans[policy] for plans, _ in planned]
        result.plans[policy] = PolicyPlan(
            routing=np.einsum("m,kmos->kos", weights, fleet[policy].routing),
            awake=fleet[policy].replicas.sum(axis=2),
            planned_objectives=_combine_objectives([p.planned_objectives for p in parts],
                                                   weights),
            decision_s=np.sum([p.decision_s for p in parts], axis=0),
            planned_it_energy_kwh=np.sum([p.planned_it_energy_kwh for p in parts], axis=0))
    # SLIT's decisions: those of the first model's view (one front per interval and model).
    slit_decisions = planned[0][1].get("slit", [])
    result.slit_decisions = slit_decisions
    result.decision_s = [float(x) for x in result.plans["slit"].decision_s] \
        if "slit" in result.plans else []
    return result


def _combine_objectives(per_model: list[np.ndarray], weights: np.ndarray) -> np.ndarray:
    """[K, 4] objectives of all models: TTFT mean weighted by demand share, the rest summed."""
    stacked = np.stack(per_model)  # [M, K, 4]
    out = stacked.sum(axis=0)
    out[:, 0] = np.einsum("m,mk->k", weights, stacked[:, :, 0])
    return out


def check_fleet_plan(scenario: Scenario, policy: str, plan: FleetPlan) -> None:
    """Refuse a plan the fleet cannot run: wrong shape, negative or fractional replicas, routing
    rows that are not shares, or replicas beyond a site's GPU pool in any interval."""
    n_k, n_s, n_m = scenario.n_intervals, len(scenario.sites), len(scenario.models)
    n_o = len(scenario.demand.origins)
    where = f"plan of {policy}"
    if plan.replicas.shape != (n_k, n_s, n_m) or plan.routing.shape != (n_k, n_m, n_o, n_s):
        raise SlitInputError(where, f"replicas {plan.replicas.shape}, routing "
                             f"{plan.routing.shape}", f"give replicas [{n_k}, {n_s}, {n_m}] and "
                             f"routing [{n_k}, {n_m}, {n_o}, {n_s}]")
    if (plan.replicas < 0).any() or not np.array_equal(plan.replicas, np.round(plan.replicas)):
        raise SlitInputError(where, "replica counts must be whole and >= 0",
                             "round the plan's replicas")
    if (plan.routing < -1e-9).any() or not np.allclose(plan.routing.sum(axis=3), 1.0,
                                                        atol=1e-6):
        raise SlitInputError(where, "routing rows must be shares summing to 1",
                             "normalise each (interval, model, origin) row")
    names = scenario.model_names
    for s, site in enumerate(scenario.sites):
        for k in range(n_k):
            loaded = {m: int(plan.replicas[k, s, i]) for i, m in enumerate(names)}
            if not site.fits(loaded):
                raise SlitInputError(
                    where, f"interval {k} loads {loaded} at {site.region_id}, which takes "
                    f"{site.gpus_used(loaded)} GPUs of a pool of {site.gpus}",
                    "keep sum over models of replicas x tp within each GPU type's pool")


def judge_plans(scenario: Scenario, prepared_by_model: list[Prepared],
                fleet: dict[str, FleetPlan],
                progress: Callable[[str, int, int], None] | None = None) -> ExperimentResult:
    """Simulate every policy's fleet plan on the actual request streams (one per model, from
    ``prepared_by_model``, in ``scenario.model_names`` order) and measure it."""
    report = progress or (lambda stage, done, total: None)
    for policy, plan in fleet.items():
        check_fleet_plan(scenario, policy, plan)
    actual = prepared_by_model[0].actual
    uniforms = [np.random.default_rng(np.random.SeedSequence(p.scenario.seed).spawn(2)[1])
                .random(len(p.requests)) for p in prepared_by_model]
    metrics, site_hourly, ttft, by_model = {}, {}, {}, {}
    # Memory: one policy at a time, and of each (site, model) only what the metrics read
    # (_judged); the simulations run as Ray tasks when this process drives Ray, else here one
    # after the other, each site's requests built only when its turn comes.
    for p_index, (policy, plan) in enumerate(fleet.items()):
        sims: list[SiteSimResult] = []
        per_model_sims: dict[str, list[SiteSimResult]] = {}
        energy_by_site = [np.zeros(0) for _ in scenario.sites]
        model_energy: dict[str, list[np.ndarray]] = {}
        releases = 0
        for m, (model, prepared) in enumerate(zip(scenario.model_names, prepared_by_model,
                                                  strict=True)):
            requests = prepared.requests
            site_of = route_requests(requests, plan.routing[:, m], scenario.interval_s,
                                     uniforms[m])
            per_model_sims[model] = []
            model_energy[model] = []
            loaded_m = plan.replicas[:, :, m].astype(np.int64)
            releases += int(np.maximum(0, loaded_m[:-1] - loaded_m[1:]).sum())
            judged = simulate_site_jobs(site_jobs(scenario, prepared, plan, m, site_of, policy))
            for s, sim in enumerate(judged):
                sims.append(sim)
                per_model_sims[model].append(sim)
                hourly = _hourly_energy_kwh(sim, scenario)
                model_energy[model].append(hourly)
                energy_by_site[s] = hourly if not len(energy_by_site[s]) \
                    else energy_by_site[s] + hourly
            del judged
            del site_of
        site_hourly[policy] = _site_hourly(scenario, actual, energy_by_site)
        metrics[policy] = replace(
            policy_metrics(sims, site_hourly[policy], scenario.slo_ttft_s),
            loading_energy_kwh=float(sum(
                sim.loading_energy_j_per_interval.sum() for sim in sims
                if sim.loading_energy_j_per_interval is not None)) / 3.6e6,
            loads=int(sum(sim.n_loads for sim in sims)), releases=releases,
            load_delayed_requests=int(sum(sim.n_load_delayed for sim in sims)))
        by_model[policy] = {
            model: policy_metrics(per_model_sims[model],
                                  _site_hourly(scenario, actual, model_energy[model]),
                                  scenario.slo_ttft_s)
            for model in scenario.model_names}
        ttft[policy] = _ttft_sample(sims)
        del sims, per_model_sims
        report("simulate", p_index + 1, len(fleet))
    first = prepared_by_model[0]
    return ExperimentResult(scenario, metrics, {}, [], actual, site_hourly, ttft,
                            first.surrogate_accuracy, [], fleet_plans=fleet,
                            model_metrics=by_model, data_gaps=data_gaps(scenario, first))


# --- parallel site simulations (issue 14) -------------------------------------------------
@dataclass(frozen=True)
class SiteJob:
    """One (site, model) simulation under a policy's plan: the requests routed there, their round
    trips and the replicas loaded per interval."""

    requests: RequestBatch
    rtt_s: np.ndarray
    config: SiteConfig
    schedule: np.ndarray  # loaded replicas per AWAKE_BIN_S
    seed: int
    label: str  # policy / site / model, for the conservation error


def site_jobs(scenario: Scenario, prepared: Prepared, plan: FleetPlan, m: int,
              site_of: np.ndarray, policy: str) -> Iterator[SiteJob]:
    """The simulation of every site for model ``m`` under one policy's plan (``site_of``: each
    request's site), built one at a time so a serial run holds one site's requests at once."""
    requests = prepared.requests
    model = scenario.model_names[m]
    for s, site in enumerate(scenario.sites):
        mask = site_of == s
        loaded = plan.replicas[:, s, m].astype(np.int64)
        config = SiteConfig(replica=site.replica_for[model],
                            n_replicas=max(1, site.max_replicas(model)))
        yield SiteJob(requests.take(mask), prepared.rtt_s[requests.origin[mask], s], config,
                      loaded_schedule(loaded, scenario.interval_s), prepared.scenario.seed + s,
                      f"{policy}: {site.region_id} / {model}")


def run_site_job(job: SiteJob) -> SiteSimResult:
    """Simulate, check that every request routed here is accounted for, keep what the metrics
    read."""
    full = _simulate(job.requests, job.rtt_s, job.config, job.schedule, job.seed)
    if not full.conservation_ok or full.n_arrivals != len(job.requests):
        raise RuntimeError(f"{job.label}: {full.conservation_statement()}")
    return _judged(full)


def simulate_site_jobs(jobs: Iterable[SiteJob]) -> list[SiteSimResult]:
    """Each job's judged simulation, in order: Ray tasks when this process drives a Ray
    runtime, else one after another here (sites are independent given the plan)."""
    return parallel_map(run_site_job, jobs)
# --- end of parallel site simulations ------------------------------------------------------


def route_requests(requests: RequestBatch, routing: np.ndarray, interval_s: float,
                   uniform: np.ndarray) -> np.ndarray:
    """Site index of every request: its origin's routing row of its interval, sampled with
    the given uniform numbers (shared by all policies, so they differ only by their plans).

    The site is the first whose cumulative share exceeds u x the row total. Requests are sorted
    by arrival, so each interval is a slice; within it each origin's row is searched once (an
    [N, S] table of rows would take 1 GB on the default day)."""
    n_k, n_s = routing.shape[0], routing.shape[2]
    cumulative = np.cumsum(routing, axis=2)
    site = np.empty(len(requests), np.int16)
    k_of = np.minimum((requests.arrival_s // interval_s).astype(np.int64), n_k - 1)
    bounds = np.searchsorted(k_of, np.arange(n_k + 1), side="left")
    for k in range(n_k):
        lo, hi = bounds[k], bounds[k + 1]
        if lo == hi:
            continue
        origin = requests.origin[lo:hi]
        u = uniform[lo:hi]
        out = np.empty(hi - lo, np.int64)
        for o in np.unique(origin):
            at = origin == o
            row = cumulative[k, o]
            out[at] = np.searchsorted(row, u[at] * row[-1], side="left")
        site[lo:hi] = np.minimum(out, n_s - 1)
    return site


def loaded_schedule(loaded: np.ndarray, interval_s: float) -> np.ndarray:
    """Per-minute loaded counts: each interval's replicas from its start. Replicas loaded at
    the start of an interval serve only after their load time (the simulation's loading state):
    a plan that wants them ready for a peak must load them an interval ahead."""
    per_interval = int(round(interval_s / AWAKE_BIN_S))
    return np.repeat(np.asarray(loaded, dtype=np.int64), per_interval)


def _simulate(requests: RequestBatch, rtt_s: np.ndarray, site: SiteConfig,
              schedule: np.ndarray, seed: int) -> SiteSimResult:
    return simulate_site(requests, site, schedule, AWAKE_BIN_S, seed, None, rtt_s)


_DROPPED = np.empty(0)


def _judged(sim: SiteSimResult) -> SiteSimResult:
    """What the judge keeps of a site's simulation: TTFT (with and without network), TPOT, the
    completion and refusal flags, the preemption count and the per-interval energy, which the
    metrics, footprints and TTFT sample read. The other per-request arrays are dropped (left
    empty) to bound memory; the result is for those readers only."""
    return replace(sim, e2e_s=_DROPPED, energy_j=_DROPPED, arrived=_DROPPED, arrival_s=_DROPPED,
                   output_tokens=_DROPPED)


def _site_hourly(scenario: Scenario, actual: dict[str, pd.DataFrame],
                 hourly_it_kwh: list[np.ndarray]) -> pd.DataFrame:
    """Footprint per site and hour, from simulated hourly IT energy (one array per site, all
    its models together) and actual signals."""
    rows = []
    for site, energy in zip(scenario.sites, hourly_it_kwh, strict=True):
        signals = actual[site.region_id]
        fp = site_footprint(energy, signals, site.footprint, scenario.carbon_basis)
        rows.append(pd.DataFrame({
            "site": site.region_id, "time_utc": signals.index,
            "it_energy_kwh": fp.it_energy_kwh, "facility_energy_kwh": fp.facility_energy_kwh,
            "carbon_kg": fp.carbon_kg, "water_onsite_l": fp.water_onsite_l,
            "water_offsite_l": fp.water_offsite_l, "cost_usd": fp.cost_usd,
        }))
    return pd.concat(rows, ignore_index=True)


def _ttft_sample(sims: list[SiteSimResult]) -> np.ndarray:
    """Sorted TTFTs (with network) of completed requests, thinned to at most TTFT_SAMPLE
    evenly spaced order statistics: enough for a CDF plot."""
    ttft = np.sort(np.concatenate([r.ttft_with_network_s[r.completed] for r in sims]))
    if len(ttft) <= TTFT_SAMPLE:
        return ttft
    return ttft[np.linspace(0, len(ttft) - 1, TTFT_SAMPLE).round().astype(np.int64)]


def _signals(scenario: Scenario) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame],
                                          dict[str, pd.DataFrame]]:
    """Per site: history before the start as the planner knows it (NaN where the data lacks an
    hour, including hours before the data's first year: a short history is not refused), the
    actual period as the judge uses it (gaps interpolated; refused outside the data), and the
    mask of the hours the data lacks over both."""
    # Signals are hourly: a start inside an hour (``slit plan --at 13:15``) has seen only the
    # hours completed before it.
    first_hour = scenario.start_utc.floor("h")
    begin = first_hour - pd.Timedelta(days=scenario.history_days)
    end = scenario.end_utc.ceil("h")
    history, actual, missing = {}, {}, {}
    for site in scenario.sites:
        region = site.region_id
        actual[region] = load_history(scenario.data, region, first_hour, end, scenario.seed)
        seen = load_history(scenario.data, region, begin, end, scenario.seed, observed=True)
        history[region] = seen[seen.index < first_hour]
        missing[region] = data_mask(missing_hours(scenario.data, region, begin, end))
    return history, actual, missing


def _forecast_coefficients(scenario: Scenario, forecasters: dict[str, SignalForecaster],
                           actual: dict[str, pd.DataFrame], t: pd.Timestamp,
                           target_utc: pd.Timestamp | None = None) -> np.ndarray:
    """[3, S] forecast carbon (kg), water (L) and cost (USD) per IT kWh for the hour of
    ``target_utc`` (default: the hour of ``t``), forecast at ``t``.

    Forecasters learn of each completed hour as time passes (never of the hour in progress);
    the hours the planner cannot see (data gaps, SignalGap events) they were told to hide, and
    for those they fall back (``SignalForecaster.forecast``), the method kept per target hour.
    """
    carbon = carbon_column(scenario.carbon_basis)
    issue = t.floor("h")
    target = issue if target_utc is None else to_utc(target_utc).floor("h")
    if target < issue:
        raise ValueError(f"target hour {target} is before the issue hour {issue}")
    horizon_h = int((target - issue) / pd.Timedelta(hours=1)) + 1
    out = np.empty((3, len(scenario.sites)))
    for s, site in enumerate(scenario.sites):
        forecaster = forecasters[site.region_id]
        completed = actual[site.region_id]
        forecaster.observe(completed[completed.index < issue][list(forecaster.signals)])
        row = forecaster.predict(t, horizon_h).iloc[-1]
        # A forecast may dip below zero carbon; the grid cannot.
        coefficients = coefficients_from_weather(
            np.array([row[TEMP]]), np.array([row[WET_BULB]]), np.array([max(row[carbon], 0.0)]),
            np.array([row[PRICE]]), site.footprint)
        out[:, s] = [coefficients["carbon_kg_per_kwh_it"][0],
                     coefficients["water_l_per_kwh_it"][0], coefficients["cost_usd_per_kwh_it"][0]]
    return out


def data_gaps(scenario: Scenario, prepared: Prepared) -> dict:
    """What results.json says of the data gaps of a run: the planner's fallbacks per interval
    and region, the regions whose history was shorter than wanted, and the hours for which the
    judge interpolated (``slit.experiment.gaps``)."""
    wanted_h = scenario.history_days * 24
    short = {}
    for region, frame in prepared.history.items():
        observed = {group: int(frame[[c for c in columns if c in frame.columns]]
                               .notna().all(axis=1).sum())
                    for group, columns in SIGNAL_GROUPS.items()}
        if min(observed.values()) < wanted_h:
            short[region] = {"wanted_h": wanted_h, "observed_h": observed}
    return {
        "fallback_methods": {"model": "LightGBM (docs/forecast.md)",
                             **{group_of(c): m for c, m in FALLBACK.items()}},
        # What the judge uses where the planner saw nothing.
        "judge_uses": {REASON_EVENT: "the real values", REASON_DATA: "interpolation"},
        "planner_fallbacks": planner_fallbacks(
            scenario.start_utc, scenario.interval_s, scenario.n_intervals,
            prepared.forecasters, scenario.events, prepared.missing),
        "short_history": short,
        "judge_interpolated": judge_interpolated(scenario.data, scenario.site_ids,
                                                 scenario.start_utc, scenario.end_utc),
    }


def _hourly_energy_kwh(sim: SiteSimResult, scenario: Scenario) -> np.ndarray:
    """IT energy per hour of the period; energy spent finishing requests after the end is
    counted in the last hour."""
    n_hours = int(np.ceil(scenario.hours))
    per_hour = int(round(3600.0 / sim.interval_s))
    bins = sim.it_energy_j_per_interval
    padded = np.zeros(n_hours * per_hour)
    take = min(len(bins), len(padded))
    padded[:take] = bins[:take]
    hourly = padded.reshape(n_hours, per_hour).sum(axis=1)
    hourly[-1] += bins[take:].sum()
    return hourly / 3.6e6
