"""User demand: where requests come from, when, and how large they are.

Rate of origin ``o`` at UTC time ``t`` (requests per second)::

    rate_o(t) = global_rate_rps * weight_o * diurnal(local hour of t at o) * weekly(local weekday)

``diurnal`` and ``weekly`` have mean 1 (over a day, over a week), so ``global_rate_rps`` is the
long-run mean of the summed rate and ``weight_o`` each origin's share of it. The sources of the
weights and shapes are in ``docs/workload.md``.

The stream is a non-homogeneous Poisson process, generated with piecewise-constant rates: the
period is cut into ``bin_s`` bins, each bin's count is Poisson(rate at the bin midpoint x bin
length) and its arrivals are uniform inside the bin. With 60 s bins the rate changes by < 1 %
within a bin, far below the Poisson noise at any realistic load.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from slit.data.regions import DEFAULT_REGION_IDS, get_region
from slit.data.source import EMBEDDED, DataSource
from slit.errors import SlitInputError
from slit.timeutil import index_to_utc, to_utc
from slit.workload.requests import RequestBatch
from slit.workload.tokens import TokenSampler
from slit.workload.traces import load_trace

# Internet users served by each default origin, in millions: population of the area the grid
# region covers x the national share of individuals using the Internet (ITU, 2022). Rounded;
# sources and arithmetic in docs/workload.md.
INTERNET_USERS_M: dict[str, float] = {
    "AU-NSW": 8.2 * 0.96,
    "AU-VIC": 6.6 * 0.96,
    "BR-SP": 44.4 * 0.81,
    "CA-ON": 15.1 * 0.93,
    "CL-SIC": 19.6 * 0.90,
    "DE-LU": 84.4 * 0.92 + 0.65 * 0.99,
    "IN-WE": 315.0 * 0.46,
    "JP-TK": 45.0 * 0.83,
    "KR": 51.7 * 0.97,
    "SG": 5.6 * 0.96,
    "US-CAL-CISO": 32.0 * 0.92,
    "US-MIDA-PJM": 65.0 * 0.92,
    "US-NY-NYIS": 19.7 * 0.92,
    "US-TEX-ERCO": 26.0 * 0.92,
    "ZA": 60.6 * 0.72,
}

# Relative demand by local hour (0..23), linearly interpolated in between and normalised to
# mean 1 below: night trough around 04:00, business-hours plateau, a softer evening shoulder
# (peak/trough about 3.6). Our parameterisation; its basis is in docs/workload.md.
DIURNAL_BY_LOCAL_HOUR = np.array([
    0.62, 0.50, 0.43, 0.40, 0.40, 0.44, 0.56, 0.76, 1.02, 1.26, 1.40, 1.45,
    1.42, 1.44, 1.46, 1.44, 1.38, 1.28, 1.18, 1.12, 1.08, 1.00, 0.88, 0.74,
])
DIURNAL_BY_LOCAL_HOUR = DIURNAL_BY_LOCAL_HOUR / DIURNAL_BY_LOCAL_HOUR.mean()

# Relative demand by local weekday, Monday first; weekends lower, normalised to mean 1.
WEEKLY_BY_LOCAL_DAY = np.array([1.05, 1.06, 1.06, 1.06, 1.03, 0.88, 0.86])
WEEKLY_BY_LOCAL_DAY = WEEKLY_BY_LOCAL_DAY / WEEKLY_BY_LOCAL_DAY.mean()

DEFAULT_TRACE_MIX: dict[str, float] = {"conv": 0.7, "code": 0.3}


def population_weights(origin_ids: tuple[str, ...] = DEFAULT_REGION_IDS) -> np.ndarray:
    """Traffic share of each origin, proportional to its Internet users; sums to 1."""
    missing = [o for o in origin_ids if o not in INTERNET_USERS_M]
    if missing:
        raise SlitInputError("workload origins", f"no Internet-user figure for {missing[0]!r}",
                             "give explicit weights for origins outside the default 15 regions")
    users = np.array([INTERNET_USERS_M[o] for o in origin_ids])
    return users / users.sum()


def diurnal_factor(local_hour: np.ndarray) -> np.ndarray:
    """Mean-1 diurnal shape at fractional local hours in [0, 24)."""
    hours = np.arange(25.0)
    values = np.append(DIURNAL_BY_LOCAL_HOUR, DIURNAL_BY_LOCAL_HOUR[0])
    return np.interp(np.mod(local_hour, 24.0), hours, values)


@dataclass(frozen=True)
class DemandModel:
    """Expected request rates per origin, and request streams drawn from them."""

    origins: tuple[str, ...] = DEFAULT_REGION_IDS
    weights: tuple[float, ...] | None = None  # None: by Internet users (population_weights)
    global_rate_rps: float = 50.0
    trace_mix: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_TRACE_MIX))
    bin_s: float = 60.0
    _timezones: tuple[str, ...] = field(init=False, repr=False, compare=False, default=())

    def __post_init__(self) -> None:
        timezones = [get_region(o, "workload origin").timezone for o in self.origins]
        object.__setattr__(self, "origins", tuple(self.origins))
        object.__setattr__(self, "_timezones", tuple(timezones))
        weights = (population_weights(self.origins) if self.weights is None
                   else np.asarray(self.weights, dtype=float))
        if len(weights) != len(self.origins) or (weights < 0).any() or \
                not np.isclose(weights.sum(), 1.0, atol=1e-9):
            raise SlitInputError("workload weights", "need one non-negative weight per origin, "
                                 "summing to 1", f"give {len(self.origins)} shares that sum to 1")
        object.__setattr__(self, "weights", tuple(float(w) for w in weights))
        if not self.global_rate_rps > 0:
            raise SlitInputError("workload global_rate_rps", f"{self.global_rate_rps!r} is not "
                                 "positive", "give the mean request rate in requests per second")
        mix = np.array(list(self.trace_mix.values()), dtype=float)
        if not self.trace_mix or (mix < 0).any() or not np.isclose(mix.sum(), 1.0):
            raise SlitInputError("workload trace_mix", f"{self.trace_mix!r} is not a mix",
                                 "give shares per trace kind that sum to 1, e.g. conv: 0.7, "
                                 "code: 0.3")
        if not self.bin_s > 0:
            raise SlitInputError("workload bin_s", "must be positive", "use e.g. 60 seconds")

    @property
    def n_origins(self) -> int:
        return len(self.origins)

    def rate_rps(self, times_utc: pd.DatetimeIndex) -> np.ndarray:
        """Expected rate [len(times), n_origins] in requests per second at UTC instants."""
        times = index_to_utc(pd.DatetimeIndex(times_utc))
        out = np.empty((len(times), self.n_origins))
        weights = self.weights or ()  # a tuple once constructed
        for k, tz in enumerate(self._timezones):
            local = times.tz_convert(tz)
            hour = local.hour + local.minute / 60.0 + local.second / 3600.0
            out[:, k] = (self.global_rate_rps * weights[k]
                         * diurnal_factor(np.asarray(hour, dtype=float))
                         * WEEKLY_BY_LOCAL_DAY[np.asarray(local.day_of_week)])
        return out

    def expected_counts(self, start_utc: pd.Timestamp, n_intervals: int,
                        interval_s: float) -> np.ndarray:
        """Expected requests [n_intervals, n_origins] per interval, by the midpoint rate."""
        start = to_utc(start_utc)
        mids = start + pd.to_timedelta((np.arange(n_intervals) + 0.5) * interval_s, unit="s")
        return self.rate_rps(pd.DatetimeIndex(mids)) * interval_s

    def generate(self, start_utc: pd.Timestamp | str, end_utc: pd.Timestamp | str, seed: int,
                 source: DataSource = EMBEDDED) -> RequestBatch:
        """A Poisson request stream over [start, end); same seed, same stream."""
        start, end, duration_s = workload_period(start_utc, end_utc)
        count_rng, time_rng, kind_rng, token_rng = (
            np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4))
        bin_starts_s, bin_lengths_s, counts = self._bin_counts(start, duration_s, count_rng)
        n = int(counts.sum())
        bin_of = np.repeat(np.arange(counts.size) // self.n_origins, counts.ravel())
        origin = np.repeat(np.tile(np.arange(self.n_origins), len(bin_starts_s)),
                           counts.ravel()).astype(np.int16)
        arrival = bin_starts_s[bin_of] + time_rng.random(n) * bin_lengths_s[bin_of]
        order = np.argsort(arrival, kind="stable")
        prompt, output = self._sample_tokens(n, kind_rng, token_rng, source)
        return RequestBatch(arrival[order], prompt[order], output[order], origin[order])

    def observed_counts(self, start_utc: pd.Timestamp | str, n_intervals: int,
                        interval_s: float, seed: int) -> np.ndarray:
        """Requests [n_intervals, n_origins] per interval of a Poisson stream from ``start_utc``:
        the counts ``generate`` would give for that seed, without drawing times and tokens (so
        days of observed demand cost milliseconds)."""
        count_rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(4)[0])
        duration_s = n_intervals * interval_s
        bin_starts_s, _, counts = self._bin_counts(to_utc(start_utc), duration_s, count_rng)
        # A bin straddling an interval boundary counts in the interval of its start: exact
        # when bin_s divides interval_s (60 s bins, whole-minute intervals).
        slot = np.minimum((bin_starts_s // interval_s).astype(np.int64), n_intervals - 1)
        out = np.zeros((n_intervals, self.n_origins), np.int64)
        np.add.at(out, slot, counts)
        return out

    def _bin_counts(self, start: pd.Timestamp, duration_s: float, count_rng: np.random.Generator
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The one Poisson draw of the stream: bin starts and lengths (s) and counts
        [bins, origins], each bin Poisson(rate at its midpoint x its length)."""
        bin_starts_s = np.arange(0.0, duration_s, self.bin_s)
        bin_lengths_s = np.minimum(self.bin_s, duration_s - bin_starts_s)
        mids = start + pd.to_timedelta(bin_starts_s + bin_lengths_s / 2.0, unit="s")
        expected = self.rate_rps(pd.DatetimeIndex(mids)) * bin_lengths_s[:, None]
        return bin_starts_s, bin_lengths_s, count_rng.poisson(expected)

    def replay(self, source: DataSource, start_utc: pd.Timestamp | str, seed: int
               ) -> RequestBatch:
        """The traces of ``trace_mix`` with their own timing, shifted to start at ``start_utc``.

        Kinds with a positive share are merged as recorded (their shares do not thin them); each
        request gets an origin drawn in proportion to the origins' rates at its shifted time.
        """
        if source.data_dir is None:
            raise SlitInputError("trace replay", "needs the Azure traces, which the embedded "
                                 "default does not ship", "give --data-dir ../shared/data")
        start = to_utc(start_utc)
        traces = [load_trace(source.data_dir, k) for k, w in self.trace_mix.items() if w > 0]
        first_ns = min(t.time_utc.asi8[0] for t in traces)
        arrival = np.concatenate([(t.time_utc.asi8 - first_ns) / 1e9 for t in traces])
        prompt = np.concatenate([t.prompt_tokens for t in traces])
        output = np.concatenate([t.output_tokens for t in traces])
        order = np.argsort(arrival, kind="stable")
        arrival, prompt, output = arrival[order], prompt[order], output[order]
        rates = self.rate_rps(pd.DatetimeIndex(start + pd.to_timedelta(arrival, unit="s")))
        cumulative = np.cumsum(rates, axis=1)
        draw = np.random.default_rng(seed).random(len(arrival)) * cumulative[:, -1]
        origin = np.minimum((cumulative < draw[:, None]).sum(axis=1), self.n_origins - 1)
        return RequestBatch(arrival, prompt, output, origin.astype(np.int16))

    def _sample_tokens(self, n: int, kind_rng: np.random.Generator,
                       token_rng: np.random.Generator,
                       source: DataSource) -> tuple[np.ndarray, np.ndarray]:
        kinds = list(self.trace_mix)
        shares = np.array([self.trace_mix[k] for k in kinds], dtype=float)
        which = kind_rng.choice(len(kinds), size=n, p=shares / shares.sum())
        prompt = np.empty(n, np.int32)
        output = np.empty(n, np.int32)
        for k, kind in enumerate(kinds):
            mask = which == k
            if mask.any():
                sampler = TokenSampler.for_kind(kind, source)
                prompt[mask], output[mask] = sampler.sample(int(mask.sum()), token_rng)
        return prompt, output


def interval_counts(batch: RequestBatch, n_origins: int, interval_s: float,
                    n_intervals: int) -> np.ndarray:
    """Observed requests [n_intervals, n_origins] per interval of a batch (arrivals past the
    last interval are ignored)."""
    slot = np.floor(batch.arrival_s / interval_s).astype(np.int64)
    keep = (slot >= 0) & (slot < n_intervals)
    flat = slot[keep] * n_origins + batch.origin[keep].astype(np.int64)
    return np.bincount(flat, minlength=n_intervals * n_origins).reshape(n_intervals, n_origins)


def workload_period(start_utc: pd.Timestamp | str, end_utc: pd.Timestamp | str
                    ) -> tuple[pd.Timestamp, pd.Timestamp, float]:
    """[start, end) in UTC and its length in seconds; an empty or reversed period is refused."""
    start, end = to_utc(start_utc), to_utc(end_utc)
    duration_s = (end - start).total_seconds()
    if duration_s <= 0:
        raise SlitInputError("workload period", f"end {end} is not after start {start}",
                             "give an end time later than the start")
    return start, end, duration_s
