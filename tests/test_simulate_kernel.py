"""The simulation kernel's bookkeeping shortcuts against the plain computations they replace."""

from __future__ import annotations

import numpy as np
import pytest

from slit.serving.catalog import ReplicaSpec
from slit.serving.iteration import replica_params
from slit.simulate import kernel as k

H100_8B = ReplicaSpec("Llama-3.1-8B", "H100-SXM5-80GB", 1)


def _scan(ri: np.ndarray, rf: np.ndarray) -> tuple[float, int]:
    """The earliest pending replica event by a scan over the replicas (lowest replica on ties)."""
    best_t, best_r = np.inf, -1
    for r in range(ri.shape[0]):
        if ri[r, k.R_KIND] != k.IDLE:
            t = rf[r, k.F_END]
        elif ri[r, k.R_STATE] == k.WAKING:
            t = rf[r, k.F_READY]
        else:
            continue
        if t < best_t:
            best_t, best_r = t, r
    return best_t, best_r


def _randomise(r: int, ri: np.ndarray, rf: np.ndarray, rng: np.random.Generator) -> None:
    ri[r, k.R_KIND] = rng.choice([k.IDLE, k.STEP, k.RUN])
    ri[r, k.R_STATE] = rng.choice([k.ASLEEP, k.WAKING, k.AWAKE, k.DRAINING])
    # Few distinct times, so that ties are common.
    rf[r, k.F_END] = rng.integers(0, 4) * 0.5
    rf[r, k.F_READY] = rng.integers(0, 4) * 0.5


@pytest.mark.parametrize("n_rep", [1, 2, 3, 7, 16, 108])
def test_event_tree_finds_what_a_scan_finds(n_rep: int) -> None:
    rng = np.random.default_rng(n_rep)
    ri = np.zeros((n_rep, k.R_NCOLS), np.int64)
    rf = np.zeros((n_rep, k.F_NCOLS))
    # The tree of a fleet without events (as ``kernel_init`` builds it) has none.
    k._tree_build(ri, rf)
    assert k._next_replica_event(ri, rf, n_rep) == (np.inf, -1)
    for r in range(n_rep):
        _randomise(r, ri, rf, rng)
        k._tree_update(r, ri, rf)
        assert k._next_replica_event(ri, rf, n_rep) == _scan(ri, rf)
    for _ in range(300):
        r = int(rng.integers(0, n_rep))
        _randomise(r, ri, rf, rng)
        k._tree_update(r, ri, rf)
        assert k._next_replica_event(ri, rf, n_rep) == _scan(ri, rf)
    # Many replicas changed at once: rebuilding gives the scan's answer too.
    for r in range(n_rep):
        _randomise(r, ri, rf, rng)
    k._tree_build(ri, rf)
    assert k._next_replica_event(ri, rf, n_rep) == _scan(ri, rf)
    ri[:, k.R_KIND] = k.IDLE
    ri[:, k.R_STATE] = k.AWAKE
    k._tree_build(ri, rf)
    assert k._next_replica_event(ri, rf, n_rep) == (np.inf, -1)


def _fresh_tree(n_rep: int) -> tuple[np.ndarray, np.ndarray]:
    """The replica tables as ``kernel_init`` leaves them: every replica awake and idle."""
    cfg, _ = k.pack_settings(n_rep, False, k.JSQ, 4, 2048, 1000, 0, 3000, 1, 60.0, np.inf, 1.0,
                             1.0, 1.0, 1.0, 0.0)
    awake = np.array([n_rep], np.int64)
    ri, rf, *_ = k.kernel_init(awake, awake.copy(), replica_params(H100_8B), cfg)
    return ri, rf


@pytest.mark.parametrize("n_rep", [4, 8, 16, 108])
def test_event_tree_from_kernel_init_keeps_every_event(n_rep: int) -> None:
    # Replicas taking work in any order from the start (the dispatcher's tie-breaks rotate). An
    # all-zero start lost events here: a node never played held replica 0, and replica 0's own
    # updates do not replay it (the default scenario's 70B surrogate run 152 took a wrong turn).
    rng = np.random.default_rng(n_rep)
    for _ in range(20):
        ri, rf = _fresh_tree(n_rep)
        assert k._next_replica_event(ri, rf, n_rep) == (np.inf, -1)
        for _ in range(3 * n_rep):
            r = int(rng.integers(0, n_rep))
            ri[r, k.R_KIND] = rng.choice([k.IDLE, k.RUN])
            rf[r, k.F_END] = rng.integers(1, 6) * 0.5
            k._tree_update(r, ri, rf)
            assert k._next_replica_event(ri, rf, n_rep) == _scan(ri, rf)
    # The smallest case: replica 0 busy until 1, replica 5 until 2, then replica 0 idle.
    ri, rf = _fresh_tree(8)
    for r, end in ((0, 1.0), (5, 2.0)):
        ri[r, k.R_KIND], rf[r, k.F_END] = k.RUN, end
        k._tree_update(r, ri, rf)
    ri[0, k.R_KIND] = k.IDLE
    k._tree_update(0, ri, rf)
    assert k._next_replica_event(ri, rf, 8) == (2.0, 5)


@pytest.mark.parametrize("dispatcher", [k.JSQ, k.LEAST_KV])
def test_dispatcher_scan_rotates_from_the_offset(dispatcher: int) -> None:
    rng = np.random.default_rng(dispatcher)
    for n_rep in (1, 2, 5, 16):
        ri = np.zeros((n_rep, k.R_NCOLS), np.int64)
        for _ in range(50):
            ri[:, k.R_STATE] = rng.choice([k.AWAKE, k.AWAKE, k.WAKING, k.DRAINING], n_rep)
            for col in (k.R_NRUN, k.R_QLEN, k.R_KV, k.R_QKV):
                ri[:, col] = rng.integers(0, 3, n_rep)
            load = (ri[:, k.R_NRUN] + ri[:, k.R_QLEN] if dispatcher == k.JSQ
                    else ri[:, k.R_KV] + ri[:, k.R_QKV])
            for offset in range(n_rep):
                order = [(i + offset) % n_rep for i in range(n_rep)]
                ready = [r for r in order if ri[r, k.R_STATE] == k.AWAKE]
                # The first ready replica in rotation order among the least loaded.
                expected = min(ready, key=lambda r: (load[r], order.index(r))) if ready else -1
                assert k._pick_replica(ri, n_rep, dispatcher, offset) == expected


@pytest.mark.parametrize("gpu, tp", [("H100-SXM5-80GB", 1), ("H100-SXM5-80GB", 4),
                                     ("A100-SXM4-80GB", 2), ("A100-SXM4-80GB", 8)])
def test_step_table_times_a_step_as_the_model_does_bit_for_bit(gpu: str, tp: int) -> None:
    from slit.serving.catalog import ReplicaSpec
    from slit.serving.iteration import kv_read_s_per_token, replica_params, step_time_s

    replica = ReplicaSpec("Llama-3.1-70B", gpu, tp)
    p = replica_params(replica)
    max_seqs = 32
    cfg, _ = k.pack_settings(1, False, k.JSQ, max_seqs, 2048, replica.kv_blocks,
                             replica.kv_watermark_blocks, 3000, 1, 60.0, np.inf, 1.0, 1.0, 1.0,
                             1.0, 0.0)
    steps = k._step_table(p, cfg)
    kv_b = kv_read_s_per_token(p)
    big = k._steps_m(cfg)
    rng = np.random.default_rng(tp)
    # Twice over the same sizes: the first call fills the table, the second reads it; and sizes
    # beyond the table, which the model times itself.
    sizes = rng.integers(1, big + 50, 300)
    for m in np.concatenate([sizes, sizes, [big - 1, big, 1]]):
        m_out = int(rng.integers(0, max_seqs + 1))
        pairs = float(rng.integers(0, m * (m + 1) // 2 + 1)) if rng.random() < 0.8 else 0.0
        ctx = float(rng.integers(0, 10**6)) if rng.random() < 0.5 else 0.0
        expected = step_time_s(p, float(m), float(m_out), pairs, ctx)
        got = k._step_s(p, steps, cfg, int(m), m_out, pairs, ctx, kv_b)
        assert got == expected, (m, m_out, pairs, ctx)
    for n in range(1, max_seqs + 1):  # the decode part: a step of n tokens without context
        assert steps[n] == step_time_s(p, float(n), float(n), 0.0, 0.0)
    # The decode power of n sequences: filled on first use, then read, the same float.
    _, kf = k.pack_settings(1, False, k.JSQ, max_seqs, 2048, 1, 0, 3000, 1, 60.0, np.inf, 1.0,
                            1.0, 1.0, 310.0, 0.0, decode_full_w=870.0)
    for n in list(range(1, max_seqs + 1)) * 2:
        assert k._decode_w_of(n, steps, cfg, kf) == k._decode_w(n, kf)
    assert k._decode_w_of(1, steps, cfg, kf) < k._decode_w_of(max_seqs, steps, cfg, kf)


@pytest.mark.parametrize("interval_s", [900.0, 60.0, 15.0, 0.1, 1.0 / 3.0, 7.3])
def test_remembered_interval_books_as_the_divisions_do(interval_s: float) -> None:
    """``_book_busy`` takes a work's interval from the one it last found when both ends are
    within ``_remember_bin``'s bounds: the table must be the one the divisions give, bit for
    bit, including for ends on and next to interval boundaries."""
    rng = np.random.default_rng(int(interval_s * 1000))
    n_bins = 40
    plain, cached = np.zeros((n_bins, 2)), np.zeros((n_bins, 2))
    fs = np.zeros(k.N_FS)
    fs[k.FS_BIN_LO], fs[k.FS_BIN_HI] = np.inf, -np.inf
    t = 0.0
    taken = 0
    while t < (n_bins - 2) * interval_s:
        t0 = t + rng.exponential(interval_s / 30.0)
        if rng.random() < 0.3:  # on, or one float away from, a boundary
            edge = round(t0 / interval_s) * interval_s
            t0 = max(0.0, float(rng.choice([edge, np.nextafter(edge, 0.0),
                                            np.nextafter(edge, np.inf)])))
        t1 = t0 + rng.exponential(interval_s / 20.0)
        if rng.random() < 0.3:
            edge = round(t1 / interval_s) * interval_s
            t1 = float(rng.choice([edge, np.nextafter(edge, 0.0), np.nextafter(edge, np.inf)]))
        rate = rng.uniform(100.0, 1000.0)
        taken += t0 >= fs[k.FS_BIN_LO] and t1 <= fs[k.FS_BIN_HI] and t1 > t0
        k._book(plain, 0, t0, t1, rate, interval_s)
        k._book(plain, 1, t0, t1, 1.0, interval_s)
        k._book_busy(cached, 0, 1, t0, t1, rate, interval_s, fs)
        t = t0
    assert taken > 100  # the shortcut was used
    assert np.array_equal(plain, cached)
    # The bounds themselves, and the floats just inside them, divide to the interval.
    for kk in range(n_bins):
        k._remember_bin(fs, kk, interval_s)
        lo, hi = fs[k.FS_BIN_LO], fs[k.FS_BIN_HI]
        assert fs[k.FS_BIN] == kk and lo < hi
        for x in (lo, hi, np.nextafter(lo, np.inf), np.nextafter(hi, 0.0),
                  *rng.uniform(lo, hi, 20)):
            assert int(x / interval_s) == kk


# Run 152 of the surrogate's training design for the default scenario's 70B view (H100 TP4,
# 16 replicas, utilisation 0.302): the run on which main's all-zero event tree lost an event
# (mean TTFT 0.16779 s, power 2581.039 W a replica then). The figures below are those of the
# kernel with the tree built at start (c1e610d), which des3's speed-ups reproduce bit for bit
# (``benchmarks/compare_kernel.py --samples``). A deliberate change to the serving model or the
# workload moves them too: re-derive them then from the previous kernel, never from the new one.
RUN_152_TTFT_MEAN_S = 0.16969141861584483
RUN_152_POWER_W = 2580.999072367296


def test_surrogate_run_152_as_the_reference_kernel_gives_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import slit.optimise.surrogate_design as design
    from slit.experiment.scenario import default_scenario

    # The default scenario on its embedded data, as ``slit run`` trains the surrogate for it.
    view = default_scenario().for_model("Llama-3.1-70B")
    spec = design.SurrogateSpec(
        replicas=tuple(sorted({s.replica for s in view.sites}, key=str)),
        code_shares=(view.code_share,), seed=view.seed,
        n_awake=tuple(sorted({1, 2, 3, 4, 6, 8, 12, 16} | {s.installed for s in view.sites})),
        token_source=view.data.key)
    runs: list[design._Run] = []
    monkeypatch.setattr(design, "parallel_map", lambda fn, items, done=None: runs.extend(items))
    design.simulate_samples(spec)
    run = next(r for r in runs if r.run == 152)
    assert (run.n_awake, run.replica.tp) == (16, 4)
    row = design._simulate_run(run)
    assert row["ttft_mean_s"] == RUN_152_TTFT_MEAN_S
    assert row["power_w_per_replica"] == RUN_152_POWER_W
