"""Reading a scenario file: YAML, then the schema, then the ``Scenario`` a run uses.

Every failure becomes one ``SlitInputError`` naming the file, the field (and its line when the
YAML says where it is) and the fix.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails, PydanticCustomError

from slit.data.source import DataSource
from slit.errors import SlitInputError
from slit.experiment.scenario import Scenario, scenario_from_settings
from slit.experiment.settings import ScenarioFile, dotted, error_loc, explain, parse_utc

MAX_FILE_BYTES = 1_000_000  # a scenario is a page of YAML; anything larger is the wrong file


def load_scenario(path: Path | str, data_dir: DataSource | Path | None = None,
                  start_utc: pd.Timestamp | None = None, hours: float | None = None
                  ) -> Scenario:
    """The scenario in the YAML file ``path``; ``data_dir`` (a source, or a folder the command
    line names), ``start_utc`` and ``hours``, when given, replace the file's (the command line
    wins over the file)."""
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
        source = (data_dir if isinstance(data_dir, DataSource) or data_dir is None
                  else DataSource(data_dir))
        return scenario_from_settings(parsed, path.resolve().parent, source, start_utc, hours)
    except SlitInputError as err:
        raise SlitInputError(f"{path}: {err.where}", err.problem, err.fix) from None


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
    loc = error_loc(error)
    line = _line_of(text, loc)
    where = f"{path}: {dotted(loc) or '(top level)'}" + (f" (line {line})" if line else "")
    problem, fix = explain(error, loc)
    return SlitInputError(where, problem, fix)


def _line_of(text: str, loc: tuple[str | int, ...]) -> int | None:
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
