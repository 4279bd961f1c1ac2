"""Demand model: weights, shape, determinism, trace replay and token sampling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from slit.data.regions import DEFAULT_REGION_IDS, get_region
from slit.data.source import DataSource
from slit.errors import SlitInputError
from slit.workload.demand import (
    DIURNAL_BY_LOCAL_HOUR,
    WEEKLY_BY_LOCAL_DAY,
    DemandModel,
    diurnal_factor,
    interval_counts,
    population_weights,
)
from slit.workload.tokens import TokenSampler, build_token_profile
from slit.workload.traces import load_trace


def test_weights_sum_to_one_and_cover_the_default_origins() -> None:
    weights = population_weights()
    assert len(weights) == len(DEFAULT_REGION_IDS)
    assert weights.sum() == pytest.approx(1.0, abs=1e-12)
    assert (weights > 0).all()
    assert sum(DemandModel().weights) == pytest.approx(1.0, abs=1e-12)


def test_shapes_have_mean_one_so_global_rate_is_the_long_run_mean() -> None:
    assert DIURNAL_BY_LOCAL_HOUR.mean() == pytest.approx(1.0)
    assert WEEKLY_BY_LOCAL_DAY.mean() == pytest.approx(1.0)
    model = DemandModel(global_rate_rps=40.0)
    week = pd.date_range("2023-06-05", periods=7 * 24 * 12, freq="5min", tz="UTC")
    assert model.rate_rps(week).sum(axis=1).mean() == pytest.approx(40.0, rel=0.01)


def test_demand_peaks_in_local_daytime() -> None:
    model = DemandModel()
    day = pd.date_range("2023-06-07", periods=24 * 4, freq="15min", tz="UTC")  # a Wednesday
    rates = model.rate_rps(day)
    for k, origin in enumerate(model.origins):
        timezone = get_region(origin).timezone
        peak_local = day[int(np.argmax(rates[:, k]))].tz_convert(timezone)
        trough_local = day[int(np.argmin(rates[:, k]))].tz_convert(timezone)
        assert 9 <= peak_local.hour <= 17, origin
        assert 1 <= trough_local.hour <= 6, origin
    assert diurnal_factor(np.array([14.0]))[0] > 2.5 * diurnal_factor(np.array([4.0]))[0]


def test_weekend_is_quieter_than_weekdays() -> None:
    model = DemandModel(origins=("DE-LU",), weights=(1.0,))
    wednesday = pd.DatetimeIndex([pd.Timestamp("2023-06-07 10:00", tz="UTC")])
    sunday = pd.DatetimeIndex([pd.Timestamp("2023-06-11 10:00", tz="UTC")])
    assert model.rate_rps(sunday)[0, 0] < 0.9 * model.rate_rps(wednesday)[0, 0]


def _same(a, b) -> bool:
    return all(np.array_equal(getattr(a, f), getattr(b, f))
               for f in ("arrival_s", "prompt_tokens", "output_tokens", "origin"))


def test_generate_is_deterministic_by_seed_and_matches_the_rates() -> None:
    model = DemandModel(global_rate_rps=5.0)
    a = model.generate("2023-06-07", "2023-06-08", seed=7)
    b = model.generate("2023-06-07", "2023-06-08", seed=7)
    c = model.generate("2023-06-07", "2023-06-08", seed=8)
    assert _same(a, b)
    assert not _same(a, c)
    assert np.all(np.diff(a.arrival_s) >= 0)
    assert a.arrival_s.min() >= 0 and a.arrival_s.max() < 86400
    assert a.prompt_tokens.min() >= 1 and a.output_tokens.min() >= 1
    counts = interval_counts(a, model.n_origins, 3600.0, 24)
    expected = model.expected_counts(pd.Timestamp("2023-06-07", tz="UTC"), 24, 3600.0)
    # Poisson: the daily totals per origin agree within a few standard deviations.
    total, mean = counts.sum(axis=0), expected.sum(axis=0)
    assert np.all(np.abs(total - mean) < 5 * np.sqrt(mean) + 5)


def test_generate_without_data_dir_uses_the_shipped_profile_mix() -> None:
    only_code = DemandModel(global_rate_rps=2.0, trace_mix={"code": 1.0})
    batch = only_code.generate("2023-06-07 12:00", "2023-06-07 18:00", seed=1)
    # Code requests have long prompts and very short outputs (Splitwise trace).
    assert batch.output_tokens.mean() < 60 and batch.prompt_tokens.mean() > 1000


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(SlitInputError):
        DemandModel(origins=("DE-LU", "KR"), weights=(0.5, 0.6))
    with pytest.raises(SlitInputError):
        DemandModel(origins=("XX",))
    with pytest.raises(SlitInputError):
        DemandModel(trace_mix={"conv": 0.5})
    with pytest.raises(SlitInputError):
        DemandModel().generate("2023-06-08", "2023-06-07", seed=0)


def test_replay_keeps_trace_timing_and_tokens(data_dir: Path) -> None:
    model = DemandModel()
    batch = model.replay(DataSource(data_dir), "2023-06-07 12:00", seed=3)
    code, conv = load_trace(data_dir, "code"), load_trace(data_dir, "conv")
    assert len(batch) == len(code.prompt_tokens) + len(conv.prompt_tokens)
    assert batch.prompt_tokens.sum() == code.prompt_tokens.sum() + conv.prompt_tokens.sum()
    assert np.all(np.diff(batch.arrival_s) >= 0) and batch.arrival_s[0] == 0.0
    assert _same(batch, model.replay(DataSource(data_dir), "2023-06-07 12:00", seed=3))
    assert set(np.unique(batch.origin)) <= set(range(model.n_origins))


@pytest.mark.parametrize("kind", ["code", "conv"])
def test_profile_sampling_means_within_five_percent_of_trace(data_dir: Path, kind: str,
                                                             tmp_path: Path) -> None:
    trace = load_trace(data_dir, kind)
    rng = np.random.default_rng(0)
    for sampler in (TokenSampler.from_profile(kind),
                    TokenSampler.from_profile(kind, build_token_profile(data_dir, tmp_path))):
        prompt, output = sampler.sample(200_000, rng)
        assert prompt.mean() == pytest.approx(trace.prompt_tokens.mean(), rel=0.05)
        assert output.mean() == pytest.approx(trace.output_tokens.mean(), rel=0.05)
        assert prompt.min() >= 1 and output.min() >= 1


def test_shipped_profile_is_small_and_derived() -> None:
    path = Path(__file__).resolve().parents[1] / "src" / "slit" / "embedded" / "token_profile.json"
    assert path.stat().st_size < 200 * 1024
    assert TokenSampler.from_profile("conv").source.startswith("profile")


def test_trace_sampler_bootstraps_real_pairs(data_dir: Path) -> None:
    sampler = TokenSampler.for_kind("conv", DataSource(data_dir))
    trace = load_trace(data_dir, "conv")
    prompt, output = sampler.sample(1000, np.random.default_rng(1))
    pairs = set(zip(trace.prompt_tokens.tolist(), trace.output_tokens.tolist(), strict=True))
    assert all(p in pairs for p in zip(prompt.tolist(), output.tolist(), strict=True))


def test_replay_needs_real_traces() -> None:
    from slit.data.source import EMBEDDED
    with pytest.raises(SlitInputError, match="traces"):
        DemandModel().replay(EMBEDDED, "2023-06-07 12:00", seed=3)
