"""The request stream every simulator and scheduler consumes: columnar arrays, one row a request."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class RequestBatch:
    """Requests sorted by arrival.

    ``arrival_s`` is seconds since ``start_utc`` of the period; ``origin`` indexes the list of
    user origins the batch was generated for (0 when there is a single origin).
    """

    arrival_s: np.ndarray  # float64, non-decreasing
    prompt_tokens: np.ndarray  # int32, >= 1
    output_tokens: np.ndarray  # int32, >= 1
    origin: np.ndarray  # int16

    def __post_init__(self) -> None:
        n = len(self.arrival_s)
        for name in ("prompt_tokens", "output_tokens", "origin"):
            if len(getattr(self, name)) != n:
                rows = len(getattr(self, name))
                raise ValueError(f"RequestBatch.{name} has {rows} rows, not {n}")

    def __len__(self) -> int:
        return len(self.arrival_s)

    def take(self, mask_or_index: np.ndarray) -> RequestBatch:
        """The sub-batch selected by a boolean mask or an index array (order kept)."""
        return RequestBatch(
            self.arrival_s[mask_or_index],
            self.prompt_tokens[mask_or_index],
            self.output_tokens[mask_or_index],
            self.origin[mask_or_index],
        )

    @staticmethod
    def concat(batches: list[RequestBatch]) -> RequestBatch:
        """Merge batches into one, sorted by arrival (stable, so ties keep batch order)."""
        if not batches:
            return RequestBatch(np.zeros(0), np.zeros(0, np.int32), np.zeros(0, np.int32),
                                np.zeros(0, np.int16))
        arrival = np.concatenate([b.arrival_s for b in batches])
        order = np.argsort(arrival, kind="stable")
        return RequestBatch(
            arrival[order],
            np.concatenate([b.prompt_tokens for b in batches])[order],
            np.concatenate([b.output_tokens for b in batches])[order],
            np.concatenate([b.origin for b in batches])[order],
        )
