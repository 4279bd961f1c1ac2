"""The interval problem as a mixed-integer linear programme: a proven lower bound, and a plan.

The model describes the SAME problem ``evaluate_plans`` judges (see ``problem.py``), exactly
where the judge is piecewise linear, and relaxed only where it is not: every relaxation enlarges
the feasible set or lowers a cost. So every plan that respects the residency pins (``allowed``)
and meets the SLO under ``evaluate_plans`` maps to a feasible MILP point (``IntervalMilp.
describe``) whose MILP objectives equal (mean TTFT: do not exceed) its true objectives: the MILP
optimum, and the solver's dual bound on it, is a lower bound for every plan SLIT or a baseline
can produce, for any non-negative weighting and any epsilon-constraint problem.

Variables (``o`` origin, ``s`` site, ``n`` = 1..installed awake replicas, ``g`` a segment of the
site's serving table for ``n`` awake):

- ``x[o, s]`` in [0, 1]: routed share (0 on forbidden pairs); rows sum to 1.
- ``w[s, j]`` binary: "an origin whose round trip to ``s`` is the ``j``-th shortest distinct
  one there, or a longer one, is routed to ``s``" in the SLO check's sense (share above
  ``SHARE_EPS``): ``x[o, s] <= SHARE_EPS + (1 - SHARE_EPS) w[s, level(o, s)]`` and ``w[s, j + 1]
  <= w[s, j]``. So ``sum_j (r_j - r_{j-1}) w[s, j]`` is the longest routed round trip ``r``.
- ``u[s, n]`` binary, one per count ``n = 0..installed``, exactly one set: awake replicas.
- ``l[s, n]`` >= 0: the site's load if ``n`` replicas are awake (0 otherwise), ``sum_n l = load``.
- ``z[s, n, g]`` binary, ``lam[s, n, g]`` >= 0: the site's load lies on segment ``g`` of the
  table (between two of its grid points, scaled by ``n``), ``sum_g z = u[s, n]``, ``sum_g lam =
  l[s, n]``, ``lo_g z <= lam <= hi_g z`` (the multiple-choice form of a piecewise-linear
  function). Adjacent segments on which power, tail and mean TTFT are all collinear are merged.
- ``e[s, n]``: IT energy (kWh) of the awake replicas, ``= sum_g a_g z + b_g lam`` (the table's own
  interpolation of power, exact); ``t[s, n] = sum_g tau[s, n, g]``: load x site mean TTFT, with
  ``tau_g`` above tangents of that product on segment ``g`` (a quadratic there).

Constraints besides:

- SLO, per site, exactly ``evaluate_plans``'s check for the longest routed round trip: the
  table's interpolated tail for the segment's load plus ``r`` at most the planning SLO, when
  anything is routed there (``w[s, 0]``).
- Sizing rule, per site and level: ``load <= sum_n u[s, n] cap_s(n, j)`` when ``w[s, j]``
  (big-M otherwise), ``cap_s(n, j)`` the sizing table's ``slo_capacity_rps`` at level ``j``'s
  round trip (with all replicas awake, also any load up to the last one whose tail meets it);
  and "fewest replicas": ``n >= 2`` awake only if the load exceeds what ``n - 1`` carry for the
  longest routed round trip (``load >= cap_s(n - 1, worst level)`` when ``u[s, n]``).
- Valid cuts that tighten the LP relaxation: flow from level ``j`` or farther needs ``w[s, j]``;
  routed means awake (``w[s, 0] <= 1 - u[s, 0]``); the full fleet's capacity at the longest
  routed round trip as a staircase in ``w`` (no big-M).

Solved by HiGHS through ``highspy`` (``_highs``); the bound is its dual bound.

What is relaxed: mean TTFT (tangents of the per-segment quadratic lie below it; at most
``TTFT_TANGENTS`` per segment, so it undershoots by at most a quarter of the quadratic's growth
over a tangent spacing); the fewest-replicas rule and the sizing capacity as closed inequalities
where the rule is strict; for a fully awake site, the sizing capacity (the tail row is exact).
Standby power of sleeping replicas, IT energy, the round-trip part of TTFT and the SLO check are
exact. Within HiGHS's tolerances the MILP's incumbent is a plan ``evaluate_plans`` finds
feasible; it is re-solved (``_polish``: binaries fixed, every constraint a hair inside) before
``evaluate_plans`` judges it.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import Bounds
from scipy.sparse import coo_matrix, csr_matrix, vstack

from slit.optimise.baselines import objective_scales, weighted_sum_greedy
from slit.optimise.preference import Preference
from slit.optimise.problem import OBJECTIVES, SHARE_EPS, IntervalProblem, evaluate_plans
from slit.optimise.routing import normalise_rows, repair

# For scipy.optimize.milp callers (horizon_milp's LP relaxation): HiGHS's MIP presolve in scipy
# 1.17's build crashes the process with a segmentation fault on some of these models (in
# transformNewIntegerFeasibleSolution). The interval MILP itself is solved through highspy, whose
# newer HiGHS runs presolve without it.
HIGHS_PRESOLVE = False


KWH_PER_WS = 1.0 / 3.6e6
# Tangents of load x mean TTFT per segment where it is convex (evenly spaced, ends included):
# the envelope undershoots by at most (slope / n) (spacing / 2)^2 there.
TTFT_TANGENTS = 4
COLLINEAR_TOLERANCE = 1e-9  # relative: a breakpoint where every curve is straight is dropped
NOISE_SHARE = 1e-9  # shares below this in a solver's solution are its tolerance, not routing
# The plan keeps this far inside every constraint (relative to the row's size; in s for the SLO
# row), so that HiGHS's feasibility tolerance (1e-7) never turns into an SLO miss.
PLAN_MARGINS = (1e-6, 1e-4)
DEFAULT_TIME_LIMIT_S = 10.0
# A binary of the LP relaxation's optimum this close to 0 or 1 counts as integral (HiGHS's own
# MIP integrality tolerance is 1e-6; the relaxations that are integral here are so to ~1e-13).
INTEGRAL_TOLERANCE = 1e-9
# The milp policy's solves stop on work, not on the clock, so that the same problem gives the same
# plan on any machine: HiGHS's branch and bound is deterministic for a given node limit and
# relative gap. The time limit is only a safety net far above what these limits take (measured
# on the default day: docs/scheduler.md); a solve that reaches it is machine-dependent.
POLICY_NODE_LIMIT = 1  # the root node: its cuts and heuristics close most intervals to rel_gap
POLICY_REL_GAP = 0.01
POLICY_SAFETY_TIME_LIMIT_S = 120.0


@dataclass(frozen=True, slots=True)
class MilpResult:
    """One MILP solve. ``bound`` is the solver's proven lower bound on ``value`` (the objective
    minimised: the scaled weighted sum, or the single objective of an epsilon-constraint
    problem); ``routing`` the MILP's plan after polishing/repair, judged by ``evaluate_plans``."""

    bound: float  # -inf when the solver proved nothing; +inf when proven infeasible
    value: float  # the MILP incumbent's objective in the model (nan if none)
    routing: np.ndarray | None  # [O, S]
    solve_s: float
    status: int  # scipy.optimize.milp status: 0 optimal, 1 limit reached, 2 infeasible
    message: str

    @property
    def gap(self) -> float:
        """Solver's relative gap between incumbent and bound (0 when proven optimal)."""
        if not np.isfinite(self.value) or not np.isfinite(self.bound):
            return float("inf")
        return (self.value - self.bound) / max(abs(self.value), 1e-12)


@dataclass(frozen=True)
class _Segments:
    """The piecewise-linear pieces of one site's table with ``n`` awake, in site load (req/s)."""

    lo: np.ndarray  # [G] segment's load range
    hi: np.ndarray
    energy: np.ndarray  # [G, 2] awake IT energy (kWh) = a + b load on the segment
    tail: np.ndarray  # [G, 2] interpolated tail TTFT (s) = a + b load
    mean: np.ndarray  # [G, 2] interpolated mean TTFT (s) = a + b load
    z0: int  # z[s, n, g] at z0 + g, lam at lam0 + g, tau at tau0 + g
    lam0: int
    tau0: int

    def find(self, load: float) -> int:
        """The segment holding ``load`` (-1 if none)."""
        inside = np.flatnonzero((self.lo <= load * (1 + 1e-12) + 1e-12)
                                & (load <= self.hi * (1 + 1e-12) + 1e-12))
        return int(inside[0]) if len(inside) else -1


@dataclass(frozen=True)
class _Layout:
    n_o: int
    n_s: int
    counts: tuple[int, ...]  # installed per site
    allowed: np.ndarray  # [O, S] pairs the model may route
    level: np.ndarray  # [O, S] rank of the pair's round trip among the site's distinct ones
    level_rtt_s: tuple[np.ndarray, ...]  # per site: the distinct allowed round trips, ascending
    w0: np.ndarray  # [S] index of w[s, 0]; w[s, j] at w0[s] + j
    u0: np.ndarray  # [S] index of u[s, 0]; u[s, n] at u0[s] + n
    l0: np.ndarray  # [S] index of l[s, 1]; l[s, n] at l0[s] + n - 1 (same for e, t)
    e0: np.ndarray
    t0: np.ndarray
    segments: tuple[tuple[_Segments, ...], ...]  # [s][n - 1]
    n_var: int

    def x(self, o: int, s: int) -> int:
        return o * self.n_s + s

    def w(self, s: int, j: int) -> int:
        return int(self.w0[s]) + j

    def levels_routed(self, routing: np.ndarray, threshold: float = SHARE_EPS) -> np.ndarray:
        """The ``w`` values of a routing: per site and level, whether an origin of that level
        or a farther one carries a share above ``threshold`` there (flattened, site-major)."""
        out = []
        for s in range(self.n_s):
            routed = (routing[:, s] > threshold) & (self.level[:, s] >= 0)
            worst = int(self.level[routed, s].max()) if routed.any() else -1
            out.append(np.arange(len(self.level_rtt_s[s])) <= worst)
        return np.concatenate(out).astype(float)


def _interp(table_row: np.ndarray, grid: np.ndarray, q: np.ndarray) -> np.ndarray:
    """The table's own interpolation (``SiteServingTable.lookup``), clamped past the grid."""
    pos = np.clip(np.searchsorted(grid, q, side="right") - 1, 0, len(grid) - 2)
    frac = np.clip((q - grid[pos]) / (grid[pos + 1] - grid[pos]), 0.0, 1.0)
    return table_row[pos] * (1.0 - frac) + table_row[pos + 1] * frac


def _segment_curves(problem: IntervalProblem, s: int, n: int, top_rps: float
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Breakpoints (site loads) of the n-awake table on [0, top_rps] and the curves there.

    The table's interpolation is linear between ``n x grid`` points and constant past the last
    one (clamped), so these breakpoints make energy, tail and mean exactly piecewise linear.
    Breakpoints where all three are straight are dropped (fewer binaries, same functions).
    """
    table = problem.tables[s]
    grid = table.load_rps_per_replica
    loads = n * grid
    points = np.append(loads[loads < top_rps], top_rps)
    curves = [n * _interp(table.power_w_per_replica[n - 1], grid, points / n)
              * problem.interval_s * KWH_PER_WS,
              _interp(table.ttft_tail_s[n - 1], grid, points / n),
              _interp(table.ttft_mean_s[n - 1], grid, points / n)]
    keep = np.ones(len(points), dtype=bool)
    last = 0
    for i in range(1, len(points) - 1):
        straight = True
        for c in curves:
            left = (c[i] - c[last]) / (points[i] - points[last])
            right = (c[i + 1] - c[i]) / (points[i + 1] - points[i])
            scale = max(abs(left), abs(right), 1e-12)
            if abs(left - right) > COLLINEAR_TOLERANCE * scale:
                straight = False
                break
        if straight:
            keep[i] = False
        else:
            last = i
    return points[keep], curves[0][keep], curves[1][keep], curves[2][keep], keep


def _lines(points: np.ndarray, values: np.ndarray) -> np.ndarray:
    """[G, 2] (a, b) of the chords between consecutive breakpoints: value = a + b load."""
    b = np.diff(values) / np.diff(points)
    return np.stack([values[:-1] - b * points[:-1], b], axis=1)


def _ttft_tangents(lo: float, hi: float, mean: tuple[float, float]) -> list[tuple[float, float]]:
    """Lines ``(a, b)`` below ``f(l) = l (m_a + m_b l)`` on [lo, hi], in ``a z + b lam`` form.

    Convex (``m_b >= 0``): tangents at ``TTFT_TANGENTS`` evenly spaced loads, each below ``f``
    everywhere. Concave: the chord, below ``f`` on the segment. Both exact at the ends.
    """
    ma, mb = mean
    if mb <= 0:
        f_lo, f_hi = lo * (ma + mb * lo), hi * (ma + mb * hi)
        slope = (f_hi - f_lo) / (hi - lo)
        return [(f_lo - slope * lo, slope)]
    lines = []
    for q in np.linspace(lo, hi, TTFT_TANGENTS):
        slope = ma + 2.0 * mb * q
        lines.append((q * (ma + mb * q) - slope * q, slope))  # = -mb q^2 + slope l
    return lines


def _layout(problem: IntervalProblem) -> _Layout:
    n_o, n_s = problem.n_origins, problem.n_sites
    allowed = problem.allowed.copy()
    # An origin pinned nowhere is sent somewhere by normalise_rows and judged by the SLO check;
    # allow it everywhere so such plans stay inside the model.
    allowed[~allowed.any(axis=1)] = True
    counts = tuple(int(t.installed) for t in problem.tables)
    # Levels: the distinct round trips of the allowed origins at each site, nearest first (the
    # SLO check sees the longest routed one exactly, the sizing table its grid index).
    level = np.full((n_o, n_s), -1)
    level_rtt = []
    for s in range(n_s):
        origins = np.flatnonzero(allowed[:, s])
        rtts = np.unique(problem.rtt_s[origins, s])
        level[origins, s] = np.searchsorted(rtts, problem.rtt_s[origins, s])
        level_rtt.append(rtts)
    nxt = n_o * n_s
    w0, u0, l0, e0, t0 = (np.zeros(n_s, dtype=np.int64) for _ in range(5))
    for s in range(n_s):
        w0[s] = nxt
        nxt += len(level_rtt[s])
    for s, n in enumerate(counts):
        u0[s] = nxt
        nxt += n + 1
        l0[s] = nxt
        nxt += n
        e0[s] = nxt
        nxt += n
        t0[s] = nxt
        nxt += n
    demand = problem.demand_rps.astype(float)
    segments = []
    for s, count in enumerate(counts):
        origins = np.flatnonzero(allowed[:, s])
        max_load = float(demand[origins].sum())
        cmax = site_capacity_rps(problem, s, 0.0, max_load)
        # Shares at or below SHARE_EPS are not "routed": the SLO check ignores them, so a fully
        # awake site may carry up to that much whatever its tail (kept inside the model).
        cmax[-1] = max(cmax[-1], min(SHARE_EPS * max_load, max_load))
        per_site = []
        for n in range(1, count + 1):
            top = float(cmax[n])
            if top > 0:
                points, energy, tail, mean, _ = _segment_curves(problem, s, n, top)
                lo, hi = points[:-1], points[1:]
                lines = (_lines(points, energy), _lines(points, tail), _lines(points, mean))
            else:
                lo = hi = np.zeros(0)
                lines = (np.zeros((0, 2)),) * 3
            g = len(lo)
            per_site.append(_Segments(lo, hi, *lines, z0=nxt, lam0=nxt + g, tau0=nxt + 2 * g))
            nxt += 3 * g
        segments.append(tuple(per_site))
    return _Layout(n_o, n_s, counts, allowed, level, tuple(level_rtt), w0, u0, l0, e0, t0,
                   tuple(segments), nxt)


class _Rows:
    """Sparse constraint rows lo <= A v <= hi, collected then stacked."""

    def __init__(self) -> None:
        self.r: list[int] = []
        self.c: list[int] = []
        self.v: list[float] = []
        self.lo: list[float] = []
        self.hi: list[float] = []

    def add(self, cols: list[int] | np.ndarray, vals: list[float] | np.ndarray,
            lo: float, hi: float) -> int:
        row = len(self.lo)
        self.r.extend([row] * len(cols))
        self.c.extend(int(c) for c in cols)
        self.v.extend(float(v) for v in vals)
        self.lo.append(lo)
        self.hi.append(hi)
        return row

    def matrix(self, n_var: int) -> csr_matrix:
        return coo_matrix((self.v, (self.r, self.c)), shape=(len(self.lo), n_var)).tocsr()


def site_capacity_rps(problem: IntervalProblem, s: int, rtt_s: float,
                      max_load_rps: float) -> np.ndarray:
    """[N + 1] most load site ``s`` can carry under a feasible plan with ``n = 0..N`` replicas
    awake when the longest round trip routed there is ``rtt_s``.

    ``n < N``: the sizing table (the rule wakes more replicas beyond it). ``n = N``: also any
    load whose interpolated tail with all replicas awake still meets the SLO after ``rtt_s``
    (a plan past the table keeps all awake and is judged by the tail itself), capped at
    ``max_load_rps`` (all demand that may go there).
    """
    table = problem.tables[s]
    k = int(problem.target_index(np.array([rtt_s]))[0])
    cap = np.zeros(table.installed + 1)
    cap[1:] = np.minimum(problem.slo_capacity_rps[s, k, : table.installed], max_load_rps)
    budget = problem.planning_slo_ttft_s - rtt_s
    grid = table.load_rps_per_replica
    tail = table.ttft_tail_s[-1]
    if tail[-1] <= budget:  # clamped past the grid: any load at all meets the SLO
        per_replica = np.inf
    else:
        # Largest per-replica load whose interpolated tail meets the budget (the tail need not
        # be monotone, so every segment is checked).
        per_replica = grid[0] if tail[0] <= budget else 0.0
        for g in range(len(grid) - 1):
            a, b = tail[g], tail[g + 1]
            if b <= budget:
                per_replica = grid[g + 1]
            elif a <= budget:
                per_replica = grid[g] + (grid[g + 1] - grid[g]) * (budget - a) / (b - a)
    cap[-1] = max(cap[-1], min(per_replica * table.installed, max_load_rps))
    return cap


def exact_capacity_rps(problem: IntervalProblem, s: int, n: int, worst_rtt_s: float) -> float:
    """Load site ``s`` may carry with ``n`` awake and the worst routed round trip
    ``worst_rtt_s`` such that ``evaluate_plans`` finds it within the SLO (for a plan).

    The sizing table's capacity; with every replica awake also the load up to which the
    interpolated tail stays within the budget all the way (the leading run, not any load that
    happens to meet it).
    """
    if n == 0:
        return 0.0
    table = problem.tables[s]
    k = int(problem.target_index(np.array([worst_rtt_s]))[0])
    cap = float(problem.slo_capacity_rps[s, k, n - 1])
    if n < table.installed:
        return cap
    budget = problem.planning_slo_ttft_s - worst_rtt_s
    grid, tail = table.load_rps_per_replica, table.ttft_tail_s[-1]
    if tail[0] > budget:
        return cap
    per_replica = float(grid[-1]) if (tail <= budget).all() else 0.0
    if (tail <= budget).all():
        return float(problem.demand_rps.sum())  # clamped past the grid: the tail stays put
    for g in range(len(grid) - 1):
        a, b = tail[g], tail[g + 1]
        if b <= budget:
            per_replica = float(grid[g + 1])
            continue
        per_replica = float(grid[g] + (grid[g + 1] - grid[g]) * (budget - a) / (b - a))
        break
    return max(cap, per_replica * n)


@dataclass(frozen=True, slots=True)
class _Solved:
    bound: float  # proven lower bound (-inf: none; +inf: infeasible)
    value: float  # incumbent's objective (nan if none)
    x: np.ndarray | None
    status: int  # as scipy.optimize.milp: 0 optimal, 1 limit reached, 2 infeasible, 4 other
    message: str


_BANNER_SILENCED = False


def silent_highs() -> Any:
    """A HiGHS instance that prints nothing. HiGHS writes its banner straight to the process's
    standard output (file descriptor 1) when its first instance is built, before any option can
    turn output off; for that one construction fd 1 points at /dev/null, so the banner does not
    land in `slit run`'s table or a plan written to stdout."""
    global _BANNER_SILENCED
    import highspy

    if _BANNER_SILENCED:
        solver = highspy.Highs()
    else:
        sys.stdout.flush()
        saved = os.dup(1)
        try:
            with open(os.devnull, "wb") as null:
                os.dup2(null.fileno(), 1)
                solver = highspy.Highs()
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        _BANNER_SILENCED = True
    solver.setOptionValue("output_flag", False)
    return solver


def highs_lp(c: np.ndarray, a: csr_matrix, row_lo: np.ndarray, row_hi: np.ndarray,
             col_lo: np.ndarray, col_hi: np.ndarray, integrality: np.ndarray | None) -> Any:
    """``min c x`` s.t. ``row_lo <= a x <= row_hi``, ``col_lo <= x <= col_hi`` as a
    ``highspy.HighsLp`` (infinite bounds as HiGHS's infinity); ``integrality``: a flag per column
    (None: an LP)."""
    import highspy

    csc = a.tocsc()
    inf = highspy.kHighsInf
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = int(csc.shape[1]), int(csc.shape[0])
    lp.col_cost_ = np.asarray(c, dtype=float)
    lp.col_lower_ = np.where(np.isfinite(col_lo), col_lo, -inf)
    lp.col_upper_ = np.where(np.isfinite(col_hi), col_hi, inf)
    lp.row_lower_ = np.where(np.isfinite(row_lo), row_lo, -inf)
    lp.row_upper_ = np.where(np.isfinite(row_hi), row_hi, inf)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = csc.indptr
    lp.a_matrix_.index_ = csc.indices
    lp.a_matrix_.value_ = csc.data
    lp.a_matrix_.num_col_, lp.a_matrix_.num_row_ = lp.num_col_, lp.num_row_
    if integrality is not None:
        lp.integrality_ = [highspy.HighsVarType.kInteger if v else
                           highspy.HighsVarType.kContinuous for v in integrality]
    return lp


def _highs(c: np.ndarray, a: csr_matrix, row_lo: np.ndarray, row_hi: np.ndarray,
           col_lo: np.ndarray, col_hi: np.ndarray, integrality: np.ndarray,
           time_limit_s: float, node_limit: int | None, rel_gap: float | None,
           start: np.ndarray | None) -> _Solved:
    """One (MI)LP through ``highspy``, HiGHS's own API: with its presolve (about halves these
    solves; scipy 1.17's build of it crashes on some of them), one thread, a fixed seed."""
    import highspy

    is_mip = bool(np.any(integrality))
    lp = highs_lp(c, a, row_lo, row_hi, col_lo, col_hi, integrality if is_mip else None)
    solver = silent_highs()
    solver.setOptionValue("time_limit", float(time_limit_s))
    solver.setOptionValue("threads", 1)
    solver.setOptionValue("random_seed", 0)
    if node_limit is not None:
        solver.setOptionValue("mip_max_nodes", int(node_limit))
    if rel_gap is not None:
        solver.setOptionValue("mip_rel_gap", float(rel_gap))
    solver.passModel(lp)
    if start is not None:
        solver.setSolution(len(start), np.arange(len(start), dtype=np.int32),
                           np.asarray(start, dtype=float))
    solver.run()
    status = solver.getModelStatus()
    info = solver.getInfo()
    ms = highspy.HighsModelStatus
    message = solver.modelStatusToString(status)
    if status == ms.kInfeasible:
        return _Solved(np.inf, float("nan"), None, 2, message)
    has_x = info.primal_solution_status == 2  # kSolutionStatusFeasible
    x = np.array(solver.getSolution().col_value) if has_x else None
    value = float(info.objective_function_value) if has_x else float("nan")
    bound = float(info.mip_dual_bound) if is_mip else (value if status == ms.kOptimal
                                                         else -np.inf)
    if not np.isfinite(bound):
        bound = -np.inf
    if status == ms.kOptimal and has_x:
        # Proven optimal within HiGHS's relative gap: its dual bound is the one to use.
        bound = min(bound, value) if np.isfinite(bound) else value
        return _Solved(bound, value, x, 0, message)
    limited = status in (ms.kTimeLimit, ms.kIterationLimit, ms.kSolutionLimit, ms.kInterrupt)
    return _Solved(bound, value, x, 1 if limited else 4, message)


@dataclass
class IntervalMilp:
    """The MILP of one interval problem, built once and solved for many objectives."""

    problem: IntervalProblem
    layout: _Layout
    objective_rows: np.ndarray  # [4, n_var] each objective as a linear function of the variables
    constraints: csr_matrix
    lo: np.ndarray
    hi: np.ndarray
    bounds: Bounds
    integrality: np.ndarray
    capacity_rows: np.ndarray  # rows bounding a site's load from above (kept inside for a plan)
    floor_rows: np.ndarray  # "fewest replicas" rows bounding it from below (likewise)
    floor_u: np.ndarray  # the u[s, n] column each floor row is conditioned on
    slo_rows: np.ndarray  # the SLO rows (kept inside by a margin in s)
    slo_sites: np.ndarray  # the site of each SLO row
    share_rows: np.ndarray  # rows x <= SHARE_EPS + (1 - SHARE_EPS) w

    @classmethod
    def build(cls, problem: IntervalProblem) -> IntervalMilp:
        lay = _layout(problem)
        n_o, n_s = lay.n_o, lay.n_s
        allowed = lay.allowed
        demand = problem.demand_rps.astype(float)
        slo = float(problem.planning_slo_ttft_s)
        lb = np.zeros(lay.n_var)
        ub = np.full(lay.n_var, np.inf)
        integrality = np.zeros(lay.n_var)
        ub[: n_o * n_s] = allowed.ravel().astype(float)
        w_all = np.arange(int(lay.w0[0]), int(lay.u0[0]))
        ub[w_all] = 1.0
        integrality[w_all] = 1
        per_kwh = np.stack([problem.carbon_kg_per_kwh_it, problem.water_l_per_kwh_it,
                            problem.cost_usd_per_kwh_it])
        rows = _Rows()
        capacity_rows: list[int] = []
        floor_rows: list[int] = []
        floor_u: list[int] = []
        slo_rows: list[int] = []
        slo_sites: list[int] = []
        share_rows: list[int] = []
        for o in range(n_o):
            rows.add([lay.x(o, s) for s in range(n_s)], [1.0] * n_s, 1.0, 1.0)
            for s in np.flatnonzero(allowed[o]).tolist():
                share_rows.append(rows.add([lay.x(o, s), lay.w(s, int(lay.level[o, s]))],
                                           [1.0, -(1.0 - SHARE_EPS)], -np.inf, SHARE_EPS))
        objective = np.zeros((len(OBJECTIVES), lay.n_var))
        total_demand = max(float(demand.sum()), 1e-12)
        for o in range(n_o):
            for s in range(n_s):
                objective[0, lay.x(o, s)] = demand[o] * problem.rtt_s[o, s] / total_demand
        for s, n_max in enumerate(lay.counts):
            u = lay.u0[s] + np.arange(n_max + 1)
            ll = lay.l0[s] + np.arange(n_max)
            ee = lay.e0[s] + np.arange(n_max)
            tt = lay.t0[s] + np.arange(n_max)
            integrality[u] = 1
            ub[u] = 1.0
            lb[ee] = -np.inf  # defined by equality rows
            lb[tt] = -np.inf
            rows.add(u, np.ones(n_max + 1), 1.0, 1.0)
            origins = np.flatnonzero(allowed[:, s])
            rows.add(np.concatenate([[lay.x(int(o), s) for o in origins], ll]),
                     np.concatenate([demand[origins], -np.ones(n_max)]), 0.0, 0.0)
            max_load = float(demand[origins].sum())
            rtts = lay.level_rtt_s[s]
            w_cols = lay.w0[s] + np.arange(len(rtts))
            if len(rtts):
                # Routed -> awake (a routed share is load, and a loaded site wakes a replica):
                # with x <= SHARE_EPS + w this is the facility-location cut x[o, s] <= open[s]
                # that keeps the LP relaxation from opening a site in proportion to its load.
                rows.add([int(w_cols[0]), int(u[0])], [1.0, 1.0], -np.inf, 1.0)
            slo_cols: list[np.ndarray] = []
            slo_vals: list[np.ndarray] = []
            max_tail = 0.0
            for n in range(1, n_max + 1):
                seg = lay.segments[s][n - 1]
                g = len(seg.lo)
                z = seg.z0 + np.arange(g)
                lam = seg.lam0 + np.arange(g)
                tau = seg.tau0 + np.arange(g)
                integrality[z] = 1
                ub[z] = 1.0
                lb[tau] = -np.inf
                rows.add(np.concatenate([z, [u[n]]]), np.concatenate([np.ones(g), [-1.0]]),
                         0.0, 0.0)
                rows.add(np.concatenate([lam, [ll[n - 1]]]),
                         np.concatenate([np.ones(g), [-1.0]]), 0.0, 0.0)
                for i in range(g):
                    rows.add([lam[i], z[i]], [1.0, -seg.lo[i]], 0.0, np.inf)
                    capacity_rows.append(rows.add([lam[i], z[i]], [1.0, -seg.hi[i]],
                                                  -np.inf, 0.0))
                    for a, b in _ttft_tangents(float(seg.lo[i]), float(seg.hi[i]),
                                               (float(seg.mean[i, 0]), float(seg.mean[i, 1]))):
                        rows.add([tau[i], z[i], lam[i]], [1.0, -a, -b], 0.0, np.inf)
                rows.add(np.concatenate([[ee[n - 1]], z, lam]),
                         np.concatenate([[1.0], -seg.energy[:, 0], -seg.energy[:, 1]]), 0.0, 0.0)
                rows.add(np.concatenate([[tt[n - 1]], tau]),
                         np.concatenate([[1.0], -np.ones(g)]), 0.0, 0.0)
                slo_cols += [z, lam]
                slo_vals += [seg.tail[:, 0], seg.tail[:, 1]]
                if g:
                    max_tail = max(max_tail, float((seg.tail[:, 0] + seg.tail[:, 1]
                                                    * np.maximum(seg.lo, seg.hi)).max()),
                                   float((seg.tail[:, 0] + seg.tail[:, 1] * seg.lo).max()))
                if n >= 2 and len(rtts):
                    # Fewest replicas: n awake only if n - 1 cannot carry the load at the
                    # longest routed round trip (the sizing rule). With c_j the (n - 1)-replica
                    # capacity at level j (non-increasing in j), the staircase w gives
                    # c(worst) = c_0 w_0 + sum_{j >= 1} (c_j - c_{j-1}) w_j.
                    k = problem.target_index(rtts)
                    c = np.minimum(problem.slo_capacity_rps[s, k, n - 2], max_load)
                    coef = np.concatenate([[c[0]], np.diff(c)])
                    floor_u.append(int(u[n]))
                    floor_rows.append(rows.add(
                        np.concatenate([[ll[n - 1]], w_cols, [u[n]]]),
                        np.concatenate([[1.0], -coef, [-c[0]]]), -c[0], np.inf))
            # The SLO: tail + longest routed round trip <= SLO, when anything is routed. In
            # perspective form (SLO x awake on the right) when a site carrying only unrouted
            # shares (at most SHARE_EPS of each origin, which the check ignores) meets the SLO
            # anyway, which holds unless even its idle tail misses it; else with a big-M on
            # w[s, 0].
            steps = np.diff(np.concatenate([[0.0], rtts]))
            unrouted_rps = SHARE_EPS * max_load
            idle_ok = all(
                float((seg.tail[:, 0] + seg.tail[:, 1] * np.minimum(seg.hi, unrouted_rps))
                      [seg.lo <= unrouted_rps].max(initial=-np.inf)) <= slo
                for seg in lay.segments[s])
            if slo_cols and len(rtts):
                slo_sites.append(s)
            if slo_cols and len(rtts) and idle_ok:
                slo_rows.append(rows.add(np.concatenate(slo_cols + [w_cols, u[1:]]),
                                         np.concatenate(slo_vals + [steps,
                                                                    np.full(n_max, -slo)]),
                                         -np.inf, 0.0))
            elif slo_cols and len(rtts):
                big_m = max(max_tail + float(rtts.max()) - slo, 0.0)
                coef_w = steps.copy()
                coef_w[0] += big_m
                slo_rows.append(rows.add(np.concatenate(slo_cols + [w_cols]),
                                         np.concatenate(slo_vals + [coef_w]),
                                         -np.inf, slo + big_m))
            if len(rtts):
                # The full fleet's capacity at the longest routed round trip, as a staircase
                # in w (no big-M; exact for integer w): load <= cap_N(worst) + unrouted shares.
                cap_n = np.array([site_capacity_rps(problem, s, float(r), max_load)[-1]
                                  for r in rtts])
                rows.add(np.concatenate([ll, w_cols]),
                         np.concatenate([np.ones(n_max), -np.concatenate([[cap_n[0]],
                                                                          np.diff(cap_n)])]),
                         -np.inf, unrouted_rps)
            cmax = site_capacity_rps(problem, s, 0.0, max_load)
            cmax[-1] = max(cmax[-1], min(SHARE_EPS * max_load, max_load))
            for j, rtt in enumerate(rtts):
                w = lay.w(s, j)
                if j + 1 < len(rtts):  # a farther level routed implies this one
                    rows.add([lay.w(s, j + 1), w], [1.0, -1.0], -np.inf, 0.0)
                cap = site_capacity_rps(problem, s, float(rtt), max_load)
                big = max(float((cmax - cap).max()), 0.0)
                if big > 0:
                    # load - sum_n cap_n u_n + M w <= M: binding only when level j (or
                    # farther) is routed here.
                    capacity_rows.append(rows.add(np.concatenate([ll, u, [w]]),
                                                  np.concatenate([np.ones(n_max), -cap, [big]]),
                                                  -np.inf, big))
                # Flow from this level or farther needs w: at most SHARE_EPS of each such
                # origin's demand otherwise (a valid cut that tightens the LP relaxation).
                far = origins[lay.level[origins, s] >= j]
                reach = min(float(demand[far].sum()), float(cmax.max()))
                rows.add(np.concatenate([[lay.x(int(o), s) for o in far], [w]]),
                         np.concatenate([demand[far], [-reach]]), -np.inf,
                         SHARE_EPS * float(demand[far].sum()))
            standby_kwh = (problem.tables[s].standby_w_per_replica * problem.interval_s
                           * KWH_PER_WS)
            energy_cols = np.concatenate([ee, u])
            energy_vals = np.concatenate([np.ones(n_max),
                                          standby_kwh * (n_max - np.arange(n_max + 1))])
            for k3 in range(3):
                objective[k3 + 1, energy_cols] += per_kwh[k3, s] * energy_vals
            objective[0, tt] = 1.0 / total_demand
        return cls(problem, lay, objective, rows.matrix(lay.n_var), np.array(rows.lo),
                   np.array(rows.hi), Bounds(lb, ub), integrality, np.array(capacity_rows),
                   np.array(floor_rows, dtype=np.int64), np.array(floor_u, dtype=np.int64),
                   np.array(slo_rows, dtype=np.int64),
                   np.array(slo_sites, dtype=np.int64), np.array(share_rows))

    @property
    def size(self) -> dict[str, int]:
        """Variables (of which binary) and constraint rows."""
        return {"variables": self.layout.n_var, "binaries": int(self.integrality.sum()),
                "constraints": int(self.constraints.shape[0])}

    def describe(self, routing: np.ndarray) -> np.ndarray:
        """The MILP point of a plan exactly as ``evaluate_plans`` judges it: its shares, routed
        levels, awake counts by the sizing rule, loads on their table segments, energy and
        load x mean TTFT. For a plan ``evaluate_plans`` finds feasible it satisfies every row,
        and ``objective_rows`` there are at most the plan's objectives (``tests/test_milp.py``
        checks both: the relaxation argument)."""
        p, lay = self.problem, self.layout
        ev = evaluate_plans(p, routing)
        v = np.zeros(lay.n_var)
        n_pairs = p.n_origins * p.n_sites
        v[:n_pairs] = np.asarray(routing).ravel()
        v[lay.w0[0]: lay.u0[0]] = lay.levels_routed(np.asarray(routing))
        for s, table in enumerate(p.tables):
            awake = int(ev.awake[0, s])
            v[lay.u0[s] + awake] = 1.0
            if not awake:
                continue
            load = float(ev.load_rps[0, s])
            mean, _, power = table.lookup(np.array([load]), np.array([awake]))
            awake_w = power[0] - (table.installed - awake) * table.standby_w_per_replica
            v[lay.l0[s] + awake - 1] = load
            v[lay.e0[s] + awake - 1] = awake_w * p.interval_s * KWH_PER_WS
            v[lay.t0[s] + awake - 1] = load * mean[0]
            seg = lay.segments[s][awake - 1]
            g = seg.find(load)
            if g >= 0:  # else the load is past what the model allows: rows show it
                v[seg.z0 + g] = 1.0
                v[seg.lam0 + g] = load
                v[seg.tau0 + g] = load * mean[0]
        return v

    def solve(self, weights: np.ndarray, caps: np.ndarray | None = None,
              time_limit_s: float = DEFAULT_TIME_LIMIT_S, node_limit: int | None = None,
              rel_gap: float | None = None, start: np.ndarray | None = None) -> MilpResult:
        """Minimise ``sum_k weights[k] f_k`` with ``f_k <= caps[k]`` for finite caps.

        ``node_limit`` and ``rel_gap`` (HiGHS's ``mip_rel_gap``; its own default when None) stop
        the branch and bound on work done; the bound returned is still the solver's proven one.
        ``start``: a routing ([O, S]) whose description (``describe``) is HiGHS's first
        incumbent if it is feasible in the model (prunes; the bound does not depend on it)."""
        weights = np.asarray(weights, dtype=float)
        c = weights @ self.objective_rows
        a, lo, hi = self.constraints, self.lo, self.hi
        if caps is not None:
            finite = np.isfinite(caps)
            if finite.any():
                a = vstack([a, csr_matrix(self.objective_rows[finite])], format="csr")
                lo = np.concatenate([lo, np.full(int(finite.sum()), -np.inf)])
                hi = np.concatenate([hi, np.asarray(caps, dtype=float)[finite]])
        started = time.perf_counter()
        solved = self._integral_relaxation(c, a, lo, hi, time_limit_s)
        if solved is None:
            solved = _highs(c, a, lo, hi, self.bounds.lb, self.bounds.ub, self.integrality,
                            time_limit_s, node_limit, rel_gap,
                            None if start is None else self.describe(start))
        solve_s = time.perf_counter() - started
        routing = None
        if solved.x is not None:
            routing = self._plan(solved.x, weights, caps)
        return MilpResult(solved.bound, solved.value, routing, solve_s, solved.status,
                          solved.message)

    def _integral_relaxation(self, c: np.ndarray, a: csr_matrix, lo: np.ndarray,
                             hi: np.ndarray, time_limit_s: float) -> _Solved | None:
        """The LP relaxation's optimum when every binary in it is integral (to
        ``INTEGRAL_TOLERANCE``), else None.

        Such a vertex is a point of the MILP whose objective is the relaxation's, a lower bound
        on the MILP's: it is the MILP's optimum, proven, and no branch and bound can find a
        better plan. On the default day the small model's intervals are of this kind (their
        relaxation is integral; HiGHS's MIP presolve spent most of their solve probing to find
        that out), the large model's are not: for them the MIP runs as before, on the same
        model with the same options (same plans), after this one LP (docs/scheduler.md)."""
        solved = _highs(c, a, lo, hi, self.bounds.lb, self.bounds.ub,
                        np.zeros_like(self.integrality), time_limit_s, None, None, None)
        if solved.status != 0 or solved.x is None:
            return None
        x = solved.x.copy()
        ints = self.integrality == 1
        if np.abs(x[ints] - np.round(x[ints])).max(initial=0.0) > INTEGRAL_TOLERANCE:
            return None
        x[ints] = np.round(x[ints])
        return _Solved(solved.value, solved.value, x, 0, "Optimal (integral LP relaxation)")

    def _plan(self, v: np.ndarray, weights: np.ndarray, caps: np.ndarray | None) -> np.ndarray:
        """The MILP's routing, made feasible under ``evaluate_plans`` if it is not already.

        Candidates: the polished LP re-solves (``_polish``, at each of ``PLAN_MARGINS``) and the
        MILP's solution itself, each as is and with the shares the MILP left "unrouted" (at most
        SHARE_EPS) dropped, each also repaired; the best by the objective among those that meet
        the SLO (and the caps) is returned (if none does, the least violating).
        """
        p = self.problem
        n = p.n_origins * p.n_sites
        candidates = [v]
        for margin in PLAN_MARGINS[::-1]:
            polished = self._polish(v, weights, caps, margin)
            if polished is not None:
                candidates.insert(0, polished)
        plans_list = []
        lay = self.layout
        for cand in candidates:
            x = cand[:n].reshape(p.n_origins, p.n_sites)
            # Solver noise (shares of ~1e-10) would wake a replica at a site the MILP sleeps.
            asleep = cand[lay.u0] > 0.5
            x = np.where(asleep[None, :] | (x < NOISE_SHARE), 0.0, x)
            cleaned = normalise_rows(p, np.where(x > SHARE_EPS, x, 0.0))
            raw = normalise_rows(p, x)
            plans_list += [raw, cleaned, repair(p, raw), repair(p, cleaned)]
        plans = np.stack(plans_list)
        ev = evaluate_plans(p, plans)
        score = ev.objectives @ weights
        if caps is not None:
            over = (ev.objectives > np.asarray(caps)[None] * (1 + 1e-9)).any(axis=1)
            score = np.where(over, score + 1e6 * abs(score).max() + 1e6, score)
        feasible = ev.slo_violation_s <= 0
        if feasible.any():
            return plans[int(np.argmin(np.where(feasible, score, np.inf)))]
        return plans[int(np.argmin(ev.slo_violation_s))]

    def _polish(self, v: np.ndarray, weights: np.ndarray, caps: np.ndarray | None,
                margin: float) -> np.ndarray | None:
        """Re-solve the LP with the MILP's binaries fixed and every constraint a hair inside
        (``margin``: relative for loads and shares, in s for the SLO row), so that the plan
        does not miss the SLO, or size a different fleet, by the solver's feasibility tolerance
        when ``evaluate_plans`` judges it. The routed pairs stay routed (above SHARE_EPS) and the
        others unrouted, so the longest routed round trip, hence the sizing, is the MILP's."""
        ints = self.integrality == 1
        v = v.copy()
        p, lay = self.problem, self.layout
        n = p.n_origins * p.n_sites
        # Levels are re-marked from the flows: one the MILP marked routed but sent (almost)
        # nothing to would otherwise stand for a longer round trip than the plan has.
        x = v[:n].reshape(lay.n_o, lay.n_s)
        routed_above = SHARE_EPS * (1 + 1e-4)  # at SHARE_EPS the MILP rides free, by design
        routed = x > routed_above
        v[lay.w0[0]: lay.u0[0]] = lay.levels_routed(x, routed_above)
        fixed = np.round(v[ints])
        lb, ub = self.bounds.lb.copy(), self.bounds.ub.copy()
        lb[ints] = ub[ints] = fixed
        allowed_ub = ub[:n].reshape(routed.shape)
        ub[:n] = np.where(routed, allowed_ub,
                          np.minimum(allowed_ub, SHARE_EPS * (1 - margin))).ravel()
        lb[:n] = np.where(routed, SHARE_EPS * (1 + margin), 0.0).ravel()
        lo, hi = self.lo.copy(), self.hi.copy()
        # Rows whose binaries are all off bound nothing (e.g. a segment not chosen): no margin.
        size = abs(self.constraints[:, ints]) @ fixed
        cap_rows = self.capacity_rows[size[self.capacity_rows] > 0]
        hi[cap_rows] -= margin * size[cap_rows]
        # A floor row binds only with its count awake (else it is slack by construction).
        floor_rows = self.floor_rows[np.round(v[self.floor_u]) == 1]
        lo[floor_rows] += margin * size[floor_rows]
        awake = np.array([v[lay.u0[s]] < 0.5 for s in range(lay.n_s)])
        slo_rows = self.slo_rows[awake[self.slo_sites]]
        hi[slo_rows] -= margin
        a = self.constraints
        if caps is not None and np.isfinite(caps).any():
            finite = np.isfinite(caps)
            a = vstack([a, csr_matrix(self.objective_rows[finite])], format="csr")
            lo = np.concatenate([lo, np.full(int(finite.sum()), -np.inf)])
            hi = np.concatenate([hi, np.asarray(caps, dtype=float)[finite] * (1 + 1e-9)])
        solved = _highs(weights @ self.objective_rows, a, lo, hi, lb, ub,
                        np.zeros_like(self.integrality), 10.0, None, None, None)
        return solved.x

    def solve_weighted(self, weights: np.ndarray, scales: np.ndarray,
                       time_limit_s: float = DEFAULT_TIME_LIMIT_S, node_limit: int | None = None,
                       rel_gap: float | None = None) -> MilpResult:
        """Bound on ``sum_k weights[k] f_k / scales[k]`` over all feasible plans."""
        return self.solve(np.asarray(weights) / np.asarray(scales), time_limit_s=time_limit_s,
                          node_limit=node_limit, rel_gap=rel_gap)

    def solve_epsilon(self, minimise: int, caps: np.ndarray,
                      time_limit_s: float = DEFAULT_TIME_LIMIT_S, node_limit: int | None = None,
                      rel_gap: float | None = None) -> MilpResult:
        """Bound on objective ``minimise`` over feasible plans with ``f_k <= caps[k]``."""
        weights = np.zeros(len(OBJECTIVES))
        weights[minimise] = 1.0
        return self.solve(weights, caps=np.asarray(caps, dtype=float), time_limit_s=time_limit_s,
                          node_limit=node_limit, rel_gap=rel_gap)


def milp_plan(problem: IntervalProblem, preference: Preference | None = None,
              time_limit_s: float = POLICY_SAFETY_TIME_LIMIT_S,
              node_limit: int | None = POLICY_NODE_LIMIT,
              rel_gap: float | None = POLICY_REL_GAP) -> np.ndarray:
    """The ``milp`` policy: the MILP's plan for the preference (``[O, S]`` routing).

    ``weights`` (and ``knee``, scored by the default weights like SLIT's own choice) minimise
    the weighted sum with the preference's scales; ``cap`` minimises its objective with mean
    TTFT at most the cap. If the solver finds no plan within the time limit, the weighted
    greedy's plan is returned, so the policy always routes. The solve stops on ``node_limit``
    and ``rel_gap`` (deterministic); ``time_limit_s`` is a safety net only.
    """
    preference = preference or Preference()
    model = IntervalMilp.build(problem)
    if preference.mode == "cap":
        caps = np.full(len(OBJECTIVES), np.inf)
        if preference.ttft_cap_s is not None:
            caps[0] = preference.ttft_cap_s
        result = model.solve_epsilon(OBJECTIVES.index(preference.minimise), caps, time_limit_s,
                                     node_limit, rel_gap)
        weights = np.zeros(len(OBJECTIVES))
        weights[OBJECTIVES.index(preference.minimise)] = 1.0
    else:
        weights = np.asarray(preference.weights if preference.mode == "weights"
                             else Preference().weights, dtype=float)
        result = model.solve_weighted(weights, objective_scales(problem), time_limit_s,
                                      node_limit, rel_gap)
    if result.routing is None:
        return weighted_sum_greedy(problem, weights)
    return result.routing
