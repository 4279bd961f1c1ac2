"""The scenario file's schema: pydantic models mirroring the YAML, one per section.

Every model forbids unknown keys, so a typo is an error rather than a silently ignored setting.
Checks that need the catalogs (regions, GPUs, models, trace kinds) live here too, so an error
names the exact field; what can only be judged on the whole scenario is checked in
``slit.config.loader`` when it is converted to ``slit.experiment.scenario.Scenario``.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Literal

import pandas as pd
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from slit.data.regions import REGIONS
from slit.footprint import CoolingType
from slit.optimise.metaheuristic import SearchSettings
from slit.optimise.problem import OBJECTIVES
from slit.serving.catalog import GPUS, MODELS
from slit.workload.traces import TRACE_KINDS

SCHEMA_VERSION = 1
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


class SiteEntry(_Section):
    """One datacenter: region, what it serves with, how many replicas, how it is cooled."""

    region: str
    model: str | None = None  # default: the scenario's model
    gpu: str
    tp: Annotated[int, Field(ge=1)]
    installed_replicas: Annotated[int, Field(ge=1)]
    cooling: CoolingType = CoolingType.EVAPORATIVE

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        return _known(value, REGIONS, "region")

    @field_validator("gpu")
    @classmethod
    def _gpu(cls, value: str) -> str:
        return _known(value, GPUS, "GPU")

    @field_validator("model")
    @classmethod
    def _model(cls, value: str | None) -> str | None:
        return None if value is None else _known(value, MODELS, "model")


class Workload(_Section):
    origins: list[str] | Literal["default"] = "default"
    weights: list[Annotated[float, Field(ge=0)]] | None = None  # None: by Internet users
    global_rate_rps: Annotated[float, Field(gt=0)] = 100.0
    trace_mix: dict[str, Annotated[float, Field(ge=0)]] = Field(
        default_factory=lambda: {"conv": 0.7, "code": 0.3})

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
        for kind in value:
            _known(kind, TRACE_KINDS, "trace kind")
        if abs(sum(value.values()) - 1.0) > 1e-6:
            raise invalid(f"shares sum to {sum(value.values()):g}",
                          "give shares that sum to 1, e.g. conv: 0.7, code: 0.3")
        return value

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
    start_utc: str
    hours: Annotated[float, Field(gt=0, le=24 * 366)]

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
    ttft_s: Annotated[float, Field(gt=0, le=600)] = 1.5
    percentile: Literal[95, 99] = 99


ObjectiveName = Literal["ttft_mean_s", "carbon_kg", "water_l", "cost_usd"]


class PreferenceSection(_Section):
    mode: Literal["weights", "knee", "cap"] = "weights"
    weights: dict[ObjectiveName, Annotated[float, Field(ge=0)]] = Field(
        default_factory=lambda: {"ttft_mean_s": 0.1, "carbon_kg": 0.3, "water_l": 0.3,
                                 "cost_usd": 0.3})
    ttft_cap_s: Annotated[float, Field(gt=0)] | None = None
    minimise: ObjectiveName = "carbon_kg"

    @field_validator("weights")
    @classmethod
    def _weights(cls, value: dict[str, float]) -> dict[str, float]:
        if not any(v > 0 for v in value.values()):
            raise invalid("no weight is positive", "give at least one objective a weight > 0")
        return value

    def weight_tuple(self) -> tuple[float, float, float, float]:
        w = [float(self.weights.get(name, 0.0)) for name in OBJECTIVES]
        return (w[0], w[1], w[2], w[3])


class Search(_Section):
    population: Annotated[int, Field(ge=4, le=10_000)] = SearchSettings().population
    generations: Annotated[int, Field(ge=1, le=100_000)] = SearchSettings().generations


class ScenarioFile(_Section):
    """The whole file."""

    schema_version: Literal[1] = SCHEMA_VERSION
    name: str = "scenario"
    seed: Annotated[int, Field(ge=0)] = 0
    data_dir: Path | None = None  # relative paths: against the scenario file's folder
    carbon_basis: Literal["direct", "lca"] = "direct"
    model: str = "Llama-3.1-70B"
    fleet: Literal["default"] | None = None
    sites: list[SiteEntry] | None = None
    workload: Workload = Field(default_factory=Workload)
    period: Period
    interval_s: Annotated[int, Field(ge=INTERVAL_STEP_S, le=24 * 3600)] = 900
    slo: Slo = Field(default_factory=Slo)
    preference: PreferenceSection = Field(default_factory=PreferenceSection)
    pins: dict[str, list[str]] = Field(default_factory=dict)
    search: Search = Field(default_factory=Search)

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
        return self


def parse_utc(value: str) -> pd.Timestamp:
    """An ISO 8601 time as a UTC timestamp (no zone means UTC), else the schema's error."""
    text = str(value).strip()
    try:
        stamp = pd.Timestamp(text)
    except (ValueError, TypeError, OverflowError):
        stamp = None
    if stamp is None or stamp is pd.NaT or len(text) < 10:
        raise invalid(f"{value!r} is not a date and time",
                      "use ISO 8601 YYYY-MM-DDTHH:MM (UTC), e.g. 2023-07-12T00:00")
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
