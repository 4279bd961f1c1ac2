"""The receding-horizon planning loop of ``slit run`` on the real (default) scenario: pools,
minimum up-time, loading, failovers and determinism."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from slit.errors import SlitInputError
from slit.experiment.events import Derate, Outage
from slit.experiment.horizon_inputs import (
    HorizonInputs,
    fit_to_pools,
    horizon_problem,
    pool_gpus,
)
from slit.experiment.run import (
    AWAKE_BIN_S,
    FleetPlan,
    _simulate,
    check_fleet_plan,
    plan_receding,
    prepare_models,
    site_jobs,
)
from slit.experiment.scenario import default_scenario
from slit.serving.lifecycle import load_time_s

POLICIES = ("slit", "milp", "weighted_greedy", "latency_first")
REPORTED: list[tuple[str, int, int]] = []  # progress of prepare_models and plan_receding


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, monkeypatch_module):
    monkeypatch_module.setenv("SLIT_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    scenario = default_scenario(hours=1.0, global_rate_rps=15.0)
    return scenario, prepare_models(scenario, lambda *event: REPORTED.append(event))


@pytest.fixture(scope="module")
def receding(prepared):
    scenario, models = prepared
    return plan_receding(scenario, models, POLICIES, lambda *event: REPORTED.append(event))


def _fits(scenario, replicas: np.ndarray, pools: np.ndarray) -> bool:
    return np.array_equal(fit_to_pools(scenario, replicas, pools), replicas)


def test_committed_plans_stay_within_the_pools(prepared, receding):
    scenario, _ = prepared
    for policy, plan in receding.fleet.items():
        check_fleet_plan(scenario, policy, plan)  # the judge's own check passes
        for k in range(scenario.n_intervals):
            for s, site in enumerate(scenario.sites):
                used = site.gpus_used(dict(zip(scenario.model_names,
                                               plan.replicas[k, s].tolist(), strict=True)))
                assert all(n <= site.gpus.get(g, 0) for g, n in used.items()), (policy, k, s)
        np.testing.assert_allclose(plan.routing.sum(axis=3), 1.0, atol=1e-9)
        # Only loaded replicas take requests: no routing share to a (site, model) with none.
        for k in range(scenario.n_intervals):
            for m in range(len(scenario.model_names)):
                empty = plan.replicas[k, :, m] == 0
                assert plan.routing[k, m][:, empty].sum() == pytest.approx(0.0, abs=1e-9)


def test_horizon_is_clipped_at_the_end_and_built_from_forecasts(prepared):
    scenario, models = prepared
    inputs = HorizonInputs(scenario, models, horizon=8)
    n_s, n_m = len(scenario.sites), len(scenario.model_names)
    zero = np.zeros((n_s, n_m), dtype=np.int64)
    first = horizon_problem(inputs, 0, zero, np.zeros((n_s, n_m)))
    last = horizon_problem(inputs, scenario.n_intervals - 1, zero, np.zeros((n_s, n_m)))
    assert first.n_steps == scenario.n_intervals == 4  # 1 h: clipped from 8
    assert last.n_steps == 1
    # Each model's demand is its share of the forecast, all pools of the whole site.
    shares = np.array([m.demand_share for m in scenario.models])
    demand = np.array([p.demand_rps.sum() for p in first.steps[0]])
    np.testing.assert_allclose(demand / demand.sum(), shares, rtol=0.15)
    assert (first.pool_gpus.sum(axis=1) == [sum(s.gpus.values()) for s in scenario.sites]).all()
    np.testing.assert_array_equal(first.max_replicas, [[s.max_replicas(m) for m in
                                                        scenario.model_names]
                                                       for s in scenario.sites])


def test_min_up_check_refuses_a_replica_released_too_early(prepared, receding):
    scenario, _ = prepared
    strict = replace(scenario, min_up_s=1800.0)
    plan = receding.fleet["latency_first"]
    replicas = np.repeat(plan.replicas[:1], scenario.n_intervals, axis=0)
    m = 0
    s = int(np.argmax([site.max_replicas(scenario.model_names[m]) - replicas[0, i, m]
                       for i, site in enumerate(scenario.sites)]))
    # Replicas are interchangeable: a release counts against the recent loads only once the
    # older replicas are gone, so the site starts with none of the model.
    replicas[:, s, m] = 0
    held = replicas.copy()
    held[1:3, s, m] += 1  # loaded at 900 s, kept 1800 s
    check_fleet_plan(strict, "held", FleetPlan(held, np.repeat(plan.routing[:1], 4, axis=0)))
    broken = replicas.copy()
    broken[1, s, m] += 1  # loaded at 900 s, released at 1800 s: up 900 s < 1800 s
    with pytest.raises(SlitInputError, match="min_up_s"):
        check_fleet_plan(strict, "broken", FleetPlan(broken, np.repeat(plan.routing[:1], 4,
                                                                        axis=0)))
    # Under the scenario's own 900 s the same plan is valid.
    check_fleet_plan(scenario, "broken", FleetPlan(broken, np.repeat(plan.routing[:1], 4,
                                                                      axis=0)))


def test_a_replica_never_serves_before_its_loading_ends(prepared, receding):
    # The judge's path (site_jobs -> loaded_schedule -> simulate): no replica in interval 0,
    # one from interval 1; requests of interval 0 get their first token only once it is loaded.
    scenario, models = prepared
    plan = receding.fleet["latency_first"]
    s = scenario.site_ids.index("US-CAL-CISO")
    m = scenario.model_names.index("Llama-3.1-70B")
    replicas = plan.replicas.copy()
    replicas[0, s, m], replicas[1:, s, m] = 0, 1
    site_of = np.full(len(models[m].requests), s, dtype=np.int16)
    job = next(j for i, j in enumerate(site_jobs(
        scenario, models[m], FleetPlan(replicas, plan.routing), m, site_of, "test")) if i == s)
    full = _simulate(job.requests, job.rtt_s, job.config, job.schedule, job.seed)
    ready_s = scenario.interval_s + load_time_s(scenario.sites[s].replica_for["Llama-3.1-70B"])
    first_token = job.requests.arrival_s + full.ttft_s
    assert full.completed.all() and full.conservation_ok
    assert first_token.min() >= ready_s - 1e-6
    assert full.n_load_delayed > 0 and full.n_loads == 1
    assert len(job.schedule) == scenario.n_intervals * round(scenario.interval_s / AWAKE_BIN_S)


def test_an_outage_inside_an_interval_is_a_failover(prepared):
    scenario, models = prepared
    site = "IN-WE"  # the largest pool: every policy uses it at the start of the day
    start = scenario.start_utc + pd.Timedelta(minutes=20)
    faulty = replace(scenario, events=(Outage(start, start + pd.Timedelta(minutes=30), site),))
    out = plan_receding(faulty, models, ("weighted_greedy", "slit"))
    s = scenario.site_ids.index(site)
    for policy, plan in out.fleet.items():
        assert len(plan.failovers) == 2, policy  # at the start and at the end (50 min)
        begin, end = plan.failovers
        assert (begin.k, begin.at_s) == (1, 1200.0)
        assert (end.k, end.at_s) == (3, 3000.0)
        # Nothing at the site while it is down: the failover and the interval planned then.
        assert (begin.replicas[s] == 0).all() and begin.routing[:, :, s].sum() == 0
        assert (plan.replicas[2, s] == 0).all() and plan.routing[2, :, :, s].sum() == 0
        np.testing.assert_allclose(begin.routing.sum(axis=2), 1.0, atol=1e-9)
        check_fleet_plan(faulty, policy, plan)


def test_a_derate_shrinks_the_pool_the_planner_sees(prepared):
    scenario, models = prepared
    site = scenario.sites[scenario.site_ids.index("IN-WE")]
    faulty = replace(scenario, events=(Derate(scenario.start_utc, scenario.end_utc, site.region_id,
                                              0.5),))
    pools = pool_gpus(faulty, scenario.start_utc)
    s = scenario.site_ids.index(site.region_id)
    assert pools[s].sum() == sum(site.gpus.values()) // 2
    out = plan_receding(faulty, models, ("weighted_greedy",))
    plan = out.fleet["weighted_greedy"]
    for k in range(scenario.n_intervals):
        assert _fits(faulty, plan.replicas[k], pools)


def test_same_inputs_same_committed_plans(prepared, receding):
    scenario, models = prepared
    again = plan_receding(scenario, models, POLICIES)
    for policy in POLICIES:
        np.testing.assert_array_equal(again.fleet[policy].replicas,
                                      receding.fleet[policy].replicas)
        np.testing.assert_array_equal(again.fleet[policy].routing,
                                      receding.fleet[policy].routing)
    np.testing.assert_array_equal(again.preference_scales, receding.preference_scales)


def test_demand_forecast_ahead_is_the_profile_times_the_observed_level():
    from slit.forecast.demand import DemandForecaster, intervals_per_day

    per_day = intervals_per_day(900.0)
    profile = 10.0 + 5.0 * np.sin(np.arange(per_day) / per_day * 2 * np.pi)  # counts/interval
    history = np.tile(profile, 7)[:, None] * np.array([[1.0, 3.0]])  # two origins, 7 days
    forecaster = DemandForecaster(900.0).fit(history)
    observed = 2.0 * history[:5]  # the day so far runs at twice the usual level
    ahead = forecaster.predict_ahead(observed, 8)
    np.testing.assert_allclose(ahead[0], forecaster.predict_next(observed))
    # Later steps follow the profile at their own time of day, at the level observed now.
    level = ahead[0] / history[5]
    np.testing.assert_allclose(ahead, level[None] * history[5:13], rtol=1e-9)
    assert (level > 1.5).all()
    with pytest.raises(SlitInputError):
        forecaster.predict_ahead(observed, 0)


def test_progress_of_a_multi_model_run_never_ends_a_stage_early(prepared, receding):
    # Two models used to report "surrogate" and "plan" once per model, so the plain log said
    # "simulating ...: done" before the simulation had started.
    import io

    from rich.console import Console

    from slit.cli.progress import stage_progress

    scenario, _ = prepared
    buffer = io.StringIO()
    console = Console(file=buffer, width=120, force_terminal=False)
    with stage_progress(console, first="load",
                        order=("load", "surrogate", "plan", "simulate")) as report:
        for event in REPORTED:
            report(*event)
        report("simulate", 1, 1)
    lines = [line.split("] ", 1)[1] for line in buffer.getvalue().splitlines()]
    assert not any(line.endswith(": done") and not line.startswith("loading")
                   for line in lines), lines
    plan = [line for line in lines if line.startswith("planning intervals: ")]
    assert plan[-1] == f"planning intervals: {scenario.n_intervals}/{scenario.n_intervals}"
    assert lines.index(plan[-1]) < lines.index("simulating sites, one policy at a time ...")


def _assert_same_plans(got, expected, policies) -> None:
    """Bit for bit: every committed replica, routing share and failover; the planned figures."""
    for policy in policies:
        a, b = got.fleet[policy], expected.fleet[policy]
        np.testing.assert_array_equal(a.replicas, b.replicas, err_msg=policy)
        np.testing.assert_array_equal(a.routing, b.routing, err_msg=policy)
        assert len(a.failovers) == len(b.failovers), policy
        for fa, fb in zip(a.failovers, b.failovers, strict=True):
            assert (fa.k, fa.at_s) == (fb.k, fb.at_s)
            np.testing.assert_array_equal(fa.replicas, fb.replicas)
            np.testing.assert_array_equal(fa.routing, fb.routing)
        np.testing.assert_array_equal(got.plans[policy].planned_objectives,
                                      expected.plans[policy].planned_objectives)
    np.testing.assert_array_equal(got.preference_scales, expected.preference_scales)


def test_myopic_solves_on_ray_commit_the_serial_plans(prepared, receding, ray_local,
                                                      monkeypatch):
    """The MILP's interval solves run as Ray tasks submitted ahead of the loop (a window of
    2 intervals per CPU); every policy's committed plan is the serial run's, bit for bit, and
    the MILP's decision time is its solves' own (measured in the tasks), not the wait."""
    import slit.experiment.run as run_module
    import slit.parallel as parallel

    scenario, models = prepared
    assert parallel.ray_driver() and run_module._offloaded("milp")
    submitted: list[int] = []
    real_submit = run_module.submit_each

    def counting(fn, items):
        out = real_submit(fn, items)
        submitted.append(len(out))
        return out

    monkeypatch.setattr(run_module, "submit_each", counting)
    monkeypatch.setattr(parallel, "ray_cpus", lambda: 1)  # a window of 2 intervals ahead
    seen_planning: list[int] = []

    def progress(stage, done, total):
        if stage == "plan":
            seen_planning.append(len(submitted))

    on_ray = plan_receding(scenario, models, POLICIES, progress)
    # When interval k is planned, the tasks of k and the 2 after it were submitted, in interval
    # order: one task per interval (its models are routed one after the other on the pools).
    n_k = scenario.n_intervals
    assert seen_planning == [min(n_k, k + 3) for k in range(n_k)]
    assert submitted == [1] * n_k
    _assert_same_plans(on_ray, receding, POLICIES)
    milp_s = on_ray.plans["milp"].decision_s
    assert (milp_s > 0).all()
    # The serial run's decision times are the same solves': same order of magnitude, never the
    # whole run's wait (the first interval's wait would include Ray's start-up of workers).
    serial_s = receding.plans["milp"].decision_s
    assert milp_s.sum() < 3.0 * serial_s.sum() + 1.0


def test_with_faults_the_ray_run_commits_the_serial_plans(prepared, ray_local,
                                                          monkeypatch):
    """A fault re-plans inside an interval: the bases are then built in the loop (the
    forecasters' order of a serial run) and each interval's solves still run on Ray."""
    import slit.parallel as parallel

    scenario, models = prepared
    site = "IN-WE"
    start = scenario.start_utc + pd.Timedelta(minutes=20)
    faulty = replace(scenario, events=(Outage(start, start + pd.Timedelta(minutes=30), site),))
    policies = ("milp", "weighted_greedy")
    on_ray = plan_receding(faulty, models, policies)
    monkeypatch.setattr(parallel, "ray_driver", lambda: False)
    serial = plan_receding(faulty, models, policies)
    assert len(serial.fleet["milp"].failovers) == 2
    _assert_same_plans(on_ray, serial, policies)


def test_serial_deferred_calls_run_when_asked_in_order(monkeypatch):
    """Without Ray a submitted call is made only when its result is first asked for (a serial
    run solves where it always did), once."""
    import slit.parallel as parallel

    monkeypatch.setattr(parallel, "ray_driver", lambda: False)
    calls: list[int] = []

    def square(x: int) -> int:
        calls.append(x)
        return x * x

    deferred = parallel.submit_each(square, iter([3, 1, 2]))
    assert calls == []
    assert deferred[1].result() == 1 and calls == [1]
    assert [d.result() for d in deferred] == [9, 1, 4] and calls == [1, 3, 2]
