"""How good a front is: its hypervolume against a proven upper bound on any front's hypervolume.

``hypervolume_vs_bound`` is the measure the benchmarks report. (The former ratio against repaired
LP plans is gone: those plans were feasible heuristics, not a bound, so it could exceed 1.)
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from pymoo.indicators.hv import HV

from slit.optimise.baselines import BASELINES
from slit.optimise.milp import IntervalMilp
from slit.optimise.problem import OBJECTIVES, IntervalProblem, evaluate_plans

REFERENCE_MARGIN = 0.1


@dataclass(frozen=True, slots=True)
class Normalisation:
    """Objectives mapped to ``(f - ideal) / (reference - ideal)``; the HV reference point is 1.

    Fixed from the problem alone: ``ideal`` is each objective's proven MILP lower bound, and
    ``reference`` lies ``REFERENCE_MARGIN`` of the span beyond the worst value among the
    baselines' plans and the single-objective MILP plans (the payoff table).
    """

    ideal: np.ndarray  # [4]
    reference: np.ndarray  # [4]

    def __call__(self, objectives: np.ndarray) -> np.ndarray:
        return (np.atleast_2d(objectives) - self.ideal) / (self.reference - self.ideal)


def fixed_normalisation(problem: IntervalProblem, model: IntervalMilp, time_limit_s: float
                        ) -> Normalisation:
    """Ideal from single-objective MILP bounds, reference from fixed plans (see Normalisation)."""
    ideal = np.empty(len(OBJECTIVES))
    plans = [policy(problem) for policy in BASELINES.values()]
    for k in range(len(OBJECTIVES)):
        result = model.solve_epsilon(k, np.full(len(OBJECTIVES), np.inf), time_limit_s)
        ideal[k] = result.bound
        if result.routing is not None:
            plans.append(result.routing)
    worst = evaluate_plans(problem, np.stack(plans)).objectives.max(axis=0)
    span = np.maximum(worst - ideal, 1e-12)
    return Normalisation(ideal, worst + REFERENCE_MARGIN * span)


@dataclass(frozen=True, slots=True)
class BoundHV:
    """A front's hypervolume and the proven upper bound on any feasible front's."""

    hv: float
    bound: float
    solves: int
    solve_s: float

    @property
    def ratio(self) -> float:
        return self.hv / self.bound if self.bound > 0 else float("nan")


def hypervolume_vs_bound(problem: IntervalProblem, front_objectives: np.ndarray,
                         grid: int = 4, time_limit_s: float = 2.0,
                         model: IntervalMilp | None = None) -> BoundHV:
    """HV of ``front_objectives`` (feasible plans) and an upper bound on the HV of ANY set of
    feasible plans, under the same fixed normalisation.

    The bound: the normalised carbon x water x cost box [0, 1]^3 is cut into ``grid``^3 cells.
    For a cell with upper corner ``e``, the epsilon-constraint MILP (min TTFT subject to
    carbon, water, cost <= ``e``) proves ``b(e)`` <= the TTFT of every feasible plan within
    ``e``. A point ``z`` of the cell dominated by a feasible plan ``f`` (``f <= z``) has
    ``f``'s other objectives <= ``e``, so ``z_ttft >= f_ttft >= b(e)``: the dominated region
    inside the cell lies in ``[b(e), 1] x cell``. Summing those boxes bounds the dominated
    volume of every feasible front, the true Pareto front included, so the ratio is <= 1 by
    construction. ``b`` falls as ``e`` grows, so a corner is skipped when a larger one is
    already at or beyond the reference (or infeasible).
    """
    model = model or IntervalMilp.build(problem)
    norm = fixed_normalisation(problem, model, time_limit_s)
    front = norm(front_objectives)
    front = front[(front < 1.0).all(axis=1)]
    hv = float(HV(ref_point=np.ones(len(OBJECTIVES)))(front)) if len(front) else 0.0
    levels = np.arange(1, grid + 1) / grid
    ttft_floor = np.full((grid,) * 3, np.nan)  # normalised b(e) per cell, >= 1 means empty
    solves, solve_s = 0, 0.0
    for idx in sorted(itertools.product(range(grid), repeat=3), key=lambda t: -sum(t)):
        larger = [ttft_floor[j] for j in itertools.product(*(range(i, grid) for i in idx))
                  if j != idx]
        if any(v >= 1.0 for v in larger):
            ttft_floor[idx] = 1.0
            continue
        caps_n = levels[list(idx)]
        caps = np.concatenate([[np.inf], norm.ideal[1:] + caps_n * (norm.reference[1:]
                                                                     - norm.ideal[1:])])
        result = model.solve_epsilon(0, caps, time_limit_s)
        solves += 1
        solve_s += result.solve_s
        b = (result.bound - norm.ideal[0]) / (norm.reference[0] - norm.ideal[0])
        if b == np.inf:  # proven infeasible: no plan in this cell at all
            ttft_floor[idx] = 1.0
        else:  # -inf when the solver proved nothing in time: the cell counts in full
            ttft_floor[idx] = max(b, 0.0) if np.isfinite(b) else 0.0
    cell = (1.0 / grid) ** 3
    bound = float(np.clip(1.0 - ttft_floor, 0.0, 1.0).sum() * cell)
    return BoundHV(hv, bound, solves, solve_s)

