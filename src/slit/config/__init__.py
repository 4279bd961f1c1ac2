"""Scenario files: reading the YAML (checked against ``slit.experiment.settings``, with the
line of every error) and the text generated from the settings' descriptions (the example
``slit init`` writes, the docs' settings tables)."""

from slit.config.example import example_yaml
from slit.config.loader import load_scenario, parse_time_argument

__all__ = ["example_yaml", "load_scenario", "parse_time_argument"]
