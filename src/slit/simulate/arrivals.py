"""Synthetic request streams drawn from a trace: Poisson arrivals, token pairs resampled."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from slit.errors import SlitInputError
from slit.workload.requests import RequestBatch
from slit.workload.traces import Trace

# Draws n (prompt, output) token pairs as two int32 arrays from the generator it is given.
TokenDraw = Callable[[int, np.random.Generator], tuple[np.ndarray, np.ndarray]]


def poisson_stream(rate_rps: float, duration_s: float, draw_tokens: TokenDraw, seed: int = 0,
                   origin: int = 0) -> RequestBatch:
    """Poisson arrivals at ``rate_rps`` over [0, duration_s), token pairs from ``draw_tokens``;
    arrival times and tokens use separate streams of ``seed``, so the same seed gives the same
    batch."""
    if not rate_rps >= 0.0 or not duration_s >= 0.0:
        raise SlitInputError("arrivals", f"rate {rate_rps} req/s over {duration_s} s",
                             "give a rate and a duration >= 0")
    arrival_rng, token_rng = (np.random.default_rng(s)
                              for s in np.random.SeedSequence(seed).spawn(2))
    n = int(arrival_rng.poisson(rate_rps * duration_s))
    # Given their count, Poisson arrival times are uniform order statistics.
    arrival = np.sort(arrival_rng.uniform(0.0, duration_s, n))
    prompt, output = draw_tokens(n, token_rng)
    return RequestBatch(arrival, prompt, output, np.full(n, origin, np.int16))


def poisson_from_trace(trace: Trace, rate_rps: float, duration_s: float, seed: int = 0,
                       origin: int = 0) -> RequestBatch:
    """Poisson arrivals at ``rate_rps`` over [0, duration_s), each with a (prompt, output) pair
    drawn with replacement from the trace; the same seed gives the same batch."""
    def draw(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        pick = rng.integers(0, len(trace.prompt_tokens), n)
        return (trace.prompt_tokens[pick].astype(np.int32),
                trace.output_tokens[pick].astype(np.int32))

    return poisson_stream(rate_rps, duration_s, draw, seed, origin)
