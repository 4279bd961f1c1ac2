"""The one description of a scenario's settings: pydantic models mirroring the YAML file.

Each setting is declared once here with its default, its check and its help text
(``Field(description=...)``; the unit is in the name). Everything else is generated from it:
the ``Scenario`` a run uses is built only from validated settings
(``slit.experiment.scenario.scenario_from_settings``); the commented example ``slit init``
writes and the settings tables of docs/scenarios.md come from the descriptions
(``slit.config.example``). Adding a setting means adding a field here and using it.

Every model forbids unknown keys, so a typo is an error rather than a silently ignored setting.
Checks that need the catalogs (regions, GPUs, models, trace kinds) or the whole file (pins
against the fleet, a cap for ``mode: cap``) live here too, so an error names the exact field.
Defaults that belong to a lower layer's own type (the search effort, the preference weights,
the trace mix) are read from that type rather than repeated. ``slit.config.loader`` reads the
YAML and adds the line of an error.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Literal, cast

import pandas as pd
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from slit.data.regions import DEFAULT_REGION_IDS, REGIONS
from slit.errors import SlitInputError
from slit.footprint import CarbonBasis, CoolingType
from slit.optimise.metaheuristic import SearchSettings
from slit.optimise.preference import Preference, PreferenceMode
from slit.optimise.problem import OBJECTIVES
from slit.serving.catalog import GPUS, MODELS
from slit.timeutil import to_utc
from slit.workload.demand import DEFAULT_TRACE_MIX
from slit.workload.traces import TRACE_KINDS

SCHEMA_VERSION: Literal[1] = 1
# The site simulation keeps its awake schedule per minute, so intervals are whole minutes.
INTERVAL_STEP_S = 60


def invalid(problem: str, fix: str, field: tuple[str | int, ...] = ()) -> PydanticCustomError:
    """A validation error carrying its fix (and, from a model check, the field at fault), read
    back by the loader."""
    return PydanticCustomError("slit", "{problem}",
                               {"problem": problem, "fix": fix, "field": field})


def _known(value: str, catalog: dict | tuple, what: str) -> str:
    if value not in catalog:
        raise invalid(f"unknown {what} {value!r}", f"use one of: {' '.join(catalog)}")
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


GPUS_PER_NODE = 8


class ReplicaEntry(_Section):
    """How a site runs one model: the GPU type and the tensor-parallel degree of a replica."""

    gpu: str = Field(description=f"GPU: {' or '.join(GPUS)}")
    tp: int = Field(ge=1, description="GPUs per replica (tensor parallel): 1, 2, 4 or 8; the "
                    "model must fit")

    @field_validator("gpu")
    @classmethod
    def _gpu(cls, value: str) -> str:
        return _known(value, GPUS, "GPU")


class SiteEntry(_Section):
    """One datacenter: region, its GPU pool, how it runs each model, how it is cooled.

    Either the pool form (`gpus` + `replica_for`) or the single-model form of schema 1 (`gpu`,
    `tp`, `installed_replicas`, optional `model`: a pool of installed_replicas x tp GPUs serving
    one model)."""

    region: str = Field(description="region id (see `slit regions`); one site per region")
    gpus: dict[str, Annotated[int, Field(ge=0)]] | None = Field(
        default=None, description="the GPU pool: GPU type -> count, whole 8-GPU nodes (a "
        "multiple of 8)")
    replica_for: dict[str, ReplicaEntry] | None = Field(
        default=None, description="model name -> `{gpu, tp}`: the replica the site runs it "
        "with; every served model must be listed and its GPU type be in the pool")
    reserved: dict[str, Annotated[int, Field(ge=1)]] | None = Field(
        default=None, description="pool form: model -> replicas of the fixed placement the "
        "per-interval baselines plan on; null: each GPU type split by demand share")
    model: str | None = Field(default=None, description="single-model form: served model; null: "
                              "the scenario's `model`")
    gpu: str | None = Field(default=None, description=f"single-model form: GPU: "
                            f"{' or '.join(GPUS)}")
    tp: int | None = Field(default=None, ge=1, description="single-model form: GPUs per replica "
                           "(tensor parallel): 1, 2, 4 or 8; the model must fit")
    installed_replicas: int | None = Field(default=None, ge=1, description="single-model form: "
                                           "replicas the site has (at least 1)")
    cooling: CoolingType = Field(
        default=CoolingType.EVAPORATIVE, description="`evaporative` (cooling tower: uses water on "
        "site) or `dry` (no water on site, higher PUE when hot)")

    @property
    def pool_form(self) -> bool:
        return self.gpus is not None

    @model_validator(mode="after")
    def _form(self) -> SiteEntry:
        single = (self.gpu, self.tp, self.installed_replicas)
        if self.gpus is not None or self.replica_for is not None or self.reserved is not None:
            if self.gpus is None or self.replica_for is None:
                raise invalid("the pool form needs both `gpus` and `replica_for`",
                              "add the missing one (see `slit init`)", field=("gpus",))
            if any(v is not None for v in single) or self.model is not None:
                raise invalid("mixes the pool form with `gpu`/`tp`/`installed_replicas`/`model`",
                              "keep `gpus` + `replica_for` (+ `reserved`) only",
                              field=("gpus",))
            for gpu, count in self.gpus.items():
                _known(gpu, GPUS, "GPU")
                if count % GPUS_PER_NODE:
                    raise invalid(f"{count} {gpu} GPUs is not whole 8-GPU nodes",
                                  f"give a multiple of {GPUS_PER_NODE}",
                                  field=("gpus", gpu))
            for model, count in (self.reserved or {}).items():
                if model not in self.replica_for:
                    raise invalid(f"reserves {model}, which `replica_for` lacks",
                                  "reserve only models the site runs", field=("reserved", model))
                spec = self.replica_for[model]
                if count * spec.tp > self.gpus.get(spec.gpu, 0):
                    raise invalid(f"{count} replicas of {model} need {count * spec.tp} "
                                  f"{spec.gpu} GPUs", "reserve fewer or add GPUs",
                                  field=("reserved", model))
            for model, entry in self.replica_for.items():
                _known(model, MODELS, "model")
                if entry.gpu not in self.gpus:
                    raise invalid(f"{model} runs on {entry.gpu}, which the pool lacks",
                                  f"add `{entry.gpu}: 8` (or more) to `gpus`",
                                  field=("replica_for", model, "gpu"))
        elif any(v is None for v in single):
            raise invalid("needs either `gpus` + `replica_for` or `gpu`, `tp` and "
                          "`installed_replicas`", "give one of the two forms (see `slit init`)",
                          field=("gpus",))
        return self

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        return _known(value, REGIONS, "region")

    @field_validator("gpu")
    @classmethod
    def _gpu(cls, value: str | None) -> str | None:
        return None if value is None else _known(value, GPUS, "GPU")

    @field_validator("model")
    @classmethod
    def _model(cls, value: str | None) -> str | None:
        return None if value is None else _known(value, MODELS, "model")


def _check_mix(value: dict[str, float]) -> dict[str, float]:
    for kind in value:
        _known(kind, TRACE_KINDS, "trace kind")
    if abs(sum(value.values()) - 1.0) > 1e-6:
        raise invalid(f"shares sum to {sum(value.values()):g}",
                      "give shares that sum to 1, e.g. conv: 0.7, code: 0.3")
    return value


class ModelEntry(_Section):
    """One served model: its share of the requests and its token profile."""

    name: str = Field(description="model name (see the catalog in docs/serving.md)")
    demand_share: float = Field(gt=0, le=1, description="share of all requests that ask for this "
                                "model; the shares of all models sum to 1")
    trace_mix: dict[str, Annotated[float, Field(ge=0)]] = Field(
        description="shares of Azure trace kinds (`conv`, `code`) that draw this model's token "
        "sizes; sum 1")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _known(value, MODELS, "model")

    @field_validator("trace_mix")
    @classmethod
    def _mix(cls, value: dict[str, float]) -> dict[str, float]:
        return _check_mix(value)


# The default served models (an ASSUMPTION, docs/scenarios.md and docs/workload.md): the small
# model takes most requests, chat-like; the large one a smaller share with more coding traffic.
DEFAULT_MODELS: tuple[tuple[str, float, dict[str, float]], ...] = (
    ("Llama-3.1-8B", 0.7, {"conv": 0.9, "code": 0.1}),
    ("Llama-3.1-70B", 0.3, {"conv": 0.5, "code": 0.5}),
)


def _default_models() -> list[ModelEntry]:
    return [ModelEntry(name=n, demand_share=s, trace_mix=dict(m)) for n, s, m in DEFAULT_MODELS]


class Workload(_Section):
    """The users: where requests come from, how many, and their token sizes."""

    origins: list[str] | Literal["default"] = Field(
        default="default", description="user regions, a list of region ids, or `default` (the 15 "
        "regions)")
    weights: list[Annotated[float, Field(ge=0)]] | None = Field(
        default=None, description="traffic share per origin, in `origins` order, summing to 1; "
        "null: by Internet users")
    global_rate_rps: float = Field(
        default=25.0, gt=0, description="mean request rate over a week, all origins together "
        "(25: the default day runs in minutes on 2 cores; fleets are sized from it)")
    trace_mix: dict[str, Annotated[float, Field(ge=0)]] = Field(
       default_factory=lambda: dict(DEFAULT_TRACE_MIX),
        description="shares of Azure trace kinds (`conv`, `code`) that draw token sizes; "
        "sum 1")

    @field_validator("origins")
    @classmethod
    def _origins(cls, value: list[str] | str) -> list[str] | str:
        if isinstance(value, list):
            if not value:
                raise invalid("is empty", "list at least one region, or write: default")
            for origin in value:
                _known(origin, REGIONS, "region")
            if len(set(value)) != len(value):
                raise invalid("lists a region twice", "list each origin once")
        return value

    @field_validator("trace_mix")
    @classmethod
    def _mix(cls, value: dict[str, float]) -> dict[str, float]:
        return _check_mix(value)

    @model_validator(mode="after")
    def _weights(self) -> Workload:
        if self.weights is None:
            return self
        n = len(REGIONS) if self.origins == "default" else len(self.origins)
        if len(self.weights) != n or abs(sum(self.weights) - 1.0) > 1e-6:
            raise invalid(f"{len(self.weights)} shares summing to {sum(self.weights):g}",
                          f"give {n} shares, one per origin in order, that sum to 1",
                          field=("weights",))
        return self


class Period(_Section):
    """The simulated period."""

    start_utc: str = Field(description="first hour, ISO 8601 `YYYY-MM-DDTHH:MM`, on a whole "
                           "hour; no offset means UTC")
    hours: float = Field(gt=0, le=24 * 366, description="length of the simulated period")

    @field_validator("start_utc", mode="before")
    @classmethod
    def _start(cls, value: object) -> object:
        # YAML reads 2023-07-12 as a date and "2023-07-12 00:00:00" as a datetime.
        if isinstance(value, datetime | date):
            return value.isoformat()
        return value

    @field_validator("start_utc")
    @classmethod
    def _start_hour(cls, value: str) -> str:
        stamp = parse_utc(value)
        if stamp != stamp.floor("h"):
            raise invalid(f"{value!r} is not on a whole hour",
                          "signals are hourly: start on the hour, e.g. 2023-07-12T00:00")
        return value

    @property
    def start(self) -> pd.Timestamp:
        return parse_utc(self.start_utc)


class Slo(_Section):
    """The service-level objective every plan must meet."""

    ttft_s: float = Field(default=1.5, gt=0, le=600, description="time-to-first-token SLO, network "
                          "round trip included")
    percentile: Literal[95, 99] = Field(default=99, description="`95` or `99`: the share of "
                                        "requests "
                                        "that must meet it")
    shed_factor: Annotated[float, Field(ge=1)] | None = Field(
        default=4.0, description="admission control: a site rejects an arriving request at "
        "once (shed, counted) when the oldest request waiting ahead of it has waited more than "
        "this many times `ttft_s`; null: never shed (queues grow without bound)")


ObjectiveName = Literal["ttft_mean_s", "carbon_kg", "water_l", "cost_usd"]

EventKind = Literal["outage", "derate", "partition", "signal_gap"]
SignalName = Literal["carbon", "price", "weather"]
# Which fields each kind of event takes besides its window.
_EVENT_FIELDS: dict[str, tuple[str, ...]] = {
    "outage": ("site",), "derate": ("site", "gpu_fraction"), "partition": ("origin", "site"),
    "signal_gap": ("region", "signals"),
}


class EventEntry(_Section):
    """A fault or data gap during the period (docs/faults.md), over [start_utc, end_utc)."""

    kind: EventKind = Field(description="`outage` (a site loses all its GPUs), `derate` (keeps "
                            "`gpu_fraction` of them), `partition` (`origin` cannot reach "
                            "`site`) or `signal_gap` (`region`'s `signals` missing for the "
                            "planner)")
    start_utc: str = Field(description="start, ISO 8601 `YYYY-MM-DDTHH:MM`; no offset means UTC")
    end_utc: str = Field(description="end (excluded), after `start_utc`")
    site: str | None = Field(default=None, description="outage, derate, partition: the site's "
                             "region id")
    origin: str | None = Field(default=None, description="partition: the user origin cut off")
    region: str | None = Field(default=None, description="signal_gap: the region whose data is "
                               "missing")
    gpu_fraction: float | None = Field(default=None, ge=0, lt=1, description="derate: share of "
                                       "the site's GPUs still usable, in [0, 1)")
    signals: list[SignalName] | None = Field(default=None, description="signal_gap: any of "
                                             "`carbon`, `price`, `weather`; null: all three")

    @field_validator("start_utc", "end_utc", mode="before")
    @classmethod
    def _time(cls, value: object) -> object:
        if isinstance(value, datetime | date):
            return value.isoformat()
        return value

    @field_validator("start_utc", "end_utc")
    @classmethod
    def _parse(cls, value: str) -> str:
        parse_utc(value)
        return value

    @model_validator(mode="after")
    def _fields_of_kind(self) -> EventEntry:
        wanted = _EVENT_FIELDS[self.kind]
        for name in ("site", "origin", "region", "gpu_fraction", "signals"):
            given = getattr(self, name) is not None
            if name in wanted and not given and name != "signals":
                raise invalid(f"a {self.kind} needs `{name}`", f"add `{name}:`", field=(name,))
            if given and name not in wanted:
                raise invalid(f"a {self.kind} takes no `{name}`",
                              f"remove it; a {self.kind} takes {', '.join(wanted)}",
                              field=(name,))
        if not parse_utc(self.end_utc) > parse_utc(self.start_utc):
            raise invalid(f"{self.end_utc!r} is not after start_utc {self.start_utc!r}",
                          "give an end after the start", field=("end_utc",))
        if self.signals is not None and not self.signals:
            raise invalid("is empty", "list some of carbon, price, weather, or remove it",
                          field=("signals",))
        return self


def _default_weights() -> dict[ObjectiveName, float]:
    return cast(dict[ObjectiveName, float],
                dict(zip(OBJECTIVES, Preference().weights, strict=True)))


class PreferenceSection(_Section):
    """How SLIT picks one plan from each interval's Pareto front."""

    mode: PreferenceMode = Field(
        default=Preference().mode,
        description="`weights`: least weighted sum of the objectives, each "
        "scaled to its typical size; `knee`: the plan nearest the ideal point; `cap`: mean "
        "TTFT within `ttft_cap_s`, then least `minimise`")
    weights: dict[ObjectiveName, Annotated[float, Field(ge=0)]] = Field(
       default_factory=_default_weights,
        description="weights per objective (missing ones are 0; at least one positive)")
    ttft_cap_s: Annotated[float, Field(gt=0)] | None = Field(
        default=None, description="cap on mean TTFT for `mode: cap` (required there)")
    minimise: ObjectiveName = Field(
        default=Preference().minimise,  # type: ignore[arg-type]
        description="objective minimised under the cap: `ttft_mean_s`, `carbon_kg`, "
        "`water_l` or `cost_usd`")

    @field_validator("weights")
    @classmethod
    def _weights(cls, value: dict[str, float]) -> dict[str, float]:
        if not any(v > 0 for v in value.values()):
            raise invalid("no weight is positive", "give at least one objective a weight > 0")
        return value

    @model_validator(mode="after")
    def _cap(self) -> PreferenceSection:
        if self.mode == "cap" and self.ttft_cap_s is None:
            raise invalid("mode: cap needs a cap", "add `ttft_cap_s:` (mean TTFT in seconds, "
                          "e.g. 0.5) or use mode: weights", field=("ttft_cap_s",))
        return self

    def weight_tuple(self) -> tuple[float, float, float, float]:
        weights: dict[str, float] = {str(k): v for k, v in self.weights.items()}
        w = [float(weights.get(name, 0.0)) for name in OBJECTIVES]
        return (w[0], w[1], w[2], w[3])


class Search(_Section):
    """Effort of the multi-objective search per interval."""

    population: int = Field(default=SearchSettings().population, ge=4, le=10_000,
                            description="population of the multi-objective search")
    generations: int = Field(default=SearchSettings().generations, ge=1, le=100_000,
                             description="generations of the search")


class ScenarioFile(_Section):
    """The whole file."""

    schema_version: Literal[1] = Field(default=SCHEMA_VERSION, description="version of this format")
    name: str = Field(default="scenario", description="shown in the report")
    seed: int = Field(default=0, ge=0, description="seed of every random draw (requests, embedded "
                      "signals, search)")
    data_dir: Path | None = Field(
        default=None, description="folder in the layout of `shared/data` (`regions/REGION/YEAR/`, "
        "`traces/`); relative to the scenario file's folder; null: the embedded default")
    carbon_basis: CarbonBasis = Field(
        default=CarbonBasis.DIRECT,
        description="Electricity Maps carbon intensity: `direct` or `lca` "
        "(life-cycle)")
    model: str = Field(default="Llama-3.1-70B", description="single-model files (sites in the "
                       "`gpu`/`tp` form, no `models`): the model served by sites that name none")
    models: list[ModelEntry] | None = Field(
        default=None, description="the served models, each `{name, demand_share, trace_mix}`, "
        "shares summing to 1; null: Llama-3.1-8B (70 % of requests) and Llama-3.1-70B (30 %) for "
        "`fleet: default` and pool-form sites, or one model (`model`, `workload.trace_mix`) for "
        "single-model sites")
    min_up_s: float = Field(
        default=900.0, ge=0, le=24 * 3600, description="minimum time a loaded replica stays up "
        "before it may be released (one default interval: a load costs 50-90 s of power)")
    fleet: Literal["default"] | None = Field(
        default=None, description="`default`: the 15 default sites, each sized to its own region's "
        "peak demand at `workload.global_rate_rps` (about 70 % utilisation). Give either "
        "`fleet` or `sites`")
    sites: list[SiteEntry] | None = Field(default=None,
                                          description="list of sites (one per region)")
    workload: Workload = Field(default_factory=Workload, description="the users")
    period: Period = Field(description="the simulated period")
    interval_s: int = Field(default=900, ge=INTERVAL_STEP_S, le=24 * 3600,
                            description="scheduling interval; a whole number of minutes")
    slo: Slo = Field(default_factory=Slo, description="the SLO")
    preference: PreferenceSection = Field(
       default_factory=PreferenceSection, description="how SLIT picks one plan from each "
        "interval's Pareto front")
    pins: dict[str, list[str]] = Field(
       default_factory=dict, description="data residency: origin -> the only sites that may "
        "serve it, e.g. `{DE-LU: [DE-LU]}`")
    search: Search = Field(default_factory=Search, description="effort of the "
                           "multi-objective search per interval")
    events: list[EventEntry] = Field(
        default_factory=list, description="faults and data gaps during the period, each "
        "`{kind, start_utc, end_utc, ...}` (docs/faults.md): outage, derate, partition, "
        "signal_gap")

    @field_validator("model")
    @classmethod
    def _model(cls, value: str) -> str:
        return _known(value, MODELS, "model")

    @field_validator("interval_s")
    @classmethod
    def _interval(cls, value: int) -> int:
        if value % INTERVAL_STEP_S:
            raise invalid(f"{value} s is not a whole number of minutes",
                          "use a multiple of 60 s, e.g. 900")
        return value

    @field_validator("pins")
    @classmethod
    def _pins(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for origin, sites in value.items():
            _known(origin, REGIONS, "region")
            if not sites:
                raise invalid(f"{origin} has no site", "list at least one site it may use")
            for site in sites:
                _known(site, REGIONS, "region")
        return value

    @model_validator(mode="after")
    def _fleet_or_sites(self) -> ScenarioFile:
        if (self.fleet is None) == (self.sites is None):
            raise invalid("give either `fleet: default` or a `sites:` list, not both or neither",
                          "keep exactly one of the two", field=("sites",))
        if self.sites is not None:
            if not self.sites:
                raise invalid("the list is empty", "list at least one site", field=("sites",))
            seen: set[str] = set()
            for i, site in enumerate(self.sites):
                if site.region in seen:
                    raise invalid(f"region {site.region} appears twice", "list each site once",
                                  field=("sites", i, "region"))
                seen.add(site.region)
        self._check_models()
        self._check_pins()
        self._check_events()
        return self

    def _check_events(self) -> None:
        for i, event in enumerate(self.events):
            checks = (("site", self.site_ids, "fleet site"), ("origin", self.origin_ids,
                                                              "workload origin"),
                      ("region", self.site_ids, "fleet site"))
            for name, known, what in checks:
                value = getattr(event, name)
                if value is not None and value not in known:
                    raise invalid(f"{value!r} is not a {what}",
                                  f"use one of: {' '.join(known)}", field=("events", i, name))

    @property
    def single_model(self) -> bool:
        """A schema-1 file: sites in the single-model form and no `models` list."""
        return (self.models is None and self.sites is not None
                and not any(s.pool_form for s in self.sites))

    def served_models(self) -> list[ModelEntry]:
        """The models this file serves (the defaults, or one model for a single-model file)."""
        if self.models is not None:
            return list(self.models)
        if self.single_model:
            names = {s.model or self.model for s in self.sites or ()}
            name = names.pop() if len(names) == 1 else self.model
            return [ModelEntry(name=name, demand_share=1.0,
                               trace_mix=dict(self.workload.trace_mix))]
        return _default_models()

    def _check_models(self) -> None:
        if self.models is not None:
            names = [m.name for m in self.models]
            if not names:
                raise invalid("the list is empty", "list at least one model", field=("models",))
            if len(set(names)) != len(names):
                raise invalid("lists a model twice", "list each model once", field=("models",))
            total = sum(m.demand_share for m in self.models)
            if abs(total - 1.0) > 1e-6:
                raise invalid(f"demand shares sum to {total:g}", "give shares that sum to 1",
                              field=("models",))
        if self.sites is None:
            return
        forms = {s.pool_form for s in self.sites}
        if len(forms) > 1:
            raise invalid("mixes pool-form and single-model sites",
                          "write every site as `gpus` + `replica_for`", field=("sites",))
        if self.single_model:
            served = {s.model or self.model for s in self.sites}
            if len(served) > 1:
                raise invalid(f"single-model sites serve {len(served)} different models",
                              "write the sites as `gpus` + `replica_for` and list `models`",
                              field=("sites",))
            return
        if not forms or forms == {False}:
            raise invalid("`models` needs pool-form sites",
                          "write every site as `gpus` + `replica_for`", field=("sites",))
        for i, site in enumerate(self.sites):
            missing = [m.name for m in self.served_models()
                       if m.name not in (site.replica_for or {})]
            if missing:
                raise invalid(f"has no replica for {missing[0]}",
                              f"add `{missing[0]}: {{gpu: ..., tp: ...}}` to `replica_for`",
                              field=("sites", i, "replica_for"))

    @property
    def site_ids(self) -> tuple[str, ...]:
        return DEFAULT_REGION_IDS if self.sites is None else tuple(s.region for s in self.sites)

    @property
    def origin_ids(self) -> tuple[str, ...]:
        origins = self.workload.origins
        return DEFAULT_REGION_IDS if origins == "default" else tuple(origins)

    def _check_pins(self) -> None:
        for origin, allowed in self.pins.items():
            if origin not in self.origin_ids:
                raise invalid(f"{origin} is not a workload origin",
                              f"pin one of: {' '.join(self.origin_ids)}", field=("pins", origin))
            outside = [site for site in allowed if site not in self.site_ids]
            if outside:
                raise invalid(f"site {outside[0]} is not in the fleet",
                              f"pin {origin} to sites from: {' '.join(self.site_ids)}",
                              field=("pins", origin))


Loc = tuple[str | int, ...]


def validate_settings(document: dict) -> ScenarioFile:
    """A validated ``ScenarioFile`` from a mapping, or one ``SlitInputError`` naming the field."""
    try:
        return ScenarioFile.model_validate(document)
    except ValidationError as err:
        error = err.errors()[0]
        loc = error_loc(error)
        problem, fix = explain(error, loc)
        raise SlitInputError(dotted(loc) or "scenario", problem, fix) from None


def error_loc(error: ErrorDetails) -> Loc:
    """Where a validation error points, including the field a model check names."""
    ctx = error.get("ctx") or {}
    return tuple(error["loc"]) + tuple(ctx.get("field", ()))


def dotted(loc: Loc) -> str:
    """``('sites', 2, 'gpu')`` -> ``sites[2].gpu``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def explain(error: ErrorDetails, loc: Loc) -> tuple[str, str]:
    """The problem and its fix, in words a user can act on."""
    kind = error["type"]
    ctx = error.get("ctx") or {}
    value = error.get("input")
    if kind == "slit":
        return str(ctx["problem"]), str(ctx["fix"])
    if kind == "extra_forbidden":
        allowed = allowed_keys(loc[:-1])
        return ("is not a known setting",
                f"remove it or use one of: {', '.join(allowed)}" if allowed else "remove it")
    if kind == "missing":
        return "is missing", f"add `{loc[-1]}:`; `slit init FILE` shows every setting"
    if kind == "literal_error":
        return f"{value!r} is not allowed", f"use one of: {ctx.get('expected')}"
    if kind == "enum":
        return f"{value!r} is not allowed", f"use one of: {ctx.get('expected')}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        bound = {"greater_than": "> {gt}", "greater_than_equal": ">= {ge}",
                 "less_than": "< {lt}", "less_than_equal": "<= {le}"}[kind].format(**ctx)
        return f"{value!r} is out of range", f"give a value {bound}"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"{value!r} is not a whole number", "give an integer such as 4 (no units)"
    if kind in ("float_parsing", "float_type"):
        return (f"{value!r} is not a number",
                "give a plain number; the unit is in the field's name (e.g. ttft_s: 1.5)")
    if kind in ("string_type",):
        return f"{value!r} is not text", "give a string"
    if kind in ("list_type", "tuple_type"):
        return f"{value!r} is not a list", "give a YAML list, e.g. [DE-LU, SG]"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"{value!r} is not a mapping", "give `key: value` lines indented under it"
    if kind in ("path_type",):
        return f"{value!r} is not a path", "give a folder path, relative to this file"
    return error["msg"], "see docs/scenarios.md for the setting's form"


def allowed_keys(loc: Loc) -> list[str]:
    """Field names of the section at ``loc`` (list indices skipped)."""
    model: type[BaseModel] = ScenarioFile
    for part in loc:
        if isinstance(part, int):
            continue
        info = model.model_fields.get(part)
        if info is None:
            return []
        section = _section_type(info.annotation)
        if section is None:
            return []
        model = section
    return list(model.model_fields)


def _section_type(annotation: object) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _section_type(arg)
        if found is not None:
            return found
    return None


def parse_utc(value: str) -> pd.Timestamp:
    """An ISO 8601 time as a UTC timestamp (no zone means UTC), else the schema's error."""
    text = str(value).strip()
    try:
        stamp = to_utc(text)
    except (ValueError, TypeError, OverflowError):
        stamp = None
    if stamp is None or stamp is pd.NaT or len(text) < 10:
        raise invalid(f"{value!r} is not a date and time",
                      "use ISO 8601 YYYY-MM-DDTHH:MM (UTC), e.g. 2023-07-12T00:00")
    return stamp
