"""Steepest-descent local search over routing matrices, on any score of a plan's evaluation.

A move shifts a step (5 %, 25 % or all) of one origin's share at one site to another of its
promising sites; every move is repaired and judged by the interval model. SLIT refines the plan
its preference picks with the preference's score; the ``min_energy`` baseline descends on IT
energy.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from slit.optimise.problem import IntervalProblem, PlanEvaluation, evaluate_plans
from slit.optimise.routing import repair

LOCAL_STEPS = (0.05, 0.25, 1.0)  # share of the source site's part of the row that moves
LOCAL_TARGETS = 15

PlanScore = Callable[[PlanEvaluation], np.ndarray]  # [P] lower is better, inf if infeasible


def local_search(problem: IntervalProblem, routing: np.ndarray, score: PlanScore,
                 targets: np.ndarray, rounds: int) -> np.ndarray:
    """Each round tries every single move from ``routing`` to a ``targets`` site ([O, S] bool)
    and keeps the best if it lowers ``score``; stops after ``rounds`` or at a local optimum."""
    current = routing
    best = score(evaluate_plans(problem, current[None]))[0]
    for _ in range(rounds):
        moves = single_moves(problem, current, targets)
        if len(moves) == 0:
            break
        scores = score(evaluate_plans(problem, moves))
        i = int(np.argmin(scores))
        margin = 1e-12 * max(abs(best), 1.0) if np.isfinite(best) else 0.0
        if not scores[i] < best - margin:
            break
        current, best = moves[i], scores[i]
    return current


def cheapest_targets(problem: IntervalProblem, cost: np.ndarray) -> np.ndarray:
    """[O, S] each origin's LOCAL_TARGETS allowed sites of least ``cost`` [O, S]."""
    cost = np.where(problem.allowed, cost, np.inf)
    rank = np.argsort(np.argsort(cost, axis=1, kind="stable"), axis=1, kind="stable")
    return problem.allowed & (rank < LOCAL_TARGETS)


def shed_shares(problem: IntervalProblem, routing: np.ndarray) -> np.ndarray:
    """[O, S] the share of origin o's demand that, moved off site s, lets s sleep one replica:
    the site's load above what one replica fewer carries within the SLO (capped at what o
    sends there). Fleets are sized in whole replicas, so the objectives drop in steps that
    fixed-size moves mostly miss."""
    ev = evaluate_plans(problem, routing[None])
    awake, load = ev.awake[0], ev.load_rps[0]
    k = problem.target_index(problem.worst_rtt_s(routing[None]))[0]
    sites = np.arange(problem.n_sites)
    fewer = np.where(awake >= 2, problem.slo_capacity_rps[sites, k, np.maximum(awake - 2, 0)],
                     0.0)
    excess = np.maximum(load - fewer, 0.0)
    demand = np.maximum(problem.demand_rps, 1e-12)[:, None]
    return np.minimum(routing, excess[None, :] / demand)


def single_moves(problem: IntervalProblem, routing: np.ndarray, targets: np.ndarray
                 ) -> np.ndarray:
    """All plans one move away from ``routing`` ([M, O, S]), repaired: a step of an origin's
    share at a site, or the share that lets the site sleep a replica, moved to a target."""
    origin, source = np.nonzero((routing > 0) & (problem.demand_rps[:, None] > 0))
    if len(origin) == 0:
        return np.zeros((0,) + routing.shape)
    # Every (origin, source) pair against every allowed target site and every step.
    o = np.repeat(origin, problem.n_sites)
    src = np.repeat(source, problem.n_sites)
    dst = np.tile(np.arange(problem.n_sites), len(origin))
    keep = (dst != src) & targets[o, dst]
    o, src, dst = o[keep], src[keep], dst[keep]
    n_steps = len(LOCAL_STEPS) + 1
    o, src, dst = (np.repeat(a, n_steps) for a in (o, src, dst))
    step = np.tile(np.array(LOCAL_STEPS + (0.0,)), len(o) // n_steps)
    shed = shed_shares(problem, routing)[o, src]
    amount = np.where(step > 0, routing[o, src] * step, shed)
    moves = np.repeat(routing[None], len(o), axis=0)
    index = np.arange(len(o))
    moves[index, o, src] -= amount
    moves[index, o, dst] += amount
    return repair(problem, moves)
