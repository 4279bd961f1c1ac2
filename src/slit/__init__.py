"""SLIT: sustainable, carbon-aware and water-efficient LLM inference scheduling."""

__version__ = "0.1.0"
