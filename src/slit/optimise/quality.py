"""How good a front is: hypervolume of SLIT's front relative to the LP reference front."""

from __future__ import annotations

import numpy as np
from pymoo.indicators.hv import HV

from slit.optimise.lp import lp_front
from slit.optimise.problem import IntervalProblem, evaluate_plans
from slit.optimise.routing import repair

REFERENCE_MARGIN = 0.1


def hypervolume_ratio(
    problem: IntervalProblem, front_objectives: np.ndarray, partitions: int = 6
) -> tuple[float, np.ndarray]:
    """HV(front) / HV(LP front), both judged by the same model, on SLO-feasible plans only.

    The LP's linearisation is optimistic about capacity (it ignores that far origins shrink it),
    so its plans go through the same capacity repair as SLIT's candidates before they are judged.
    Objectives are scaled to [0, 1] by the ideal and nadir of the two fronts together and the
    reference point sits ``REFERENCE_MARGIN`` beyond the nadir. Returns the ratio and the LP
    front's objectives.
    """
    lp = evaluate_plans(problem, repair(problem, lp_front(problem, partitions)))
    lp_f = lp.objectives[lp.slo_violation_s <= 0]
    if len(lp_f) == 0:  # every LP plan misses the SLO under the model: compare on all of them
        lp_f = lp.objectives
    both = np.concatenate([front_objectives, lp_f])
    lo, hi = both.min(axis=0), both.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    indicator = HV(ref_point=np.full(both.shape[1], 1.0 + REFERENCE_MARGIN))
    hv_front = indicator((front_objectives - lo) / span)
    hv_lp = indicator((lp_f - lo) / span)
    return (float(hv_front / hv_lp) if hv_lp > 0 else float("inf")), lp_f
