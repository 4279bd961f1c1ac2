"""Picking one plan from a Pareto front by the user's preference."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from slit.optimise.problem import OBJECTIVES

PreferenceMode = Literal["weights", "knee", "cap"]


@dataclass(frozen=True, slots=True)
class Preference:
    """How to choose among the plans of a front.

    - ``weights``: least weighted sum of the objectives, each divided by its typical magnitude
      for the interval (``scales``), over the plans that meet the SLO.
    - ``knee``: the SLO-feasible plan nearest the ideal point once each objective is scaled to
      [0, 1] over the front.
    - ``cap``: among SLO-feasible plans whose mean TTFT is at most ``ttft_cap_s``, the least
      ``minimise`` objective.
    The default, the "balanced" plan, weighs carbon, water and cost equally and TTFT less, as
    TTFT is already held to the SLO.
    """

    mode: PreferenceMode = "weights"
    weights: tuple[float, float, float, float] = (0.1, 0.3, 0.3, 0.3)
    ttft_cap_s: float | None = None
    minimise: str = "carbon_kg"

    def __post_init__(self) -> None:
        if self.mode not in ("weights", "knee", "cap"):
            raise ValueError(f"unknown preference mode {self.mode!r}")
        if len(self.weights) != len(OBJECTIVES) or min(self.weights) < 0:
            raise ValueError("preference weights: four non-negative numbers")
        if self.minimise not in OBJECTIVES:
            raise ValueError(f"preference minimise: one of {', '.join(OBJECTIVES)}")

    def choose(self, objectives: np.ndarray, violation_s: np.ndarray, scales: np.ndarray) -> int:
        """Index of the chosen plan (``objectives`` [K, 4], ``violation_s`` [K])."""
        feasible = violation_s <= 0
        if not feasible.any():
            return int(np.argmin(violation_s))
        candidates = np.flatnonzero(feasible)
        f = objectives[candidates]
        if self.mode == "weights":
            score = (f / scales) @ np.asarray(self.weights)
        elif self.mode == "knee":
            lo, hi = f.min(axis=0), f.max(axis=0)
            span = np.where(hi > lo, hi - lo, 1.0)
            score = np.linalg.norm((f - lo) / span, axis=1)
        else:
            column = OBJECTIVES.index(self.minimise)
            score = f[:, column].copy()
            if self.ttft_cap_s is not None:
                over = f[:, 0] > self.ttft_cap_s
                if not over.all():
                    score[over] = np.inf
                else:  # nobody meets the cap: the fastest plan
                    score = f[:, 0]
        return int(candidates[int(np.argmin(score))])
