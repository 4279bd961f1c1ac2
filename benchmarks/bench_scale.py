"""The realistic-scale day (``scenarios/scale.yaml``): all policies for some hours, or the busiest
(site, model) alone for up to a day, with peak memory.

2,000 req/s worldwide on the 15 default regions (thousands of GPUs). Default: ``--hours`` (1) of
the day planned by SLIT and every baseline and judged by the request-level simulation of each
(site, policy); ``--stream on`` judges with the requests streamed one interval at a time
(``slit.experiment.stream_judge``), ``off`` with whole-period batches, ``auto`` (default) as
``slit run`` does (streaming above 20 M expected requests). With ``--workers N`` the whole-period
judge's site simulations run as Ray tasks on a local runtime of N CPUs. Ends with
``scale_requests=``, ``scale_wall_s=`` and ``peak_rss_mb=`` (peak resident memory of this
process; Ray workers, if any, are separate processes).

``--site-day``: the busiest (site, model) of the day (the site with the most replicas of the
model with the most requests), every replica loaded, fed its share of the model's requests
(each request goes there with probability its share of the model's replicas, the
capacity-proportional routing) for ``--hours``: streamed (``SiteStream``, one interval at a
time) or, with ``--stream off``, as one whole-period ``simulate_site`` call. Prints
``site_requests=``, ``site_wall_s=``, ``site_sim_s=`` (the simulation alone),
``requests_per_s=``, ``max_held=`` (most requests the streamed site held at a chunk's end) and
``peak_rss_mb=``. Run each configuration in its own process: the peak is the process's.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path

import numpy as np

from slit.config import load_scenario
from slit.data.source import DataSource
from slit.experiment.run import POLICIES, run_experiment
from slit.experiment.scenario import Scenario

REPO = Path(__file__).resolve().parents[1]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def all_policies(scenario: Scenario, args: argparse.Namespace) -> None:
    started_ray = False
    if args.workers > 0:
        from slit.sweep.runner import start_ray

        started_ray = start_ray(None, args.workers)
    started = time.perf_counter()
    stages: dict[str, float] = {}

    def progress(stage: str, done: int, total: int) -> None:
        stages[stage] = time.perf_counter() - started

    stream = {"auto": None, "on": True, "off": False}[args.stream]
    try:
        result = run_experiment(scenario, POLICIES, progress, stream=stream)
    finally:
        if started_ray:
            import ray

            ray.shutdown()
    wall_s = time.perf_counter() - started
    print("stages ended at (s): " + ", ".join(f"{k} {v:.0f}" for k, v in stages.items()))
    for policy, m in result.metrics.items():
        print(f"{policy:>16}: {m.requests} requests, SLO {m.slo_attainment_pct:.2f} %, "
              f"carbon {m.carbon_kg:.1f} kg, water {m.water_l:.0f} L, cost {m.cost_usd:.0f} USD")
    print(f"stream={args.stream}")
    print(f"scale_requests={next(iter(result.metrics.values())).requests}")
    print(f"scale_wall_s={wall_s:.1f}")
    print(f"peak_rss_mb={peak_rss_mb():.0f}")


def site_day(scenario: Scenario, args: argparse.Namespace) -> None:
    from slit.simulate.site import SiteConfig, SiteStream, simulate_site
    from slit.workload.network import rtt_ms_matrix
    from slit.workload.stream import RequestStream

    started = time.perf_counter()
    # The model with the most requests, and its site with the most replicas.
    m = int(np.argmax([mod.demand_share for mod in scenario.models]))
    model = scenario.model_names[m]
    view = scenario.for_model(model)
    installed = np.array([site.max_replicas(model) for site in view.sites])
    s = int(np.argmax(installed))
    site = view.sites[s]
    config = SiteConfig(site.replica_for[model], int(installed[s]))
    share = installed[s] / installed.sum()
    rtt_s = rtt_ms_matrix(view.demand.origins, view.site_ids)[:, s] / 1e3
    requests = RequestStream(view.demand, view.start_utc, view.end_utc, view.seed,
                             view.interval_s, view.data)
    pick = np.random.default_rng(np.random.SeedSequence([view.seed, 99]))
    schedule = np.full(int(np.ceil(view.n_intervals * view.interval_s / 60.0)), installed[s])
    print(f"site-day: {model} at {site.region_id}, {installed[s]} of {installed.sum()} replicas "
          f"({share:.1%} of the model's requests), {args.hours:g} h, stream={args.stream}")
    sim_s = 0.0
    n = 0
    max_held = 0
    if args.stream == "off":
        parts = []
        for c in range(requests.n_chunks):
            batch = requests.chunk(c)
            parts.append(batch.take(pick.random(len(batch)) < share))
        from slit.workload.requests import RequestBatch

        own = RequestBatch(*(np.concatenate([getattr(b, f) for b in parts])
                             for f in ("arrival_s", "prompt_tokens", "output_tokens", "origin")))
        del parts
        n = len(own)
        t0 = time.perf_counter()
        sim = simulate_site(own, config, schedule, 60.0, view.seed + s, None,
                            rtt_s[own.origin])
        sim_s = time.perf_counter() - t0
        completed = sim.n_completed
    else:
        stream = SiteStream(config, schedule, 60.0, view.seed + s)
        completed = 0
        for c in range(requests.n_chunks):
            batch = requests.chunk(c)
            own = batch.take(pick.random(len(batch)) < share)
            del batch
            n += len(own)
            t0 = time.perf_counter()
            left = stream.feed(own, (c + 1) * view.interval_s, rtt_s[own.origin])
            sim_s += time.perf_counter() - t0
            completed += int(left.completed.sum())
            max_held = max(max_held, stream.n_held)
        t0 = time.perf_counter()
        rest, _ = stream.finish()
        sim_s += time.perf_counter() - t0
        completed += int(rest.completed.sum())
    wall_s = time.perf_counter() - started
    print(f"site_requests={n}")
    print(f"site_completed={completed}")
    print(f"site_wall_s={wall_s:.1f}")
    print(f"site_sim_s={sim_s:.1f}")
    print(f"requests_per_s={n / sim_s:.0f}")
    print(f"max_held={max_held}")
    print(f"peak_rss_mb={peak_rss_mb():.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="real data folder (default: $SLIT_DATA_DIR, else embedded)")
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--workers", type=int, default=0, help="Ray CPUs; 0: no Ray")
    parser.add_argument("--stream", choices=("auto", "on", "off"), default="auto")
    parser.add_argument("--site-day", action="store_true",
                        help="the busiest (site, model) alone, every replica loaded")
    args = parser.parse_args()
    scenario = load_scenario(REPO / "scenarios" / "scale.yaml",
                             data_dir=DataSource.resolve(args.data_dir), hours=args.hours)
    gpus = sum(sum(s.gpus.values()) for s in scenario.sites)  # the pools, every model's
    print(f"scale: {scenario.demand.global_rate_rps:g} req/s, {len(scenario.sites)} sites, "
          f"{gpus} GPUs, {args.hours:g} h, data: {scenario.data}")
    print(f"load_average={os.getloadavg()[0]:.2f}")
    if args.site_day:
        site_day(scenario, args)
    else:
        all_policies(scenario, args)


if __name__ == "__main__":
    main()
