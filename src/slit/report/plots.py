"""The report's figures, drawn with matplotlib's Agg backend (no display needed).

Each ``*_figure`` function takes an ``ExperimentResult`` and returns PNG bytes; ``FIGURES`` lists
them with their file names and captions, in report order.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from itertools import combinations

import matplotlib

matplotlib.use("Agg")  # before pyplot: draw to memory, never to a window

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from slit.data.signals import PRICE  # noqa: E402
from slit.experiment.run import ExperimentResult  # noqa: E402
from slit.footprint import carbon_column  # noqa: E402
from slit.forecast.history import WET_BULB  # noqa: E402
from slit.optimise.problem import OBJECTIVES  # noqa: E402

DPI = 110
OBJECTIVE_LABELS = {"ttft_mean_s": "mean TTFT (s)", "carbon_kg": "carbon (kg)",
                    "water_l": "water (L)", "cost_usd": "energy cost (USD)"}
# Fixed colours per policy and per site so every figure and every run reads the same way.
POLICY_MARKERS = "osD^v<>P"
SITE_CMAP = "tab20"


@dataclass(frozen=True)
class FigureSpec:
    file: str
    title: str
    caption: str
    draw: Callable[[ExperimentResult], bytes]


def busiest_interval(result: ExperimentResult) -> int:
    """The interval with the largest expected demand: where the trade-offs are widest."""
    sc = result.scenario
    expected = sc.demand.expected_counts(sc.start_utc, sc.n_intervals, sc.interval_s)
    return int(np.argmax(expected.sum(axis=1)))


def interval_starts(result: ExperimentResult) -> pd.DatetimeIndex:
    sc = result.scenario
    return pd.date_range(sc.start_utc, periods=sc.n_intervals,
                         freq=pd.Timedelta(seconds=sc.interval_s))


def pareto_figure(result: ExperimentResult) -> bytes:
    k = busiest_interval(result)
    decision = result.slit_decisions[k]
    front = decision.front_objectives
    feasible = decision.front_violation_s <= 0
    fig, axes = plt.subplots(2, 3, figsize=(13, 7.5))
    baselines = [p for p in result.plans if p != "slit"]
    for ax, (i, j) in zip(axes.ravel(), combinations(range(len(OBJECTIVES)), 2), strict=True):
        ax.scatter(front[feasible, i], front[feasible, j], s=14, c="0.6",
                   label="SLIT front (meets SLO)")
        if (~feasible).any():
            ax.scatter(front[~feasible, i], front[~feasible, j], s=14, c="0.85",
                       label="SLIT front (misses SLO)")
        for b, policy in enumerate(baselines):
            point = result.plans[policy].planned_objectives[k]
            ax.scatter(point[i], point[j], s=46, marker=POLICY_MARKERS[(b + 1) %
                       len(POLICY_MARKERS)], facecolors="none",
                       edgecolors=f"C{b + 1}", linewidths=1.4, label=policy)
        chosen = front[decision.chosen]
        ax.scatter(chosen[i], chosen[j], s=120, marker="*", c="C0", edgecolors="k",
                   linewidths=0.6, label="SLIT chosen", zorder=5)
        ax.set_xlabel(OBJECTIVE_LABELS[OBJECTIVES[i]])
        ax.set_ylabel(OBJECTIVE_LABELS[OBJECTIVES[j]])
        ax.grid(alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 5), frameon=False)
    start = interval_starts(result)[k]
    fig.suptitle(f"Pareto front of interval {k} ({start:%Y-%m-%d %H:%M} UTC), planned on "
                 "forecasts: pairwise projections")
    fig.tight_layout(rect=(0, 0.08, 1, 0.96))
    return _png(fig)


def allocation_figure(result: ExperimentResult) -> bytes:
    sc = result.scenario
    plan = result.plans["slit"]
    expected = sc.demand.expected_counts(sc.start_utc, sc.n_intervals, sc.interval_s)  # [K, O]
    load = np.einsum("ko,kos->ks", expected, plan.routing)
    share_pct = 100.0 * load / np.maximum(load.sum(axis=1, keepdims=True), 1e-12)
    # Steps need the period's end too, so the last interval is drawn its full length.
    times = interval_starts(result).append(pd.DatetimeIndex([sc.end_utc]))
    share_pct = np.vstack([share_pct, share_pct[-1:]])
    awake = np.vstack([plan.awake, plan.awake[-1:]])
    colours = _site_colours(sc.site_ids)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 7.5), sharex=True)
    top.stackplot(times, share_pct.T, labels=sc.site_ids, colors=colours, step="post")
    top.set_ylabel("share of all traffic (%)")
    top.set_ylim(0, 100)
    top.set_title("SLIT: where traffic is served (expected demand x planned routing)")
    bottom.stackplot(times, awake.T, labels=sc.site_ids, colors=colours, step="post")
    installed = sum(s.installed for s in sc.sites)
    bottom.axhline(installed, c="k", lw=0.8, ls="--", label="installed")
    bottom.set_ylabel("awake replicas")
    bottom.set_title("SLIT: awake replicas per site (stacked)")
    bottom.set_xlabel("time (UTC)")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
        ax.margins(x=0)
    handles, labels = bottom.get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 0.86, 1))
    return _png(fig)


def signals_figure(result: ExperimentResult) -> bytes:
    sc = result.scenario
    carbon = carbon_column(sc.carbon_basis)
    panels = ((carbon, f"carbon intensity, {sc.carbon_basis} (gCO2eq/kWh)"),
              (PRICE, "electricity price (USD/MWh)"), (WET_BULB, "wet-bulb temperature (°C)"))
    colours = _site_colours(sc.site_ids)
    fig, axes = plt.subplots(3, 1, figsize=(12, 9), sharex=True)
    for ax, (column, label) in zip(axes, panels, strict=True):
        for s, site in enumerate(sc.site_ids):
            frame = result.signals_actual[site]
            frame = frame[frame.index < sc.end_utc]
            ax.step(frame.index, frame[column], where="post", color=colours[s], lw=1.2,
                    label=site)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_title("Actual hourly signals per site")
    axes[-1].set_xlabel("time (UTC)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 0.86, 1))
    return _png(fig)


def footprint_figure(result: ExperimentResult) -> bytes:
    policies = list(result.metrics)
    m = [result.metrics[p] for p in policies]
    x = np.arange(len(policies))
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.8))
    axes[0].bar(x, [v.carbon_kg for v in m], color="C3")
    axes[0].set_ylabel("carbon (kg CO2eq)")
    onsite = np.array([v.water_onsite_l for v in m])
    axes[1].bar(x, onsite, color="C0", label="on-site (cooling)")
    axes[1].bar(x, [v.water_offsite_l for v in m], bottom=onsite, color="C9",
                label="off-site (generation)")
    axes[1].set_ylabel("water consumed (L)")
    axes[1].legend(fontsize=8)
    axes[2].bar(x, [v.cost_usd for v in m], color="C2")
    axes[2].set_ylabel("energy cost (USD)")
    for ax in axes:
        ax.set_xticks(x, policies, rotation=35, ha="right", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("Footprint per policy, judged by simulation with actual signals")
    fig.tight_layout()
    return _png(fig)


def ttft_cdf_figure(result: ExperimentResult) -> bytes:
    fig, ax = plt.subplots(figsize=(9, 5))
    for i, (policy, ttft) in enumerate(result.ttft_s.items()):
        if len(ttft):
            ax.plot(ttft, np.linspace(0, 100, len(ttft)), lw=2.2 if policy == "slit" else 1.2,
                    color=f"C{i}", label=policy)
    slo = result.scenario.slo_ttft_s
    ax.axvline(slo, c="k", ls="--", lw=0.9, label=f"SLO {slo:g} s")
    ax.axhline(result.scenario.slo_percentile, c="0.5", ls=":", lw=0.9)
    ax.set_xlabel("TTFT including network round trip (s)")
    ax.set_ylabel("requests (%)")
    ax.set_xlim(0, max(2.0 * slo, 0.1))
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("TTFT distribution per policy (simulated)")
    fig.tight_layout()
    return _png(fig)


FIGURES: tuple[FigureSpec, ...] = (
    FigureSpec("pareto.png", "Pareto front",
               "The busiest interval's front in the four objectives (pairwise), SLIT's chosen "
               "plan (star) and each baseline's plan for the same interval, all as planned on "
               "forecasts with the surrogate.", pareto_figure),
    FigureSpec("allocation.png", "Traffic and awake replicas per site",
               "Each site's share of all traffic and its awake replicas over the period, as "
               "SLIT planned them.", allocation_figure),
    FigureSpec("signals.png", "Signals per site",
               "Carbon intensity, electricity price and wet-bulb temperature at every site, as "
               "they happened (the plans only saw forecasts).", signals_figure),
    FigureSpec("footprint.png", "Footprint per policy",
               "Carbon, water (on-site cooling and off-site generation) and energy cost of each "
               "policy over the period.", footprint_figure),
    FigureSpec("ttft_cdf.png", "TTFT per policy",
               "Distribution of time to first token, network included, with the SLO.",
               ttft_cdf_figure),
)


def _site_colours(site_ids: tuple[str, ...]) -> list:
    cmap = plt.get_cmap(SITE_CMAP)
    return [cmap(i % cmap.N) for i in range(len(site_ids))]


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    # No timestamp or version in the metadata: the same run draws the same bytes.
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()
