"""Site simulation: validation against analytic results, accounting, awake schedule, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slit.errors import SlitInputError
from slit.serving.capacity import max_throughput_rps
from slit.serving.catalog import ReplicaSpec
from slit.serving.iteration import decode_time_s, prefill_time_s
from slit.serving.power import replica_power
from slit.simulate.arrivals import poisson_from_trace
from slit.simulate.site import SiteConfig, simulate_site
from slit.workload.requests import RequestBatch
from slit.workload.traces import load_trace

H100_70B = ReplicaSpec("Llama-3.1-70B", "H100-SXM5-80GB", 4)
H100_8B = ReplicaSpec("Llama-3.1-8B", "H100-SXM5-80GB", 1)


def batch(arrival: np.ndarray, prompt: np.ndarray | int, output: np.ndarray | int) -> RequestBatch:
    n = len(arrival)
    return RequestBatch(np.asarray(arrival, np.float64),
                        np.broadcast_to(np.asarray(prompt, np.int32), n).copy(),
                        np.broadcast_to(np.asarray(output, np.int32), n).copy(),
                        np.zeros(n, np.int16))


@pytest.fixture(scope="module")
def conv(data_dir):
    return load_trace(data_dir, "conv")


@pytest.mark.parametrize("chunked", [False, True])
def test_ttft_at_very_low_load_is_the_prefill_time(chunked: bool) -> None:
    prompts = np.array([10, 500, 1000, 3000])
    requests = batch(np.arange(4) * 100.0, prompts, 50)
    site = SiteConfig(H100_70B, 2, chunked_prefill=chunked, max_batch_tokens=4096)
    result = simulate_site(requests, site, 2)
    expected = [prefill_time_s(H100_70B, int(p)) for p in prompts]
    np.testing.assert_allclose(result.ttft_s, expected, rtol=1e-9)
    # Alone, each request decodes one token a step over its own growing context.
    for i, p in enumerate(prompts):
        decode = [decode_time_s(H100_70B, 1, int(p) + k) for k in range(49)]
        assert result.tpot_s[i] == pytest.approx(np.mean(decode), rel=1e-9)


def test_throughput_saturates_near_analytic_capacity() -> None:
    capacity = max_throughput_rps(H100_8B, 1000, 200)
    rng = np.random.default_rng(0)
    arrival = np.sort(rng.uniform(0, 600, int(2 * capacity * 600)))
    result = simulate_site(batch(arrival, 1000, 200), SiteConfig(H100_8B, 1), 1, horizon_s=600)
    done_at = (result.e2e_s + result.arrival_s)[result.completed]
    measured = np.sum(done_at > 200) / 400.0
    print(f"capacity analytic {capacity:.2f} req/s, simulated {measured:.2f} req/s")
    assert measured == pytest.approx(capacity, rel=0.10)


def test_littles_law(conv) -> None:
    requests = poisson_from_trace(conv, 25.0, 1200.0, seed=3)
    result = simulate_site(requests, SiteConfig(H100_70B, 4), 4, horizon_s=1200.0)
    in_site = result.request_area_s / result.end_s  # integrated by the event loop
    rate = result.n_arrivals / result.end_s
    wait = np.nanmean(np.where(result.completed, result.e2e_s,
                               result.end_s - result.arrival_s)[result.arrived])
    assert in_site == pytest.approx(rate * wait, rel=0.05)
    assert result.n_in_flight > 0 and result.conservation_ok


def test_lone_request_time_and_energy_are_the_step_sums() -> None:
    # One request alone: a prefill step, then output - 1 decode steps of one sequence whose
    # context grows by one token a step; each step's whole replica power is its energy.
    prompt, output = 700, 40
    result = simulate_site(batch(np.array([5.0]), prompt, output), SiteConfig(H100_70B, 1), 1)
    power = replica_power(H100_70B)
    prefill = prefill_time_s(H100_70B, prompt)
    decode = [decode_time_s(H100_70B, 1, prompt + i) for i in range(output - 1)]
    assert result.ttft_s[0] == pytest.approx(prefill, rel=1e-9)
    assert result.e2e_s[0] == pytest.approx(prefill + sum(decode), rel=1e-9)
    assert result.tpot_s[0] == pytest.approx(sum(decode) / (output - 1), rel=1e-9)
    # A lone sequence decodes at the batch-1 power (ML.ENERGY: ~300 W per H100 GPU).
    expected_j = ((power.idle_w + power.prefill_dynamic_w) * prefill
                  + (power.idle_w + power.decode_dynamic_at(1)) * sum(decode))
    assert result.energy_j[0] == pytest.approx(expected_j, rel=1e-9)


def test_attributed_energy_is_the_busy_share_of_site_energy(conv) -> None:
    # With every replica on all the time, site energy = idle power x time on + dynamic energy of
    # steps; what requests are attributed is exactly the part drawn while a step ran.
    capacity = max_throughput_rps(H100_70B, conv.prompt_tokens.mean(), conv.output_tokens.mean())
    requests = poisson_from_trace(conv, 0.5 * 4 * capacity, 900.0, seed=0)
    result = simulate_site(requests, SiteConfig(H100_70B, 4), 4)
    power = replica_power(H100_70B)
    idle_between_steps_j = power.idle_w * (4 * result.end_s
                                           - result.busy_replica_s_per_interval.sum())
    assert result.energy_j.sum() == pytest.approx(
        result.it_energy_j_per_interval.sum() - idle_between_steps_j, rel=1e-9)
    summary = result.summary()
    print(f"Llama-3.1-70B on 4x H100, conv, 50 % load: {summary['energy_per_request_wh']:.3f} "
          f"Wh/request attributed, {summary['site_energy_per_request_wh']:.3f} Wh/request site")


def test_queueing_delay_grows_with_load(conv) -> None:
    # The same arrival stream compressed in time (common random numbers): TTFT percentiles rise
    # with the load, and at light load the median is close to an unloaded prefill.
    base = poisson_from_trace(conv, 1.0, 2000.0, seed=9)
    capacity = max_throughput_rps(H100_70B, conv.prompt_tokens.mean(), conv.output_tokens.mean())
    p50, p99 = [], []
    for load in (0.05, 0.4, 0.7, 0.9):
        scaled = RequestBatch(base.arrival_s / (load * 2 * capacity), base.prompt_tokens,
                              base.output_tokens, base.origin)
        ttft = simulate_site(scaled, SiteConfig(H100_70B, 2), 2).ttft_s
        p50.append(np.percentile(ttft, 50))
        p99.append(np.percentile(ttft, 99))
    assert np.all(np.diff(p50) > 0) and np.all(np.diff(p99) > 0)
    unloaded = np.median([prefill_time_s(H100_70B, int(p)) for p in base.prompt_tokens])
    assert p50[0] == pytest.approx(unloaded, rel=0.1)
    assert p99[-1] > 2 * p99[0]


def test_every_request_is_accounted_for(conv) -> None:
    requests = poisson_from_trace(conv, 40.0, 300.0, seed=5)
    result = simulate_site(requests, SiteConfig(H100_70B, 2), 2, horizon_s=200.0)
    assert result.n_arrivals == int(np.sum(requests.arrival_s < 200.0))
    assert result.n_arrivals == result.n_completed + result.n_in_flight
    assert result.n_in_flight > 0 and result.conservation_ok
    assert "no request lost" in result.conservation_statement()
    full = simulate_site(requests, SiteConfig(H100_70B, 2), 2)
    assert full.completed.all() and full.n_in_flight == 0
    done = full.completed
    assert (full.ttft_s[done] > 0).all() and (full.e2e_s[done] >= full.ttft_s[done]).all()


def test_same_seed_same_result_bit_for_bit(conv) -> None:
    requests = poisson_from_trace(conv, 30.0, 300.0, seed=7)
    assert np.array_equal(requests.arrival_s, poisson_from_trace(conv, 30.0, 300.0, 7).arrival_s)
    site = SiteConfig(H100_70B, 6, dispatcher="least_kv", chunked_prefill=True,
                      max_batch_tokens=2048)
    one = simulate_site(requests, site, np.array([3, 6, 2]), interval_s=100.0, seed=11)
    two = simulate_site(requests, site, np.array([3, 6, 2]), interval_s=100.0, seed=11)
    for name in ("ttft_s", "e2e_s", "energy_j", "it_energy_j_per_interval",
                 "busy_replica_s_per_interval"):
        assert np.array_equal(getattr(one, name), getattr(two, name), equal_nan=True), name


def test_awake_schedule_wake_up_and_site_queue() -> None:
    # No replica awake in the first interval: requests wait, then pay the wake-up time.
    requests = batch(np.array([10.0, 20.0]), 100, 10)
    site = SiteConfig(H100_8B, 2, wake_up_s=30.0)
    result = simulate_site(requests, site, np.array([0, 1]), interval_s=100.0)
    assert result.completed.all()
    assert result.ttft_s[0] >= 100.0 + 30.0 - 10.0
    power = replica_power(H100_8B)
    # Interval 0: both asleep (standby); interval 1: one replica on from t = 100.
    assert result.it_energy_j_per_interval[0] == pytest.approx(2 * power.standby_w * 100.0)
    assert result.it_energy_j_per_interval[1] > power.idle_w * 100.0


def test_sleeping_replicas_draw_standby_and_energy_adds_up(conv) -> None:
    requests = poisson_from_trace(conv, 5.0, 600.0, seed=2)
    power = replica_power(H100_8B)
    result = simulate_site(requests, SiteConfig(H100_8B, 8), np.array([1, 3]), interval_s=300.0,
                           horizon_s=600.0)
    e = result.replica_energy_j_per_interval
    assert e.shape == (2, 8)
    assert e[0, 1:] == pytest.approx(np.full(7, power.standby_w * 300.0))
    busy = result.busy_replica_s_per_interval
    idle_on = np.array([1.0, 3.0]) * 300.0  # replica-seconds on (waking ones draw idle power)
    assert (result.it_energy_j_per_interval >= power.idle_w * idle_on - 1e-6).all()
    dynamic_max = busy * power.prefill_dynamic_w
    assert (result.it_energy_j_per_interval <= power.idle_w * idle_on + dynamic_max + 1e-6).all()
    assert result.energy_j.sum() <= result.it_energy_j_per_interval.sum()


def test_drained_replicas_finish_their_work_then_sleep(conv) -> None:
    requests = poisson_from_trace(conv, 20.0, 200.0, seed=4)
    result = simulate_site(requests, SiteConfig(H100_8B, 4), np.array([4, 1]), interval_s=100.0)
    assert result.completed.all()
    late = result.replica_energy_j_per_interval[-1]
    assert np.sum(late > 0) == 1  # only one replica on once the others drained


def test_bad_site_config_is_refused() -> None:
    with pytest.raises(SlitInputError, match="dispatcher"):
        simulate_site(batch(np.zeros(1), 10, 10), SiteConfig(H100_8B, 1, dispatcher="rr"), 1)
    with pytest.raises(SlitInputError, match="max_batch_tokens"):
        SiteConfig(H100_8B, 1, chunked_prefill=True, max_batch_tokens=128).validate()
    with pytest.raises(SlitInputError, match="sorted"):
        simulate_site(batch(np.array([2.0, 1.0]), 10, 10), SiteConfig(H100_8B, 1), 1)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(0, 60),
    replicas=st.integers(1, 4),
    chunked=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_random_streams_complete_and_conserve(n: int, replicas: int, chunked: bool,
                                              seed: int) -> None:
    rng = np.random.default_rng(seed)
    requests = batch(np.sort(rng.uniform(0, 30, n)), rng.integers(1, 6000, n),
                     rng.integers(1, 400, n))
    site = SiteConfig(H100_8B, replicas, chunked_prefill=chunked, max_batch_tokens=1024)
    result = simulate_site(requests, site, replicas, interval_s=10.0, seed=seed)
    assert result.completed.all() and result.conservation_ok
    if n:
        assert (result.ttft_s > 0).all() and (result.e2e_s >= result.ttft_s).all()
        assert (result.energy_j > 0).all()


A100_70B_TP2 = ReplicaSpec("Llama-3.1-70B", "A100-SXM4-80GB", 2)  # 27,843 KV tokens: a small cache


def test_kv_blocks_run_out_and_the_latest_admitted_is_preempted() -> None:
    # 40 requests of 1,000 + 1,500 tokens: their prompts fit (63 blocks each of 1,740) but their
    # grown contexts do not (157 blocks each at the end), so decoding must preempt.
    requests = batch(np.arange(40) * 0.01, 1000, 1500)
    result = simulate_site(requests, SiteConfig(A100_70B_TP2, 1), 1)
    assert result.n_preemptions > 0
    assert result.completed.all() and result.conservation_ok
    assert (result.e2e_s >= result.ttft_s).all()
    # The first admitted are never the victims: they finish first, in order of arrival.
    done_at = result.e2e_s + result.arrival_s
    assert done_at[0] == done_at.min()
    # A cache large enough for every request never preempts, and serves them sooner.
    roomy = simulate_site(requests, SiteConfig(H100_70B, 1), 1)
    assert roomy.n_preemptions == 0 and roomy.completed.all()
    assert result.summary()["n_preemptions"] == result.n_preemptions


def test_prompts_beyond_the_context_are_refused_and_outputs_clipped() -> None:
    llama2 = ReplicaSpec("Llama-2-70B", "H100-SXM5-80GB", 4)
    assert llama2.max_model_len == 4096
    requests = batch(np.array([0.0, 1.0, 2.0]), np.array([5000, 4000, 100]),
                     np.array([10, 500, 50]))
    result = simulate_site(requests, SiteConfig(llama2, 1), 1)
    assert result.refused.tolist() == [True, False, False]
    assert result.completed.tolist() == [False, True, True]
    assert result.output_tokens.tolist() == [10, 96, 50]  # 4000 + 96 = the 4,096 context
    assert result.n_refused == 1 and result.n_in_flight == 0 and result.conservation_ok
    assert "refused=1" in result.conservation_statement()
    # Llama 3.1's 128k context takes the same prompts.
    assert not simulate_site(requests, SiteConfig(H100_70B, 1), 1).refused.any()


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 50), chunked=st.booleans(), seed=st.integers(0, 2**16))
def test_small_cache_streams_complete_despite_preemption(n: int, chunked: bool,
                                                         seed: int) -> None:
    rng = np.random.default_rng(seed)
    requests = batch(np.sort(rng.uniform(0, 5, n)), rng.integers(1, 8000, n),
                     rng.integers(1, 4000, n))
    site = SiteConfig(A100_70B_TP2, 2, chunked_prefill=chunked, max_batch_tokens=2048)
    result = simulate_site(requests, site, 2, interval_s=10.0, seed=seed)
    assert result.completed.all() and result.conservation_ok
    assert (result.e2e_s >= result.ttft_s).all()


def test_slo_capacity_brackets_the_slo(tmp_path, monkeypatch) -> None:
    from slit.simulate import capacity as cap

    monkeypatch.setenv("SLIT_CACHE_DIR", str(tmp_path))
    cap.slo_capacity_rps.cache_clear()
    rate = cap.slo_capacity_rps(H100_70B, 0.0)
    # Just below the capacity the tail meets the SLO; a little above it does not.
    assert cap.tail_ttft_s(H100_70B, 0.98 * rate, 0.0) <= cap.CAPACITY_SLO_TTFT_S
    assert cap.tail_ttft_s(H100_70B, 1.03 * rate, 0.0) > cap.CAPACITY_SLO_TTFT_S
    # Queueing and the tail cost capacity: below the analytic saturation estimate.
    assert 0.5 * max_throughput_rps(H100_70B, 1155, 211) < rate
    assert rate < max_throughput_rps(H100_70B, 1155, 211)
    # A second process finds it on disk, without simulating.
    cap.slo_capacity_rps.cache_clear()
    monkeypatch.setattr(cap, "_bisect", lambda *args: pytest.fail("cache not used"))
    assert cap.slo_capacity_rps(H100_70B, 0.0) == rate
    assert len(list((tmp_path / "capacity").glob("*.json"))) == 1
    cap.slo_capacity_rps.cache_clear()


def test_a_replica_never_serves_before_its_loading_ends() -> None:
    # Interval 0: nothing loaded; interval 1 (t = 100 s) loads one replica, which serves only
    # from 100 + load_time_s. Every request (all arrive before that) gets its first token after
    # the load ends; the wait is counted as delayed by loading; the load's energy is booked.
    from slit.serving.lifecycle import load_time_s, loading_power_w
    requests = batch(np.array([10.0, 20.0, 120.0, 150.0]), 100, 10)
    site = SiteConfig(H100_70B, 2)
    result = simulate_site(requests, site, np.array([0, 1, 1]), interval_s=100.0)
    ready_s = 100.0 + load_time_s(H100_70B)
    assert site.load_s == pytest.approx(load_time_s(H100_70B))
    first_token_s = result.arrival_s + result.ttft_s
    assert result.completed.all() and (first_token_s > ready_s).all()
    assert result.n_loads == 1
    # Delayed by loading: the two arriving while it loads (at 10 and 20 s nothing was loading).
    assert result.n_load_delayed == 2
    assert result.loading_energy_j_per_interval is not None
    assert result.loading_energy_j_per_interval.sum() == pytest.approx(
        loading_power_w(H100_70B) * load_time_s(H100_70B))
    assert result.conservation_ok


def test_decode_power_rises_with_the_batch() -> None:
    power = replica_power(H100_70B)
    levels = [power.decode_dynamic_at(n) for n in (1, 2, 16, 128, 256)]
    assert np.all(np.diff(levels[:4]) > 0) and levels[4] == levels[3]
    # Per GPU: ~300 W at batch 1 and ~600 W at batch 128 (ML.ENERGY, H100-SXM5).
    gpu = H100_70B.gpu_spec
    assert gpu.idle_w + levels[0] / H100_70B.tp == pytest.approx(300.0)
    assert gpu.idle_w + levels[3] / H100_70B.tp == pytest.approx(600.0)
