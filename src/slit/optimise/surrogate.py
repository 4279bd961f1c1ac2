"""The ML surrogate of a site's serving behaviour, trained on discrete-event simulations.

For a replica type (model, GPU, tensor parallelism), a token mix, a number of awake replicas and
an offered load, it predicts TTFT mean, p95 and p99 (s), IT power per awake replica (W) and
throughput (req/s). Training samples are steady-state runs of
``slit.simulate.site.simulate_site`` with Poisson arrivals; the learner is LightGBM (one
regressor per target, TTFT learned in log space, monotone non-decreasing in load). Accuracy is
measured on held-out simulation runs.

Simulated samples are cached on disk keyed by a hash of everything that shapes them, so a
second run loads them (fitting is seconds); the same spec and seed give the same model.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

from slit.data.source import DataSource
from slit.optimise.site_table import SiteServingTable
from slit.serving.capacity import max_throughput_rps
from slit.serving.catalog import GPUS, MODELS, ReplicaSpec
from slit.serving.power import replica_power
from slit.simulate.site import SiteConfig, simulate_site
from slit.workload.requests import RequestBatch
from slit.workload.tokens import TokenSampler

FEATURES: tuple[str, ...] = (
    "gpu_code", "model_code", "tp", "n_awake", "load_rps_per_replica", "utilisation",
    "mean_prompt_tokens", "mean_output_tokens",
)
TARGETS: tuple[str, ...] = (
    "ttft_mean_s", "ttft_p95_s", "ttft_p99_s", "power_w_per_replica", "throughput_rps",
)
LOG_TARGETS = frozenset({"ttft_mean_s", "ttft_p95_s", "ttft_p99_s"})
SLO_PERCENTILES = {95: "ttft_p95_s", 99: "ttft_p99_s"}
GPU_CODES = {name: i for i, name in enumerate(sorted(GPUS))}
MODEL_CODES = {name: i for i, name in enumerate(sorted(MODELS))}
CACHE_ENV = "SLIT_CACHE_DIR"
FORMAT_VERSION = 2
# Operating range in which accuracy is reported: the scheduler sizes fleets below saturation.
OPERATING_UTILISATION = 0.9


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
    token_source: str = "embedded"  # DataSource.key: "embedded" or a data directory path

    def key(self) -> str:
        doc = asdict(self)
        doc["replicas"] = [asdict(r) for r in self.replicas]
        doc["version"] = FORMAT_VERSION
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class SurrogateAccuracy:
    """MAPE (%) per target on held-out runs, overall and within the operating range."""

    mape_pct: dict[str, float] = field(default_factory=dict)
    mape_operating_pct: dict[str, float] = field(default_factory=dict)
    n_train_runs: int = 0
    n_test_runs: int = 0


class ServingSurrogate:
    """One LightGBM regressor per target over ``FEATURES``."""

    def __init__(self, models: dict[str, lgb.Booster]) -> None:
        self.models = models

    @staticmethod
    def fit(samples: pd.DataFrame, seed: int = 0) -> ServingSurrogate:
        x = samples[list(FEATURES)].to_numpy(dtype=float)
        monotone = [1 if f in ("load_rps_per_replica", "utilisation") else 0 for f in FEATURES]
        models = {}
        # One thread: a few hundred rows gain nothing from more, and OpenMP threads that
        # spin-wait slow to a crawl when another process holds the second core.
        for target in TARGETS:
            y = samples[target].to_numpy(dtype=float)
            if target in LOG_TARGETS:
                y = np.log(y)
            params = {
                "objective": "regression", "learning_rate": 0.05, "num_leaves": 15,
                "min_data_in_leaf": 3, "verbose": -1, "seed": seed, "deterministic": True,
                "num_threads": 1, "force_row_wise": True,
                "monotone_constraints": monotone if target != "throughput_rps" else None,
            }
            params = {k: v for k, v in params.items() if v is not None}
            models[target] = lgb.train(params, lgb.Dataset(x, y), num_boost_round=400)
        return ServingSurrogate(models)

    def predict(self, features: pd.DataFrame) -> dict[str, np.ndarray]:
        x = features[list(FEATURES)].to_numpy(dtype=float)
        out = {}
        for target, model in self.models.items():
            y = model.predict(x)
            out[target] = np.exp(y) if target in LOG_TARGETS else y
        return out

    def accuracy(self, samples: pd.DataFrame) -> tuple[dict[str, float], dict[str, float]]:
        predicted = self.predict(samples)
        operating = samples["utilisation"].to_numpy() <= OPERATING_UTILISATION
        overall, within = {}, {}
        for target in TARGETS:
            actual = samples[target].to_numpy(dtype=float)
            err = np.abs(predicted[target] - actual) / np.maximum(np.abs(actual), 1e-9)
            overall[target] = float(100 * err.mean())
            within[target] = float(100 * err[operating].mean()) if operating.any() else np.nan
        return overall, within

    def site_table(self, replica: ReplicaSpec, installed: int, code_share: float,
                   token_source: str = "embedded", slo_percentile: int = 99,
                   grid_points: int = 49) -> SiteServingTable:
        """Tabulate predictions for 1..installed awake replicas on a load grid up to 1.1x
        the analytic capacity of a replica (see ``slit.optimise.site_table``); the tail is the
        TTFT percentile the SLO is judged at."""
        mean_prompt, mean_output = mean_tokens(code_share, token_source)
        capacity = max_throughput_rps(replica, mean_prompt, mean_output)
        grid = np.linspace(0.0, 1.1 * capacity, grid_points)
        n = np.repeat(np.arange(1, installed + 1), grid_points)
        load = np.tile(grid, installed)
        frame = _feature_frame(replica, n, load, capacity, mean_prompt, mean_output)
        predicted = self.predict(frame)
        shape = (installed, grid_points)
        mean = np.maximum.accumulate(predicted["ttft_mean_s"].reshape(shape), axis=1)
        tail = np.maximum.accumulate(
            predicted[SLO_PERCENTILES[slo_percentile]].reshape(shape), axis=1)
        power = predicted["power_w_per_replica"].reshape(shape)
        return SiteServingTable(
            installed=installed, load_rps_per_replica=grid, ttft_mean_s=mean,
            ttft_tail_s=np.maximum(tail, mean), power_w_per_replica=power,
            standby_w_per_replica=replica_power(replica).standby_w,
        )


def _feature_frame(replica: ReplicaSpec, n: np.ndarray, load_per_replica: np.ndarray,
                   capacity_rps: float, mean_prompt: float, mean_output: float) -> pd.DataFrame:
    size = len(n)
    return pd.DataFrame({
        "gpu_code": np.full(size, GPU_CODES[replica.gpu]),
        "model_code": np.full(size, MODEL_CODES[replica.model]),
        "tp": np.full(size, replica.tp),
        "n_awake": n,
        "load_rps_per_replica": load_per_replica,
        "utilisation": load_per_replica / capacity_rps,
        "mean_prompt_tokens": np.full(size, mean_prompt),
        "mean_output_tokens": np.full(size, mean_output),
    })


def _samplers(token_source: str) -> dict[str, TokenSampler]:
    source = DataSource.from_key(token_source)
    return {kind: TokenSampler.for_kind(kind, source) for kind in ("conv", "code")}


def mean_tokens(code_share: float, token_source: str = "embedded") -> tuple[float, float]:
    """Mean prompt and output tokens of a conv/code mix (exact, from the sampler's cells)."""
    prompt = output = 0.0
    for kind, sampler in _samplers(token_source).items():
        share = code_share if kind == "code" else 1.0 - code_share
        w = sampler.weight / sampler.weight.sum()
        prompt += share * float(w @ ((sampler.prompt_lo + sampler.prompt_hi - 1) / 2))
        output += share * float(w @ ((sampler.output_lo + sampler.output_hi - 1) / 2))
    return prompt, output


def poisson_requests(rate_rps: float, duration_s: float, code_share: float,
                     rng: np.random.Generator, samplers: dict[str, TokenSampler]) -> RequestBatch:
    """Poisson arrivals over ``duration_s`` with token pairs drawn from the conv/code mix."""
    n = int(rng.poisson(rate_rps * duration_s))
    arrival = np.sort(rng.random(n) * duration_s)
    is_code = rng.random(n) < code_share
    prompt = np.empty(n, np.int32)
    output = np.empty(n, np.int32)
    for kind, mask in (("code", is_code), ("conv", ~is_code)):
        if mask.any():
            prompt[mask], output[mask] = samplers[kind].sample(int(mask.sum()), rng)
    return RequestBatch(arrival, prompt, output, np.zeros(n, np.int16))


def simulate_samples(spec: SurrogateSpec,
                     progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
    """Run the steady-state simulations of the training design; one row per run."""
    samplers = _samplers(spec.token_source)
    design = [(r, c, n) for r in spec.replicas for c in spec.code_shares for n in spec.n_awake]
    total = len(design) * spec.utilisations
    seeds = np.random.SeedSequence(spec.seed).spawn(total)
    rows = []
    for d, (replica, code_share, n) in enumerate(design):
        mean_prompt, mean_output = mean_tokens(code_share, spec.token_source)
        capacity = max_throughput_rps(replica, mean_prompt, mean_output)
        # Stratified loads: one draw in each of `utilisations` equal slices of the range.
        design_rng = np.random.default_rng(seeds[d * spec.utilisations])
        slices = np.linspace(0.03, 1.1, spec.utilisations + 1)
        utilisation = slices[:-1] + design_rng.random(spec.utilisations) * np.diff(slices)
        for u_index, rho in enumerate(utilisation):
            run = d * spec.utilisations + u_index
            rng = np.random.default_rng(seeds[run])
            rate = rho * capacity * n
            duration = float(np.clip(spec.min_requests / rate, spec.min_duration_s,
                                     spec.max_duration_s))
            requests = poisson_requests(rate, duration, code_share, rng, samplers)
            rows.append(_measure(replica, n, requests, duration, rate, capacity, mean_prompt,
                                 mean_output, code_share, run))
            if progress is not None:
                progress(run + 1, total)
    return pd.DataFrame(rows)


def _measure(replica: ReplicaSpec, n: int, requests: RequestBatch, duration_s: float,
             rate_rps: float, capacity_rps: float, mean_prompt: float, mean_output: float,
             code_share: float, run: int) -> dict:
    """Steady-state figures of one run: the first tenth is warm-up and is left out."""
    bins = 10
    interval_s = duration_s / bins
    site = SiteConfig(replica=replica, n_replicas=n)
    result = simulate_site(requests, site, awake=n, interval_s=interval_s, seed=run)
    steady = requests.arrival_s >= interval_s
    ttft = result.ttft_s[steady & result.completed]
    energy = result.it_energy_j_per_interval[1:bins]
    row = {
        "run": run, "gpu": replica.gpu, "model": replica.model, "code_share": code_share,
        "gpu_code": GPU_CODES[replica.gpu], "model_code": MODEL_CODES[replica.model],
        "tp": replica.tp, "n_awake": n, "load_rps_per_replica": rate_rps / n,
        "utilisation": rate_rps / n / capacity_rps, "mean_prompt_tokens": mean_prompt,
        "mean_output_tokens": mean_output,
        "ttft_mean_s": float(ttft.mean()) if len(ttft) else np.nan,
        "ttft_p95_s": float(np.percentile(ttft, 95)) if len(ttft) else np.nan,
        "ttft_p99_s": float(np.percentile(ttft, 99)) if len(ttft) else np.nan,
        "power_w_per_replica": float(energy.sum() / (interval_s * (bins - 1)) / n),
        "throughput_rps": float(steady.sum() / (duration_s - interval_s)),
    }
    return row


def cache_dir() -> Path:
    """Where samples and models are kept: ``$SLIT_CACHE_DIR`` or ``~/.cache/slit``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "slit"


def train_surrogate(
    spec: SurrogateSpec, progress: Callable[[int, int], None] | None = None,
    use_cache: bool = True,
) -> tuple[ServingSurrogate, SurrogateAccuracy]:
    """Simulate (or load cached samples), fit on training runs, score on held-out runs."""
    folder = cache_dir() / f"surrogate-{spec.key()}"
    samples_path = folder / "samples.parquet"
    if use_cache and samples_path.is_file():
        samples = pd.read_parquet(samples_path)
    else:
        samples = simulate_samples(spec, progress)
        if use_cache:
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / ".samples.parquet.tmp"
            samples.to_parquet(tmp)
            os.replace(tmp, samples_path)
    samples = samples.dropna(subset=list(TARGETS))
    rng = np.random.default_rng(spec.seed)
    test = rng.random(len(samples)) < spec.held_out_share
    train_set, test_set = samples[~test], samples[test]
    held_out = ServingSurrogate.fit(train_set, spec.seed)
    overall, operating = held_out.accuracy(test_set)
    accuracy = SurrogateAccuracy(overall, operating, int((~test).sum()), int(test.sum()))
    # The model used for scheduling learns from every run; its accuracy is the held-out one's.
    return ServingSurrogate.fit(samples, spec.seed), accuracy
