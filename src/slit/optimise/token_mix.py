"""The token statistics of a conv/code request mix: its samplers, exact means and a data key."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from slit.data.source import DataSource
from slit.workload.tokens import TokenSampler

KINDS = ("conv", "code")


@lru_cache(maxsize=8)
def _samplers(token_source: str) -> tuple[TokenSampler, ...]:
    source = DataSource.from_key(token_source)
    return tuple(TokenSampler.for_kind(kind, source) for kind in KINDS)


@dataclass(frozen=True)
class TokenMix:
    """Requests from the conv and code traces (or their embedded profiles), ``code_share`` of
    them code. ``token_source`` is ``"embedded"`` or a data directory path."""

    code_share: float
    token_source: str = "embedded"

    @property
    def samplers(self) -> dict[str, TokenSampler]:
        return dict(zip(KINDS, _samplers(self.token_source), strict=True))

    def share(self, kind: str) -> float:
        return self.code_share if kind == "code" else 1.0 - self.code_share

    def mean_tokens(self) -> tuple[float, float]:
        """Mean prompt and output tokens (exact, from the sampler's cells)."""
        prompt = output = 0.0
        for kind, sampler in self.samplers.items():
            share, w = self.share(kind), sampler.weight / sampler.weight.sum()
            prompt += share * float(w @ ((sampler.prompt_lo + sampler.prompt_hi - 1) / 2))
            output += share * float(w @ ((sampler.output_lo + sampler.output_hi - 1) / 2))
        return prompt, output

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``n`` (prompt, output) pairs, each request code with probability ``code_share``."""
        is_code = rng.random(n) < self.code_share
        prompt = np.empty(n, np.int32)
        output = np.empty(n, np.int32)
        samplers = self.samplers
        for kind, mask in (("code", is_code), ("conv", ~is_code)):
            if mask.any():
                prompt[mask], output[mask] = samplers[kind].sample(int(mask.sum()), rng)
        return prompt, output

    def data_key(self) -> str:
        """A hash of the token data itself (not its path): the same traces give the same key
        wherever they are, and edited traces a new one."""
        digest = hashlib.sha256()
        for sampler in self.samplers.values():
            for array in (sampler.prompt_lo, sampler.prompt_hi, sampler.output_lo,
                          sampler.output_hi, sampler.weight):
                digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()[:16]


def mean_tokens(code_share: float, token_source: str = "embedded") -> tuple[float, float]:
    """Mean prompt and output tokens of a conv/code mix."""
    return TokenMix(code_share, token_source).mean_tokens()
