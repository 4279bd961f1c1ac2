"""The request stream of ``DemandModel.generate`` one chunk of time at a time, bounded in memory.

``generate`` draws a whole period at once: counts per bin and origin (one Poisson draw), uniform
times inside the bins, a trace kind per request, then per kind the token pairs of all its
requests. ``RequestStream`` gives the same requests, bit for bit, chunk by chunk (a chunk is a
run of whole bins, e.g. one planning interval): each generator is a sequence of draws, and numpy's
``Generator`` draws a sequence in pieces exactly as in one call (its 32-bit buffer lives in the
bit generator's state). Only the token draws need care: ``generate`` draws every request of the
first kind before any of the second, in three runs per kind (cell, prompt, output), so a setup
pass walks the period once and keeps the token generator's state at the start of each chunk in
each run (a few hundred bytes a chunk); any chunk is then drawn on its own, in any order.
Memory: the per-bin counts [bins, origins] and the states; each chunk's requests while used.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from slit.data.source import EMBEDDED, DataSource
from slit.errors import SlitInputError
from slit.workload.demand import DemandModel, workload_period
from slit.workload.requests import RequestBatch
from slit.workload.tokens import TokenSampler


def _cells(sampler: TokenSampler, rng: np.random.Generator, n: int) -> np.ndarray:
    """The cell draw of ``TokenSampler.sample``."""
    cell = np.searchsorted(np.cumsum(sampler.weight), rng.random(n) * sampler.weight.sum(),
                           side="right")
    return np.minimum(cell, len(sampler.weight) - 1)


@dataclass(frozen=True)
class _Chunk:
    bins: slice  # bins of the chunk
    rows: slice  # its requests in generation order (bin by bin, origin by origin)


class RequestStream:
    """``demand.generate(start_utc, end_utc, seed, source)`` in chunks of ``chunk_s`` seconds
    (a multiple of the demand's bin): ``chunk(c)`` is the requests arriving in
    [c chunk_s, (c + 1) chunk_s), sorted, as the whole batch has them there."""

    def __init__(self, demand: DemandModel, start_utc: pd.Timestamp | str,
                 end_utc: pd.Timestamp | str, seed: int, chunk_s: float,
                 source: DataSource = EMBEDDED) -> None:
        start, end, duration_s = workload_period(start_utc, end_utc)
        ratio = chunk_s / demand.bin_s
        if not chunk_s > 0 or abs(ratio - round(ratio)) > 1e-9:
            raise SlitInputError("request stream", f"chunk of {chunk_s:g} s is not a multiple "
                                 f"of the {demand.bin_s:g} s demand bin",
                                 "give whole bins per chunk (e.g. the planning interval)")
        self.demand, self.chunk_s = demand, float(chunk_s)
        count_rng, time_rng, kind_rng, token_rng = (
            np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4))
        self.bin_starts_s, self.bin_lengths_s, self.counts = demand._bin_counts(
            start, duration_s, count_rng)
        n_chunks = int(np.ceil(duration_s / chunk_s - 1e-9))
        per_bin = self.counts.sum(axis=1)
        chunk_of_bin = np.minimum((self.bin_starts_s // chunk_s).astype(np.int64), n_chunks - 1)
        bin_edges = np.searchsorted(chunk_of_bin, np.arange(n_chunks + 1), side="left")
        row_edges = np.concatenate([[0], np.cumsum(per_bin)])[bin_edges]
        self.chunks = [_Chunk(slice(int(bin_edges[c]), int(bin_edges[c + 1])),
                              slice(int(row_edges[c]), int(row_edges[c + 1])))
                       for c in range(n_chunks)]
        self.n_requests = int(row_edges[-1])
        self.kinds = list(demand.trace_mix)
        shares = np.array([demand.trace_mix[k] for k in self.kinds], dtype=float)
        self._p = shares / shares.sum()
        self._samplers = [TokenSampler.for_kind(k, source) for k in self.kinds]
        # Sequential generators: their state at each chunk's start, and the kinds per chunk.
        self._time_states: list[Mapping[str, Any]] = []
        self._kind_states: list[Mapping[str, Any]] = []
        kinds_per_chunk = np.zeros((n_chunks, len(self.kinds)), np.int64)
        for c, chunk in enumerate(self.chunks):
            n = chunk.rows.stop - chunk.rows.start
            self._time_states.append(copy.deepcopy(time_rng.bit_generator.state))
            self._kind_states.append(copy.deepcopy(kind_rng.bit_generator.state))
            time_rng.random(n)
            which = kind_rng.choice(len(self.kinds), size=n, p=self._p)
            kinds_per_chunk[c] = np.bincount(which, minlength=len(self.kinds))
        # The token generator, kind by kind: the cell run, then the prompt run, then the
        # output run, each over every request of the kind in order (``_sample_tokens``).
        self._token_states: list[list[tuple[Mapping[str, Any], ...]]] = []
        rng = token_rng
        for k, sampler in enumerate(self._samplers):
            cell_rng = copy.deepcopy(rng)
            prompt_rng = copy.deepcopy(rng)
            for c in range(n_chunks):  # skip the cell run (one double a request)
                prompt_rng.random(int(kinds_per_chunk[c, k]))
            cell_states: list[Mapping[str, Any]] = []
            prompt_states: list[Mapping[str, Any]] = []
            for c in range(n_chunks):
                n = int(kinds_per_chunk[c, k])
                cell_states.append(copy.deepcopy(cell_rng.bit_generator.state))
                prompt_states.append(copy.deepcopy(prompt_rng.bit_generator.state))
                cell = _cells(sampler, cell_rng, n)
                prompt_rng.integers(sampler.prompt_lo[cell], sampler.prompt_hi[cell])
            output_rng = prompt_rng
            output_states: list[Mapping[str, Any]] = []
            for c in range(n_chunks):
                n = int(kinds_per_chunk[c, k])
                cell = _cells(sampler, _with_state(cell_states[c]), n)
                output_states.append(copy.deepcopy(output_rng.bit_generator.state))
                output_rng.integers(sampler.output_lo[cell], sampler.output_hi[cell])
            self._token_states.append(list(zip(cell_states, prompt_states, output_states,
                                               strict=True)))
            rng = output_rng

    @property
    def n_chunks(self) -> int:
        return len(self.chunks)

    def chunk_counts(self, c: int) -> int:
        chunk = self.chunks[c]
        return chunk.rows.stop - chunk.rows.start

    def chunk(self, c: int) -> RequestBatch:
        """The requests of chunk ``c``, sorted by arrival, as ``generate`` has them."""
        chunk = self.chunks[c]
        n = chunk.rows.stop - chunk.rows.start
        arrival, origin = self._unsorted_arrivals(c)
        which = _with_state(self._kind_states[c]).choice(len(self.kinds), size=n, p=self._p)
        prompt = np.empty(n, np.int32)
        output = np.empty(n, np.int32)
        for k, sampler in enumerate(self._samplers):
            mask = which == k
            if not mask.any():
                continue
            cell_state, prompt_state, output_state = self._token_states[k][c]
            cell = _cells(sampler, _with_state(cell_state), int(mask.sum()))
            prompt[mask] = _with_state(prompt_state).integers(sampler.prompt_lo[cell],
                                                              sampler.prompt_hi[cell])
            output[mask] = _with_state(output_state).integers(sampler.output_lo[cell],
                                                              sampler.output_hi[cell])
        order = np.argsort(arrival, kind="stable")
        return RequestBatch(arrival[order], prompt[order], output[order], origin[order])

    def arrivals(self, c: int) -> tuple[np.ndarray, np.ndarray]:
        """Arrival times and origins of chunk ``c``'s requests, sorted (no token draws)."""
        arrival, origin = self._unsorted_arrivals(c)
        order = np.argsort(arrival, kind="stable")
        return arrival[order], origin[order]

    def _unsorted_arrivals(self, c: int) -> tuple[np.ndarray, np.ndarray]:
        """Chunk ``c``'s arrival times and origins in generation order (bin by bin)."""
        chunk = self.chunks[c]
        counts = self.counts[chunk.bins]
        n_origins = self.demand.n_origins
        bin_of = np.repeat(np.arange(counts.size) // n_origins, counts.ravel()) + chunk.bins.start
        origin = np.repeat(np.tile(np.arange(n_origins), counts.shape[0]),
                           counts.ravel()).astype(np.int16)
        n = chunk.rows.stop - chunk.rows.start
        arrival = (self.bin_starts_s[bin_of]
                   + _with_state(self._time_states[c]).random(n) * self.bin_lengths_s[bin_of])
        return arrival, origin

    def __iter__(self) -> Iterator[RequestBatch]:
        for c in range(self.n_chunks):
            yield self.chunk(c)


def _with_state(state: Mapping[str, Any]) -> np.random.Generator:
    """A generator of the stream's bit generator type, set to ``state``."""
    bit_generator = getattr(np.random, state["bit_generator"])()
    bit_generator.state = state
    return np.random.Generator(bit_generator)
