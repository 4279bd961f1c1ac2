"""Operations on routing matrices shared by SLIT, the baselines and the LP reference."""

from __future__ import annotations

import numpy as np

from slit.optimise.problem import IntervalProblem

REPAIR_ROUNDS = 4


def normalise_rows(problem: IntervalProblem, routing: np.ndarray) -> np.ndarray:
    """Clip to allowed pairs and make each origin's row sum to 1 (``[..., O, S]``).

    An origin whose row carries no allowed share is sent to its nearest allowed site; an origin
    with no allowed site at all is sent to its nearest site, and the SLO check reports it.
    """
    x = np.where(problem.allowed, np.clip(routing, 0.0, None), 0.0)
    total = x.sum(axis=-1, keepdims=True)
    fallback = np.zeros(problem.allowed.shape)
    masked = np.where(problem.allowed, problem.rtt_s, np.inf)
    has_allowed = problem.allowed.any(axis=1)
    nearest = np.where(has_allowed, masked.argmin(axis=1), problem.rtt_s.argmin(axis=1))
    fallback[np.arange(problem.n_origins), nearest] = 1.0
    return np.where(total > 0, x / np.where(total > 0, total, 1.0), fallback)


def repair(problem: IntervalProblem, routing: np.ndarray) -> np.ndarray:
    """Make plans valid: rows on allowed pairs summing to 1, no site loaded past its capacity.

    Load above a site's capacity (all replicas awake, tail within the SLO for the worst round trip
    routed there) is moved to allowed sites with spare capacity, in proportion to that spare
    capacity. When the whole fleet is short, the overload stays where it is.
    """
    squeeze = routing.ndim == 2
    x = normalise_rows(problem, routing[None] if squeeze else routing)
    demand = problem.demand_rps
    sites = np.arange(problem.n_sites)
    installed = problem.installed
    # Only plans still overloaded go through another round (most candidates need none).
    active = np.arange(len(x))
    for _ in range(REPAIR_ROUNDS):
        xa = x[active]
        load = np.einsum("o,pos->ps", demand, xa)
        k = problem.target_index(problem.worst_rtt_s(xa))
        cap = problem.slo_capacity_rps[sites[None, :], k, installed[None, :] - 1]
        over = load > cap * (1 + 1e-9)
        still = over.any(axis=1)
        if not still.any():
            break
        active, xa, load, cap, over = active[still], xa[still], load[still], cap[still], \
            over[still]
        keep = np.where(over, cap / np.maximum(load, 1e-12), 1.0)  # [P, S]
        moved = (xa * (1.0 - keep[:, None, :])).sum(axis=2)  # [P, O]
        xa = xa * keep[:, None, :]
        spare = np.clip(cap - load * keep, 0.0, None)  # [P, S]
        weights = problem.allowed[None] * spare[:, None, :]
        weight_sum = weights.sum(axis=2, keepdims=True)
        share = np.where(weight_sum > 0, weights / np.where(weight_sum > 0, weight_sum, 1), 0.0)
        # An origin with no spare capacity anywhere gets its row scaled back up by the
        # normalisation, i.e. its overload stays where it was.
        x[active] = normalise_rows(problem, xa + share * moved[..., None])
    return x[0] if squeeze else x


def greedy_fill(problem: IntervalProblem, score: np.ndarray) -> np.ndarray:
    """Assign demand pair by pair in ascending ``score[o, s]``, up to each site's capacity.

    A site's capacity shrinks as farther origins are assigned to it (their round trip eats into
    the SLO). Demand left when every allowed site is full spills to the allowed site with the
    most capacity relative to its load.
    """
    n_o, n_s = problem.n_origins, problem.n_sites
    remaining = problem.demand_rps.astype(float).copy()
    load = np.zeros(n_s)
    worst_rtt = np.zeros(n_s)
    flow = np.zeros((n_o, n_s))
    order = np.argsort(np.where(problem.allowed, score, np.inf), axis=None, kind="stable")
    for flat in order:
        o, s = divmod(int(flat), n_s)
        if not problem.allowed[o, s] or remaining[o] <= 0:
            continue
        rtt = max(worst_rtt[s], problem.rtt_s[o, s])
        cap = _site_capacity(problem, s, rtt)
        take = min(remaining[o], max(cap - load[s], 0.0))
        if take <= 0:
            continue
        flow[o, s] += take
        load[s] += take
        remaining[o] -= take
        worst_rtt[s] = rtt
    for o in map(int, np.flatnonzero(remaining > 1e-12)):
        allowed = np.flatnonzero(problem.allowed[o]) if problem.allowed[o].any() else np.arange(n_s)
        headroom = problem.max_load_rps()[allowed] / np.maximum(load[allowed], 1e-9)
        s = int(allowed[int(np.argmax(headroom))])
        flow[o, s] += remaining[o]
        load[s] += remaining[o]
    return _flow_to_shares(problem, flow)


def _site_capacity(problem: IntervalProblem, site: int, worst_rtt_s: float) -> float:
    k = problem.target_index(np.array([worst_rtt_s]))[0]
    return float(problem.slo_capacity_rps[site, k, problem.tables[site].installed - 1])


def _flow_to_shares(problem: IntervalProblem, flow: np.ndarray) -> np.ndarray:
    demand = problem.demand_rps[:, None]
    shares = np.where(demand > 0, flow / np.where(demand > 0, demand, 1.0), 0.0)
    return normalise_rows(problem, shares)
