"""Prompt and output token counts of requests: from a real trace or from a shipped profile.

The embedded default cannot ship the Azure traces, so ``build_token_profile`` reduces each trace
to a log-binned 2-D histogram of (prompt, output) token counts: derived statistics, not a copy of
the trace. ``TokenSampler`` draws pairs either by bootstrapping the real trace (keeping each
request's prompt/output pairing) or from the histogram: a cell by its frequency, then an integer
uniformly inside the cell. Bin edges are integers; the lowest bins are one token wide, so short
outputs (the code trace's median is a few tokens) are reproduced exactly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from slit.data.source import EMBEDDED, DataSource
from slit.errors import SlitInputError
from slit.workload.traces import TRACE_KINDS, load_trace

PROFILE_NAME = "token_profile.json"
PROFILE_FORMAT = "slit-token-profile/1"
# 16 bins per decade: a bin spans at most 15 % of its lower edge, which keeps the sampled means
# within about 1 % of the trace means while the file stays well under 100 KiB.
BINS_PER_DECADE = 16


def _log_edges(max_tokens: int) -> np.ndarray:
    """Integer bin edges from 1 to past ``max_tokens``, geometric above the one-token bins."""
    decades = np.log10(max_tokens + 1)
    raw = np.geomspace(1.0, 10 ** (decades + 1.0 / BINS_PER_DECADE),
                       int(np.ceil(decades * BINS_PER_DECADE)) + 2)
    return np.unique(np.round(raw).astype(np.int64))


def _histogram(prompt: np.ndarray, output: np.ndarray) -> dict:
    prompt_edges = _log_edges(int(prompt.max()))
    output_edges = _log_edges(int(output.max()))
    counts, _, _ = np.histogram2d(prompt, output, bins=(prompt_edges, output_edges))
    i, j = np.nonzero(counts)
    return {
        "n_requests": int(len(prompt)),
        "mean_prompt_tokens": float(prompt.mean()),
        "mean_output_tokens": float(output.mean()),
        "prompt_edges": prompt_edges.tolist(),
        "output_edges": output_edges.tolist(),
        # Sparse cells [prompt bin, output bin, count]: most of the grid is empty.
        "cells": np.stack([i, j, counts[i, j].astype(np.int64)], axis=1).tolist(),
    }


def build_token_profile(data_dir: Path, out_dir: Path) -> Path:
    """Write ``token_profile.json`` (histograms of both Azure traces) into ``out_dir``."""
    kinds = {}
    for kind in TRACE_KINDS:
        trace = load_trace(Path(data_dir), kind)
        kinds[kind] = _histogram(trace.prompt_tokens, trace.output_tokens)
    doc = {
        "format": PROFILE_FORMAT,
        "description": "Log-binned 2-D histograms of (prompt, output) token counts per trace kind; "
                       "bins are [edge_i, edge_i+1) in tokens.",
        "source": "Azure LLM inference traces 2023 (code.csv, conv.csv), Microsoft, CC-BY 4.0; "
                  "Patel et al., Splitwise: Efficient Generative LLM Inference Using Phase "
                  "Splitting, ISCA 2024.",
        "generated_by": "slit.workload.tokens.build_token_profile",
        "bins_per_decade": BINS_PER_DECADE,
        "kinds": kinds,
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / PROFILE_NAME
    path.write_text(json.dumps(doc, separators=(",", ":")) + "\n", encoding="utf-8")
    return path


@dataclass(frozen=True, slots=True)
class TokenSampler:
    """Draws (prompt, output) token pairs of one trace kind.

    Build it with ``from_trace``, ``from_profile`` or ``for_kind`` (the trace from a data
    directory, else the shipped profile). ``source`` says which.
    """

    kind: str
    source: str
    # Trace mode: the trace's own pairs. Profile mode: per-cell lower/upper bounds and weights.
    prompt_lo: np.ndarray
    prompt_hi: np.ndarray
    output_lo: np.ndarray
    output_hi: np.ndarray
    weight: np.ndarray

    @staticmethod
    def from_trace(data_dir: Path, kind: str) -> TokenSampler:
        trace = load_trace(Path(data_dir), kind)
        n = len(trace.prompt_tokens)
        return TokenSampler(kind, f"trace {data_dir}", trace.prompt_tokens.astype(np.int64),
                            trace.prompt_tokens.astype(np.int64) + 1,
                            trace.output_tokens.astype(np.int64),
                            trace.output_tokens.astype(np.int64) + 1, np.full(n, 1.0 / n))

    @staticmethod
    def from_profile(kind: str, path: Path | None = None) -> TokenSampler:
        """From a profile file (default: the one shipped in ``slit/embedded``)."""
        if path is None:
            text = resources.files("slit").joinpath("embedded", PROFILE_NAME).read_text("utf-8")
            where = f"slit/embedded/{PROFILE_NAME}"
        else:
            if not Path(path).is_file():
                raise SlitInputError(str(path), "token profile not found",
                                     "create it with slit.workload.tokens.build_token_profile")
            text = Path(path).read_text("utf-8")
            where = str(path)
        doc = json.loads(text)
        if doc.get("format") != PROFILE_FORMAT or kind not in doc.get("kinds", {}):
            raise SlitInputError(where, f"is not a {PROFILE_FORMAT} file with kind {kind!r}",
                                 "rebuild it with slit.workload.tokens.build_token_profile")
        entry = doc["kinds"][kind]
        cells = np.asarray(entry["cells"], dtype=np.int64)
        prompt_edges = np.asarray(entry["prompt_edges"], dtype=np.int64)
        output_edges = np.asarray(entry["output_edges"], dtype=np.int64)
        i, j, count = cells[:, 0], cells[:, 1], cells[:, 2].astype(float)
        return TokenSampler(kind, f"profile {where}", prompt_edges[i], prompt_edges[i + 1],
                            output_edges[j], output_edges[j + 1], count / count.sum())

    @staticmethod
    def for_kind(kind: str, source: DataSource = EMBEDDED) -> TokenSampler:
        """The trace's own pairs from a data directory, the shipped profile when embedded."""
        if kind not in TRACE_KINDS:
            raise SlitInputError("trace mix", f"unknown trace kind {kind!r}",
                                 f"use kinds from: {', '.join(TRACE_KINDS)}")
        if source.data_dir is None:
            return TokenSampler.from_profile(kind)
        return TokenSampler.from_trace(source.data_dir, kind)

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``n`` pairs as two int32 arrays (prompt, output), each >= 1."""
        cell = np.searchsorted(np.cumsum(self.weight), rng.random(n) * self.weight.sum(),
                               side="right")
        cell = np.minimum(cell, len(self.weight) - 1)
        prompt = rng.integers(self.prompt_lo[cell], self.prompt_hi[cell])
        output = rng.integers(self.output_lo[cell], self.output_hi[cell])
        return prompt.astype(np.int32), output.astype(np.int32)
