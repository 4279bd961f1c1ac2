"""UTC inside: one place that turns user or data timestamps into tz-aware UTC."""

from __future__ import annotations

import pandas as pd


def to_utc(stamp: pd.Timestamp | str) -> pd.Timestamp:
    """A timestamp in UTC: a naive one is read as UTC, an aware one converted."""
    stamp = pd.Timestamp(stamp)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def index_to_utc(index: pd.DatetimeIndex) -> pd.DatetimeIndex:
    """A datetime index in UTC: naive read as UTC, aware converted."""
    return index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
