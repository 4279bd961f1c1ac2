"""Reading a scenario file: YAML, then the schema, then the ``Scenario`` a run uses.

Every failure becomes one ``SlitInputError`` naming the file, the field (and its line when the
YAML says where it is) and the fix.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails, PydanticCustomError

from slit.config.schema import ScenarioFile, parse_utc
from slit.data.regions import DEFAULT_REGION_IDS
from slit.data.signals import resolve_data_dir
from slit.errors import SlitInputError
from slit.experiment.scenario import DEFAULT_MODEL, Scenario, Site, default_scenario
from slit.footprint import SiteFootprintParams
from slit.optimise.metaheuristic import SearchSettings
from slit.optimise.preference import Preference
from slit.serving.catalog import make_replica
from slit.workload.demand import DemandModel

MAX_FILE_BYTES = 1_000_000  # a scenario is a page of YAML; anything larger is the wrong file

Loc = tuple[str | int, ...]


def load_scenario(path: Path | str, data_dir: Path | None = None,
                  start_utc: pd.Timestamp | None = None, hours: float | None = None
                  ) -> Scenario:
    """The scenario in the YAML file ``path``; ``data_dir``, ``start_utc`` and ``hours``, when
    given, replace the file's (the command line wins over the file)."""
    path = Path(path)
    text = _read(path)
    try:
        document = yaml.safe_load(text)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        where = f"{path}: line {mark.line + 1}, column {mark.column + 1}" if mark else str(path)
        raise SlitInputError(where, f"YAML syntax: {err.problem or err}",
                             "fix the indentation, colons or quotes there") from None
    except yaml.YAMLError as err:
        raise SlitInputError(str(path), f"YAML syntax: {err}", "fix the YAML") from None
    if document is None:
        raise SlitInputError(str(path), "is empty",
                             "write a scenario; `slit init FILE` writes an example")
    if not isinstance(document, dict):
        raise SlitInputError(str(path), f"holds a {type(document).__name__}, not a mapping",
                             "the file is a set of `key: value` lines; see `slit init FILE`")
    try:
        parsed = ScenarioFile.model_validate(document)
    except ValidationError as err:
        raise _schema_error(path, text, err.errors()[0]) from None
    try:
        return to_scenario(parsed, path.resolve().parent, data_dir, start_utc, hours)
    except SlitInputError as err:
        raise SlitInputError(f"{path}: {err.where}", err.problem, err.fix) from None


def to_scenario(parsed: ScenarioFile, base_dir: Path, data_dir: Path | None = None,
                start_utc: pd.Timestamp | None = None, hours: float | None = None
                ) -> Scenario:
    """The frozen ``Scenario`` of a validated file; relative paths resolve against
    ``base_dir`` (the file's folder)."""
    if data_dir is None and parsed.data_dir is not None:
        folder = parsed.data_dir if parsed.data_dir.is_absolute() else base_dir / parsed.data_dir
        try:
            data_dir = resolve_data_dir(folder)
        except SlitInputError as err:
            raise SlitInputError("data_dir", f"{folder} {err.problem}", err.fix) from None
    start = parsed.period.start if start_utc is None else start_utc
    period_h = parsed.period.hours if hours is None else hours
    origins = DEFAULT_REGION_IDS if parsed.workload.origins == "default" \
        else tuple(parsed.workload.origins)
    demand = DemandModel(
        origins=origins,
        weights=None if parsed.workload.weights is None else tuple(parsed.workload.weights),
        global_rate_rps=parsed.workload.global_rate_rps,
        trace_mix=dict(parsed.workload.trace_mix),
    )
    if parsed.fleet == "default":
        if parsed.model != DEFAULT_MODEL:
            raise SlitInputError("model", f"fleet: default serves {DEFAULT_MODEL}, not "
                                 f"{parsed.model}", "list the sites to serve another model")
        # Sized for the file's own period start even when a command moves the start, so the
        # installed fleet does not depend on which interval is asked about.
        sites = default_scenario(global_rate_rps=parsed.workload.global_rate_rps,
                                 start_utc=parsed.period.start).sites
    else:
        sites = tuple(_site(parsed, i) for i in range(len(parsed.sites or ())))
    pref = parsed.preference
    return Scenario(
        sites=sites,
        demand=demand,
        start_utc=start,
        hours=period_h,
        interval_s=float(parsed.interval_s),
        slo_ttft_s=parsed.slo.ttft_s,
        slo_percentile=parsed.slo.percentile,
        preference=Preference(mode=pref.mode, weights=pref.weight_tuple(),
                              ttft_cap_s=pref.ttft_cap_s, minimise=pref.minimise),
        pins={origin: tuple(allowed) for origin, allowed in parsed.pins.items()},
        data_dir=data_dir,
        seed=parsed.seed,
        carbon_basis=parsed.carbon_basis,
        search=SearchSettings(population=parsed.search.population,
                              generations=parsed.search.generations),
        name=parsed.name,
    )


def _site(parsed: ScenarioFile, i: int) -> Site:
    entry = (parsed.sites or [])[i]
    try:
        replica = make_replica(entry.model or parsed.model, entry.gpu, entry.tp)
    except SlitInputError as err:
        raise SlitInputError(f"sites[{i}] ({entry.region})", f"{err.where}: {err.problem}",
                             err.fix) from None
    return Site(entry.region, replica, entry.installed_replicas,
                SiteFootprintParams.for_region(entry.region, entry.cooling))


def _read(path: Path) -> str:
    if not path.exists():
        raise SlitInputError(str(path), "does not exist",
                             "give the path of a scenario file; `slit init FILE` writes one")
    if not path.is_file():
        raise SlitInputError(str(path), "is not a file", "give the path of a YAML scenario file")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise SlitInputError(str(path), f"is {path.stat().st_size:,} bytes, too large for a "
                             "scenario", "give the scenario YAML, not a data file")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SlitInputError(str(path), "is not UTF-8 text",
                             "save the scenario as UTF-8 YAML") from None
    except OSError as err:
        raise SlitInputError(str(path), f"cannot be read ({err.strerror})",
                             "check its permissions") from None


def _schema_error(path: Path, text: str, error: ErrorDetails) -> SlitInputError:
    ctx = error.get("ctx") or {}
    loc: Loc = tuple(error["loc"]) + tuple(ctx.get("field", ()))
    field = dotted(loc) or "(top level)"
    line = _line_of(text, loc)
    where = f"{path}: {field}" + (f" (line {line})" if line else "")
    problem, fix = _explain(error, loc)
    return SlitInputError(where, problem, fix)


def dotted(loc: Loc) -> str:
    """``('sites', 2, 'gpu')`` -> ``sites[2].gpu``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _explain(error: ErrorDetails, loc: Loc) -> tuple[str, str]:
    """The problem and its fix, in words a user can act on."""
    kind = error["type"]
    ctx = error.get("ctx") or {}
    value = error.get("input")
    if kind == "slit":
        return str(ctx["problem"]), str(ctx["fix"])
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
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


def _allowed_keys(loc: Loc) -> list[str]:
    """Field names of the section at ``loc`` (list indices skipped)."""
    model: type = ScenarioFile
    for part in loc:
        if isinstance(part, int):
            continue
        info = model.model_fields.get(part)
        if info is None:
            return []
        model = _section_type(info.annotation)
        if model is None:
            return []
    return list(model.model_fields)


def _section_type(annotation: object) -> type | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _section_type(arg)
        if found is not None:
            return found
    return None


def _line_of(text: str, loc: Loc) -> int | None:
    """1-based line of the deepest node of ``loc`` found in the YAML (None if not found)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = [(k, v) for k, v in node.value if k.value == part]
            if not match:
                break
            key, node = match[0]
            line = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) \
                and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def parse_time_argument(text: str, option: str) -> pd.Timestamp:
    """A command-line time (ISO 8601, no zone = UTC) as a UTC timestamp."""
    try:
        return parse_utc(text)
    except PydanticCustomError as err:
        ctx = err.context or {}
        raise SlitInputError(option, str(ctx.get("problem")), str(ctx.get("fix"))) from None
