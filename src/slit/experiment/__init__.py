"""Runs of a scenario: every policy planned on forecasts and judged by simulation."""
