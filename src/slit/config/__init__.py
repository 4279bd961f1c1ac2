"""Scenario files: the YAML schema (pydantic), its loader and the example ``slit init`` writes.

``slit.config.schema`` (the one description of every setting) sits below ``slit.experiment``,
which builds a ``Scenario`` from it; the loader and the example use ``slit.experiment`` in turn,
so they are imported on first use rather than with the package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from slit.config.example import example_yaml
    from slit.config.loader import load_scenario, parse_time_argument

__all__ = ["example_yaml", "load_scenario", "parse_time_argument"]


def __getattr__(name: str) -> Any:
    if name == "example_yaml":
        from slit.config.example import example_yaml
        return example_yaml
    if name in ("load_scenario", "parse_time_argument"):
        from slit.config import loader
        return getattr(loader, name)
    raise AttributeError(f"module 'slit.config' has no attribute {name!r}")
