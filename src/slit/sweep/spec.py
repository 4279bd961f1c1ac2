"""The sweep file: a base scenario and the axes of its grid, validated like a scenario file.

A cell is one (start day, fleet variant, SLO, seed). Its scenario is the base scenario's settings
document with the cell's start, hours, SLO and seed written in and the variant's ``overrides``
merged over it, validated by the scenario schema (``slit.experiment.settings``); the variant's
fleet transforms (``gpu``, ``peak_headroom``) are then applied to the built scenario.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from slit.config.loader import MAX_FILE_BYTES, _line_of
from slit.data.source import DataSource
from slit.errors import SlitInputError
from slit.experiment.scenario import (
    DEFAULT_GLOBAL_RATE_RPS,
    DEFAULT_START_UTC,
    GPUS_PER_NODE,
    Scenario,
    Site,
    scenario_from_settings,
)
from slit.experiment.settings import dotted, error_loc, explain, invalid, validate_settings
from slit.optimise.policies import POLICIES
from slit.serving.catalog import GPUS, ReplicaSpec, make_replica
from slit.simulate.capacity import slo_capacity_rps


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DayRange(_Section):
    """Every ``every_days``-th day from ``first`` to ``last`` (both inclusive)."""

    first: date = Field(description="first start day, YYYY-MM-DD")
    last: date = Field(description="last start day (inclusive)")
    every_days: int = Field(default=7, ge=1, le=366, description="step between days")

    @model_validator(mode="after")
    def _order(self) -> DayRange:
        if self.last < self.first:
            raise invalid(f"last {self.last} is before first {self.first}",
                          "give last on or after first", ("last",))
        return self

    def days(self) -> list[date]:
        n = (self.last - self.first).days // self.every_days + 1
        return [self.first + timedelta(days=i * self.every_days) for i in range(n)]


class Variant(_Section):
    """A fleet variant: overrides of the base scenario's settings and fleet transforms."""

    name: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.-]+$",
                      description="short name, used in the results and the report")
    overrides: dict[str, Any] = Field(
        default_factory=dict, description="scenario settings merged over the base (nested "
        "mappings merge key by key), e.g. {workload: {global_rate_rps: 200}}")
    gpu: str | None = Field(default=None, description="serve every site with this GPU "
                            "(a homogeneous fleet), resized to the base fleet's capacity")
    tp: int | None = Field(default=None, ge=1, description="GPUs per replica with `gpu`")
    peak_headroom: float | None = Field(
        default=None, gt=1.0, le=10.0, description="size each site to this multiple of its own "
        "region's peak demand over the week (1.2: a tight fleet)")

    @field_validator("gpu")
    @classmethod
    def _gpu(cls, value: str | None) -> str | None:
        if value is not None and value not in GPUS:
            raise invalid(f"unknown GPU {value!r}", f"use one of: {' '.join(GPUS)}")
        return value

    @model_validator(mode="after")
    def _tp(self) -> Variant:
        if (self.gpu is None) != (self.tp is None):
            raise invalid("give `gpu` and `tp` together", "e.g. gpu: H100-SXM5-80GB, tp: 4",
                          ("tp",))
        return self


class SweepFile(_Section):
    """A sweep: the base scenario and the axes of the grid."""

    name: str = Field(min_length=1, description="name of the sweep")
    base: str = Field(default="default", description="`default` (the embedded default "
                      "scenario) or the path of a scenario YAML, relative to this file")
    data_dir: Path | None = Field(default=None, description="real-data folder (relative to this "
                                  "file); null: the base's, or the embedded data")
    hours: float = Field(default=24.0, gt=0, le=24 * 7, description="length of every cell")
    start_hour_utc: int = Field(default=0, ge=0, le=23, description="UTC hour each day starts")
    days: list[date] | None = Field(default=None, min_length=1, description="start days, "
                                    "YYYY-MM-DD; null with no `day_range`: the default day")
    day_range: DayRange | None = Field(default=None, description="start days as {first, last, "
                                       "every_days}, instead of `days`")
    variants: list[Variant] = Field(default_factory=lambda: [Variant(name="default")],
                                    min_length=1, description="fleet variants")
    slo_ttft_s: list[float] | None = Field(default=None, min_length=1,
                                           description="TTFT SLOs; null: the base's")
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1,
                             description="seeds of every random draw")
    policies: list[str] = Field(default_factory=lambda: list(POLICIES), min_length=1,
                                description="policies each cell runs (slit and baselines)")

    @field_validator("policies")
    @classmethod
    def _policies(cls, value: list[str]) -> list[str]:
        for p in value:
            if p not in POLICIES:
                raise invalid(f"unknown policy {p!r}", f"use some of: {' '.join(POLICIES)}")
        if "slit" not in value:
            raise invalid("`slit` is not among the policies",
                          "a sweep measures SLIT against baselines: list slit")
        return value

    @field_validator("slo_ttft_s")
    @classmethod
    def _slo(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and any(not (0 < v <= 600) for v in value):
            raise invalid("an SLO is not in (0, 600] s", "give SLOs in seconds, e.g. [1.0, 1.5]")
        return value

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, value: list[int]) -> list[int]:
        if any(v < 0 for v in value):
            raise invalid("a seed is negative", "give seeds >= 0")
        return value

    @model_validator(mode="after")
    def _unique(self) -> SweepFile:
        names = [v.name for v in self.variants]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise invalid(f"variant {sorted(dup)[0]!r} is named twice",
                          "give every variant its own name", ("variants",))
        return self

    @model_validator(mode="after")
    def _one_day_axis(self) -> SweepFile:
        if self.days is not None and self.day_range is not None:
            raise invalid("give `days` or `day_range`, not both", "keep one of them",
                          ("day_range",))
        return self

    def day_list(self) -> list[date]:
        if self.day_range is not None:
            return self.day_range.days()
        return sorted(set(self.days)) if self.days else [DEFAULT_START_UTC.date()]


@dataclass(frozen=True)
class Cell:
    """One point of the grid. ``cell_id`` names it stably across runs (resume keys on it)."""

    day: date
    variant: str
    slo_ttft_s: float | None  # None: the base's
    seed: int

    @property
    def cell_id(self) -> str:
        slo = "base" if self.slo_ttft_s is None else f"{self.slo_ttft_s:g}"
        return f"{self.day:%Y-%m-%d}_{self.variant}_slo{slo}_s{self.seed}"


@dataclass(frozen=True)
class Sweep:
    """A loaded sweep: the validated file, its base settings document and where it lives."""

    spec: SweepFile
    base_document: dict[str, Any]
    folder: Path  # relative paths of the base document resolve against it
    source: DataSource

    def cells(self) -> list[Cell]:
        slos: list[float | None] = (list(self.spec.slo_ttft_s) if self.spec.slo_ttft_s
                                    else [None])
        return [Cell(d, v.name, slo, seed) for d in self.spec.day_list()
                for v in self.spec.variants for slo in slos for seed in self.spec.seeds]

    def fingerprint(self) -> str:
        """Hash of everything that decides a cell's result, so a resume never mixes sweeps."""
        blob = json.dumps([self.spec.model_dump(mode="json"), self.base_document,
                           self.source.key], sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def scenario(self, cell: Cell) -> Scenario:
        """The scenario of ``cell``."""
        variant = next(v for v in self.spec.variants if v.name == cell.variant)
        start = pd.Timestamp(cell.day, tz="UTC") + pd.Timedelta(hours=self.spec.start_hour_utc)
        doc = _merge(self.base_document, {
            "name": f"{self.spec.name}-{cell.cell_id}", "seed": cell.seed,
            "period": {"start_utc": f"{start:%Y-%m-%dT%H:%M}", "hours": self.spec.hours},
        })
        if cell.slo_ttft_s is not None:
            doc = _merge(doc, {"slo": {"ttft_s": cell.slo_ttft_s}})
        doc = _merge(doc, variant.overrides)
        try:
            settings = validate_settings(doc)
        except SlitInputError as err:
            raise SlitInputError(f"variant {variant.name}: {err.where}", err.problem,
                                 err.fix) from None
        scenario = scenario_from_settings(settings, self.folder, self.source)
        return apply_variant(scenario, variant)


def apply_variant(scenario: Scenario, variant: Variant) -> Scenario:
    """The variant's fleet transforms: one GPU everywhere (a model that ran on one GPU stays on
    one if it fits, the others take ``tp``), each model's replicas resized to the same SLO
    capacity; and each site's replicas sized to ``peak_headroom`` x its region's peak demand
    for that model (capacity at the SLO). Pools are the replicas' GPUs in whole nodes."""
    shares = {m.name: m for m in scenario.models}
    sites = scenario.sites
    if variant.gpu is not None and variant.tp is not None:
        resized = []
        for site in sites:
            replica_for, reserved = {}, {}
            for model, old in site.replica_for.items():
                code = shares[model].code_share
                new = _replica_on(model, variant.gpu, variant.tp, old.tp)
                capacity = site.reserved.get(model, 0) * slo_capacity_rps(old, code)
                replica_for[model] = new
                reserved[model] = max(1, math.ceil(capacity / slo_capacity_rps(new, code)))
            resized.append(_with_fleet(site, replica_for, reserved))
        sites = tuple(resized)
    if variant.peak_headroom is not None:
        week = pd.date_range(scenario.start_utc, periods=7 * 24 * 4, freq="15min")
        peak_rps = scenario.demand.rate_rps(week).max(axis=0)
        origin_index = {o: i for i, o in enumerate(scenario.demand.origins)}
        sized = []
        for site in sites:
            if site.region_id not in origin_index:
                sized.append(site)
                continue
            peak = float(peak_rps[origin_index[site.region_id]])
            reserved = {
                model: max(1, math.ceil(peak * shares[model].demand_share
                                        * variant.peak_headroom
                                        / slo_capacity_rps(spec, shares[model].code_share)))
                for model, spec in site.replica_for.items()}
            sized.append(_with_fleet(site, dict(site.replica_for), reserved))
        sites = tuple(sized)
    return replace(scenario, sites=sites)


def _replica_on(model: str, gpu: str, tp: int, old_tp: int) -> ReplicaSpec:
    if old_tp == 1:
        try:
            return make_replica(model, gpu, 1)
        except SlitInputError:
            pass
    return make_replica(model, gpu, tp)


def _with_fleet(site: Site, replica_for: dict[str, ReplicaSpec], reserved: dict[str, int]
                ) -> Site:
    gpus: dict[str, int] = {}
    for model, spec in replica_for.items():
        gpus[spec.gpu] = gpus.get(spec.gpu, 0) + reserved[model] * spec.tp
    pools = {g: GPUS_PER_NODE * math.ceil(n / GPUS_PER_NODE) for g, n in gpus.items()}
    return replace(site, gpus=pools, replica_for=replica_for, reserved=reserved)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _default_document() -> dict[str, Any]:
    return {"name": "default", "fleet": "default",
            "workload": {"global_rate_rps": DEFAULT_GLOBAL_RATE_RPS}}


def _yaml_mapping(path: Path, what: str) -> tuple[dict[str, Any], str]:
    if not path.is_file():
        raise SlitInputError(str(path), "does not exist or is not a file",
                             f"give the path of a {what} YAML file")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise SlitInputError(str(path), "is too large for a YAML file",
                             f"give the {what} YAML")
    try:
        text = path.read_text(encoding="utf-8")
        document = yaml.safe_load(text)
    except (UnicodeDecodeError, yaml.YAMLError) as err:
        raise SlitInputError(str(path), f"is not readable YAML ({type(err).__name__})",
                             "fix the file's syntax") from None
    if not isinstance(document, dict):
        raise SlitInputError(str(path), "is not a mapping of `key: value` lines",
                             f"write a {what} as YAML keys")
    return document, text


def load_sweep(path: Path | str, data_dir: Path | None = None) -> Sweep:
    """The sweep in ``path``, validated, with its base scenario checked on the first cell."""
    path = Path(path)
    document, text = _yaml_mapping(path, "sweep")
    try:
        spec = SweepFile.model_validate(document)
    except ValidationError as err:
        error = err.errors()[0]
        loc = error_loc(error)
        line = _line_of(text, loc)
        problem, fix = explain(error, loc)
        where = f"{path}: {dotted(loc) or '(top level)'}" + (f" (line {line})" if line else "")
        raise SlitInputError(where, problem, fix) from None
    folder = path.resolve().parent
    if spec.base == "default":
        base_document, base_folder = _default_document(), folder
    else:
        base_path = (folder / spec.base).resolve()
        try:
            base_document, _ = _yaml_mapping(base_path, "scenario")
        except SlitInputError as err:
            raise SlitInputError(f"{path}: base", f"{err.where} {err.problem}", err.fix) from None
        base_folder = base_path.parent
    folder_given = data_dir if data_dir is not None else (
        None if spec.data_dir is None else
        (spec.data_dir if spec.data_dir.is_absolute() else folder / spec.data_dir))
    if folder_given is not None:
        try:
            source = DataSource.resolve(folder_given)
        except SlitInputError as err:
            raise SlitInputError(f"{path}: data_dir", f"{folder_given} {err.problem}",
                                 err.fix) from None
        base_document = {k: v for k, v in base_document.items() if k != "data_dir"}
    elif "data_dir" in base_document:
        raw = Path(base_document["data_dir"])
        source = DataSource.resolve(raw if raw.is_absolute() else base_folder / raw)
    else:
        source = DataSource.resolve(None)
    sweep = Sweep(spec, base_document, base_folder, source)
    # Every variant is built once now, so a bad override fails before any Ray task starts.
    first = sweep.cells()
    for variant in spec.variants:
        cell = next(c for c in first if c.variant == variant.name)
        try:
            sweep.scenario(cell)
        except SlitInputError as err:
            raise SlitInputError(f"{path}: {err.where}", err.problem, err.fix) from None
    return sweep
