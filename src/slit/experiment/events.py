"""Faults and data gaps during a run: what happens (the judge) and what the planner knows.

Four kinds of event, each over ``[start_utc, end_utc)`` (UTC):

- ``Outage``: a site loses all its GPUs;
- ``Derate``: a site keeps only ``gpu_fraction`` of its GPUs of every type (cooling or power cap);
- ``Partition``: an origin cannot reach a site;
- ``SignalGap``: a region's signals (carbon, price, weather) are missing for the planner; the
  judge still uses the real values when the data has them.

The planner learns of an event when it starts and of its end when it ends: at time ``t`` it sees
the events active at ``t`` as lasting through its whole horizon (an operator knows a site is down,
not when it will be back). The judge applies each event exactly over its window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from slit.timeutil import to_utc

SIGNAL_NAMES = ("carbon", "price", "weather")


@dataclass(frozen=True)
class _Window:
    start_utc: pd.Timestamp
    end_utc: pd.Timestamp

    def __post_init__(self) -> None:
        object.__setattr__(self, "start_utc", to_utc(self.start_utc))
        object.__setattr__(self, "end_utc", to_utc(self.end_utc))
        if not self.end_utc > self.start_utc:
            raise ValueError(f"end_utc {self.end_utc} must be after start_utc {self.start_utc}")

    def active_at(self, t_utc: pd.Timestamp) -> bool:
        return bool(self.start_utc <= t_utc < self.end_utc)

    def overlaps(self, start_utc: pd.Timestamp, end_utc: pd.Timestamp) -> bool:
        return bool(self.start_utc < end_utc and start_utc < self.end_utc)


@dataclass(frozen=True)
class Outage(_Window):
    site: str  # region id of the site


@dataclass(frozen=True)
class Derate(_Window):
    site: str
    gpu_fraction: float  # share of the site's GPUs (of every type) still usable

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.gpu_fraction < 1.0:
            raise ValueError(f"gpu_fraction {self.gpu_fraction} must be in [0, 1)")


@dataclass(frozen=True)
class Partition(_Window):
    origin: str  # region id of the user origin
    site: str


@dataclass(frozen=True)
class SignalGap(_Window):
    region: str
    signals: tuple[str, ...] = SIGNAL_NAMES  # which of SIGNAL_NAMES are missing

    def __post_init__(self) -> None:
        super().__post_init__()
        unknown = [s for s in self.signals if s not in SIGNAL_NAMES]
        if unknown or not self.signals:
            raise ValueError(f"signals {list(self.signals)} must be some of {SIGNAL_NAMES}")


Event = Outage | Derate | Partition | SignalGap


def gpu_fraction_at(events: Sequence[Event], site_ids: Sequence[str],
                    times_utc: pd.DatetimeIndex) -> np.ndarray:
    """[T, S] share of each site's GPUs usable at each time (the judge's view): the smallest
    fraction of the outages and derates active then, 1 without."""
    out = np.ones((len(times_utc), len(site_ids)))
    index = {s: i for i, s in enumerate(site_ids)}
    for event in events:
        if not isinstance(event, Outage | Derate) or event.site not in index:
            continue
        fraction = 0.0 if isinstance(event, Outage) else event.gpu_fraction
        active = (times_utc >= event.start_utc) & (times_utc < event.end_utc)
        column = index[event.site]
        out[active, column] = np.minimum(out[active, column], fraction)
    return out


def known_gpu_fraction(events: Sequence[Event], site_ids: Sequence[str],
                       t_utc: pd.Timestamp) -> np.ndarray:
    """[S] share of each site's GPUs the planner counts on at ``t`` for its whole horizon: the
    events active at ``t`` are assumed to last."""
    return gpu_fraction_at(events, site_ids, pd.DatetimeIndex([to_utc(t_utc)]))[0]


def known_reachable(events: Sequence[Event], origin_ids: Sequence[str],
                    site_ids: Sequence[str], t_utc: pd.Timestamp) -> np.ndarray:
    """[O, S] False where a partition active at ``t`` cuts origin o from site s (the planner's
    view, assumed to last through its horizon)."""
    t = to_utc(t_utc)
    out = np.ones((len(origin_ids), len(site_ids)), bool)
    o_index = {o: i for i, o in enumerate(origin_ids)}
    s_index = {s: i for i, s in enumerate(site_ids)}
    for event in events:
        if isinstance(event, Partition) and event.active_at(t) \
                and event.origin in o_index and event.site in s_index:
            out[o_index[event.origin], s_index[event.site]] = False
    return out


def signal_gaps(events: Sequence[Event], region: str) -> list[SignalGap]:
    """The signal gaps of one region, in time order."""
    return sorted((e for e in events if isinstance(e, SignalGap) and e.region == region),
                  key=lambda e: e.start_utc)


def change_times(events: Sequence[Event], start_utc: pd.Timestamp,
                 end_utc: pd.Timestamp) -> list[pd.Timestamp]:
    """Times strictly inside the period at which some outage, derate or partition starts or
    ends: where the planner re-plans at once (failover) rather than at the next boundary."""
    times = set()
    for event in events:
        if isinstance(event, SignalGap):
            continue
        for t in (event.start_utc, event.end_utc):
            if start_utc < t < end_utc:
                times.add(t)
    return sorted(times)
