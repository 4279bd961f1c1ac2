"""Capacity of a replica from the simulation: the request rate it sustains within the TTFT SLO.

``slo_capacity_rps`` bisects on the arrival rate per replica: a site of ``CAPACITY_SITE_REPLICAS``
replicas (JSQ dispatcher, as the runs use) is fed Poisson arrivals with token pairs of the given
conv/code mix; a rate is sustained when the p-th percentile TTFT of the requests after the warm-up
(the first tenth) is within the SLO. The arrivals are one stream of unit-rate gaps scaled by the
rate (common random numbers), so TTFT grows with the rate and the bisection is well posed. An
overloaded site builds a backlog over the ``CAPACITY_REQUESTS`` requests, which pushes its tail
TTFT far past the SLO, so the test also rejects rates above the saturated throughput.

This replaces the analytic estimate (``slit.serving.capacity.max_throughput_rps``) where fleets are
sized and where ``simulate-site --load`` is scaled: the analytic one ignores queueing, request-size
variance and the tail. Results are cached on disk (``$SLIT_CACHE_DIR/capacity`` or
``~/.cache/slit/capacity``), keyed by a hash of the inputs and of the source of every module the
simulated timing depends on, so a code change never reuses a stale value.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from importlib import resources
from pathlib import Path

import numpy as np

from slit.data.source import DataSource
from slit.fileio import write_text_atomically
from slit.serving.capacity import max_throughput_rps
from slit.serving.catalog import ReplicaSpec
from slit.simulate.site import SiteConfig, simulate_site
from slit.workload.requests import RequestBatch
from slit.workload.tokens import PROFILE_NAME, TokenSampler

# The SLO the default scenario plans for: p99 TTFT <= 1.5 s less its 10 % planning margin. The
# network round trip is not in it: a site's capacity does not depend on who calls it.
CAPACITY_SLO_TTFT_S = 1.35
CAPACITY_PERCENTILE = 99.0
CAPACITY_SITE_REPLICAS = 4
CAPACITY_REQUESTS = 4000  # per replica
CAPACITY_SEED = 0
BISECTION_STEPS = 14  # relative precision about 2e-4 of the bracket
CACHE_ENV = "SLIT_CACHE_DIR"
# Modules whose source determines the simulated timing, hashed into the cache key.
_CODE_MODULES = ("simulate/kernel.py", "simulate/site.py", "simulate/capacity.py",
                 "serving/iteration.py", "serving/allreduce_table.py", "serving/catalog.py",
                 "serving/capacity.py", "workload/tokens.py")


def _code_hash() -> str:
    digest = hashlib.sha256()
    root = resources.files("slit")
    for name in _CODE_MODULES:
        digest.update(name.encode())
        digest.update(root.joinpath(name).read_bytes())
    return digest.hexdigest()


def _token_hash(token_source: str) -> str:
    if token_source == "embedded":
        data = resources.files("slit").joinpath("embedded", PROFILE_NAME).read_bytes()
        return hashlib.sha256(data).hexdigest()
    traces = sorted(Path(token_source).glob("traces/**/*.csv"))
    stamp = [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in traces]
    return hashlib.sha256(json.dumps(stamp).encode()).hexdigest()


def _cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV)
    return (Path(env) if env else Path.home() / ".cache" / "slit") / "capacity"


def _requests(n_replicas: int, code_share: float, token_source: str) -> tuple[np.ndarray,
                                                                                RequestBatch]:
    """Unit-rate arrival times and the token pairs of the test stream."""
    n = n_replicas * CAPACITY_REQUESTS
    gap_rng, mix_rng, token_rng = (np.random.default_rng(s) for s in
                                   np.random.SeedSequence(CAPACITY_SEED).spawn(3))
    unit_arrival = np.cumsum(gap_rng.exponential(1.0, n))
    source = DataSource.from_key(token_source)
    is_code = mix_rng.random(n) < code_share
    prompt = np.empty(n, np.int32)
    output = np.empty(n, np.int32)
    for kind, mask in (("code", is_code), ("conv", ~is_code)):
        if mask.any():
            prompt[mask], output[mask] = TokenSampler.for_kind(kind, source).sample(
                int(mask.sum()), token_rng)
    return unit_arrival, RequestBatch(unit_arrival, prompt, output, np.zeros(n, np.int16))


def tail_ttft_s(replica: ReplicaSpec, rate_rps_per_replica: float, code_share: float,
                token_source: str = "embedded", percentile: float = CAPACITY_PERCENTILE,
                n_replicas: int = CAPACITY_SITE_REPLICAS) -> float:
    """Steady-state TTFT percentile of the test site at the given rate per replica."""
    unit_arrival, base = _requests(n_replicas, code_share, token_source)
    arrival = unit_arrival / (rate_rps_per_replica * n_replicas)
    requests = RequestBatch(arrival, base.prompt_tokens, base.output_tokens, base.origin)
    result = simulate_site(requests, SiteConfig(replica, n_replicas), n_replicas,
                           interval_s=float(arrival[-1]) + 1.0)
    steady = np.arange(len(arrival)) >= len(arrival) // 10
    refused = np.zeros(len(arrival), bool) if result.refused is None else result.refused
    ttft = np.where(result.completed, result.ttft_s, np.inf)[steady & ~refused]
    return float(np.percentile(ttft, percentile))


@functools.lru_cache(maxsize=64)
def slo_capacity_rps(replica: ReplicaSpec, code_share: float,
                     slo_ttft_s: float = CAPACITY_SLO_TTFT_S,
                     percentile: float = CAPACITY_PERCENTILE,
                     token_source: str = "embedded") -> float:
    """Requests per second one replica sustains with the percentile TTFT within the SLO."""
    key_doc = {"replica": [replica.model, replica.gpu, replica.tp], "code_share": code_share,
               "slo_ttft_s": slo_ttft_s, "percentile": percentile,
               "site_replicas": CAPACITY_SITE_REPLICAS, "requests": CAPACITY_REQUESTS,
               "seed": CAPACITY_SEED, "steps": BISECTION_STEPS,
               "tokens": _token_hash(token_source), "code": _code_hash()}
    key = hashlib.sha256(json.dumps(key_doc, sort_keys=True).encode()).hexdigest()[:24]
    path = _cache_dir() / f"{key}.json"
    if path.is_file():
        return float(json.loads(path.read_text("utf-8"))["capacity_rps"])
    capacity = _bisect(replica, code_share, slo_ttft_s, percentile, token_source)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(path, json.dumps({**key_doc, "capacity_rps": capacity}) + "\n")
    return capacity


def _bisect(replica: ReplicaSpec, code_share: float, slo_ttft_s: float, percentile: float,
            token_source: str) -> float:
    def meets(rate: float) -> bool:
        return tail_ttft_s(replica, rate, code_share, token_source, percentile) <= slo_ttft_s

    _, base = _requests(1, code_share, token_source)
    analytic = max_throughput_rps(replica, float(base.prompt_tokens.mean()),
                                  float(base.output_tokens.mean()))
    lo, hi = 0.05 * analytic, 1.25 * analytic
    if not meets(lo):
        return lo  # the SLO is out of reach even nearly idle: the smallest rate tried
    while meets(hi):
        lo, hi = hi, 1.5 * hi
    for _ in range(BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        if meets(mid):
            lo = mid
        else:
            hi = mid
    return lo
