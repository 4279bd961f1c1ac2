"""Text generated from the one description of the settings (``slit.experiment.settings``).

- ``example_yaml``: the commented scenario ``slit init`` writes, the embedded default spelled
  out; each setting's ``description`` becomes its comment.
- ``settings_tables``: the settings tables of docs/scenarios.md (between the markers
  ``SETTINGS_BEGIN`` and ``SETTINGS_END``); ``python -m slit.config docs/scenarios.md``
  rewrites them, and a test checks the file matches.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from slit.experiment.scenario import default_scenario
from slit.experiment.settings import ReplicaEntry, ScenarioFile, SiteEntry, validate_settings

HEADER = (
    "# SLIT scenario (docs/scenarios.md describes every setting).",
    "# Run it with:  slit run THIS_FILE.yaml",
    "# Units are in the names: _s seconds, _rps requests per second, _utc UTC time.",
)
COMMENT_WIDTH = 96
SETTINGS_BEGIN = "<!-- settings table: generated from slit.experiment.settings -->"
SETTINGS_END = "<!-- end of settings table -->"


def example_yaml() -> str:
    """YAML that loads to exactly ``default_scenario()``: the default settings, with the
    default fleet listed site by site."""
    return render(default_settings())


def default_settings() -> ScenarioFile:
    """The settings of ``default_scenario()`` with its fleet written out as a ``sites`` list."""
    scenario = default_scenario()
    sites = [SiteEntry(region=s.region_id, gpus=dict(s.gpus),
                       replica_for={m: ReplicaEntry(gpu=r.gpu, tp=r.tp)
                                    for m, r in s.replica_for.items()},
                       reserved=dict(s.reserved), cooling=s.footprint.cooling)
             for s in scenario.sites]
    return validate_settings({
        "name": scenario.name, "seed": scenario.seed,
        "sites": [site.model_dump(mode="json", exclude_none=True) for site in sites],
        "period": {"start_utc": f"{scenario.start_utc:%Y-%m-%dT%H:%M}",
                   "hours": scenario.hours},
    })


def render(settings: ScenarioFile) -> str:
    """A scenario file for ``settings``, every setting preceded by its description."""
    lines = list(HEADER)
    _render_section(settings, "", lines)
    return "\n".join(lines) + "\n"


def _render_section(section: BaseModel, indent: str, lines: list[str]) -> None:
    dumped = section.model_dump(mode="json")
    for name, info in type(section).model_fields.items():
        value = getattr(section, name)
        if isinstance(value, BaseModel):
            lines.append("")
            lines += _comment(info.description, indent)
            lines.append(f"{indent}{name}:")
            _render_section(value, indent + "  ", lines)
        elif name == "sites" and value:
            lines.append("")
            lines += _comment(info.description, indent)
            for key, site_info in SiteEntry.model_fields.items():
                lines += _comment(f"  {key}: {site_info.description}", indent)
            lines.append(f"{indent}{name}:")
            for site in value:
                entry = site.model_dump(mode="json", exclude_none=True)
                lines.append(f"{indent}  - {_flow(entry)}")
        else:
            lines += _comment(info.description, indent)
            lines.append(f"{indent}{name}: {_flow(dumped[name])}")


def _comment(text: str | None, indent: str) -> list[str]:
    if not text:
        return []
    prefix = f"{indent}# "
    return textwrap.wrap(text, COMMENT_WIDTH - len(prefix), initial_indent=prefix,
                         subsequent_indent=prefix + "  ", break_on_hyphens=False)


def _flow(value: Any) -> str:
    """One-line YAML for a value (flow style for lists and mappings)."""
    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10**6,
                          allow_unicode=True).strip()
    return text.removesuffix("\n...").strip()


def settings_tables() -> str:
    """The Markdown tables of every setting (key, default, meaning), from the schema."""
    rows = ["| key | default | meaning |", "| --- | --- | --- |"]
    _table_rows(ScenarioFile, "", rows)
    rows += ["", "A site (`sites[]`):", "", "| key | default | meaning |", "| --- | --- | --- |"]
    _table_rows(SiteEntry, "", rows)
    return "\n".join(rows)


def _table_rows(model: type[BaseModel], prefix: str, rows: list[str]) -> None:
    for name, info in model.model_fields.items():
        section = _section_of(info)
        if section is not None and name != "sites":
            _table_rows(section, f"{prefix}{name}.", rows)
            continue
        rows.append(f"| `{prefix}{name}` | {_default_cell(info)} | {info.description} |")


def _section_of(info: FieldInfo) -> type[BaseModel] | None:
    annotation = info.annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _default_cell(info: FieldInfo) -> str:
    if info.default is PydanticUndefined and info.default_factory is None:
        return "(required)"
    value = info.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    return f"`{_flow(_plain(value))}`"


def _plain(value: Any) -> Any:
    if hasattr(value, "value"):  # an enum member
        return value.value
    return value


def update_docs(path: Path) -> bool:
    """Rewrite the settings tables between the markers in ``path``; True if it changed."""
    text = path.read_text(encoding="utf-8")
    head, rest = text.split(SETTINGS_BEGIN, 1)
    _, tail = rest.split(SETTINGS_END, 1)
    new = f"{head}{SETTINGS_BEGIN}\n{settings_tables()}\n{SETTINGS_END}{tail}"
    if new != text:
        path.write_text(new, encoding="utf-8")
    return new != text

