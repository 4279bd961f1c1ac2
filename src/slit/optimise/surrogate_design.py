"""The surrogate's training design: which steady-state simulations to run, and running them.

Every run is ``slit.simulate.site.simulate_site`` on a Poisson stream
(``slit.simulate.arrivals.poisson_stream``) of one replica type, token mix, awake fleet size and
load; one row per run. Loads are stratified over utilisation 0.03-1.1 of analytic capacity.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from slit.optimise.surrogate_model import GPU_CODES, MODEL_CODES
from slit.optimise.token_mix import TokenMix
from slit.parallel import parallel_map
from slit.serving.capacity import max_throughput_rps
from slit.serving.catalog import ReplicaSpec
from slit.simulate.arrivals import poisson_stream
from slit.simulate.site import SiteConfig, simulate_site
from slit.workload.requests import RequestBatch

WARM_UP_BINS = 1  # of ten: the first tenth of a run is left out of its steady-state figures
BINS = 10


@dataclass(frozen=True)
class SurrogateSpec:
    """What the surrogate is trained on: replica types, token mixes, fleet sizes and loads."""

    replicas: tuple[ReplicaSpec, ...]
    code_shares: tuple[float, ...] = (0.0, 0.3, 0.6)  # share of code-trace requests in the mix
    n_awake: tuple[int, ...] = (1, 2, 3, 4, 6, 8, 12, 16)
    utilisations: int = 10  # loads per (replica, mix, n), spread over (0.03, 1.1) capacity
    min_requests: int = 4000  # enough for a stable p99
    min_duration_s: float = 300.0
    max_duration_s: float = 3600.0
    held_out_share: float = 0.2
    seed: int = 0
    token_source: str = "embedded"  # "embedded" or a data directory path

    def cells(self) -> list[tuple[ReplicaSpec, float, int]]:
        """The design cells (replica, code share, awake replicas); each is swept over load."""
        return [(r, c, n) for r in self.replicas for c in self.code_shares for n in self.n_awake]


@dataclass(frozen=True)
class _Run:
    """One training simulation: a cell of the design at one load."""

    run: int
    cell: int
    replica: ReplicaSpec
    code_share: float
    n_awake: int
    mean_prompt_tokens: float
    mean_output_tokens: float
    capacity_rps: float  # analytic throughput of one replica
    rate_rps: float
    duration_s: float
    stream_seed: int
    token_source: str


def simulate_samples(spec: SurrogateSpec,
                     progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
    """Run the steady-state simulations of the training design; one row per run, with the
    run's design cell in ``cell``. The runs are independent: Ray tasks when this process drives
    Ray (``slit.parallel``), else one after the other; the rows are the same either way."""
    cells = spec.cells()
    total = len(cells) * spec.utilisations
    seeds = np.random.SeedSequence(spec.seed).spawn(total)
    runs = []
    for d, (replica, code_share, n) in enumerate(cells):
        mean_prompt, mean_output = TokenMix(code_share, spec.token_source).mean_tokens()
        capacity = max_throughput_rps(replica, mean_prompt, mean_output)
        # Stratified loads: one draw in each of `utilisations` equal slices of the range.
        design_rng = np.random.default_rng(seeds[d * spec.utilisations])
        slices = np.linspace(0.03, 1.1, spec.utilisations + 1)
        utilisation = slices[:-1] + design_rng.random(spec.utilisations) * np.diff(slices)
        for u_index, rho in enumerate(utilisation):
            run = d * spec.utilisations + u_index
            rate = float(rho * capacity * n)
            duration = float(np.clip(spec.min_requests / rate, spec.min_duration_s,
                                     spec.max_duration_s))
            runs.append(_Run(run, d, replica, code_share, n, mean_prompt, mean_output,
                             capacity, rate, duration,
                             int(seeds[run].generate_state(1)[0]), spec.token_source))
    done = None if progress is None else (lambda n: progress(n, total))
    return pd.DataFrame(parallel_map(_simulate_run, runs, done))


def _simulate_run(r: _Run) -> dict[str, Any]:
    mix = TokenMix(r.code_share, r.token_source)
    requests = poisson_stream(r.rate_rps, r.duration_s, mix.sample, r.stream_seed)
    row = _measure(r.replica, r.n_awake, requests, r.duration_s, r.run)
    row.update({
        "run": r.run, "cell": r.cell, "gpu": r.replica.gpu, "model": r.replica.model,
        "code_share": r.code_share, "gpu_code": GPU_CODES[r.replica.gpu],
        "model_code": MODEL_CODES[r.replica.model], "tp": r.replica.tp, "n_awake": r.n_awake,
        "load_rps_per_replica": r.rate_rps / r.n_awake,
        "utilisation": r.rate_rps / r.n_awake / r.capacity_rps,
        "mean_prompt_tokens": r.mean_prompt_tokens, "mean_output_tokens": r.mean_output_tokens,
    })
    return row


def _measure(replica: ReplicaSpec, n: int, requests: RequestBatch, duration_s: float,
             run: int) -> dict[str, Any]:
    """Steady-state figures of one run: the warm-up is left out."""
    interval_s = duration_s / BINS
    site = SiteConfig(replica=replica, n_replicas=n)
    result = simulate_site(requests, site, awake=n, interval_s=interval_s, seed=run)
    steady = requests.arrival_s >= WARM_UP_BINS * interval_s
    ttft = result.ttft_s[steady & result.completed]
    energy = result.it_energy_j_per_interval[WARM_UP_BINS:BINS]
    steady_s = duration_s - WARM_UP_BINS * interval_s
    return {
        "ttft_mean_s": float(ttft.mean()) if len(ttft) else np.nan,
        "ttft_p95_s": float(np.percentile(ttft, 95)) if len(ttft) else np.nan,
        "ttft_p99_s": float(np.percentile(ttft, 99)) if len(ttft) else np.nan,
        "power_w_per_replica": float(energy.sum() / steady_s / n),
        "throughput_rps": float(steady.sum() / steady_s),
    }
