"""The commented example scenario ``slit init`` writes: the embedded default, spelled out."""

from __future__ import annotations

from slit.data.regions import DEFAULT_REGION_IDS
from slit.experiment.scenario import Scenario, default_scenario
from slit.optimise.problem import OBJECTIVES


def example_yaml() -> str:
    """YAML that loads to exactly ``default_scenario()`` (with ``name: default``)."""
    return render(default_scenario())


def render(scenario: Scenario) -> str:
    """A commented scenario file for ``scenario`` (sites listed one by one)."""
    pref = scenario.preference
    weights = ", ".join(f"{name}: {w:g}" for name, w in zip(OBJECTIVES, pref.weights,
                                                            strict=True))
    mix = ", ".join(f"{kind}: {share:g}" for kind, share in scenario.demand.trace_mix.items())
    models = {s.replica.model for s in scenario.sites}
    model = models.pop() if len(models) == 1 else scenario.sites[0].replica.model
    lines = [
        "# SLIT scenario (docs/scenarios.md describes every setting).",
        "# Run it with:  slit run THIS_FILE.yaml",
        "# Units are in the names: _s seconds, _rps requests per second, _utc UTC time.",
        "schema_version: 1",
        f"name: {scenario.name}",
        f"seed: {scenario.seed}                    # every random draw follows from it",
        "# Folder with real data in the layout of shared/data (regions/REGION/YEAR/, traces/).",
        "# Relative paths are read from this file's folder; null = the embedded default.",
        "data_dir: null",
        f"carbon_basis: {scenario.carbon_basis}         # direct | lca (life-cycle)",
        f"model: {model}        # served by every site that names no model of its own",
        "",
        "# Datacenters. Instead of this list, `fleet: default` takes the 15 default sites,",
        "# each sized to serve its own region's peak demand at about 70 % utilisation.",
        "sites:",
    ]
    for site in scenario.sites:
        own_model = "" if site.replica.model == model else f", model: {site.replica.model}"
        lines.append(
            f"  - {{region: {site.region_id}, gpu: {site.replica.gpu}, tp: {site.replica.tp}, "
            f"installed_replicas: {site.installed}, cooling: {site.footprint.cooling.value}"
            f"{own_model}}}")
    origins = "default" if scenario.demand.origins == DEFAULT_REGION_IDS \
        else "[" + ", ".join(scenario.demand.origins) + "]"
    lines += [
        "",
        "workload:",
        f"  origins: {origins}        # user regions; default = the 15 regions",
        "  weights: null           # traffic shares per origin (sum 1); null = by Internet users",
        f"  global_rate_rps: {scenario.demand.global_rate_rps:g}     # mean over a week, all "
        "origins",
        f"  trace_mix: {{{mix}}}   # Azure trace kinds: conv, code",
        "",
        "period:",
        f"  start_utc: \"{scenario.start_utc:%Y-%m-%dT%H:%M}\"   # on a whole hour",
        f"  hours: {scenario.hours:g}",
        f"interval_s: {scenario.interval_s:g}            # scheduling interval, whole minutes",
        "",
        "slo:",
        f"  ttft_s: {scenario.slo_ttft_s:g}             # time to first token, network included",
        f"  percentile: {scenario.slo_percentile}          # 95 | 99: share of requests within it",
        "",
        "# How SLIT picks one plan from each interval's Pareto front:",
        "#   weights: least weighted sum of the objectives (each scaled to its typical size)",
        "#   knee:    the plan nearest the ideal point",
        "#   cap:     mean TTFT <= ttft_cap_s, then least `minimise`",
        "preference:",
        f"  mode: {pref.mode}",
        f"  weights: {{{weights}}}",
        f"  ttft_cap_s: {'null' if pref.ttft_cap_s is None else f'{pref.ttft_cap_s:g}'}",
        f"  minimise: {pref.minimise}      # ttft_mean_s | carbon_kg | water_l | cost_usd",
        "",
        "# Data residency: origin -> the only sites that may serve it. For example:",
        "#   pins: {DE-LU: [DE-LU], KR: [KR, JP-TK]}",
    ]
    lines.append("pins: {}" if not scenario.pins else "pins: {" + ", ".join(
        f"{o}: [{', '.join(s)}]" for o, s in scenario.pins.items()) + "}")
    lines += [
        "",
        "search:                    # effort of the multi-objective search per interval",
        f"  population: {scenario.search.population}",
        f"  generations: {scenario.search.generations}",
        "",
    ]
    return "\n".join(lines)
