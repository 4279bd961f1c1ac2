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

from slit import parallel
from slit.data.regions import get_region
from slit.data.signals import PRICE, TEMP
from slit.data.source import missing_hours
from slit.errors import SlitInputError
from slit.experiment import events as fault_events
from slit.experiment.events import change_times
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
from slit.experiment.horizon_inputs import (
    HorizonInputs,
    fit_to_pools,
    horizon_problem,
    pool_gpus,
)
from slit.experiment.metrics import PolicyMetrics, policy_metrics
from slit.experiment.scenario import Scenario, origin_site_allowed
from slit.experiment.shortfall import Shortfall, check_fleet_capacity
from slit.footprint import site_footprint
from slit.footprint.model import carbon_column, coefficients_from_weather
from slit.forecast.demand import DEFAULT_HISTORY_DAYS, DemandForecaster, observed_history
from slit.forecast.history import WET_BULB, load_history
from slit.forecast.signals import FALLBACK, SignalForecaster, prior_profiles
from slit.optimise.horizon import (
    DEFAULT_HORIZON,
    HorizonProblem,
    evaluate_horizon,
    horizon_scales,
)
from slit.optimise.horizon_policies import (
    HORIZON_POLICIES,
    HorizonPlan,
    Myopic,
    Pools,
    RouteJob,
    timed_route,
)
from slit.optimise.metaheuristic import Decision, plan_interval
from slit.optimise.policies import POLICIES as REGISTRY
from slit.optimise.policies import PlanContext, interval_seeds
from slit.optimise.preference import Preference
from slit.optimise.problem import IntervalProblem, evaluate_plans
from slit.optimise.site_table import SiteServingTable
from slit.optimise.surrogate import SurrogateAccuracy, SurrogateSpec, train_surrogate
from slit.optimise.token_mix import TokenMix
from slit.parallel import Deferred, parallel_map, submit_each
from slit.simulate.site import SiteConfig, SiteSimResult, simulate_site
from slit.timeutil import to_utc
from slit.workload.demand import interval_counts
from slit.workload.network import rtt_ms_matrix
from slit.workload.requests import RequestBatch
from slit.workload.stream import RequestStream

POLICIES: tuple[str, ...] = tuple(REGISTRY)
SLIT = "slit"
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
    # [4] the one normalisation of every policy's preference_score (day_preference_scales)
    preference_scales: np.ndarray | None = None
    # Intervals whose forecast demand exceeds what the fleet serves within the SLO (issue 13).
    shortfalls: list[Shortfall] = field(default_factory=list)
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
    tables: tuple[SiteServingTable, ...]  # per site, up to the replicas reserved for the model
    surrogate_accuracy: SurrogateAccuracy
    rtt_s: np.ndarray  # [O, S]
    pinned: np.ndarray  # [O, S]
    forecasters: dict[str, SignalForecaster]
    demand_forecaster: DemandForecaster
    # [3, S] forecast footprint per IT kWh by UTC hour: every interval of an hour shares it.
    hourly_coefficients: dict[pd.Timestamp, np.ndarray] = field(default_factory=dict)
    # per site, up to the replicas the whole pool holds (the horizon planner's tables)
    pool_tables: tuple[SiteServingTable, ...] = ()
    # site -> [hours, signal columns] True where the data lacks the hour (history and period):
    # the planner sees nothing there, the judge interpolates (slit.experiment.gaps).
    missing: dict[str, pd.DataFrame] = field(default_factory=dict)
    # Streaming (a large day, ``stream_day``): the same requests one interval at a time, and
    # ``requests`` left empty; the judge then runs ``slit.experiment.stream_judge``.
    stream: RequestStream | None = None


def prepare(scenario: Scenario, progress: Callable[[str, int, int], None] | None = None,
            stream: bool = False) -> Prepared:
    """Load signals and requests, train the surrogate and the forecasters (of a single-model
    scenario or view: ``Scenario.for_model``). With ``stream`` the request stream is kept as
    a ``RequestStream`` (one interval at a time) instead of a whole-day batch."""
    report = progress or (lambda stage, done, total: None)
    if len(scenario.models) > 1:
        raise SlitInputError("prepare", f"the scenario serves {len(scenario.models)} models",
                             "prepare each model's view: scenario.for_model(name)")
    site_ids = scenario.site_ids
    origins = scenario.demand.origins
    history, actual, missing = _signals(scenario)
    request_stream = None
    if stream:
        request_stream = RequestStream(scenario.demand, scenario.start_utc, scenario.end_utc,
                                       scenario.seed, scenario.interval_s, scenario.data)
        requests = RequestBatch.concat([])
        counts = np.zeros((scenario.n_intervals, len(origins)), np.int64)
        for c in range(request_stream.n_chunks):
            arrival, origin = request_stream.arrivals(c)
            none = np.zeros(len(arrival), np.int32)
            counts += interval_counts(RequestBatch(arrival, none, none, origin), len(origins),
                                      scenario.interval_s, scenario.n_intervals)
    else:
        requests = scenario.demand.generate(scenario.start_utc, scenario.end_utc,
                                            scenario.seed, scenario.data)
        counts = interval_counts(requests, len(origins), scenario.interval_s,
                                 scenario.n_intervals)
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
    pool_tables = tuple(
        table if s.max_replicas(s.replica.model) <= s.installed else surrogate.site_table(
            s.replica, s.max_replicas(s.replica.model), mix, scenario.slo_percentile)
        for s, table in zip(scenario.sites, tables, strict=True))
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
        counts=counts, tables=tables, surrogate_accuracy=accuracy,
        rtt_s=rtt_ms_matrix(origins, site_ids) / 1e3, pinned=origin_site_allowed(scenario),
        forecasters=forecasters, missing=missing,
        # Learns only from demand observed before the start, never from the demand model.
        demand_forecaster=DemandForecaster(scenario.interval_s).fit(observed_history(
            scenario.demand, scenario.start_utc, DEFAULT_HISTORY_DAYS, scenario.interval_s,
            scenario.seed)),
        pool_tables=pool_tables, stream=request_stream,
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
    horizon: int = DEFAULT_HORIZON, stream: bool | None = None,
) -> ExperimentResult:
    """Run ``scenario`` for every policy and return its metrics and traces: every policy plans
    the fleet (all models) with the receding horizon (``plan_receding``), the judge simulates.
    ``stream``: judge with the requests streamed one interval at a time (bounded memory,
    ``slit.experiment.stream_judge``); None: when the day is large (``stream_day``)."""
    report = progress or (lambda stage, done, total: None)
    unknown = [p for p in policies if p not in POLICIES]
    if unknown:
        raise SlitInputError("policies", f"unknown policy {unknown[0]!r}",
                             f"use some of: {', '.join(POLICIES)}")
    prepared_by_model = prepare_models(scenario, report,
                                       stream_day(scenario) if stream is None else stream)
    receding = plan_receding(scenario, prepared_by_model, policies, report, horizon)
    result = judge_plans(scenario, prepared_by_model, receding.fleet, report)
    result.plans = receding.plans
    result.slit_decisions = receding.slit_decisions
    result.decision_s = [float(x) for x in receding.plans["slit"].decision_s] \
        if "slit" in receding.plans else []
    result.preference_scales = receding.preference_scales
    result.shortfalls = check_fleet_capacity(scenario, prepared_by_model)
    return result


# Above this many expected requests a run streams its requests (``stream_day``). The whole-day
# judge holds each request's draws and a (site, model)'s per-request results at once, about
# 100 bytes a request at its peak (measured: benchmarks/bench_scale.py): 20 M is ~2 GB. The
# default day (~9 M) stays on the whole-day judge, whose Ray tasks simulate sites in parallel.
STREAM_ABOVE_REQUESTS = 20_000_000


def stream_day(scenario: Scenario) -> bool:
    """Whether a run of ``scenario`` streams its requests: a large day whose intervals are whole
    demand bins (``RequestStream``'s chunks)."""
    demand = scenario.demand
    ratio = scenario.interval_s / demand.bin_s
    expected = float(demand.expected_counts(scenario.start_utc, scenario.n_intervals,
                                            scenario.interval_s).sum())
    return expected > STREAM_ABOVE_REQUESTS and abs(ratio - round(ratio)) < 1e-9


def prepare_models(scenario: Scenario, progress: Callable[[str, int, int], None] | None = None,
                   stream: bool = False) -> list[Prepared]:
    """``prepare`` of every served model's view, in ``scenario.model_names`` order; progress of
    the surrogate stage counted over all models (one bar, not one per model). ``stream``: keep
    each model's requests as a ``RequestStream``."""
    report = progress or (lambda stage, done, total: None)
    n_m = len(scenario.model_names)
    out = []
    simulated = False  # a cached surrogate reports nothing itself: then count models
    for i, model in enumerate(scenario.model_names):
        def scaled(stage: str, done: int, total: int, i: int = i) -> None:
            nonlocal simulated
            if stage == "surrogate":
                simulated = True
                report(stage, i * total + done, n_m * total)
            else:
                report(stage, done, total)
        out.append(prepare(scenario.for_model(model), scaled, stream))
        if not simulated:
            report("surrogate", i + 1, n_m)
    return out


@dataclass
class RecedingPlans:
    """What every policy committed over a run, and how it planned."""

    fleet: dict[str, FleetPlan]
    plans: dict[str, PolicyPlan]  # per-policy views over all models, for the report
    slit_decisions: list[Decision]  # SLIT's per-interval front (report), where computed
    initial_replicas: np.ndarray  # [S, M] the state assumed at the run's start
    preference_scales: np.ndarray  # [4] the one normalisation of every policy's score


def initial_replicas(inputs: HorizonInputs, preference: Preference) -> np.ndarray:
    """[S, M] the state assumed at the run's start, the same for every policy: the replicas
    the fixed placement rule keeps for the weighted greedy's plan of the first interval,
    already up (and up long enough to be released). The judge's simulation starts the first
    interval's replicas serving, so a plan pays no load for them either."""
    n_s, n_m = len(inputs.scenario.sites), len(inputs.scenario.model_names)
    zero = np.zeros((n_s, n_m), dtype=np.int64)
    first = horizon_problem(inputs, 0, zero, np.zeros((n_s, n_m)))
    return HORIZON_POLICIES["weighted_greedy"].plan(first, preference, None)[0][0]


def plan_receding(scenario: Scenario, prepared_by_model: list[Prepared],
                  policies: tuple[str, ...] = POLICIES,
                  progress: Callable[[str, int, int], None] | None = None,
                  horizon: int = DEFAULT_HORIZON) -> RecedingPlans:
    """Every policy on the receding horizon: at each interval ``k`` the horizon problem of
    ``k .. k + H - 1`` as known at its start (``horizon_problem``) from the policy's committed
    state; the policy's first interval is committed. At each fault change inside interval ``k``
    (``events.change_times``) the policy re-plans at once from the committed state with the
    horizon known then (a ``Failover``); the next interval starts from the failover's replicas.
    SLIT plans the horizon (``plan_horizon``); the baselines plan interval 0 alone and place
    replicas by the fixed rule (``horizon_policies``).

    When this process drives Ray, the offloaded myopic rules' solves (the MILP's) of every
    interval run as Ray tasks submitted before the loop (they do not depend on the committed
    state), while this process plans the others; the loop commits them as a serial run would,
    so the plans are the same. Without Ray each is solved where the loop reaches it."""
    report = progress or (lambda stage, done, total: None)
    inputs = HorizonInputs(scenario, prepared_by_model, horizon)
    preference = scenario.preference
    names = scenario.model_names
    n_k, n_s, n_m = scenario.n_intervals, len(scenario.sites), len(names)
    n_o = len(scenario.demand.origins)
    start = initial_replicas(inputs, preference)
    # Per policy: replicas now, and when the youngest of each (site, model) was loaded (s from
    # the run's start; the initial replicas count as loaded min_up_s before it).
    state = {p: (start.copy(), np.full((n_s, n_m), -float(scenario.min_up_s)))
             for p in policies}
    previous: dict[str, HorizonPlan | None] = dict.fromkeys(policies)
    replicas = {p: np.zeros((n_k, n_s, n_m), dtype=np.int64) for p in policies}
    routing = {p: np.zeros((n_k, n_m, n_o, n_s)) for p in policies}
    failovers: dict[str, list[Failover]] = {p: [] for p in policies}
    plans = {p: PolicyPlan(np.zeros((n_k, n_o, n_s)), np.zeros((n_k, n_s), np.int64),
                           np.zeros((n_k, 4)), np.zeros(n_k), np.zeros(n_k)) for p in policies}
    changes = change_times(scenario.events, scenario.start_utc, scenario.end_utc)
    weights = np.array([m.demand_share for m in scenario.models])
    first_steps: list[tuple[IntervalProblem, ...]] = []
    seeds = interval_seeds(scenario.seed, n_k)
    slit_decisions: list[Decision] = []
    # The horizon problem at k as known then: its steps do not depend on the replicas passed
    # (only ``initial_replicas`` does, which each policy replaces by its own committed state),
    # so one base serves every policy, and the myopic rules' routings of interval k (``Myopic``:
    # the rule reads only the interval problems and the pools, ``route_on_pools``) can be
    # solved before the loop reaches k, one task per interval.
    bases: list[HorizonProblem | None] = []  # None once its interval is planned
    routes: dict[str, list[list[Deferred[tuple[np.ndarray, float]]]]] = {
        p: [] for p in policies if _offloaded(p)}

    def base_at(k: int) -> HorizonProblem:
        """Interval k's base, built in interval order (the forecasters learn hour by hour)
        with the offloaded rules' solves of its committed interval submitted."""
        while len(bases) <= k:
            base = horizon_problem(inputs, len(bases), start, np.zeros((n_s, n_m)))
            bases.append(base)
            for policy, per_k in routes.items():
                per_k.append(submit_each(timed_route, [RouteJob(policy, base.steps[0],
                                                                Pools.of(base), preference)]))
        built = bases[k]
        assert built is not None, f"interval {k} was planned already"
        return built

    # On Ray the solves of the next ``ahead`` intervals run on the workers while this process
    # plans SLIT and the others. A window, not the whole day at once: Ray does not run queued
    # tasks in the order submitted (measured on the default day with all 192 solves queued:
    # after 14 min the loop still waited for interval 3's while the two workers had spent
    # ~400 s of CPU on others, most of the day's), so only the intervals the loop is about to
    # reach are queued, enough to keep every worker busy. A fault re-plan inside an interval asks
    # the forecasters for its own hour, so with faults nothing is built ahead: the bases come
    # in the loop, interleaved with the re-plans as in a serial run (each interval's task then
    # runs on a worker while this process plans the other policies).
    ahead = 2 * parallel.ray_cpus() if routes and parallel.ray_driver() and not changes else 0
    for k in range(n_k):
        base_at(min(n_k - 1, k + ahead))
        t0_s = k * scenario.interval_s
        t0 = scenario.start_utc + pd.Timedelta(seconds=t0_s)
        t1 = t0 + pd.Timedelta(seconds=scenario.interval_s)
        base = base_at(k)
        first_steps.append(base.steps[0])
        for policy in policies:
            now, loaded_at = state[policy]
            problem = replace(base, initial_replicas=fit_to_pools(scenario, now, base.pool_gpus),
                              initial_up_s=t0_s - loaded_at)
            started = time.perf_counter()
            if policy == SLIT:
                # The same step ``slit plan`` takes for the interval it plans.
                step = slit_step(problem, scenario, seeds[k], previous[policy])
                r, x = step.replicas, step.routing
                slit_decisions.append(step.decisions[0])  # the report's front: first model
            elif policy in routes:
                # Solved up front (on Ray) or now: the decision time is the solves' own (timed
                # where they ran, not the wait for them) plus the placement's.
                (route, seconds), = [d.result() for d in routes[policy][k]]
                started = time.perf_counter() - seconds
                x = route[None]
                r = _myopic(policy).place(problem, x)
            else:
                r, x = HORIZON_POLICIES[policy].plan(problem, preference, previous[policy])
            plans[policy].decision_s[k] = time.perf_counter() - started
            previous[policy] = (r, x) if r.shape[0] > 1 else None
            replicas[policy][k], routing[policy][k] = r[0], x[0]
            one = replace(problem, steps=problem.steps[:1])
            ev = evaluate_horizon(one, r[:1], x[:1])
            plans[policy].planned_objectives[k] = ev.objectives
            plans[policy].planned_it_energy_kwh[k] = _planned_it_energy_kwh(one, r[0], x[0])
            loaded_at = np.where(r[0] > problem.initial_replicas, t0_s, loaded_at)
            current = r[0]
            for t in (c for c in changes if t0 < c < t1):
                at_s = (t - scenario.start_utc).total_seconds()
                fault = horizon_problem(inputs, k, current, at_s - loaded_at, known_at_utc=t)
                rf, xf = HORIZON_POLICIES[policy].plan(fault, preference, None)
                failovers[policy].append(Failover(k, at_s, rf[0].copy(), xf[0].copy()))
                loaded_at = np.where(rf[0] > fault.initial_replicas, at_s, loaded_at)
                current = rf[0]
            state[policy] = (current.copy(), loaded_at)
        bases[k] = None  # every policy has planned interval k
        report("plan", k + 1, n_k)
    fleet = {p: FleetPlan(replicas[p], routing[p], tuple(failovers[p])) for p in policies}
    for p in policies:
        plans[p].routing = np.einsum("m,kmos->kos", weights, routing[p])
        plans[p].awake = replicas[p].sum(axis=2)
    return RecedingPlans(fleet, plans, slit_decisions, start,
                         day_preference_scales(first_steps))


def _myopic(policy: str) -> Myopic:
    rule = HORIZON_POLICIES[policy]
    assert isinstance(rule, Myopic)
    return rule


def _offloaded(policy: str) -> bool:
    """Whether ``plan_receding`` solves the policy's committed intervals ahead (``Myopic``
    rules marked ``offload`` that plan their first interval alone)."""
    rule = HORIZON_POLICIES.get(policy)
    return isinstance(rule, Myopic) and rule.offload and rule.first_only


@dataclass(frozen=True)
class SlitStep:
    """SLIT's decision at one interval: the horizon plan (its interval 0 is committed) and, per
    model, the per-interval search's front whose chosen routing the horizon search considered."""

    replicas: np.ndarray  # [H, S, M]
    routing: np.ndarray  # [H, M, O, S]
    decisions: list[Decision]  # per model, in scenario order


def slit_step(problem: HorizonProblem, scenario: Scenario, seed: np.random.SeedSequence,
              previous: HorizonPlan | None = None) -> SlitStep:
    """SLIT at one interval, from the committed state ``problem`` starts from: its
    per-interval search (surrogate + NSGA-II) on the committed interval of each model, whose
    chosen routings are candidates of the horizon search (``plan_horizon``, warm-started from
    ``previous``, its own previous horizon plan). ``seed``: the interval's
    (``interval_seeds``). ``slit run`` takes this step at every interval of its receding
    horizon, ``slit plan`` for the interval it plans: the same inputs give the same decision."""
    # A copy: spawning children advances a SeedSequence, and the step must not change its
    # argument (a second step with the same seed gives the same decision).
    seed = np.random.SeedSequence(seed.entropy, spawn_key=seed.spawn_key,
                                  pool_size=seed.pool_size,
                                  n_children_spawned=seed.n_children_spawned)
    decisions = _slit_interval_search(problem, scenario.preference, scenario, seed, previous)
    r, x = HORIZON_POLICIES[SLIT].plan(
        problem, scenario.preference, previous,
        first_routing=np.stack([d.routing for d in decisions]),
        seed=int(seed.generate_state(1)[0]))
    return SlitStep(r, x, decisions)


def _slit_interval_search(problem: HorizonProblem, preference: Preference, scenario: Scenario,
                          seed: np.random.SeedSequence, previous: HorizonPlan | None
                          ) -> list[Decision]:
    """SLIT's per-interval search (``plan_interval``) on interval 0 of the horizon, per model,
    warm-started from its previous horizon's plan for this interval."""
    out = []
    for m, step in enumerate(problem.steps[0]):
        warm = None if previous is None or previous[1].shape[0] < 2 else previous[1][1, m]
        out.append(plan_interval(step, preference, scenario.search, warm,
                                 seed=seed.spawn(problem.n_models)[m]))
    return out


def day_preference_scales(first_steps: list[tuple[IntervalProblem, ...]]) -> np.ndarray:
    """[4] the one normalisation of every policy's simulated day (``preference_score``): the
    forecast interval problems' scales (``horizon_scales`` over every committed interval and
    model), fixed by the problems, never by the outcomes compared."""
    return horizon_scales([p for row in first_steps for p in row])


def _planned_it_energy_kwh(problem: HorizonProblem, replicas: np.ndarray, routing: np.ndarray
                           ) -> float:
    """IT energy the committed interval is expected to take (forecasts, surrogate), loading
    included."""
    energy = float((problem.loads(replicas[None])[0] * problem.loading_kwh()).sum())
    for m, p in enumerate(problem.steps[0]):
        load = p.demand_rps @ routing[m]
        for s, table in enumerate(p.tables):
            n = int(replicas[s, m])
            if n == 0:
                continue
            _, _, power = table.lookup(np.array([load[s]]), np.array([n]))
            power_w = float(power[0]) - (table.installed - n) * table.standby_w_per_replica
            energy += power_w * p.interval_s / 3.6e6
    return energy


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
    previous_s = -1.0
    for f in plan.failovers:
        at = f"{where}: failover at {f.at_s:g} s"
        if not (0 <= f.k < n_k and f.k * scenario.interval_s <= f.at_s
                < (f.k + 1) * scenario.interval_s) or f.at_s < previous_s:
            raise SlitInputError(at, f"is not inside interval {f.k} or out of time order",
                                 "give failovers in time order, each inside its interval")
        previous_s = f.at_s
        if f.replicas.shape != (n_s, n_m) or f.routing.shape != (n_m, n_o, n_s):
            raise SlitInputError(at, f"replicas {f.replicas.shape}, routing {f.routing.shape}",
                                 f"give replicas [{n_s}, {n_m}] and routing [{n_m}, {n_o}, "
                                 f"{n_s}]")
        if (f.replicas < 0).any() or not np.array_equal(f.replicas, np.round(f.replicas)) \
                or (f.routing < -1e-9).any() \
                or not np.allclose(f.routing.sum(axis=2), 1.0, atol=1e-6):
            raise SlitInputError(at, "replicas must be whole and >= 0, routing rows shares "
                                 "summing to 1", "round the replicas, normalise the rows")
        for s, site in enumerate(scenario.sites):
            loaded = {m: int(f.replicas[s, i]) for i, m in enumerate(names)}
            if not site.fits(loaded):
                raise SlitInputError(at, f"loads {loaded} at {site.region_id}, beyond its pool "
                                     f"{site.gpus}", "keep the replicas within the pool")
    check_min_up(scenario, policy, plan)


def check_min_up(scenario: Scenario, policy: str, plan: FleetPlan) -> None:
    """Refuse a plan that releases a replica before ``scenario.min_up_s``: at every change of
    the loaded replicas (interval starts, failovers), each (site, model) keeps at least the
    replicas it loaded within the last ``min_up_s`` (the planner's rule,
    ``HorizonProblem.must_stay``). The first interval's replicas count as up long enough;
    replicas a fault took (the site's pool shrank, ``fit_to_pools``) may go at once."""
    times = [k * scenario.interval_s for k in range(scenario.n_intervals)]
    timeline = [(t, plan.replicas[k].astype(np.int64)) for k, t in enumerate(times)]
    timeline += [(f.at_s, np.asarray(f.replicas, dtype=np.int64)) for f in plan.failovers]
    timeline.sort(key=lambda e: e[0])
    loads: list[tuple[float, np.ndarray]] = []
    current = timeline[0][1]
    for t, replicas in timeline:
        loads.append((t, np.maximum(0, replicas - current)))
        recent = sum((n for at, n in loads if at > t - scenario.min_up_s + 1e-6),
                     np.zeros_like(replicas))
        t_utc = scenario.start_utc + pd.Timedelta(seconds=t)
        held = fit_to_pools(scenario, current, pool_gpus(scenario, t_utc))
        short = np.minimum(recent, held) - replicas  # loaded recently, still held before
        if (short > 0).any():
            s, m = np.argwhere(short > 0)[0]
            raise SlitInputError(
                f"plan of {policy}", f"at {t:g} s releases {int(short[s, m])} replica(s) of "
                f"{scenario.model_names[m]} at {scenario.site_ids[s]} loaded less than "
                f"min_up_s = {scenario.min_up_s:g} s before", "keep each loaded replica up "
                "for the minimum up-time")
        current = replicas


def judge_plans(scenario: Scenario, prepared_by_model: list[Prepared],
                fleet: dict[str, FleetPlan],
                progress: Callable[[str, int, int], None] | None = None) -> ExperimentResult:
    """Simulate every policy's fleet plan on the actual request streams (one per model, from
    ``prepared_by_model``, in ``scenario.model_names`` order) and measure it."""
    if any(p.stream is not None for p in prepared_by_model):
        from slit.experiment.stream_judge import judge_plans_streaming

        return judge_plans_streaming(scenario, prepared_by_model, fleet, progress)
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
        rejected = redirected = 0
        rejected_by_model: dict[str, int] = {}
        for m, (model, prepared) in enumerate(zip(scenario.model_names, prepared_by_model,
                                                  strict=True)):
            per_model_sims[model] = []
            model_energy[model] = []
            loaded_m = plan.replicas[:, :, m].astype(np.int64)
            releases += int(np.maximum(0, loaded_m[:-1] - loaded_m[1:]).sum())
            judged, faults = judge_model(scenario, prepared, plan, m, uniforms[m], policy)
            rejected += faults.rejected
            redirected += faults.redirected
            rejected_by_model[model] = faults.rejected
            for s, sim in enumerate(judged):
                sims.append(sim)
                per_model_sims[model].append(sim)
                hourly = _hourly_energy_kwh(sim, scenario)
                model_energy[model].append(hourly)
                energy_by_site[s] = hourly if not len(energy_by_site[s]) \
                    else energy_by_site[s] + hourly
            del judged
        site_hourly[policy] = _site_hourly(scenario, actual, energy_by_site)
        metrics[policy] = replace(
            policy_metrics(sims, site_hourly[policy], scenario.slo_ttft_s,
                           rejected=rejected),
            redirected=redirected,
            loading_energy_kwh=float(sum(
                sim.loading_energy_j_per_interval.sum() for sim in sims
                if sim.loading_energy_j_per_interval is not None)) / 3.6e6,
            loads=int(sum(sim.n_loads for sim in sims)), releases=releases,
            load_delayed_requests=int(sum(sim.n_load_delayed for sim in sims)))
        by_model[policy] = {
            model: policy_metrics(per_model_sims[model],
                                  _site_hourly(scenario, actual, model_energy[model]),
                                  scenario.slo_ttft_s, rejected=rejected_by_model[model])
            for model in scenario.model_names}
        ttft[policy] = _ttft_sample(sims)
        del sims, per_model_sims
        report("simulate", p_index + 1, len(fleet))
    first = prepared_by_model[0]
    return ExperimentResult(scenario, metrics, {}, [], actual, site_hourly, ttft,
                            first.surrogate_accuracy, [], fleet_plans=fleet,
                            model_metrics=by_model, data_gaps=data_gaps(scenario, first))


# --- parallel site simulations (issue 14), faults (issue 13) -------------------------------
@dataclass(frozen=True)
class SiteJob:
    """One (site, model) simulation under a policy's plan: the requests routed there, their round
    trips, the replicas loaded and the replicas the site's GPUs can hold per minute."""

    requests: RequestBatch
    rtt_s: np.ndarray
    config: SiteConfig
    schedule: np.ndarray  # loaded replicas per AWAKE_BIN_S
    seed: int
    label: str  # policy / site / model, for the conservation error
    capacity: np.ndarray | None = None  # replicas that fit per AWAKE_BIN_S; None: the pool
    shed_wait_s: float = np.inf
    first_arrival_s: np.ndarray | None = None  # when users sent them (hand-offs arrive later)
    n_received: int = 0  # of ``requests``, those handed off to this site by another


@dataclass(frozen=True)
class PlanView:
    """One model's plan as a timeline, with the faults the judge applies.

    The plan's segments start at each interval and at each failover (``FleetPlan.failovers``);
    ``fraction`` and ``reachable`` are the events per AWAKE_BIN_S (the judge's view)."""

    starts_s: np.ndarray  # [G] segment starts, seconds from the run's start
    routing: np.ndarray  # [G, O, S]
    replicas: np.ndarray  # [G, S] this model's loaded replicas
    replicas_all: np.ndarray  # [G, S, M] every model's (they share the pools)
    fraction: np.ndarray  # [B, S] share of each site's GPUs usable per minute
    reachable: np.ndarray  # [B, O, S] False where a partition cuts origin o from site s
    allowed: np.ndarray  # [O, S] residency pins
    rtt_s: np.ndarray  # [O, S]
    slo_s: float = np.inf  # the TTFT SLO: fallbacks beyond this round trip are a last resort

    def segment(self, t_s: np.ndarray) -> np.ndarray:
        return np.maximum(np.searchsorted(self.starts_s, t_s, side="right") - 1, 0)

    def bin(self, t_s: np.ndarray) -> np.ndarray:
        return np.clip((np.asarray(t_s) // AWAKE_BIN_S).astype(np.int64), 0,
                       len(self.fraction) - 1)

    @property
    def faulty(self) -> bool:
        return bool((self.fraction < 1.0).any() or not self.reachable.all())


@dataclass(frozen=True)
class ModelFaults:
    """What faults did to one model's requests under one policy."""

    redirected: int = 0  # sent to a fallback on arrival (their site was down or cut off)
    rejected: int = 0  # no site to go to, on arrival or at a hand-off
    handed_off: int = 0  # lost their replica and were re-dispatched (or rejected)


def plan_view(scenario: Scenario, prepared: Prepared, plan: FleetPlan, m: int) -> PlanView:
    """Model ``m``'s plan timeline and the events over the period, per minute."""
    n_k = plan.replicas.shape[0]
    starts = [k * scenario.interval_s for k in range(n_k)]
    routing = [plan.routing[k, m] for k in range(n_k)]
    replicas = [plan.replicas[k] for k in range(n_k)]
    for f in plan.failovers:
        # Interval k+1's own segment starts at its boundary: the failover ends there.
        starts.append(float(f.at_s))
        routing.append(f.routing[m])
        replicas.append(f.replicas)
    order = np.argsort(np.array(starts), kind="stable")
    n_bins = n_k * int(round(scenario.interval_s / AWAKE_BIN_S))
    times = pd.DatetimeIndex([scenario.start_utc + pd.Timedelta(seconds=b * AWAKE_BIN_S)
                              for b in range(n_bins)])
    events = scenario.events
    origins, site_ids = tuple(scenario.demand.origins), scenario.site_ids
    reachable = np.ones((n_bins, len(origins), len(site_ids)), bool)
    for event in events:
        if isinstance(event, fault_events.Partition) and event.origin in origins \
                and event.site in site_ids:
            active = (times >= event.start_utc) & (times < event.end_utc)
            reachable[active, origins.index(event.origin), site_ids.index(event.site)] = False
    replicas_all = np.stack([replicas[i] for i in order]).astype(np.int64)
    return PlanView(
        starts_s=np.array(starts, dtype=np.float64)[order],
        routing=np.stack([routing[i] for i in order]), replicas=replicas_all[:, :, m],
        replicas_all=replicas_all, fraction=fault_events.gpu_fraction_at(events, site_ids, times),
        reachable=reachable, allowed=prepared.pinned, rtt_s=prepared.rtt_s,
        slo_s=scenario.slo_ttft_s)


def fallback_sites(view: PlanView, origin: np.ndarray, t_s: np.ndarray, failed: np.ndarray,
                   excluded: np.ndarray | None = None, uniform: np.ndarray | None = None
                   ) -> np.ndarray:
    """The site each request goes to when its own (``failed``) is down or cut off at ``t_s``,
    -1 for none. Candidates: the sites up, reachable from its origin, allowed by its pins, with
    replicas of the model loaded in the current plan segment, and not ``excluded`` ([S]: sites
    already judged, see ``judge_model``). Among them the request goes by the origin's current
    routing row (sampled with ``uniform``, or its largest share without); when the row gives them
    no share, in proportion to their loaded replicas among those within the SLO's round trip (a
    load balancer spreading over healthy backends); when none is that near, to the nearest."""
    out = np.full(len(origin), -1, np.int64)
    if not len(origin):
        return out
    g, b = view.segment(t_s), view.bin(t_s)
    keys = np.stack([g, b, origin.astype(np.int64), failed.astype(np.int64)], axis=1)
    groups, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    for i, (gi, bi, o, s) in enumerate(groups):
        ok = (view.fraction[bi] > 0.0) & view.reachable[bi, o] & view.allowed[o] \
            & (view.replicas[gi] > 0)
        ok[s] = False
        if excluded is not None:
            ok &= ~excluded
        if not ok.any():
            continue
        candidates = np.flatnonzero(ok)
        weight = view.routing[gi, o, candidates].astype(np.float64)
        if not weight.sum() > 0.0:
            near = view.rtt_s[o, candidates] < view.slo_s
            weight = np.where(near, view.replicas[gi, candidates], 0).astype(np.float64)
        if not weight.sum() > 0.0:
            weight = (view.rtt_s[o, candidates] == view.rtt_s[o, candidates].min()) * 1.0
        members = inverse == i
        if uniform is None:
            out[members] = candidates[int(np.argmax(weight))]
        else:
            cumulative = np.cumsum(weight)
            pick = np.searchsorted(cumulative, uniform[members] * cumulative[-1], side="right")
            out[members] = candidates[np.minimum(pick, len(candidates) - 1)]
    return out


def redirect_unavailable(view: PlanView, requests: RequestBatch, site_of: np.ndarray,
                         rng: np.random.Generator | None = None) -> ModelFaults:
    """The load balancer's part of a fault: a request routed to a site that is down or that its
    origin cannot reach when it arrives goes to the fallback (``fallback_sites``) at once, or is
    rejected (``site_of`` -1) when there is none. Changes ``site_of`` in place."""
    if not view.faulty or not len(requests):
        return ModelFaults()
    b = view.bin(requests.arrival_s)
    site = site_of.astype(np.int64)
    down = (view.fraction[b, site] <= 0.0) | ~view.reachable[b, requests.origin, site]
    index = np.flatnonzero(down)
    if not len(index):
        return ModelFaults()
    fallback = fallback_sites(view, requests.origin[index], requests.arrival_s[index],
                              site[index], None, None if rng is None else rng.random(len(index)))
    site_of[index] = fallback
    return ModelFaults(redirected=int((fallback >= 0).sum()), rejected=int((fallback < 0).sum()))


def site_capacity(scenario: Scenario, view: PlanView, s: int, m: int, schedule: np.ndarray
                  ) -> np.ndarray | None:
    """Replicas of model ``m`` that site ``s``'s usable GPUs hold per minute; None when the site
    keeps all its GPUs throughout. When the plan's replicas (all models on the GPU type) no
    longer fit, each model keeps its planned replicas scaled by usable / used GPUs, rounded
    down; while they fit, the spare GPUs may hold this model's draining replicas too."""
    fraction = view.fraction[:, s]
    if (fraction >= 1.0).all():
        return None
    site = scenario.sites[s]
    model = scenario.model_names[m]
    spec = site.replica_for[model]
    n_bins = len(schedule)
    segment = view.segment(np.arange(n_bins) * AWAKE_BIN_S)
    pool = site.gpus.get(spec.gpu, 0)
    usable = np.floor(pool * fraction[np.minimum(np.arange(n_bins), len(fraction) - 1)] + 1e-9)
    used = np.zeros(n_bins)
    for i, name in enumerate(scenario.model_names):
        other = site.replica_for[name]
        if other.gpu == spec.gpu:
            used += view.replicas_all[segment, s, i] * other.tp
    planned = schedule.astype(np.float64)
    spare = np.maximum(usable - used, 0.0) // spec.tp
    scaled = np.floor(planned * usable / np.maximum(used, 1.0) + 1e-9)
    return np.where(used <= usable, planned + spare, scaled).astype(np.int64)


def judge_model(scenario: Scenario, prepared: Prepared, plan: FleetPlan, m: int,
                uniform: np.ndarray, policy: str) -> tuple[list[SiteSimResult], ModelFaults]:
    """Simulate every site for model ``m`` under one policy's plan, faults included.

    Requests are routed by the plan (``route_requests``) and, on arrival at a site down or cut
    off, redirected to its fallback. Sites that lose capacity at some time are simulated first,
    one at a time in the order of their first loss; the requests they hand off join their
    fallback, which they reach one round trip after the hand-off, keeping their first arrival
    for TTFT. A hand-off never goes to a site already simulated, so the chain of hand-offs ends
    at a site that keeps its GPUs, or in a rejection. The sites that never lose capacity then
    run as independent jobs (Ray tasks when this process drives Ray)."""
    requests = prepared.requests
    view = plan_view(scenario, prepared, plan, m)
    site_of = route_requests(requests, view.routing, scenario.interval_s, uniform,
                             starts_s=view.starts_s)
    # Fallback draws: from the scenario's seed, apart from the routing draws.
    rng = np.random.default_rng(np.random.SeedSequence([scenario.seed, 13, m]))
    faults = redirect_unavailable(view, requests, site_of, rng)
    n_s = len(scenario.sites)
    first_loss = [np.flatnonzero(view.fraction[:, s] < 1.0) for s in range(n_s)]
    losing = sorted((s for s in range(n_s) if len(first_loss[s])),
                    key=lambda s: (int(first_loss[s][0]), s))
    received: list[list[RequestBatch]] = [[] for _ in range(n_s)]
    received_first: list[list[np.ndarray]] = [[] for _ in range(n_s)]
    judged: dict[int, SiteSimResult] = {}
    done = np.zeros(n_s, bool)
    rejected, handed = faults.rejected, 0
    for s in losing:
        job = site_job(scenario, prepared, plan, m, site_of, policy, view, s,
                       received[s], received_first[s])
        full = _simulate_job(job)
        judged[s] = _judged(full, job.n_received)
        done[s] = True
        if full.handed_off is None or full.handoff_s is None or not full.handed_off.any():
            continue
        out = np.flatnonzero(full.handed_off)
        handed += len(out)
        moved = job.requests.take(out)
        at_s = full.handoff_s[out]
        first = full.arrival_s[out]
        fallback = fallback_sites(view, moved.origin, at_s, np.full(len(out), s), done,
                                  rng.random(len(out)))
        rejected += int((fallback < 0).sum())
        for f in np.unique(fallback[fallback >= 0]):
            pick = fallback == f
            batch = moved.take(pick)
            # The user learns of the loss and resends: one round trip to the fallback.
            arrive = at_s[pick] + view.rtt_s[batch.origin, f]
            received[f].append(RequestBatch(arrive, batch.prompt_tokens, batch.output_tokens,
                                            batch.origin))
            received_first[f].append(first[pick])
    rest = [s for s in range(n_s) if not done[s]]
    sims = simulate_site_jobs(site_job(scenario, prepared, plan, m, site_of, policy, view, s,
                                       received[s], received_first[s]) for s in rest)
    judged.update(zip(rest, sims, strict=True))
    result = [judged[s] for s in range(n_s)]
    faults = replace(faults, rejected=rejected, handed_off=handed)
    check_conservation(f"{policy} / {scenario.model_names[m]}", len(requests), result, faults)
    return result, faults


def site_job(scenario: Scenario, prepared: Prepared, plan: FleetPlan, m: int,
             site_of: np.ndarray, policy: str, view: PlanView, s: int,
             received: list[RequestBatch] | None = None,
             received_first_s: list[np.ndarray] | None = None) -> SiteJob:
    """The simulation of site ``s`` for model ``m``: the requests routed there (plus those
    handed off to it, sent by their users at ``received_first_s``), the plan's replicas per
    minute, what the GPUs hold, admission control."""
    requests = prepared.requests
    model = scenario.model_names[m]
    site = scenario.sites[s]
    own = requests.take(site_of == s)
    config = SiteConfig(replica=site.replica_for[model],
                        n_replicas=max(1, site.max_replicas(model)))
    schedule = loaded_schedule(view.replicas[:, s], scenario.interval_s, view.starts_s,
                               n_bins=len(view.fraction))
    capacity = site_capacity(scenario, view, s, m, schedule)
    shed_wait_s = np.inf if scenario.shed_factor is None \
        else scenario.shed_factor * scenario.slo_ttft_s
    label = f"{policy}: {site.region_id} / {model}"
    seed = prepared.scenario.seed + s
    if not received:
        return SiteJob(own, prepared.rtt_s[own.origin, s], config, schedule, seed, label,
                       capacity, shed_wait_s)
    extra = RequestBatch(np.concatenate([b.arrival_s for b in received]),
                         np.concatenate([b.prompt_tokens for b in received]),
                         np.concatenate([b.output_tokens for b in received]),
                         np.concatenate([b.origin for b in received]))
    arrival = np.concatenate([own.arrival_s, extra.arrival_s])
    order = np.argsort(arrival, kind="stable")
    both = RequestBatch(arrival[order],
                        np.concatenate([own.prompt_tokens, extra.prompt_tokens])[order],
                        np.concatenate([own.output_tokens, extra.output_tokens])[order],
                        np.concatenate([own.origin, extra.origin])[order])
    first = np.concatenate([own.arrival_s, *(received_first_s or [])])[order]
    return SiteJob(both, prepared.rtt_s[both.origin, s], config, schedule, seed, label,
                   capacity, shed_wait_s, first, n_received=len(extra))


def site_jobs(scenario: Scenario, prepared: Prepared, plan: FleetPlan, m: int,
              site_of: np.ndarray, policy: str) -> Iterator[SiteJob]:
    """The simulation of every site for model ``m`` under one policy's plan (``site_of``: each
    request's site), without hand-offs between sites (``judge_model`` adds them), built one at
    a time so a serial run holds one site's requests at once."""
    view = plan_view(scenario, prepared, plan, m)
    for s in range(len(scenario.sites)):
        yield site_job(scenario, prepared, plan, m, site_of, policy, view, s)


def _simulate_job(job: SiteJob) -> SiteSimResult:
    """Simulate a job; refuse a result that does not account for every request routed here."""
    full = _simulate(job.requests, job.rtt_s, job.config, job.schedule, job.seed,
                     job.capacity, job.shed_wait_s, job.first_arrival_s)
    if not full.conservation_ok or full.n_arrivals != len(job.requests):
        raise RuntimeError(f"{job.label}: {full.conservation_statement()} "
                           f"(of {len(job.requests)} routed here)")
    return full


def run_site_job(job: SiteJob) -> SiteSimResult:
    """Simulate, check that every request routed here is accounted for, keep what the metrics
    read."""
    return _judged(_simulate_job(job), job.n_received)


def simulate_site_jobs(jobs: Iterable[SiteJob]) -> list[SiteSimResult]:
    """Each job's judged simulation, in order: Ray tasks when this process drives a Ray
    runtime, else one after another here (sites are independent given the plan)."""
    return parallel_map(run_site_job, jobs)


def check_conservation(label: str, n_requests: int, sims: list[SiteSimResult],
                       faults: ModelFaults) -> None:
    """Every request of a model is accounted for once over the fleet: completed, refused, shed,
    rejected for want of a site, or still in flight at the end; and every hand-off reappears at
    a fallback or is rejected. Raises: a run that loses requests is an error, not a result."""
    arrivals = sum(len(r.ttft_s) - r.n_received for r in sims)
    completed = sum(r.n_completed for r in sims)
    refused = sum(r.n_refused for r in sims)
    shed = sum(r.n_shed for r in sims)
    in_flight = sum(r.n_in_flight for r in sims)
    handed = sum(r.n_handed_off for r in sims)
    received = sum(r.n_received for r in sims)
    rejected_on_arrival = faults.rejected - (handed - received)
    ok = (arrivals + rejected_on_arrival == n_requests
          and n_requests == completed + refused + shed + in_flight + faults.rejected
          and handed == faults.handed_off and rejected_on_arrival >= 0
          and all(r.n_in_flight >= 0 for r in sims))
    if not ok:
        raise RuntimeError(
            f"{label}: requests not conserved: {n_requests} requests = {completed} completed + "
            f"{refused} refused + {shed} shed + {in_flight} in flight + {faults.rejected} "
            f"rejected? ({arrivals} arrived at sites, {handed} handed off, {received} received)")
# --- end of parallel site simulations and faults ----------------------------------------------


def route_requests(requests: RequestBatch, routing: np.ndarray, interval_s: float,
                   uniform: np.ndarray, starts_s: np.ndarray | None = None) -> np.ndarray:
    """Site index of every request: its origin's routing row of its interval (or, with
    ``starts_s``, of the plan segment it arrives in: intervals and failovers), sampled with
    the given uniform numbers (shared by all policies, so they differ only by their plans).

    The site is the first whose cumulative share exceeds u x the row total. Requests are sorted
    by arrival, so each segment is a slice; within it each origin's row is searched once (an
    [N, S] table of rows would take 1 GB on the default day)."""
    n_k, n_s = routing.shape[0], routing.shape[2]
    if starts_s is None:
        starts_s = np.arange(n_k) * float(interval_s)
    cumulative = np.cumsum(routing, axis=2)
    site = np.empty(len(requests), np.int16)
    k_of = np.maximum(np.searchsorted(starts_s, requests.arrival_s, side="right") - 1, 0)
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


def loaded_schedule(loaded: np.ndarray, interval_s: float, starts_s: np.ndarray | None = None,
                    n_bins: int | None = None) -> np.ndarray:
    """Per-minute loaded counts: each interval's replicas from its start (with ``starts_s``,
    ``loaded`` is per plan segment: each segment's from the first minute that starts inside it,
    so a failover inside a minute applies from the next). Replicas loaded at the start of an
    interval serve only after their load time (the simulation's loading state): a plan that
    wants them ready for a peak must load them an interval ahead."""
    per_interval = int(round(interval_s / AWAKE_BIN_S))
    loaded = np.asarray(loaded, dtype=np.int64)
    if starts_s is None:
        return np.repeat(loaded, per_interval)
    n = len(loaded) * per_interval if n_bins is None else n_bins
    minute_starts = np.arange(n) * AWAKE_BIN_S
    return loaded[np.maximum(np.searchsorted(starts_s, minute_starts, side="right") - 1, 0)]


def _simulate(requests: RequestBatch, rtt_s: np.ndarray, site: SiteConfig,
              schedule: np.ndarray, seed: int, capacity: np.ndarray | None = None,
              shed_wait_s: float = np.inf, first_arrival_s: np.ndarray | None = None
              ) -> SiteSimResult:
    return simulate_site(requests, site, schedule, AWAKE_BIN_S, seed, None, rtt_s, capacity,
                         shed_wait_s, first_arrival_s)


_DROPPED = np.empty(0)


def _judged(sim: SiteSimResult, n_received: int = 0) -> SiteSimResult:
    """What the judge keeps of a site's simulation: TTFT (with and without network), TPOT, the
    arrival, completion, refusal, hand-off and shed flags (the fleet's conservation check
    counts them), the preemption count and the per-interval energy, which the
    metrics, footprints and TTFT sample read. The other per-request arrays are dropped (left
    empty) to bound memory; the result is for those readers only."""
    return replace(sim, e2e_s=_DROPPED, energy_j=_DROPPED, arrival_s=_DROPPED,
                   output_tokens=_DROPPED, handoff_s=None, n_received=n_received)


def site_hourly_footprint(scenario: Scenario, actual: dict[str, pd.DataFrame],
                          hourly_it_kwh: list[np.ndarray]) -> pd.DataFrame:
    """``_site_hourly``: footprint per site and hour from hourly IT energy per site."""
    return _site_hourly(scenario, actual, hourly_it_kwh)


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
    return hourly_energy_kwh(sim.it_energy_j_per_interval, sim.interval_s, scenario)


def hourly_energy_kwh(bins: np.ndarray, interval_s: float, scenario: Scenario) -> np.ndarray:
    """``_hourly_energy_kwh`` of a site's IT energy per simulation bin of ``interval_s``."""
    n_hours = int(np.ceil(scenario.hours))
    per_hour = int(round(3600.0 / interval_s))
    padded = np.zeros(n_hours * per_hour)
    take = min(len(bins), len(padded))
    padded[:take] = bins[:take]
    hourly = padded.reshape(n_hours, per_hour).sum(axis=1)
    hourly[-1] += bins[take:].sum()
    return hourly / 3.6e6
