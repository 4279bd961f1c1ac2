"""Steepest-descent local search over routing matrices, on any score of a plan's evaluation.

A move shifts a step (5 %, 25 % or all; 25 % or all in the site-by-site search) of one origin's
share at one site to another of its promising sites, or the share that lets the site sleep a
replica. For a weighted-sum score (SLIT)
the moves are scored site by site, since a move changes only two sites (``single_move_scores``,
exactly ``evaluate_plans``'s model), which lets SLIT afford a descent per reference direction;
there a move may also fill the target's awake replicas up to what they carry, past the sizing
table's grid for a fully awake site (``spare_rps``), or move a site's whole column (every origin
it serves) to one other site (``column_moves``): the move that changes WHICH sites are open, which
single-origin moves cannot make one improving step at a time. Where mean TTFT weighs in the
score, also finer steps (1/16, 1/8, 1/2 of the share, to sites already loaded) and swaps of two
origins between two loaded sites (``swap_moves``, also two sites). Every improving move on a
pair of sites no better move of the round touches is taken in the same round: the gains of such
moves add up exactly. For any other score (the ``min_energy`` baseline's IT energy) every move
is repaired and judged as a whole plan, one per round.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np

from slit.optimise.problem import SHARE_EPS, IntervalProblem, PlanEvaluation, evaluate_plans
from slit.optimise.routing import repair

LOCAL_STEPS = (0.05, 0.25, 1.0)  # share of the source site's part of the row that moves
# Steps of the site-by-site search, which has the fill moves besides: the 5 % step changed no
# gap above the MILP bound there (docs/scheduler.md) and cost a sixth of the decision time.
FAST_STEPS = (0.25, 1.0)
# Steps of the site-by-site search when mean TTFT weighs in the score: TTFT grows steeply with
# a site's load, so the best plans split an origin between sites in fine fractions.
FINE_STEPS = (0.0625, 0.125, 0.5)
# Whole-column moves (a site's every origin to one other site) besides the single-origin ones:
# measured (docs/scheduler.md) on the busiest interval, SLIT's gap above the exact MILP optimum
# fell from 9.0 % to 0.6 % median (p90 24.9 % -> 3.9 %) for 0.6 s more CPU.
COLUMN_MOVES = True
# Swap moves (two origins exchange shares between two loaded sites, see ``swap_moves``) where
# mean TTFT weighs in the score: with them (and FINE_STEPS) the TTFT-weighted directions' gaps
# above the exact MILP optimum fell from 1.0-5.0 % to 0.0-1.6 % (median over the busiest
# intervals, docs/scheduler.md); in the energy-only directions they moved no median by more
# than 0.25 points, for ~10 % more CPU.
SWAP_MOVES = True
# Take every improving move on a pair of sites not yet changed in the round, best first (else
# only the best move): the same gaps or better in about three quarters of the CPU time.
MULTI_MOVES = True
LOCAL_TARGETS = 15

PlanScore = Callable[[PlanEvaluation], np.ndarray]  # [P] lower is better, inf if infeasible


def local_search(problem: IntervalProblem, routing: np.ndarray, score: PlanScore,
                 targets: np.ndarray, rounds: int, linear: np.ndarray | None = None,
                 start_score: float | None = None) -> np.ndarray:
    """Each round tries every single move from ``routing`` to a ``targets`` site ([O, S] bool)
    and keeps the best if it lowers ``score``; stops after ``rounds`` or at a local optimum.

    With ``linear`` ([4]), ``score`` must be ``objectives @ linear`` on SLO-feasible plans
    (inf otherwise): single moves are then scored site by site (``single_move_scores``, a move
    changes two sites) instead of as whole plans, several times faster; they are left
    unrepaired (a move past a site's capacity misses the SLO), and the moves that fill a site's
    awake replicas up to what they carry (``spare_rps``) and the whole-column moves
    (``column_moves``, also two sites) join them; if ``linear[0]`` (mean TTFT) > 0 also the
    ``FINE_STEPS`` and the swaps (``swap_moves``). A round then takes, best first, every
    improving move whose two sites no move taken before it in the round changed
    (``MULTI_MOVES``): each changes its two sites only, so their gains add up exactly.
    ``start_score``: ``routing``'s score if known (else it is evaluated).
    """
    current = routing
    best = score(evaluate_plans(problem, current[None]))[0] if start_score is None \
        else start_score
    for _ in range(rounds):
        margin = 1e-12 * max(abs(best), 1.0) if np.isfinite(best) else 0.0
        if linear is None:
            moves = single_moves(problem, current, targets)
            if len(moves) == 0:
                break
            all_scores = score(evaluate_plans(problem, moves))
            i = int(np.argmin(all_scores))
            if not all_scores[i] < best - margin:
                break
            current, best = moves[i], all_scores[i]
            continue
        # The plan's own per-site state, computed once a round for the shed and fill moves;
        # every block of moves is then scored in one table gather.
        base = _plan_state(problem, current)
        o, src, dst, amount = move_list(problem, current, targets,
                                        spare_rps(problem, current, base),
                                        FINE_STEPS if linear[0] > 0 else (),
                                        shed_shares(problem, current, base))
        blocks = [_single_columns(problem, current, o, src, dst, amount)]
        apply: list[Callable[[np.ndarray, int], None]] = [
            partial(_apply_single, o=o, src=src, dst=dst, amount=amount)]
        if COLUMN_MOVES:
            c_src, c_dst = column_moves(problem, current)
            blocks.append(_column_columns(problem, current, c_src, c_dst))
            apply.append(partial(_apply_column, src=c_src, dst=c_dst))
        if SWAP_MOVES and linear[0] > 0:
            swaps = swap_moves(problem, current)
            blocks.append(_swap_columns(problem, current, swaps))
            apply.append(partial(apply_swap, swaps=swaps))
        scored = _score_moves(problem, current, linear, blocks)
        all_scores = np.concatenate(scored)
        if len(all_scores) == 0 or not all_scores.min() < best - margin:
            break
        # Every move changes two sites and every objective and the SLO check are sums or
        # maxima over sites, so improving moves on disjoint pairs of sites add up exactly: take
        # them all, best first, in one round (a descent then needs far fewer rounds).
        offsets = np.cumsum([0] + [len(block) for block in scored])
        site_a = np.concatenate([m.src for m in blocks])
        site_b = np.concatenate([m.dst for m in blocks])
        order = np.argsort(all_scores, kind="stable")
        taken = np.zeros(problem.n_sites, dtype=bool)
        n_free = problem.n_sites
        current = current.copy()
        first = float(all_scores[order[0]])
        gain = 0.0
        for i in order[: int(np.searchsorted(all_scores[order], best - margin))]:
            a, b = site_a[i], site_b[i]
            if taken[a] or taken[b] or not all_scores[i] < best - margin:
                continue
            taken[a] = taken[b] = True
            n_free -= 2
            k = int(np.searchsorted(offsets, i, side="right")) - 1
            # The site-by-site scores are the plan's own (tests/test_optimise.py checks them
            # against evaluate_plans); the caller judges the final plan with evaluate_plans.
            apply[k](current, int(i - offsets[k]))
            gain += best - all_scores[i]
            if not MULTI_MOVES or n_free < 2:  # no pair of untouched sites left
                break
        # From a plan that misses the SLO every feasible move touches the failing site, so
        # only the first is taken.
        best = best - gain if np.isfinite(best) else first
    return current


def _apply_single(x: np.ndarray, j: int, *, o: np.ndarray, src: np.ndarray, dst: np.ndarray,
                  amount: np.ndarray) -> None:
    """Single move ``j``, in place: ``amount[j]`` of origin ``o[j]``'s share from ``src[j]`` to
    ``dst[j]`` (the same arithmetic as ``single_move_scores``)."""
    x[o[j], src[j]] = max(x[o[j], src[j]] - amount[j], 0.0)
    x[o[j], dst[j]] += amount[j]


def _apply_column(x: np.ndarray, j: int, *, src: np.ndarray, dst: np.ndarray) -> None:
    """Column move ``j``, in place: site ``src[j]``'s whole column to ``dst[j]``, which then
    takes all (``src[j]`` sleeps)."""
    x[:, dst[j]] += x[:, src[j]]
    x[:, src[j]] = 0.0


@dataclass(frozen=True, slots=True)
class _Stacked:
    """The sites' serving tables stacked ``[S, N, G]`` (padded past each site's fleet), so a
    batch of (site, load, awake) lookups is one gather instead of one call per site."""

    grid: np.ndarray  # [S, G] load per replica
    # [S * G] every site's grid as (site, load) keys in lexicographic order: numpy orders
    # complex numbers so, which turns a batch of per-site grid searches into one searchsorted.
    grid_keys: np.ndarray
    ttft_mean_s: np.ndarray  # [S, N, G]
    ttft_tail_s: np.ndarray
    power_w: np.ndarray
    standby_w: np.ndarray  # [S]
    installed: np.ndarray  # [S]
    rtt_by_site_s: np.ndarray  # [S, O] the round trips, site-major (a contiguous gather)
    full_fleet_rps: dict[tuple[int, float], float]  # full_fleet_capacity_rps, memoised


_STACKED: dict[int, tuple[IntervalProblem, _Stacked]] = {}


def _stacked(problem: IntervalProblem) -> _Stacked:
    hit = _STACKED.get(id(problem))
    if hit is not None and hit[0] is problem:
        return hit[1]
    width = int(problem.installed.max())
    n_grid = max(len(t.load_rps_per_replica) for t in problem.tables)
    grid = np.zeros((problem.n_sites, n_grid))
    arrays = [np.zeros((problem.n_sites, width, n_grid)) for _ in range(3)]
    for s, table in enumerate(problem.tables):
        g = table.load_rps_per_replica
        # A shorter grid is padded by its last point's values further out (never looked up
        # past the last point: lookups clamp there).
        grid[s] = np.concatenate([g, g[-1] + np.arange(1, n_grid - len(g) + 1)])
        for out, src in zip(arrays, (table.ttft_mean_s, table.ttft_tail_s,
                                     table.power_w_per_replica), strict=True):
            padded = np.concatenate([src, np.repeat(src[:, -1:], n_grid - len(g), axis=1)],
                                    axis=1)
            out[s, : table.installed] = padded
            out[s, table.installed:] = padded[-1]
    mean, tail, power = arrays
    if (np.diff(grid, axis=1) < 0).any():
        raise ValueError("a serving table's load grid must not decrease")
    keys = np.repeat(np.arange(problem.n_sites, dtype=float), n_grid).astype(complex)
    keys.imag = grid.ravel()
    stacked = _Stacked(grid, keys, mean, tail, power,
                       np.array([t.standby_w_per_replica for t in problem.tables]),
                       problem.installed, np.ascontiguousarray(problem.rtt_s.T), {})
    if len(_STACKED) > 8:
        _STACKED.clear()
    _STACKED[id(problem)] = (problem, stacked)
    return stacked


def site_terms(problem: IntervalProblem, site: np.ndarray, load_rps: np.ndarray,
               worst_rtt_s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each site's part of the objectives and of the SLO check, for any (site, load, worst
    routed round trip) triples ([M] each): ``[M, 4]`` (load x site TTFT mean / total demand,
    carbon, water, cost; the round trips' part of mean TTFT is per pair, not per site),
    ``[M]`` (worst routed round trip + site tail - SLO; -inf if nothing is routed there, which
    ``worst_rtt_s`` < 0 marks) and ``[M]`` awake replicas. Sums over a plan's sites reproduce
    ``evaluate_plans`` (same sizing rule, same table interpolation)."""
    t = _stacked(problem)
    k = problem.target_index(np.maximum(worst_rtt_s, 0.0))
    installed = t.installed[site]
    caps = problem.slo_capacity_rps[site, k]  # [M, N]; inf past a site's fleet
    need = (caps < load_rps[:, None]).sum(axis=1) + 1
    awake = np.where(load_rps > 0, np.minimum(need, installed), 0)
    # np.minimum / np.maximum rather than np.clip: the same values without np.clip's
    # per-call overhead, which showed in the profile of this hot path.
    row = np.minimum(np.maximum(awake - 1, 0), installed - 1)
    per_replica = np.where(awake > 0, load_rps / np.maximum(awake, 1), 0.0)
    n_grid = t.grid.shape[1]
    # The last grid point at or below the load per replica, found for all rows in one search
    # of the (site, load) keys (the same count as comparing with each row's grid).
    query = site.astype(float).astype(complex)
    query.imag = per_replica
    below = np.searchsorted(t.grid_keys, query, side="right") - site * n_grid
    pos = np.minimum(np.maximum(below - 1, 0), n_grid - 2)
    lo = t.grid[site, pos]
    hi = t.grid[site, pos + 1]
    frac = np.minimum(np.maximum((per_replica - lo) / (hi - lo), 0.0), 1.0)

    flat = (site * t.power_w.shape[1] + row) * n_grid + pos  # into the [S, N, G] tables

    def interp(table: np.ndarray) -> np.ndarray:
        values = table.reshape(-1)
        return values.take(flat) * (1.0 - frac) + values.take(flat + 1) * frac

    power = np.where(awake > 0, awake * interp(t.power_w), 0.0)
    power = power + (installed - awake) * t.standby_w[site]
    energy = power * problem.interval_s / 3.6e6
    total_demand = max(float(problem.demand_rps.sum()), 1e-12)
    terms = np.stack([load_rps * interp(t.ttft_mean_s) / total_demand,
                      energy * problem.carbon_kg_per_kwh_it[site],
                      energy * problem.water_l_per_kwh_it[site],
                      energy * problem.cost_usd_per_kwh_it[site]], axis=1)
    violation = np.where(worst_rtt_s >= 0, worst_rtt_s + interp(t.ttft_tail_s)
                         - problem.planning_slo_ttft_s, -np.inf)
    return terms, violation, awake


def fast_evaluate(problem: IntervalProblem, plans: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Objectives [P, 4], SLO violation [P], awake [P, S] and load [P, S] of plans
    [P, O, S]: ``evaluate_plans`` through ``site_terms`` (one gather for every site)."""
    n_p, n_s = len(plans), problem.n_sites
    site = np.tile(np.arange(n_s), n_p)
    load, worst = _columns(problem, plans.transpose(0, 2, 1).reshape(n_p * n_s, -1), site)
    terms, violation, awake = site_terms(problem, site, load, worst)
    total_demand = max(float(problem.demand_rps.sum()), 1e-12)
    objectives = terms.reshape(n_p, n_s, 4).sum(axis=1)
    objectives[:, 0] += np.einsum("pos,o,os->p", plans, problem.demand_rps,
                                  problem.rtt_s) / total_demand
    return (objectives, violation.reshape(n_p, n_s).max(axis=1), awake.reshape(n_p, n_s),
            load.reshape(n_p, n_s))


def _columns(problem: IntervalProblem, routing: np.ndarray, site: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
    """Load and worst routed round trip (-1 if none) of site columns ``routing`` ([M, O], the
    columns of sites ``site``)."""
    load = routing @ problem.demand_rps
    routed = routing > SHARE_EPS
    worst = np.where(routed, _stacked(problem).rtt_by_site_s[site], -1.0).max(axis=1)
    return load, worst


@dataclass(frozen=True, slots=True)
class _TwoSiteMoves:
    """Moves that change only sites ``src`` and ``dst`` ([M] each), to columns ``col_src`` and
    ``col_dst`` ([M, O]); ``rtt_delta`` [M] is each move's change of the round trips' part of
    mean TTFT. With ``src_row`` ([M]), ``col_src`` holds only the distinct source columns
    ([U, O], of sites ``src_site``) and move m's is row ``src_row[m]``: the single moves of an
    origin's same share to every target leave the source the same column."""

    src: np.ndarray
    dst: np.ndarray
    col_src: np.ndarray
    col_dst: np.ndarray
    rtt_delta: np.ndarray
    src_row: np.ndarray | None = None
    src_site: np.ndarray | None = None


@dataclass(frozen=True, slots=True)
class _PlanState:
    """One plan's per-site load, longest routed round trip and awake replicas ([S] each),
    shared by a round's shed and fill moves."""

    load_rps: np.ndarray
    worst_rtt_s: np.ndarray  # -1 where nothing is routed (``_columns``)
    awake: np.ndarray


def _plan_state(problem: IntervalProblem, routing: np.ndarray) -> _PlanState:
    """``routing``'s per-site state, by the same arithmetic as ``fast_evaluate`` (its columns
    as a transposed view, as there: BLAS rounds the loads' last bit by the memory layout)."""
    sites = np.arange(problem.n_sites)
    load, worst = _columns(problem, routing.T, sites)
    _, _, awake = site_terms(problem, sites, load, worst)
    return _PlanState(load, worst, awake)


def _single_columns(problem: IntervalProblem, routing: np.ndarray, o: np.ndarray,
                    src: np.ndarray, dst: np.ndarray, amount: np.ndarray) -> _TwoSiteMoves:
    """Single moves: ``amount`` of origin ``o``'s share from ``src`` to ``dst``; each distinct
    (origin, source, amount) leaves one source column."""
    m = np.arange(len(o))
    first, src_row = _distinct(o, src, amount)
    col_src = routing.T[src[first]]
    col_src[np.arange(len(first)), o[first]] = np.maximum(
        col_src[np.arange(len(first)), o[first]] - amount[first], 0.0)
    col_dst = routing.T[dst]
    col_dst[m, o] += amount
    total_demand = max(float(problem.demand_rps.sum()), 1e-12)
    rtt_delta = (problem.demand_rps[o] * amount
                 * (problem.rtt_s[o, dst] - problem.rtt_s[o, src]) / total_demand)
    return _TwoSiteMoves(src, dst, col_src, col_dst, rtt_delta, src_row, src[first])


def _distinct(o: np.ndarray, src: np.ndarray, amount: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
    """The first index of each distinct (o, src, amount) triple and each triple's index
    among them."""
    order = np.lexsort((amount, src, o))
    so, ss, sa = o[order], src[order], amount[order]
    new = np.ones(len(o), dtype=bool)
    new[1:] = (so[1:] != so[:-1]) | (ss[1:] != ss[:-1]) | (sa[1:] != sa[:-1])
    inverse = np.empty(len(o), dtype=np.intp)
    inverse[order] = np.cumsum(new) - 1
    return order[new], inverse


def single_move_scores(problem: IntervalProblem, routing: np.ndarray, linear: np.ndarray,
                       o: np.ndarray, src: np.ndarray, dst: np.ndarray, amount: np.ndarray
                       ) -> np.ndarray:
    """[M] ``objectives @ linear`` of each move's plan (inf if it misses the SLO), from the two
    sites it changes: moving ``amount`` of origin ``o``'s share from ``src`` to ``dst``."""
    moves = _single_columns(problem, routing, o, src, dst, amount)
    return _score_moves(problem, routing, linear, [moves])[0]


def column_moves(problem: IntervalProblem, routing: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Every (source, target) pair of sites such that all of the source's routed origins may
    go to the target: moving the source's whole column there lets it sleep. Single-origin
    moves cannot swap which sites are open (the first origin moved to a sleeping site wakes
    it at its idle power and scores worse; the last one leaving a site scores better only
    once all others have left), the move a plan on a different set of sites needs."""
    used = routing > 0
    loaded = np.flatnonzero(used.any(axis=0))
    if len(loaded) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    # ok[a, b]: every origin using site a is allowed at site b
    ok = ~((used[:, loaded, None]) & ~problem.allowed[:, None, :]).any(axis=0)
    ok[np.arange(len(loaded)), loaded] = False
    a, b = np.nonzero(ok)
    return loaded[a], b


def _column_columns(problem: IntervalProblem, routing: np.ndarray, src: np.ndarray,
                    dst: np.ndarray) -> _TwoSiteMoves:
    """Column moves: site ``src``'s whole column added to site ``dst``'s."""
    col_src = np.zeros((len(src), problem.n_origins))
    col_dst = routing.T[dst] + routing.T[src]
    flow = routing[:, src] * problem.demand_rps[:, None]  # [O, M]
    total_demand = max(float(problem.demand_rps.sum()), 1e-12)
    rtt_delta = (flow * (problem.rtt_s[:, dst] - problem.rtt_s[:, src])).sum(axis=0) / total_demand
    return _TwoSiteMoves(src, dst, col_src, col_dst, rtt_delta)


def column_move_scores(problem: IntervalProblem, routing: np.ndarray, linear: np.ndarray,
                       src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """[M] ``objectives @ linear`` (inf if it misses the SLO) of each plan with site
    ``src``'s whole column added to site ``dst``'s, from the two sites it changes."""
    if len(src) == 0:
        return np.zeros(0)
    moves = _column_columns(problem, routing, src, dst)
    return _score_moves(problem, routing, linear, [moves])[0]


def _score_moves(problem: IntervalProblem, routing: np.ndarray, linear: np.ndarray,
                 blocks: list[_TwoSiteMoves]) -> list[np.ndarray]:
    """Scores (``objectives @ linear``, inf if the SLO is missed) of each block of moves from
    ``routing``: each move's objectives are the plan's less its two sites' old terms plus
    their new ones, its SLO violation the worst of its two sites' and the others'. The sites'
    terms of every block go through one ``site_terms`` call (a table gather, row by row); each
    block's loads are one product with the plan's own columns first, as before this call
    served every block: BLAS's matrix-vector product rounds a row's last bit differently
    with the batch around it, and the descent's plans stay bit-identical this way."""
    n_s = problem.n_sites
    sites = np.arange(n_s)
    rows = [np.concatenate([sites, b.src if b.src_site is None else b.src_site, b.dst])
            for b in blocks]
    parts = [_columns(problem, np.concatenate([routing.T, b.col_src, b.col_dst]), r)
             for b, r in zip(blocks, rows, strict=True)]
    site = np.concatenate(rows)
    terms, site_violation, _ = site_terms(problem, site, np.concatenate([p[0] for p in parts]),
                                          np.concatenate([p[1] for p in parts]))
    total_demand = max(float(problem.demand_rps.sum()), 1e-12)
    rtt_part = float((problem.demand_rps[:, None] * routing * problem.rtt_s).sum()) / total_demand
    out, start = [], 0
    for b in blocks:
        n_m, n_u = len(b.src), len(b.col_src)
        base_terms = terms[start: start + n_s]
        base_violation = site_violation[start: start + n_s]
        t_src = terms[start + n_s: start + n_s + n_u]
        v_src = site_violation[start + n_s: start + n_s + n_u]
        if b.src_row is not None:
            t_src, v_src = t_src[b.src_row], v_src[b.src_row]
        t_dst = terms[start + n_s + n_u: start + n_s + n_u + n_m]
        v_dst = site_violation[start + n_s + n_u: start + n_s + n_u + n_m]
        start += n_s + n_u + n_m
        total = base_terms.sum(axis=0)
        total[0] += rtt_part
        objectives = total[None] - base_terms[b.src] - base_terms[b.dst] + t_src + t_dst
        objectives[:, 0] += b.rtt_delta
        # The worst violation among the sites a move leaves alone: the first of the plan's
        # three worst sites that is neither of its two.
        top = np.argsort(-base_violation, kind="stable")[:3]
        untouched = (top[None] != b.src[:, None]) & (top[None] != b.dst[:, None])
        others = np.where(untouched, base_violation[top][None], -np.inf).max(
            axis=1, initial=-np.inf)
        violation = np.maximum(others, np.maximum(v_src, v_dst))
        out.append(np.where(violation <= 0, objectives @ linear, np.inf))
    return out


@dataclass(frozen=True, slots=True)
class Swaps:
    """Swap moves: origin ``o1`` moves ``amount1`` of its share from site ``a`` to site ``b``
    and origin ``o2`` moves ``amount2`` of its share from ``b`` to ``a`` ([M] each)."""

    o1: np.ndarray
    a: np.ndarray
    amount1: np.ndarray
    o2: np.ndarray
    b: np.ndarray
    amount2: np.ndarray


def swap_moves(problem: IntervalProblem, routing: np.ndarray) -> Swaps:
    """Every exchange between two loaded sites ``a`` and ``b`` of an origin routed to ``a``
    (``o1``) and one routed to ``b`` (``o2``), each allowed at the other site: ``o1``'s whole
    share at ``a`` goes to ``b`` and as much of ``o2``'s flow at ``b`` (at most all of it) comes
    back to ``a``, so both sites keep their load and so their awake replicas; and the same with
    both whole shares exchanged. A site's capacity depends on the longest round trip routed
    there, so the plans best for mean TTFT route each origin to few near sites; reaching them
    from a plan with far origins mixed in needs two origins to change places at once: either
    single move alone overloads a site or wakes a replica."""
    demand = problem.demand_rps
    origin, site = np.nonzero((routing > 0) & (demand[:, None] > 0))
    # Every ordered pair of (origin, site) pairs on different sites and origins.
    p, q = (g.ravel() for g in np.meshgrid(np.arange(len(origin)), np.arange(len(origin)),
                                           indexing="ij"))
    o1, a, o2, b = origin[p], site[p], origin[q], site[q]
    keep = (a != b) & (o1 != o2) & problem.allowed[o1, b] & problem.allowed[o2, a]
    o1, a, o2, b = o1[keep], a[keep], o2[keep], b[keep]
    amount1 = routing[o1, a]
    share2 = routing[o2, b]
    # Load-neutral: o2 brings back the flow o1 takes away (as much as it has at b).
    neutral = np.minimum(share2, demand[o1] * amount1 / np.maximum(demand[o2], 1e-12))
    # Whole shares both ways: once per unordered pair (the ordered one with o1 < o2).
    whole = o1 < o2
    return Swaps(np.concatenate([o1, o1[whole]]), np.concatenate([a, a[whole]]),
                 np.concatenate([amount1, amount1[whole]]), np.concatenate([o2, o2[whole]]),
                 np.concatenate([b, b[whole]]), np.concatenate([neutral, share2[whole]]))


def _swap_columns(problem: IntervalProblem, routing: np.ndarray, swaps: Swaps
                  ) -> _TwoSiteMoves:
    """Swap moves as the two columns they change (``a`` and ``b``)."""
    m = np.arange(len(swaps.o1))
    col_a = routing.T[swaps.a]
    col_b = routing.T[swaps.b]
    col_a[m, swaps.o1] = np.maximum(col_a[m, swaps.o1] - swaps.amount1, 0.0)
    col_b[m, swaps.o1] += swaps.amount1
    col_b[m, swaps.o2] = np.maximum(col_b[m, swaps.o2] - swaps.amount2, 0.0)
    col_a[m, swaps.o2] += swaps.amount2
    demand, rtt = problem.demand_rps, problem.rtt_s
    total_demand = max(float(demand.sum()), 1e-12)
    rtt_delta = (demand[swaps.o1] * swaps.amount1 * (rtt[swaps.o1, swaps.b]
                                                     - rtt[swaps.o1, swaps.a])
                 + demand[swaps.o2] * swaps.amount2 * (rtt[swaps.o2, swaps.a]
                                                       - rtt[swaps.o2, swaps.b])) / total_demand
    return _TwoSiteMoves(swaps.a, swaps.b, col_a, col_b, rtt_delta)


def swap_move_scores(problem: IntervalProblem, routing: np.ndarray, linear: np.ndarray,
                     swaps: Swaps) -> np.ndarray:
    """[M] ``objectives @ linear`` of each swap's plan (inf if it misses the SLO), from the two
    sites it changes."""
    if len(swaps.o1) == 0:
        return np.zeros(0)
    moves = _swap_columns(problem, routing, swaps)
    return _score_moves(problem, routing, linear, [moves])[0]


def apply_swap(x: np.ndarray, j: int, *, swaps: Swaps) -> None:
    """Swap ``j`` on ``x`` in place (the same arithmetic as ``swap_move_scores``)."""
    o1, a, o2, b = swaps.o1[j], swaps.a[j], swaps.o2[j], swaps.b[j]
    x[o1, a] = max(x[o1, a] - swaps.amount1[j], 0.0)
    x[o1, b] += swaps.amount1[j]
    x[o2, b] = max(x[o2, b] - swaps.amount2[j], 0.0)
    x[o2, a] += swaps.amount2[j]


def cheapest_targets(problem: IntervalProblem, cost: np.ndarray) -> np.ndarray:
    """[O, S] each origin's LOCAL_TARGETS allowed sites of least ``cost`` [O, S]."""
    cost = np.where(problem.allowed, cost, np.inf)
    rank = np.argsort(np.argsort(cost, axis=1, kind="stable"), axis=1, kind="stable")
    return problem.allowed & (rank < LOCAL_TARGETS)


def shed_shares(problem: IntervalProblem, routing: np.ndarray,
                base: _PlanState | None = None) -> np.ndarray:
    """[O, S] the share of origin o's demand that, moved off site s, lets s sleep one replica:
    the site's load above what one replica fewer carries within the SLO (capped at what o
    sends there). Fleets are sized in whole replicas, so the objectives drop in steps that
    fixed-size moves mostly miss. ``base``: ``routing``'s ``_plan_state`` if known."""
    base = base or _plan_state(problem, routing)
    awake, load = base.awake, base.load_rps
    k = problem.target_index(np.maximum(base.worst_rtt_s, 0.0))
    sites = np.arange(problem.n_sites)
    fewer = np.where(awake >= 2, problem.slo_capacity_rps[sites, k, np.maximum(awake - 2, 0)],
                     0.0)
    excess = np.maximum(load - fewer, 0.0)
    demand = np.maximum(problem.demand_rps, 1e-12)[:, None]
    return np.minimum(routing, excess[None, :] / demand)


def move_list(problem: IntervalProblem, routing: np.ndarray, targets: np.ndarray,
              spare: np.ndarray | None = None, fine: tuple[float, ...] = (),
              shed: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every single move from ``routing`` as (origin, source, target, share moved) arrays: a
    step of an origin's share at a site, or the share that lets the site sleep a replica,
    moved to one of the origin's ``targets``; given ``spare`` (``spare_rps``), also as much of
    the share as the target's awake replicas still carry; and each of the ``fine`` steps to
    the targets that already carry load (a small share sent to a sleeping site would wake it
    for little). ``shed``: ``shed_shares(problem, routing)`` if known."""
    origin, source = np.nonzero((routing > 0) & (problem.demand_rps[:, None] > 0))
    # Every (origin, source) pair against every allowed target site and every step.
    o = np.repeat(origin, problem.n_sites)
    src = np.repeat(source, problem.n_sites)
    dst = np.tile(np.arange(problem.n_sites), len(origin))
    keep = (dst != src) & targets[o, dst]
    o, src, dst = o[keep], src[keep], dst[keep]
    steps = LOCAL_STEPS if spare is None else FAST_STEPS
    n_steps = len(steps) + 1
    o, src, dst = (np.repeat(a, n_steps) for a in (o, src, dst))
    step = np.tile(np.array(steps + (0.0,)), len(o) // n_steps)
    if shed is None:
        shed = shed_shares(problem, routing)
    shed = shed[o, src] if len(o) else np.zeros(0)
    if spare is not None:
        # A hair past the exact share, so that the site's load lands below the capacity step
        # and not on it, where the last bit of the summed load decides the awake count.
        shed = np.minimum(shed * (1 + 1e-9), routing[o, src])
    amount = np.where(step > 0, routing[o, src] * step, shed)
    if spare is not None and len(o):
        first = np.arange(0, len(o), n_steps)
        fo, fs, fd = o[first], src[first], dst[first]
        fa = np.minimum(routing[fo, fs], spare[fd] / np.maximum(problem.demand_rps[fo], 1e-12))
        ok = fa > 0
        o, src, dst = (np.concatenate([a, b[ok]]) for a, b in ((o, fo), (src, fs), (dst, fd)))
        amount = np.concatenate([amount, fa[ok]])
    if fine and len(o):
        first = np.arange(0, len(o) if spare is None else len(step), n_steps)
        fo, fs, fd = o[first], src[first], dst[first]
        ok = routing[:, fd].sum(axis=0) > 0
        fo, fs, fd = (np.repeat(a[ok], len(fine)) for a in (fo, fs, fd))
        fa = routing[fo, fs] * np.tile(np.array(fine), len(fo) // len(fine))
        o, src, dst = (np.concatenate([a, b]) for a, b in ((o, fo), (src, fs), (dst, fd)))
        amount = np.concatenate([amount, fa])
    return o, src, dst, amount


def full_fleet_capacity_rps(problem: IntervalProblem, s: int, worst_rtt_s: float) -> float:
    """Most load site ``s`` carries with every replica awake and ``worst_rtt_s`` the longest
    round trip routed there, judged as ``evaluate_plans`` judges it: past the sizing table the
    rule keeps the whole fleet awake and only the interpolated tail counts, so this is the
    table's capacity or the load up to which that tail stays within the budget (the leading
    run), whichever is larger. ``repair`` stops at the table's capacity; moves that fill a
    site up to this one reach plans it cannot."""
    from slit.optimise.milp import exact_capacity_rps  # the MILP's exact-capacity reading

    cache = _stacked(problem).full_fleet_rps
    key = (s, worst_rtt_s)
    if key not in cache:
        cache[key] = exact_capacity_rps(problem, s, int(problem.installed[s]), worst_rtt_s)
    return cache[key]


def spare_rps(problem: IntervalProblem, routing: np.ndarray,
              base: _PlanState | None = None) -> np.ndarray:
    """[S] load each awake site can still take without waking a replica (0 if asleep), for
    its current worst routed round trip. ``base``: ``routing``'s ``_plan_state`` if known."""
    base = base or _plan_state(problem, routing)
    awake, load = base.awake, base.load_rps
    worst = np.maximum(base.worst_rtt_s, 0.0)  # as ``IntervalProblem.worst_rtt_s``
    k = problem.target_index(worst)
    out = np.zeros(problem.n_sites)
    for s in np.flatnonzero(awake > 0):
        cap = problem.slo_capacity_rps[s, k[s], awake[s] - 1]
        if awake[s] == problem.installed[s]:
            cap = max(cap, full_fleet_capacity_rps(problem, int(s), float(worst[s])))
        out[s] = max(cap - load[s], 0.0) * (1 - 1e-9)
    return out


def single_moves(problem: IntervalProblem, routing: np.ndarray, targets: np.ndarray
                 ) -> np.ndarray:
    """All plans one move away from ``routing`` ([M, O, S], ``move_list``), repaired."""
    o, src, dst, amount = move_list(problem, routing, targets)
    if len(o) == 0:
        return np.zeros((0,) + routing.shape)
    moves = np.repeat(routing[None], len(o), axis=0)
    index = np.arange(len(o))
    moves[index, o, src] -= amount
    moves[index, o, dst] += amount
    return repair(problem, moves)
