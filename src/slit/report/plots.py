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

from slit.data.regions import get_region  # noqa: E402
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
POLICY_LINESTYLES = ("-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)), (0, (1, 2)))
# Sites are coloured by continent: one colour family each, a shade per site, so a stack of 15
# bands reads as a few groups instead of 15 hues that cannot all be told apart.
CONTINENT_CMAPS = {"North America": "Blues", "South America": "Greens", "Europe": "Purples",
                   "Africa": "Oranges", "Asia": "Reds", "Oceania": "Greys", "other": "pink"}
# The CCDF's floor: the tail below 0.01 % of requests is beyond what the sample resolves.
CCDF_FLOOR_PCT = 0.01


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
    """Every policy's committed plan of the busiest interval under the planning model (all
    models; forecasts), pairwise; with SLIT's per-interval front where the run kept one (the
    receding-horizon run does not: the front search per interval and model cost more than the
    whole horizon plan)."""
    k = busiest_interval(result)
    decision = result.slit_decisions[k] if k < len(result.slit_decisions) else None
    fig, axes = plt.subplots(2, 3, figsize=(13, 7.5))
    baselines = [p for p in result.plans if p != "slit"]
    for ax, (i, j) in zip(axes.ravel(), combinations(range(len(OBJECTIVES)), 2), strict=True):
        if decision is not None:
            front = decision.front_objectives
            feasible = decision.front_violation_s <= 0
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
        if "slit" in result.plans:
            chosen = result.plans["slit"].planned_objectives[k]
            ax.scatter(chosen[i], chosen[j], s=120, marker="*", c="C0", edgecolors="k",
                       linewidths=0.6, label="SLIT (committed)", zorder=5)
        ax.set_xlabel(OBJECTIVE_LABELS[OBJECTIVES[i]])
        ax.set_ylabel(OBJECTIVE_LABELS[OBJECTIVES[j]])
        ax.grid(alpha=0.3)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 5), frameon=False)
    start = interval_starts(result)[k]
    fig.suptitle(f"Committed plans of interval {k} ({start:%Y-%m-%d %H:%M} UTC), all models, "
                 "planned on forecasts: pairwise projections")
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
    order = site_order(sc.site_ids)  # stacked by continent, so each group is one band
    labels = [sc.site_ids[s] for s in order]
    by_site = _site_colours(sc.site_ids)
    colours = [by_site[s] for s in order]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 7.5), sharex=True)
    top.stackplot(times, share_pct[:, order].T, labels=labels, colors=colours, step="post",
                  edgecolor="white", linewidth=0.3)
    top.set_ylabel("share of all traffic (%)")
    top.set_ylim(0, 100)
    top.set_title("SLIT: where traffic is served (expected demand x planned routing)")
    bottom.stackplot(times, awake[:, order].T, colors=colours, step="post",
                     edgecolor="white", linewidth=0.3)
    installed = sum(sum(s.reserved.values()) or s.installed for s in sc.sites)
    bottom.axhline(installed, c="k", lw=0.8, ls="--")
    bottom.text(times[0], installed, f" reserved (all models): {installed}", va="bottom",
                fontsize=8)
    bottom.set_ylabel("loaded replicas (all models)")
    bottom.set_title("SLIT: loaded replicas per site (stacked, all models)")
    bottom.set_xlabel("time (UTC)")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
        ax.margins(x=0)
    _continent_legend(fig, sc.site_ids, order, colours)
    fig.tight_layout(rect=(0, 0, 0.87, 1))
    return _png(fig)


def signals_figure(result: ExperimentResult) -> bytes:
    """One heat map per signal, site x hour: 15 sites stay legible where 15 lines would not."""
    sc = result.scenario
    carbon = carbon_column(sc.carbon_basis)
    panels = ((carbon, f"carbon intensity, {sc.carbon_basis} (gCO2eq/kWh)", "YlOrBr"),
              (PRICE, "electricity price (USD/MWh)", "viridis"),
              (WET_BULB, "wet-bulb temperature (°C)", "coolwarm"))
    order = site_order(sc.site_ids)
    labels = [sc.site_ids[s] for s in order]
    hours = pd.date_range(sc.start_utc.floor("h"), sc.end_utc.ceil("h"), freq="h")
    # Lines between continents, so the groups read as blocks.
    groups = [continent(site) for site in labels]
    breaks = [n for n in range(1, len(groups)) if groups[n] != groups[n - 1]]
    fig, axes = plt.subplots(3, 1, figsize=(12, 3.0 + 0.55 * len(labels)), sharex=True)
    for ax, (column, label, cmap) in zip(axes, panels, strict=True):
        grid = np.array([result.signals_actual[site][column]
                         .reindex(hours[:-1]).to_numpy(dtype=float) for site in labels])
        mesh = ax.pcolormesh(hours, np.arange(len(labels) + 1), grid, cmap=cmap,
                             shading="flat")
        ax.set_yticks(np.arange(len(labels)) + 0.5, labels, fontsize=7)
        ax.invert_yaxis()
        for n in breaks:
            ax.axhline(n, c="white", lw=1.5)
        ax.set_title(label, fontsize=10, loc="left")
        fig.colorbar(mesh, ax=ax, pad=0.01, fraction=0.03)
    axes[-1].set_xlabel("time (UTC)")
    fig.suptitle("Actual hourly signals per site (sites grouped by continent)")
    fig.tight_layout()
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
    """Left, the body of the distribution; right, the tail where the SLO is decided, as the
    share of requests slower than x on a log axis (a linear CDF squeezes it into pixels)."""
    slo = result.scenario.slo_ttft_s
    allowed_pct = 100.0 - result.scenario.slo_percentile  # share allowed above the SLO
    fig, (body, tail) = plt.subplots(1, 2, figsize=(13, 5))
    policies = [p for p in result.ttft_s if len(result.ttft_s[p])]
    tail_end_s = 0.0
    # SLIT last, so it is drawn over baselines whose curves coincide with it.
    for policy in sorted(policies, key=lambda p: p == "slit"):
        i = list(result.ttft_s).index(policy)
        ttft = result.ttft_s[policy]
        style = {"color": f"C{i}", "label": policy, "zorder": 3 if policy == "slit" else 2,
                 "lw": 2.6 if policy == "slit" else 1.3,
                 "ls": "-" if policy == "slit" else POLICY_LINESTYLES[i % len(POLICY_LINESTYLES)]}
        body.plot(ttft, np.linspace(0, 100, len(ttft)), **style)
        slower_pct = 100.0 * (1.0 - np.arange(1, len(ttft) + 1) / len(ttft))
        keep = slower_pct >= CCDF_FLOOR_PCT
        tail.step(ttft[keep], slower_pct[keep], where="post", **style)
        tail_end_s = max(tail_end_s, float(ttft[keep][-1]) if keep.any() else 0.0)
    for ax in (body, tail):
        ax.axvline(slo, c="k", ls="--", lw=0.9)
        ax.set_xlabel("TTFT including network round trip (s)")
        ax.grid(alpha=0.3, which="both")
    body.axhline(result.scenario.slo_percentile, c="0.5", ls=":", lw=0.9)
    body.set_ylabel("requests at or below x (%)")
    body.set_xlim(0, max(2.0 * slo, 0.1))
    body.set_ylim(0, 100)
    body.set_title("distribution (CDF)")
    tail.set_yscale("log")
    tail.set_ylim(CCDF_FLOOR_PCT, 100)
    tail.set_xlim(0, max(1.5 * slo, 1.05 * tail_end_s))
    tail.axhline(allowed_pct, c="0.3", ls=":", lw=1.0)
    tail.annotate(f"SLO: at most {allowed_pct:g} % slower than {slo:g} s",
                  (slo, allowed_pct), xytext=(6, 6), textcoords="offset points", fontsize=8)
    tail.set_ylabel("requests slower than x (%, log)")
    tail.set_title("tail (complementary CDF, log scale)")
    handles, labels = tail.get_legend_handles_labels()
    first = sorted(range(len(labels)), key=lambda n: labels[n] != "slit")  # SLIT on top
    tail.legend([handles[n] for n in first], [labels[n] for n in first], fontsize=8,
                loc="upper right")
    fig.suptitle("TTFT per policy (simulated)")
    fig.tight_layout()
    return _png(fig)


FIGURES: tuple[FigureSpec, ...] = (
    FigureSpec("pareto.png", "Plans of the busiest interval",
               "The busiest interval's committed plans in the four objectives (pairwise), all "
               "models together: SLIT's (star) and each baseline's, as planned on forecasts "
               "with the surrogate (loading energy included). SLIT's per-interval Pareto front "
               "is not searched in the receding-horizon run.", pareto_figure),
    FigureSpec("allocation.png", "Traffic and awake replicas per site",
               "Each site's share of all traffic and its awake replicas over the period, as "
               "SLIT planned them; sites coloured by continent.", allocation_figure),
    FigureSpec("signals.png", "Signals per site",
               "Carbon intensity, electricity price and wet-bulb temperature at every site and "
               "hour, as they happened (the plans only saw forecasts).", signals_figure),
    FigureSpec("footprint.png", "Footprint per policy",
               "Carbon, water (on-site cooling and off-site generation) and energy cost of each "
               "policy over the period.", footprint_figure),
    FigureSpec("ttft_cdf.png", "TTFT per policy",
               "Time to first token, network included: the whole distribution (left) and the "
               "share of requests slower than each TTFT on a log axis (right), where the SLO "
               "is decided.",
               ttft_cdf_figure),
)


def continent(region_id: str) -> str:
    """The continent of a region, from its IANA time zone (the Americas split by latitude)."""
    region = get_region(region_id, "site")
    area = region.timezone.split("/")[0]
    if area == "America":
        return "South America" if region.lat_deg < 0 else "North America"
    if area in ("Australia", "Pacific"):
        return "Oceania"
    return area if area in ("Europe", "Africa", "Asia") else "other"


def site_order(site_ids: tuple[str, ...]) -> list[int]:
    """Site indices grouped by continent (in ``CONTINENT_CMAPS`` order), scenario order within."""
    rank = list(CONTINENT_CMAPS)
    return sorted(range(len(site_ids)), key=lambda s: (rank.index(continent(site_ids[s])), s))


def _site_colours(site_ids: tuple[str, ...]) -> list:
    """One shade per site from its continent's colour family, light to dark."""
    colours: list = [None] * len(site_ids)
    for name, cmap_name in CONTINENT_CMAPS.items():
        members = [s for s in range(len(site_ids)) if continent(site_ids[s]) == name]
        if not members:
            continue
        shades = np.linspace(0.9, 0.35, len(members)) if len(members) > 1 else [0.6]
        cmap = plt.get_cmap(cmap_name)
        for s, shade in zip(members, shades, strict=True):
            colours[s] = cmap(float(shade))
    return colours


def _continent_legend(fig: Figure, site_ids: tuple[str, ...], order: list[int],
                      colours: list) -> None:
    """A legend listing sites under their continent's name."""
    from matplotlib.patches import Patch

    handles: list = []
    current = None
    for s, colour in zip(order, colours, strict=True):
        name = continent(site_ids[s])
        if name != current:
            handles.append(Patch(visible=False, label=name))
            current = name
        handles.append(Patch(facecolor=colour, label=f"  {site_ids[s]}"))
    legend = fig.legend(handles=handles, loc="center right", fontsize=8, frameon=False)
    for text, handle in zip(legend.get_texts(), handles, strict=True):
        if not handle.get_visible():
            text.set_fontweight("bold")


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    # No timestamp or version in the metadata: the same run draws the same bytes.
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()
