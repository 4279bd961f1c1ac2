"""Sweeps: a grid of scenarios over a base scenario, each cell a Ray task (``slit sweep``)."""
