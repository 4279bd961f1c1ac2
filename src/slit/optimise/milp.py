"""The interval problem as a mixed-integer linear programme: a proven lower bound, and a plan.

The model describes the SAME problem ``evaluate_plans`` judges (see ``problem.py``), relaxed only
where it must be linear, and every relaxation enlarges the feasible set or lowers a cost. So every
plan that respects the residency pins (``allowed``) and meets the SLO under ``evaluate_plans``
maps to a feasible MILP point whose MILP objectives equal (or, where envelopes are used, do not
exceed) its true objectives: the MILP optimum, and the solver's dual bound on it, is a lower
bound for every plan SLIT or a baseline can produce, for any non-negative weighting and any
epsilon-constraint problem.

Variables (``o`` origin, ``s`` site, ``n`` = 1..installed awake replicas):

- ``x[o, s]`` in [0, 1]: routed share (0 on forbidden pairs); rows sum to 1.
- ``w[s, j]`` binary: "an origin of round-trip level ``j`` or a farther one is routed to ``s``"
  in the SLO check's sense (share above ``SHARE_EPS``). A level groups the origins whose round
  trip to ``s`` leaves the same SLO-budget grid index (``IntervalProblem.target_index``), the
  only way the sizing table sees the round trip; ``x[o, s] <= SHARE_EPS + (1 - SHARE_EPS)
  w[s, level(o, s)]`` and ``w[s, j + 1] <= w[s, j]``.
- ``u[s, n]`` binary, one per count ``n = 0..installed``, exactly one set: awake replicas.
- ``l[s, n]`` >= 0: the site's load if ``n`` replicas are awake (0 otherwise), ``sum_n l = load``.
- ``e[s, n]``: IT energy (kWh) of the awake replicas; ``t[s, n]``: load x site mean TTFT.

Constraints:

- Capacity, per site and level: ``load_s <= sum_n u[s, n] cap_s(n, j)`` when ``w[s, j]``
  (big-M otherwise), with ``cap_s(n, j)`` the sizing table's ``slo_capacity_rps`` for the
  level's grid index; with all replicas awake also any load whose interpolated tail still meets
  the SLO after the level's shortest round trip (a plan past the sizing table keeps every
  replica awake and is judged by the tail itself). The farthest routed level binds, as the
  longest routed round trip does in ``evaluate_plans``. A cut ties flow from level ``j`` or
  farther to ``w[s, j]``.
- ``e[s, n] >= `` the lower convex envelope of ``n x power(load / n)`` (the table's piecewise
  linear interpolation, clamped past the grid) on [0, cap_s(n, 0)]: exact at the table's
  breakpoints, below it between them. (If a per-kWh coefficient is negative, e.g. a negative
  price, the upper concave envelope bounds ``e`` from above too.)
- ``t[s, n] >= `` the lower convex envelope of ``load x mean_ttft(load / n)``, a piecewise
  quadratic; sampled on each grid segment and lowered by the chord's largest error there, so
  the envelope stays below the function.

What is relaxed: the sizing rule's "fewest replicas" (the MILP may keep more awake than the rule
would; it never needs fewer, since ``u`` must carry the load within capacity); the nonconvex
energy and TTFT curves (replaced by their lower convex envelopes); for a fully awake site, the
tail budget taken at the level's shortest round trip and any load meeting it, not only the
leading run. Standby power of sleeping replicas and the round-trip part of TTFT are exact. The
MILP's own plan is therefore re-solved (``_polish``: binaries fixed, exact capacities) before
``evaluate_plans`` judges it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, OptimizeResult, milp
from scipy.sparse import coo_matrix, csr_matrix

from slit.optimise.baselines import objective_scales, weighted_sum_greedy
from slit.optimise.preference import Preference
from slit.optimise.problem import OBJECTIVES, SHARE_EPS, IntervalProblem, evaluate_plans
from slit.optimise.routing import normalise_rows, repair

# HiGHS's MIP presolve (scipy 1.17's build) crashes the process with a segmentation fault on some
# of these models (in transformNewIntegerFeasibleSolution); without presolve it has not, and the
# models are small enough that the solves stay fast.
HIGHS_PRESOLVE = False


def proven_bound(res: OptimizeResult) -> float:
    """The lower bound a HiGHS result proves: +inf when infeasible, -inf when it proves nothing,
    else its dual bound (capped by the optimum when it reports one)."""
    if res.status == 2:
        return np.inf
    dual = getattr(res, "mip_dual_bound", None)
    bound = -np.inf if dual is None or not np.isfinite(dual) else float(dual)
    if res.status == 0 and res.fun is not None:
        # Proven optimal within HiGHS's relative gap: its dual bound is the one to use.
        bound = min(bound, float(res.fun)) if np.isfinite(bound) else float(res.fun)
    return bound

KWH_PER_WS = 1.0 / 3.6e6
TTFT_SAMPLES_PER_SEGMENT = 8
MAX_ENVELOPE_LINES = 40  # per (site, awake count); fewer lines only weaken the envelope
ENVELOPE_TOLERANCE = 1e-4  # relative shortfall below the hull at which no more lines are kept
NOISE_SHARE = 1e-9  # shares below this in a solver's solution are its tolerance, not routing
PLAN_CAPACITY_MARGIN = 1e-6  # relative headroom the MILP's plan keeps below each capacity
DEFAULT_TIME_LIMIT_S = 10.0
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
    problem); ``routing`` the MILP's plan after cleaning/repair, judged by ``evaluate_plans``."""

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
class _Layout:
    n_o: int
    n_s: int
    counts: tuple[int, ...]  # installed per site
    allowed: np.ndarray  # [O, S] pairs the model may route
    level: np.ndarray  # [O, S] round-trip level of each allowed pair at its site (-1 elsewhere)
    level_rtt_s: tuple[np.ndarray, ...]  # per site: shortest allowed round trip of each level
    w0: np.ndarray  # [S] index of w[s, 0]; w[s, j] at w0[s] + j
    u0: np.ndarray  # [S] index of u[s, 0]; u[s, n] at u0[s] + n
    l0: np.ndarray  # [S] index of l[s, 1]; l[s, n] at l0[s] + n - 1 (same for e, t)
    e0: np.ndarray
    t0: np.ndarray
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


def _layout(problem: IntervalProblem) -> _Layout:
    n_o, n_s = problem.n_origins, problem.n_sites
    allowed = problem.allowed.copy()
    # An origin pinned nowhere is sent somewhere by normalise_rows and judged by the SLO check;
    # allow it everywhere so such plans stay inside the model.
    allowed[~allowed.any(axis=1)] = True
    counts = tuple(int(t.installed) for t in problem.tables)
    # Capacity depends on the worst round trip only through its SLO-budget grid index (and, for
    # a fully awake overloaded site, the tail itself): origins sharing the index at a site form
    # one level, ordered nearest first.
    index = problem.target_index(problem.rtt_s)
    level = np.full((n_o, n_s), -1)
    level_rtt = []
    for s in range(n_s):
        origins = np.flatnonzero(allowed[:, s])
        keys = np.unique(index[origins, s])[::-1]
        level[origins, s] = np.searchsorted(-keys, -index[origins, s])
        level_rtt.append(np.array([problem.rtt_s[origins, s][level[origins, s] == j].min()
                                   for j in range(len(keys))]))
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
    return _Layout(n_o, n_s, counts, allowed, level, tuple(level_rtt), w0, u0, l0, e0, t0, nxt)


class _Rows:
    """Sparse constraint rows lo <= A v <= hi, collected then stacked."""

    def __init__(self) -> None:
        self.r: list[int] = []
        self.c: list[int] = []
        self.v: list[float] = []
        self.lo: list[float] = []
        self.hi: list[float] = []

    def add(self, cols: list[int] | np.ndarray, vals: list[float] | np.ndarray,
            lo: float, hi: float) -> None:
        row = len(self.lo)
        self.r.extend([row] * len(cols))
        self.c.extend(int(c) for c in cols)
        self.v.extend(float(v) for v in vals)
        self.lo.append(lo)
        self.hi.append(hi)

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


def _lower_hull(px: np.ndarray, py: np.ndarray) -> list[tuple[float, float]]:
    """Lines ``(a, b)`` (value a + b x) whose maximum is the lower convex hull of the points."""
    order = np.lexsort((py, px))
    pts: list[tuple[float, float]] = []
    for i in order:
        p = (float(px[i]), float(py[i]))
        if pts and p[0] == pts[-1][0]:
            continue  # same x, larger y: not on the lower hull
        while len(pts) >= 2:
            (x1, y1), (x2, y2) = pts[-2], pts[-1]
            if (x2 - x1) * (p[1] - y1) - (y2 - y1) * (p[0] - x1) <= 0:
                pts.pop()
            else:
                break
        pts.append(p)
    if len(pts) == 1:
        return [(pts[0][1], 0.0)]
    lines = []
    for (x1, y1), (x2, y2) in zip(pts[:-1], pts[1:], strict=True):
        b = (y2 - y1) / (x2 - x1)
        lines.append((y1 - b * x1, b))
    if len(lines) > MAX_ENVELOPE_LINES:
        lines = _fewest_lines(lines, np.array([p[0] for p in pts]), np.array([p[1] for p in pts]))
    return lines


def _fewest_lines(lines: list[tuple[float, float]], vx: np.ndarray, vy: np.ndarray
                  ) -> list[tuple[float, float]]:
    """A subset of the hull's edge lines that stays within a small tolerance of the hull.

    Every hull edge supports the hull from below, so any subset of them is still a lower bound
    (a looser one): edges are added greedily where the kept ones fall furthest below the hull,
    until within ``ENVELOPE_TOLERANCE`` of its range or ``MAX_ENVELOPE_LINES`` edges.
    """
    a = np.array([ln[0] for ln in lines])
    b = np.array([ln[1] for ln in lines])
    values = a[:, None] + b[:, None] * vx[None, :]  # [edges, vertices]
    tolerance = ENVELOPE_TOLERANCE * max(float(np.ptp(vy)), float(np.abs(vy).max()), 1e-12)
    keep = [0, len(lines) - 1]
    while len(keep) < MAX_ENVELOPE_LINES:
        shortfall = vy - values[keep].max(axis=0)
        v = int(np.argmax(shortfall))
        if shortfall[v] <= tolerance:
            break
        keep.append(min(v, len(lines) - 1))  # edge v starts at vertex v
    return [lines[i] for i in sorted(set(keep))]


def _breakpoints(grid: np.ndarray, n: int, cmax: float) -> np.ndarray:
    """Site loads where the n-replica interpolation has a kink, within [0, cmax]."""
    loads = n * grid
    inside = loads[loads < cmax]
    return np.append(inside, cmax) if cmax > 0 else np.array([0.0])


def _interp(table_row: np.ndarray, grid: np.ndarray, q: np.ndarray) -> np.ndarray:
    """The table's own interpolation (``SiteServingTable.lookup``), clamped past the grid."""
    pos = np.clip(np.searchsorted(grid, q, side="right") - 1, 0, len(grid) - 2)
    frac = np.clip((q - grid[pos]) / (grid[pos + 1] - grid[pos]), 0.0, 1.0)
    return table_row[pos] * (1.0 - frac) + table_row[pos + 1] * frac


def _energy_lines(problem: IntervalProblem, s: int, n: int, cmax: float, upper: bool
                  ) -> list[tuple[float, float]]:
    """Envelope lines of awake IT energy (kWh over the interval) vs site load, n awake."""
    table = problem.tables[s]
    grid = table.load_rps_per_replica
    loads = _breakpoints(grid, n, cmax)
    energy = n * _interp(table.power_w_per_replica[n - 1], grid, loads / n)
    energy = energy * problem.interval_s * KWH_PER_WS
    if upper:  # upper concave hull = minus the lower hull of the negated points
        return [(-a, -b) for a, b in _lower_hull(loads, -energy)]
    return _lower_hull(loads, energy)


def _ttft_lines(problem: IntervalProblem, s: int, n: int, cmax: float
                ) -> list[tuple[float, float]]:
    """Lower envelope lines of load x site mean TTFT (req/s x s) vs site load, n awake.

    On each grid segment the product is a quadratic in load with second derivative
    ``2 slope / n`` (``slope`` of mean TTFT per unit per-replica load); the chord between
    samples ``d`` apart exceeds it by at most ``slope d^2 / (4 n)`` where it is convex, so the
    samples are lowered by that much before taking the hull.
    """
    table = problem.tables[s]
    grid = table.load_rps_per_replica
    mean = table.ttft_mean_s[n - 1]
    knots = _breakpoints(grid, n, cmax)
    xs, ys = [np.array([0.0])], [np.array([0.0])]
    for a, b in zip(knots[:-1], knots[1:], strict=True):
        samples = np.linspace(a, b, TTFT_SAMPLES_PER_SEGMENT + 1)
        q = samples / n
        value = samples * _interp(mean, grid, q)
        mid = 0.5 * (a + b) / n
        pos = int(np.clip(np.searchsorted(grid, mid, side="right") - 1, 0, len(grid) - 2))
        slope = (mean[pos + 1] - mean[pos]) / (grid[pos + 1] - grid[pos]) if mid < grid[-1] else 0.0
        step = (b - a) / TTFT_SAMPLES_PER_SEGMENT
        err = max(slope, 0.0) * step**2 / (4.0 * n)
        xs.append(samples)
        ys.append(value - err * (1.0 + 1e-9) - 1e-12)
    return _lower_hull(np.concatenate(xs), np.concatenate(ys))


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
    capacity_rows: np.ndarray  # rows bounding a site's load (tightened for the plan)
    share_rows: np.ndarray  # rows x <= SHARE_EPS + (1 - SHARE_EPS) w

    @classmethod
    def build(cls, problem: IntervalProblem) -> IntervalMilp:
        lay = _layout(problem)
        n_o, n_s = lay.n_o, lay.n_s
        allowed = lay.allowed
        demand = problem.demand_rps.astype(float)
        lb = np.zeros(lay.n_var)
        ub = np.full(lay.n_var, np.inf)
        integrality = np.zeros(lay.n_var)
        ub[: n_o * n_s] = allowed.ravel().astype(float)
        w_all = np.arange(int(lay.w0[0]), int(lay.u0[0]))
        ub[w_all] = 1.0
        integrality[w_all] = 1
        per_kwh = np.stack([problem.carbon_kg_per_kwh_it, problem.water_l_per_kwh_it,
                            problem.cost_usd_per_kwh_it])
        need_upper = bool((per_kwh < 0).any())
        rows = _Rows()
        capacity_rows: list[int] = []
        share_rows: list[int] = []
        for o in range(n_o):
            rows.add([lay.x(o, s) for s in range(n_s)], [1.0] * n_s, 1.0, 1.0)
            for s in np.flatnonzero(allowed[o]).tolist():
                share_rows.append(len(rows.lo))
                rows.add([lay.x(o, s), lay.w(s, int(lay.level[o, s]))],
                         [1.0, -(1.0 - SHARE_EPS)], -np.inf, SHARE_EPS)
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
            lb[ee] = -np.inf if need_upper else 0.0
            lb[tt] = -np.inf
            rows.add(u, np.ones(n_max + 1), 1.0, 1.0)
            origins = np.flatnonzero(allowed[:, s])
            rows.add(np.concatenate([[lay.x(int(o), s) for o in origins], ll]),
                     np.concatenate([demand[origins], -np.ones(n_max)]), 0.0, 0.0)
            max_load = float(demand[origins].sum())
            cmax = site_capacity_rps(problem, s, 0.0, max_load)
            for n in range(1, n_max + 1):
                capacity_rows.append(len(rows.lo))
                rows.add([ll[n - 1], u[n]], [1.0, -cmax[n]], -np.inf, 0.0)
                for a, b in _energy_lines(problem, s, n, cmax[n], upper=False):
                    rows.add([ee[n - 1], u[n], ll[n - 1]], [1.0, -a, -b], 0.0, np.inf)
                if need_upper:
                    for a, b in _energy_lines(problem, s, n, cmax[n], upper=True):
                        rows.add([ee[n - 1], u[n], ll[n - 1]], [1.0, -a, -b], -np.inf, 0.0)
                for a, b in _ttft_lines(problem, s, n, cmax[n]):
                    rows.add([tt[n - 1], u[n], ll[n - 1]], [1.0, -a, -b], 0.0, np.inf)
            for j, rtt in enumerate(lay.level_rtt_s[s]):
                w = lay.w(s, j)
                if j + 1 < len(lay.level_rtt_s[s]):  # a farther level routed implies this one
                    rows.add([lay.w(s, j + 1), w], [1.0, -1.0], -np.inf, 0.0)
                cap = site_capacity_rps(problem, s, float(rtt), max_load)
                big_m = max(float((cmax - cap).max()), 0.0)
                # load - sum_n cap_n u_n + M w <= M: binding only when level j (or farther)
                # is routed here.
                capacity_rows.append(len(rows.lo))
                rows.add(np.concatenate([ll, u, [w]]),
                         np.concatenate([np.ones(n_max), -cap, [big_m]]), -np.inf, big_m)
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
            for k in range(3):
                objective[k + 1, energy_cols] += per_kwh[k, s] * energy_vals
            objective[0, tt] = 1.0 / total_demand
        return cls(problem, lay, objective, rows.matrix(lay.n_var), np.array(rows.lo),
                   np.array(rows.hi), Bounds(lb, ub), integrality, np.array(capacity_rows),
                   np.array(share_rows))

    @property
    def size(self) -> dict[str, int]:
        """Variables (of which binary) and constraint rows."""
        return {"variables": self.layout.n_var, "binaries": int(self.integrality.sum()),
                "constraints": int(self.constraints.shape[0])}

    def solve(self, weights: np.ndarray, caps: np.ndarray | None = None,
              time_limit_s: float = DEFAULT_TIME_LIMIT_S, node_limit: int | None = None,
              rel_gap: float | None = None) -> MilpResult:
        """Minimise ``sum_k weights[k] f_k`` with ``f_k <= caps[k]`` for finite caps.

        ``node_limit`` and ``rel_gap`` (HiGHS's ``mip_rel_gap``; its own default when None) stop
        the branch and bound on work done; the bound returned is still the solver's proven one."""
        weights = np.asarray(weights, dtype=float)
        c = weights @ self.objective_rows
        constraints = [LinearConstraint(self.constraints, self.lo, self.hi)]
        if caps is not None:
            finite = np.isfinite(caps)
            if finite.any():
                constraints.append(LinearConstraint(self.objective_rows[finite], -np.inf,
                                                    np.asarray(caps)[finite]))
        started = time.perf_counter()
        options: dict[str, float | int | bool] = {"time_limit": float(time_limit_s),
                                                  "disp": False, "presolve": HIGHS_PRESOLVE}
        if node_limit is not None:
            options["node_limit"] = int(node_limit)
        if rel_gap is not None:
            options["mip_rel_gap"] = float(rel_gap)
        res = milp(c, integrality=self.integrality, bounds=self.bounds, constraints=constraints,
                   options=options)
        solve_s = time.perf_counter() - started
        bound = proven_bound(res)
        routing = None
        value = float("nan")
        if res.x is not None:
            value = float(res.fun)
            routing = self._plan(res.x, weights, caps)
        return MilpResult(bound, value, routing, solve_s, int(res.status), str(res.message))

    def _plan(self, v: np.ndarray, weights: np.ndarray, caps: np.ndarray | None) -> np.ndarray:
        """The MILP's routing, made feasible under ``evaluate_plans`` if it is not already.

        Candidates: the MILP's solution and its polished LP re-solve (``_polish``), each as is and
        with the shares the MILP left "unrouted" (below SHARE_EPS) dropped, each also repaired;
        the best by the objective among those that meet the SLO is returned (if none does, the
        least violating).
        """
        p = self.problem
        n = p.n_origins * p.n_sites
        candidates = [v]
        polished = self._polish(v, weights, caps)
        if polished is None:
            polished = self._polish(v, weights, caps, all_awake=True)
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
                all_awake: bool = False) -> np.ndarray | None:
        """Re-solve the LP with the MILP's binaries fixed and every load kept a hair
        (``PLAN_CAPACITY_MARGIN``) inside its capacity, so that the plan does not miss the SLO
        by the solver's feasibility tolerance when ``evaluate_plans`` judges it."""
        ints = self.integrality == 1
        v = v.copy()
        n = self.problem.n_origins * self.problem.n_sites
        # Levels are re-marked from the flows: one the MILP marked routed but sent (almost)
        # nothing would otherwise demand a margin below a zero capacity.
        lay = self.layout
        routed_above = SHARE_EPS * (1 + 1e-4)  # at SHARE_EPS the MILP rides free, by design
        v[lay.w0[0]: lay.u0[0]] = lay.levels_routed(v[:n].reshape(lay.n_o, lay.n_s),
                                                    routed_above)
        if all_awake:  # fallback: every loaded site fully awake (most capacity)
            for s, c in enumerate(lay.counts):
                if v[lay.u0[s]] < 0.5:
                    v[lay.u0[s]: lay.u0[s] + c + 1] = 0.0
                    v[lay.u0[s] + c] = 1.0
                    v[lay.l0[s]: lay.l0[s] + c] = 0.0
        fixed = np.round(v[ints])
        lb, ub = self.bounds.lb.copy(), self.bounds.ub.copy()
        lb[ints] = ub[ints] = fixed
        hi = self.hi.copy()
        binary_part = abs(self.constraints[:, ints]) @ fixed
        hi[self.capacity_rows] -= PLAN_CAPACITY_MARGIN * np.maximum(binary_part[self.capacity_rows],
                                                                    1e-9)
        hi[self.share_rows] -= PLAN_CAPACITY_MARGIN * SHARE_EPS
        # The model's capacities are relaxed per round-trip level; the plan must meet the exact
        # ones: pairs left unrouted stay below SHARE_EPS, and each site's load stays within
        # what its awake replicas carry for the worst round trip actually routed there.
        p = self.problem
        x = v[:n].reshape(lay.n_o, lay.n_s)
        routed = x > routed_above
        ub[:n] = np.where(routed, ub[:n].reshape(routed.shape),
                          np.minimum(ub[:n].reshape(routed.shape),
                                     SHARE_EPS * (1 - PLAN_CAPACITY_MARGIN))).ravel()
        awake = np.array([int(np.argmax(v[lay.u0[s]: lay.u0[s] + c + 1]))
                          for s, c in enumerate(lay.counts)])
        site_rows = np.zeros((lay.n_s, lay.n_var))
        site_caps = np.zeros(lay.n_s)
        for s in range(lay.n_s):
            worst = float(p.rtt_s[routed[:, s], s].max()) if routed[:, s].any() else 0.0
            site_rows[s, [lay.x(o, s) for o in range(lay.n_o)]] = p.demand_rps
            site_caps[s] = (exact_capacity_rps(p, s, int(awake[s]), worst)
                            * (1 - PLAN_CAPACITY_MARGIN))
        constraints = [LinearConstraint(self.constraints, self.lo, hi),
                       LinearConstraint(site_rows, -np.inf, site_caps)]
        if caps is not None and np.isfinite(caps).any():
            finite = np.isfinite(caps)
            constraints.append(LinearConstraint(self.objective_rows[finite], -np.inf,
                                                np.asarray(caps)[finite] * (1 + 1e-9)))
        res = milp(weights @ self.objective_rows, bounds=Bounds(lb, ub), constraints=constraints,
                   options={"time_limit": 10.0, "disp": False, "presolve": HIGHS_PRESOLVE})
        return res.x if res.x is not None else None

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
