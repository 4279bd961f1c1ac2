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

    @property
    def effective_weights(self) -> tuple[float, float, float, float]:
        """The weights a weighted sum stands in for this preference with: its own in
        ``weights`` mode, the default balanced weights otherwise."""
        return self.weights if self.mode == "weights" else Preference().weights

    def score(self, objectives: np.ndarray, violation_s: np.ndarray, scales: np.ndarray
              ) -> np.ndarray:
        """Per plan, the value this preference minimises (inf for plans missing the SLO).

        ``knee`` depends on the whole front, so its plans are scored by the default weights.
        """
        f = np.atleast_2d(objectives)
        if self.mode == "cap":
            score = f[:, OBJECTIVES.index(self.minimise)].astype(float)
            if self.ttft_cap_s is not None:
                # Over the cap: worse than any plan within it, and the less over, the better.
                over = f[:, 0] > self.ttft_cap_s
                score = np.where(over, 1e12 * (1.0 + f[:, 0] - self.ttft_cap_s), score)
        else:
            score = (f / scales) @ np.asarray(self.effective_weights)
        return np.where(np.asarray(violation_s) <= 0, score, np.inf)

    def choose(self, objectives: np.ndarray, violation_s: np.ndarray, scales: np.ndarray) -> int:
        """Index of the chosen plan (``objectives`` [K, 4], ``violation_s`` [K])."""
        feasible = violation_s <= 0
        if not feasible.any():
            return int(np.argmin(violation_s))
        if self.mode != "knee":
            return int(np.argmin(self.score(objectives, violation_s, scales)))
        f = objectives[feasible]
        lo, hi = f.min(axis=0), f.max(axis=0)
        span = np.where(hi > lo, hi - lo, 1.0)
        distance = np.linalg.norm((f - lo) / span, axis=1)
        return int(np.flatnonzero(feasible)[int(np.argmin(distance))])


def day_scales(interval_scales: np.ndarray, demand_rps: np.ndarray) -> np.ndarray:
    """[4] ONE normalisation for the outcomes of a set of intervals (a horizon or a day), fixed
    by the problems and not by the plans compared: each interval's ``objective_scales``
    (``interval_scales`` [K, 4]) summed for carbon, water and cost; for TTFT, a mean, the
    per-interval scales (each a mean TTFT) averaged weighted by the intervals' demand."""
    scales = np.atleast_2d(np.asarray(interval_scales, dtype=float))
    demand = np.asarray(demand_rps, dtype=float)
    out = scales.sum(axis=0)
    out[0] = float(scales[:, 0] @ demand) / max(float(demand.sum()), 1e-12)
    return np.where(out > 0, out, 1.0)


def preference_score(objectives: np.ndarray, preference: Preference, scales: np.ndarray
                     ) -> np.ndarray:
    """The scenario's preference applied to outcomes ``objectives`` ([P, 4] or [4], in
    ``OBJECTIVES`` order: mean TTFT s, carbon kg, water L, cost USD, e.g. each policy's
    simulated day), all divided by the same ``scales`` (``day_scales``); lower is better.

    ``weights`` and ``knee`` modes: the weighted sum (``effective_weights``). ``cap`` mode: the
    ``minimise`` objective scaled, inf where mean TTFT exceeds the cap. SLO attainment is not
    folded in: report it beside the score.
    """
    f = np.atleast_2d(np.asarray(objectives, dtype=float)) / np.asarray(scales, dtype=float)
    if preference.mode == "cap":
        score = f[:, OBJECTIVES.index(preference.minimise)]
        if preference.ttft_cap_s is not None:
            raw_ttft = np.atleast_2d(np.asarray(objectives, dtype=float))[:, 0]
            score = np.where(raw_ttft > preference.ttft_cap_s, np.inf, score)
        return score
    return f @ np.asarray(preference.effective_weights, dtype=float)
