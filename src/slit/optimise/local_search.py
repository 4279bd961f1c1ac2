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
LOCAL_TARGETS = 8

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
        if not scores[i] < best - 1e-12 * max(abs(best), 1.0):
            break
        current, best = moves[i], scores[i]
    return current


def cheapest_targets(problem: IntervalProblem, cost: np.ndarray) -> np.ndarray:
    """[O, S] each origin's LOCAL_TARGETS allowed sites of least ``cost`` [O, S]."""
    cost = np.where(problem.allowed, cost, np.inf)
    rank = np.argsort(np.argsort(cost, axis=1, kind="stable"), axis=1, kind="stable")
    return problem.allowed & (rank < LOCAL_TARGETS)


def single_moves(problem: IntervalProblem, routing: np.ndarray, targets: np.ndarray
                 ) -> np.ndarray:
    """All plans one move away from ``routing`` ([M, O, S]), repaired."""
    origin, source = np.nonzero((routing > 0) & (problem.demand_rps[:, None] > 0))
    if len(origin) == 0:
        return np.zeros((0,) + routing.shape)
    # Every (origin, source) pair against every allowed target site and every step.
    o = np.repeat(origin, problem.n_sites)
    src = np.repeat(source, problem.n_sites)
    dst = np.tile(np.arange(problem.n_sites), len(origin))
    keep = (dst != src) & targets[o, dst]
    o, src, dst = o[keep], src[keep], dst[keep]
    steps = np.array(LOCAL_STEPS)
    o, src, dst = (np.repeat(a, len(steps)) for a in (o, src, dst))
    amount = routing[o, src] * np.tile(steps, len(o) // len(steps))
    moves = np.repeat(routing[None], len(o), axis=0)
    index = np.arange(len(o))
    moves[index, o, src] -= amount
    moves[index, o, dst] += amount
    return repair(problem, moves)
