"""Scenario files: the YAML schema (pydantic), its loader and the example ``slit init`` writes."""

from slit.config.example import example_yaml
from slit.config.loader import load_scenario, parse_time_argument

__all__ = ["example_yaml", "load_scenario", "parse_time_argument"]
