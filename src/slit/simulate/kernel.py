"""Compiled event loop of one site: replicas with vLLM-style continuous batching.

Events are request arrivals, ends of engine work on a replica, ends of loading (wake-ups) and
interval boundaries. A waking replica is loading its model: it draws the loading power, serves
nothing, and its energy is also booked apart as loading energy (churn).
A replica's work is either one step (a prefill step, or with chunked prefill a mixed step) or a
*decode run*: the k identical-composition decode steps until its first sequence finishes. Step i of
a run takes a + b (C + i n) (n sequences, C tokens of context, b the KV read time per token), so the
run's end is known in closed form and the steps in between are never visited. A request dispatched
to a replica in a run joins at the first step boundary after its arrival: the run is cut there.

KV cache as vLLM's paged allocator: blocks of ``KV_BLOCK_TOKENS`` tokens. A request is admitted
when blocks for its whole prompt fit with the watermark free (vLLM V0's ``can_allocate``) and one
more block per running sequence, so the next decode step never has to preempt what was just
admitted (this also rules out a preempt / re-admit loop). Decoding sequences take a new block each
time their context crosses a block boundary; a run also ends at the step where the blocks would
run out. When the next step's blocks do not fit, the most recently admitted running request is
preempted by recompute: its blocks are freed and it goes back to the front of the replica's queue,
to be prefilled again over its prompt and the tokens it had generated (vLLM's default
``PreemptionMode.RECOMPUTE``). Its first-token time stays that of its first prefill.

All state lives in flat arrays so that the loop compiles with numba (nopython, cache=True). The
settings are packed as the step-time parameters are (``slit.serving.iteration``): an integer
vector indexed by the ``C_`` constants and a float vector indexed by the ``K_`` constants, built by
``pack_settings``. Per-request integers (prompt, output, tie-break, KV reserve, queue link) are
the columns ``Q_`` of one table, per-request results the columns ``O_`` of another.
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np

from slit.serving.iteration import (
    BYTES,
    P_ATTN_EFF,
    P_HEAD_DIM,
    P_HEADS,
    P_HIDDEN,
    P_LAYERS,
    P_PEAK,
    P_STEP,
    P_TP,
    P_VOCAB,
    _gemm_s,
    allreduce_s,
    kv_read_s_per_token,
    layer_linear_s,
    step_time_s,
)
from slit.serving.power import DECODE_FULL_BATCH

# Replica states.
ASLEEP, WAKING, AWAKE, DRAINING = 0, 1, 2, 3
# Kinds of work in progress.
IDLE, STEP, RUN = 0, 1, 2
# Columns of the integer replica table.
# R_STEP_FIRST: first slot that takes part in the current step (a prefill step without chunking
# touches only the requests it admitted, which sit at the end of the slot table).
# R_SUM_N: slots 0..R_SUM_N-1 are unchanged since the end of the last decode run, which left
# their least decode tokens left, total context and blocks for one more token in R_SUM_REM,
# R_SUM_CTX, R_SUM_NEED (the next run starts from them instead of visiting every slot again).
# R_TREE: on row i (1 <= i < n_rep), the replica with the earliest event below node i of the
# event tournament tree (see ``_next_replica_event``).
R_STATE, R_KIND, R_NRUN, R_KV, R_QHEAD, R_QTAIL, R_QLEN, R_QKV, R_RUNK, R_STEP_TOKENS, \
    R_STEP_FIRST, R_SUM_N, R_SUM_REM, R_SUM_CTX, R_SUM_NEED, R_TREE = range(16)
R_NCOLS = 16
# Columns of the float replica table; then, from F_SLOT_E on, one per slot: the energy (J)
# attributed so far to the request in the slot, written back to its result row (O_ENERGY) when it
# leaves the slot, so that the hottest loop (a decode run's end) adds to a contiguous column
# instead of scattered result rows. A request's shares are added in the same order either way.
# F_TREE_T: on row i (1 <= i < n_rep), the time of node i's winner in the event tree (R_TREE).
F_SINCE, F_READY, F_START, F_END, F_TREE_T, F_A, F_B, F_C, F_NCOLS = range(9)
F_SLOT_E = F_NCOLS
# Columns of a slot: request, decode tokens left, context in KV, prompt left, tokens this step,
# KV blocks held, admission sequence number (the preemption victim is the latest admitted).
# The slot table is [replica, column, slot]: each column of a replica's slots is contiguous.
S_REQ, S_REM, S_CTX, S_PREF, S_CHUNK, S_BLK, S_ADM = range(7)
S_NCOLS = 7
# Dispatchers.
JSQ, LEAST_KV = 0, 1
# Integer settings: C_KV_BLOCKS is the replica's whole cache in blocks, C_WATERMARK the blocks an
# admission must leave free, C_MAX_LEN the longest prompt accepted (vLLM's max_model_len).
C_N_REP, C_CHUNKED, C_DISPATCHER, C_MAX_SEQS, C_MAX_BATCH_TOKENS, C_KV_BLOCKS, C_WATERMARK, \
    C_MAX_LEN, C_N_BINS = range(9)
N_C = 9
KV_BLOCK_TOKENS = 16
_KV_BLOCK_SHIFT = 4  # KV_BLOCK_TOKENS == 1 << _KV_BLOCK_SHIFT
# Float settings.
# K_DECODE_W is the decode dynamic power of one sequence, K_DECODE_FULL_W that of a batch of
# DECODE_FULL_BATCH or more; in between it rises with log2 of the batch (slit.serving.power).
# K_LOADING_W is the power of a replica while it loads (slit.serving.lifecycle).
# K_SHED_WAIT_S: admission control, an arrival is shed when the oldest request waiting ahead of
# it has waited longer than this (inf: never).
K_INTERVAL_S, K_HORIZON_S, K_IDLE_W, K_STANDBY_W, K_PREFILL_W, K_DECODE_W, K_WAKE_UP_S, \
    K_DECODE_FULL_W, K_LOADING_W, K_SHED_WAIT_S = range(10)
N_K = 10
# Per-request integer columns: prompt and output tokens, dispatcher tie-break (filled by the
# caller); tokens to prefill at the next admission, output tokens still to generate, blocks that
# admission needs, next request in its queue, times preempted (set by the kernel).
Q_PROMPT, Q_OUTPUT, Q_TIE, Q_PREFILL, Q_TODO, Q_BLOCKS, Q_NEXT, Q_PREEMPTED = range(8)
N_Q = 8
# Per-request results: time of the first token, of the last token, attributed energy (J), time
# it was handed off because the site lost the replica holding it (or all of its capacity), time
# it was shed by admission control (NaN when not).
O_FIRST, O_DONE, O_ENERGY, O_HANDOFF, O_SHED = range(5)
N_O = 5
# Site counters: next arrival, completions, requests in the site, awake-schedule interval, site
# queue (head, tail, length), admissions so far, preemptions, refusals, loads started, arrivals
# that found no serving replica while one was loading (delayed by loading), requests handed off
# on a capacity loss, requests shed by admission control.
G_NEXT, G_DONE, G_IN_SITE, G_INTERVAL, G_HEAD, G_TAIL, G_LEN, G_ADMITTED, G_PREEMPTIONS, \
    G_REFUSED, G_LOADS, G_LOAD_DELAYED, G_HANDED, G_SHED = range(14)
N_G = 14


def pack_settings(n_rep: int, chunked: bool, dispatcher: int, max_seqs: int,
                  max_batch_tokens: int, kv_blocks: int, watermark_blocks: int, max_len: int,
                  n_bins: int,
                  interval_s: float,
                  horizon_s: float, idle_w: float, standby_w: float, prefill_w: float,
                  decode_w: float, wake_up_s: float, decode_full_w: float | None = None,
                  loading_w: float | None = None, shed_wait_s: float = np.inf
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The integer and float settings vectors ``simulate_kernel`` reads."""
    cfg = np.zeros(N_C, np.int64)
    cfg[C_N_REP], cfg[C_CHUNKED], cfg[C_DISPATCHER] = n_rep, int(chunked), dispatcher
    cfg[C_MAX_SEQS], cfg[C_MAX_BATCH_TOKENS] = max_seqs, max_batch_tokens
    cfg[C_KV_BLOCKS], cfg[C_WATERMARK], cfg[C_MAX_LEN] = kv_blocks, watermark_blocks, max_len
    cfg[C_N_BINS] = max(n_bins, 1)
    kf = np.zeros(N_K)
    kf[K_INTERVAL_S], kf[K_HORIZON_S], kf[K_WAKE_UP_S] = interval_s, horizon_s, wake_up_s
    kf[K_IDLE_W], kf[K_STANDBY_W] = idle_w, standby_w
    kf[K_PREFILL_W], kf[K_DECODE_W] = prefill_w, decode_w
    kf[K_DECODE_FULL_W] = decode_w if decode_full_w is None else decode_full_w
    kf[K_LOADING_W] = idle_w if loading_w is None else loading_w
    kf[K_SHED_WAIT_S] = shed_wait_s
    return cfg, kf


# The event handlers and their helpers never allocate nor return arrays, so they are compiled
# without numba's runtime: it would otherwise increment and decrement (atomically) the reference
# count of every array argument at every call, which took about 40 % of the kernel's time
# (perf, 16 replicas). Allocations stay in the functions compiled with the runtime
# (``simulate_kernel``, ``_accumulate``'s growth, ``_close``).
# (``_nrt`` is a private option of numba's, hence not in its type stubs.)
_NO_RUNTIME: dict[str, Any] = {"_nrt": False}
_hot = numba.njit(cache=True, **_NO_RUNTIME)
# The handlers' helpers are inlined (by numba, into the handler's own code): a call passes each
# array as its pointer, shape, strides and more, some eighty words for a handler's tables, which
# took more time than the work of the smaller helpers.
_inlined = numba.njit(cache=True, inline="always", **_NO_RUNTIME)


# No decode tokens left to bound the next run (a sentinel above any output length).
_NO_REM = 1 << 62


@_hot
def _decode_w(n, kf):
    """Decode dynamic power of a batch of n sequences."""
    if n <= 1:
        return kf[K_DECODE_W]
    x = min(1.0, math.log2(n) / math.log2(DECODE_FULL_BATCH))
    return kf[K_DECODE_W] + (kf[K_DECODE_FULL_W] - kf[K_DECODE_W]) * x


@numba.njit(cache=True)
def _bins_up_to(bins, t, interval_s):
    """The per-interval table with a row for time t (grown, doubling, when needed)."""
    last = int(t / interval_s)
    if last >= bins.shape[0]:
        grown = np.zeros((max(last + 1, 2 * bins.shape[0]), bins.shape[1]))
        grown[: bins.shape[0]] = bins
        return grown
    return bins


@_hot
def _book(bins, col, t0, t1, rate, interval_s):
    """Add rate x overlap of [t0, t1) to each interval bin; the table has a row for t1."""
    if t1 <= t0:
        return
    last = int(t1 / interval_s)
    k = int(t0 / interval_s)
    while k <= last and k < bins.shape[0]:
        lo = max(t0, k * interval_s)
        hi = min(t1, (k + 1) * interval_s)
        if hi > lo:
            bins[k, col] += rate * (hi - lo)
        k += 1


@_inlined
def _book_busy(bins, col, busy_col, t0, t1, rate, interval_s, fs):
    """``_book`` of rate on col and of 1 (busy seconds) on busy_col, the intervals found once.

    Almost every piece of work starts and ends in one interval: when both ends are safely
    inside the last interval found (``fs[FS_BIN_LO]``..``fs[FS_BIN_HI]``, see
    ``_remember_bin``), its index is taken from there instead of two divisions."""
    if t1 <= t0:
        return
    if t0 >= fs[FS_BIN_LO] and t1 <= fs[FS_BIN_HI]:
        k = int(fs[FS_BIN])
        last = k
    else:
        last = int(t1 / interval_s)
        k = int(t0 / interval_s)
        if last >= 0:
            _remember_bin(fs, last, interval_s)
    while k <= last and k < bins.shape[0]:
        lo = max(t0, k * interval_s)
        hi = min(t1, (k + 1) * interval_s)
        if hi > lo:
            bins[k, col] += rate * (hi - lo)
            bins[k, busy_col] += 1.0 * (hi - lo)
        k += 1


@_inlined
def _remember_bin(fs, k, interval_s):
    """Keep interval k and bounds within which a time t surely has int(t / interval_s) == k:
    k I (1 + 1e-12) and (k + 1) I (1 - 1e-12) (0 for k = 0; t >= 0) are each more than the
    rounding of the products and of the division away from the interval's ends (the relative
    error of each is below 2**-53), so a time between them divides to k exactly as
    ``int(t / interval_s)`` computes it."""
    fs[FS_BIN] = k
    fs[FS_BIN_LO] = 0.0 if k == 0 else k * interval_s * (1.0 + 1e-12)
    fs[FS_BIN_HI] = (k + 1) * interval_s * (1.0 - 1e-12)


@numba.njit(cache=True)
def _accumulate(bins, col, t0, t1, rate, interval_s):
    """Add rate x overlap of [t0, t1) to each interval bin; grows the table when needed."""
    if t1 <= t0:
        return bins
    bins = _bins_up_to(bins, t1, interval_s)
    _book(bins, col, t0, t1, rate, interval_s)
    return bins


@_hot
def cfg_loading_col(bins):
    """Column of the per-interval table that holds loading energy (the last one)."""
    return bins.shape[1] - 1


@_hot
def _change_state(r, new_state, t, ri, rf, bins, kf):
    """Change a replica's state, booking its base power up to t (the table has a row for t)."""
    state = ri[r, R_STATE]
    if state == ASLEEP:
        base_w = kf[K_STANDBY_W]
    elif state == WAKING:
        base_w = kf[K_LOADING_W]
        # Loading energy is also booked apart (the column after the busy seconds): churn.
        _book(bins, cfg_loading_col(bins), rf[r, F_SINCE], t, base_w, kf[K_INTERVAL_S])
    else:
        base_w = kf[K_IDLE_W]
    _book(bins, r, rf[r, F_SINCE], t, base_w, kf[K_INTERVAL_S])
    rf[r, F_SINCE] = t
    ri[r, R_STATE] = new_state


@numba.njit(cache=True)
def _set_state(r, new_state, t, ri, rf, bins, kf):
    """Change a replica's state, booking its base power up to t."""
    if rf[r, F_SINCE] < t:
        bins = _bins_up_to(bins, t, kf[K_INTERVAL_S])
    _change_state(r, new_state, t, ri, rf, bins, kf)
    return bins


@numba.njit(cache=True)
def _run_time(a, b, c, n, k):
    return k * a + b * (k * c + n * k * (k - 1.0) / 2.0)


# The step-time table ``steps`` (one float vector, S = max_num_seqs + 1, M = ``_steps_m``):
# [0, S): the context-free part a(n) of a decode step of n sequences (``step_time_s`` of n
# tokens, n outputs, no context); [S, 2S): the LM head of n output tokens; [2S, 2S + 2M): in
# pairs, at 2S + 2m one layer's linear operators for m tokens and at 2S + 2m + 1 twice the
# all-reduce of m tokens' activations (tensor parallel only; side by side, so that a prefill
# step reads one cache line of this large table, not two a megabyte apart), both filled the
# first time a step of m tokens is timed (NaN until then); [2S + 2M, 3S + 2M): the decode power
# of a batch of n (``_decode_w``, a logarithm at every run's end otherwise), filled the first
# time a run of n ends; then the attention term's two constant factors (two divisions a step
# otherwise). ``_step_s`` puts them together as ``step_time_s`` does, operation for operation,
# so that a step's time is the same float; the model's terms that depend on the tokens alone
# (its logarithms, exponentials and divisions) are then computed once per size.
@_hot
def _steps_m(cfg):
    """Largest step in tokens plus one: a prefill without chunking admits one prompt of up to
    max_model_len (a recomputed one too) or several within max_batch_tokens; the decodes of a
    chunked step add one each."""
    return max(cfg[C_MAX_LEN], cfg[C_MAX_BATCH_TOKENS]) + cfg[C_MAX_SEQS] + 1


@numba.njit(cache=True)
def _step_table(p, cfg):
    """The table ``steps`` (see above) with the decode and LM-head parts filled."""
    n_seq = cfg[C_MAX_SEQS] + 1
    big = _steps_m(cfg)
    table = np.empty(3 * n_seq + 2 * big + 2)
    table[:] = np.nan
    table[3 * n_seq + 2 * big] = 4.0 * p[P_HEADS] / p[P_TP] * p[P_HEAD_DIM]
    table[3 * n_seq + 2 * big + 1] = p[P_PEAK] * p[P_ATTN_EFF]
    table[0] = 0.0
    table[n_seq] = 0.0
    for n in range(1, n_seq):
        table[n] = step_time_s(p, float(n), float(n), 0.0, 0.0)
        table[n_seq + n] = _gemm_s(p, float(n), p[P_HIDDEN], p[P_VOCAB] / p[P_TP])
    return table


@_hot
def _step_s(p, steps, cfg, m, m_out, pairs, dec_ctx, kv_b):
    """``step_time_s(p, m, m_out, pairs, dec_ctx)`` from the table (m, m_out integers; kv_b is
    ``kv_read_s_per_token(p)``): the same operations in the same order on the same values."""
    n_seq = cfg[C_MAX_SEQS] + 1
    big = _steps_m(cfg)
    if m >= big or m_out >= n_seq:  # beyond the table (not reached): the model itself
        return step_time_s(p, float(m), float(m_out), pairs, dec_ctx)
    at = 2 * n_seq + 2 * m
    tp = p[P_TP]
    layer = steps[at]
    if layer != layer:  # NaN: the first step of m tokens
        layer = layer_linear_s(p, float(m))
        steps[at] = layer
        if tp > 1.0:
            steps[at + 1] = 2.0 * allreduce_s(p, BYTES * float(m) * p[P_HIDDEN])
    # (4 heads / tp * head_dim) * pairs / (peak * efficiency), the factors from the table.
    at_c = 3 * n_seq + 2 * big
    layer += steps[at_c] * pairs / steps[at_c + 1]
    if tp > 1.0:
        layer += steps[at + 1]
    total = p[P_LAYERS] * layer + kv_b * dec_ctx
    if m_out > 0:
        total += steps[n_seq + m_out]
    return total + p[P_STEP]


@_inlined
def _decode_w_of(n, steps, cfg, kf):
    """``_decode_w(n, kf)`` from the step table (n <= max_num_seqs)."""
    at = 2 * (cfg[C_MAX_SEQS] + 1) + 2 * _steps_m(cfg) + n
    w = steps[at]
    if w != w:  # NaN: the first run of n sequences
        w = _decode_w(n, kf)
        steps[at] = w
    return w


@_inlined
def _blocks(tokens):
    """ceil(tokens / KV_BLOCK_TOKENS): a shift (floor division by a power of two), without the
    sign correction numba's integer ``//`` carries."""
    return (tokens + KV_BLOCK_TOKENS - 1) >> _KV_BLOCK_SHIFT


@_hot
def _push_front(r, j, ri, rq):
    """Put request j at the head of replica r's queue."""
    rq[j, Q_NEXT] = ri[r, R_QHEAD] if ri[r, R_QLEN] > 0 else -1
    if ri[r, R_QLEN] == 0:
        ri[r, R_QTAIL] = j
    ri[r, R_QHEAD] = j
    ri[r, R_QLEN] += 1
    ri[r, R_QKV] += rq[j, Q_BLOCKS]


@_hot
def _preempt_latest(r, ri, rf, sl, rq, out, st):
    """Preempt (recompute) the most recently admitted running request of replica r."""
    v = 0
    for s in range(1, ri[r, R_NRUN]):
        if sl[r, S_ADM, s] > sl[r, S_ADM, v]:
            v = s
    j = sl[r, S_REQ, v]
    if sl[r, S_PREF, v] == 0:
        # Prefilled: recompute the context and the last sampled token, whose KV is not written
        # yet; what is left to generate shrinks by the tokens already produced.
        rq[j, Q_PREFILL] = sl[r, S_CTX, v] + 1
        rq[j, Q_TODO] = sl[r, S_REM, v]
    rq[j, Q_BLOCKS] = _blocks(rq[j, Q_PREFILL])
    rq[j, Q_PREEMPTED] += 1
    out[j, O_ENERGY] = rf[r, F_SLOT_E + v]
    ri[r, R_KV] -= sl[r, S_BLK, v]
    _remove_slot(r, v, ri, rf, sl)
    _push_front(r, j, ri, rq)
    st[G_PREEMPTIONS] += 1


@_hot
def _blocks_for_next_step(r, ri, sl):
    """Blocks replica r holds after giving each decoding sequence room for one more token."""
    total = 0
    for s in range(ri[r, R_NRUN]):
        if sl[r, S_PREF, s] == 0:
            total += _blocks(sl[r, S_CTX, s] + 1)
        else:
            total += sl[r, S_BLK, s]
    return total


@_hot
def _make_room(r, ri, rf, sl, rq, out, st, cfg):
    """Preempt the latest admitted requests until the next step's decode blocks fit."""
    while ri[r, R_NRUN] > 0 and _blocks_for_next_step(r, ri, sl) > cfg[C_KV_BLOCKS]:
        _preempt_latest(r, ri, rf, sl, rq, out, st)


@_hot
def _run_steps_within_blocks(r, n_run, k, sl, kv_blocks):
    """Largest k' <= k such that the k' decode steps of a run all find their blocks (step i needs
    ceil((ctx + i + 1) / block) per sequence); at least 1 (``_make_room`` ran)."""
    lo, hi = 1, k
    while lo < hi:
        mid = (lo + hi + 1) // 2
        need = 0
        for s in range(n_run):
            need += _blocks(sl[r, S_CTX, s] + mid)
        if need <= kv_blocks:
            lo = mid
        else:
            hi = mid - 1
    return lo


@_inlined
def _admit_fits(r, j, ri, rq, cfg, extra_blocks):
    """vLLM's admission test: the prompt's blocks fit with the watermark free, plus one block per
    running sequence (this one included) for the next decode step."""
    need = ri[r, R_KV] + extra_blocks + rq[j, Q_BLOCKS] + ri[r, R_NRUN] + 1
    return need <= cfg[C_KV_BLOCKS] - cfg[C_WATERMARK]


@_inlined
def _start_work(r, t, ri, rf, sl, rq, out, st, p, cfg, steps, kv_b):
    """Pick the next step of replica r at time t (vLLM scheduler: prefill first)."""
    _plan_work(r, t, ri, rf, sl, rq, out, st, p, cfg, steps, kv_b)
    _tree_update(r, ri, rf)


@_inlined
def _plan_work(r, t, ri, rf, sl, rq, out, st, p, cfg, steps, kv_b):
    """``_start_work`` but for the event tree."""
    chunked = cfg[C_CHUNKED] != 0
    max_batch_tokens = cfg[C_MAX_BATCH_TOKENS]
    budget = max_batch_tokens
    n_dec = 0
    dec_ctx = 0.0
    prefill_tokens = 0
    finishing = 0
    pairs = 0.0
    grow = 0
    if chunked:
        # Every step carries the decodes: give them their next token's blocks first.
        _make_room(r, ri, rf, sl, rq, out, st, cfg)
        n_run = ri[r, R_NRUN]
        for s in range(n_run):
            if sl[r, S_PREF, s] == 0:
                n_dec += 1
                dec_ctx += sl[r, S_CTX, s]
                grow += _blocks(sl[r, S_CTX, s] + 1) - sl[r, S_BLK, s]
        budget -= n_dec
        for s in range(n_run):
            pref = sl[r, S_PREF, s]
            if pref > 0 and budget > 0:
                c = min(pref, budget)
                sl[r, S_CHUNK, s] = c
                budget -= c
                prefill_tokens += c
                pairs += c * (sl[r, S_CTX, s] + (c + 1.0) / 2.0)
                if c == pref:
                    finishing += 1
    ri[r, R_STEP_FIRST] = 0 if chunked else ri[r, R_NRUN]
    # Admit waiting requests in order while sequences, KV blocks and the token budget allow.
    while ri[r, R_QLEN] > 0 and ri[r, R_NRUN] < cfg[C_MAX_SEQS]:
        j = ri[r, R_QHEAD]
        if not _admit_fits(r, j, ri, rq, cfg, grow):
            break
        prompt = rq[j, Q_PREFILL]
        if chunked:
            if budget <= 0:
                break
            c = min(prompt, budget)
        else:
            if prefill_tokens > 0 and prefill_tokens + prompt > max_batch_tokens:
                break
            c = prompt
        ri[r, R_QHEAD] = rq[j, Q_NEXT]
        ri[r, R_QLEN] -= 1
        ri[r, R_QKV] -= rq[j, Q_BLOCKS]
        ri[r, R_KV] += rq[j, Q_BLOCKS]
        s = ri[r, R_NRUN]
        ri[r, R_NRUN] += 1
        sl[r, S_REQ, s] = j
        sl[r, S_REM, s] = rq[j, Q_TODO] - 1
        sl[r, S_CTX, s] = 0
        sl[r, S_PREF, s] = prompt
        sl[r, S_CHUNK, s] = c
        sl[r, S_BLK, s] = rq[j, Q_BLOCKS]
        sl[r, S_ADM, s] = st[G_ADMITTED]
        rf[r, F_SLOT_E + s] = out[j, O_ENERGY]  # 0, or what it drew before a preemption
        st[G_ADMITTED] += 1
        budget -= c
        prefill_tokens += c
        pairs += c * (c + 1.0) / 2.0
        if c == prompt:
            finishing += 1
    if prefill_tokens > 0:
        if chunked:  # the decodes of this step take their blocks now
            for s in range(ri[r, R_NRUN]):
                if sl[r, S_PREF, s] == 0:
                    sl[r, S_BLK, s] = _blocks(sl[r, S_CTX, s] + 1)
            ri[r, R_KV] += grow
        ri[r, R_KIND] = STEP
        ri[r, R_STEP_TOKENS] = prefill_tokens + n_dec
        rf[r, F_START] = t
        rf[r, F_END] = t + _step_s(p, steps, cfg, prefill_tokens + n_dec, finishing + n_dec,
                                   pairs, dec_ctx, kv_b)
        return
    n_run = ri[r, R_NRUN]
    if n_run == 0:
        ri[r, R_KIND] = IDLE
        return
    # Decode run until the first sequence finishes or the blocks run out. One pass gathers the
    # run's length, context and first-step blocks; preempting (rare) redoes it.
    while True:
        m = ri[r, R_SUM_N]
        if m > 0:
            k, ctx_tokens, need = ri[r, R_SUM_REM], ri[r, R_SUM_CTX], ri[r, R_SUM_NEED]
        else:
            k, ctx_tokens, need = sl[r, S_REM, 0], 0, 0
        for s in range(m, n_run):
            k = min(k, sl[r, S_REM, s])
            c = sl[r, S_CTX, s]
            ctx_tokens += c
            need += _blocks(c + 1)
        # An integer sum converted once: the same float as summing in floats (exact below 2**53).
        ctx = float(ctx_tokens)
        if need <= cfg[C_KV_BLOCKS]:
            break
        _preempt_latest(r, ri, rf, sl, rq, out, st)
        n_run = ri[r, R_NRUN]
        if n_run == 0:  # cannot happen within max_model_len; never loop on it
            ri[r, R_KIND] = IDLE
            return
    # Blocks after k steps are at most (ctx + n k) / block + n: only near a full cache is the
    # exact count needed.
    if (ctx + n_run * k) / KV_BLOCK_TOKENS + n_run > cfg[C_KV_BLOCKS]:
        k = _run_steps_within_blocks(r, n_run, k, sl, cfg[C_KV_BLOCKS])
    ri[r, R_KIND] = RUN
    ri[r, R_RUNK] = k
    rf[r, F_A] = steps[n_run]
    rf[r, F_B] = kv_b
    rf[r, F_C] = ctx
    rf[r, F_START] = t
    rf[r, F_END] = t + _run_time(rf[r, F_A], kv_b, ctx, float(n_run), float(k))


@_inlined
def _cut_run(r, t, ri, rf):
    """End replica r's decode run at the first step boundary at or after t."""
    a, b, c, n = rf[r, F_A], rf[r, F_B], rf[r, F_C], float(ri[r, R_NRUN])
    elapsed = t - rf[r, F_START]
    qa, qb = b * n / 2.0, a + b * c - b * n / 2.0
    if qa > 0.0:
        guess = (-qb + math.sqrt(qb * qb + 4.0 * qa * elapsed)) / (2.0 * qa)
    else:
        guess = elapsed / qb
    k = max(1, int(math.ceil(guess)))
    while k > 1 and _run_time(a, b, c, n, k - 1.0) >= elapsed:
        k -= 1
    run_s = _run_time(a, b, c, n, float(k))
    while run_s < elapsed:
        k += 1
        run_s = _run_time(a, b, c, n, float(k))
    if k < ri[r, R_RUNK]:
        ri[r, R_RUNK] = k
        rf[r, F_END] = rf[r, F_START] + run_s
        _tree_update(r, ri, rf)


@_inlined
def _remove_slot(r, s, ri, rf, sl):
    last = ri[r, R_NRUN] - 1
    if s != last:
        for col in range(S_NCOLS):
            sl[r, col, s] = sl[r, col, last]
        rf[r, F_SLOT_E + s] = rf[r, F_SLOT_E + last]
    ri[r, R_NRUN] = last
    if s < ri[r, R_SUM_N]:
        ri[r, R_SUM_N] = 0


@_inlined
def _complete(r, s, j, t, ri, rf, sl, out):
    out[j, O_DONE] = t
    out[j, O_ENERGY] = rf[r, F_SLOT_E + s]
    ri[r, R_KV] -= sl[r, S_BLK, s]
    _remove_slot(r, s, ri, rf, sl)


@_inlined
def _finish_work(r, ri, rf, sl, out, bins, cfg, kf, steps, fs):
    """Apply replica r's finished step or run (the table has a row for its end); returns the
    requests completed.

    The replica's whole power during the work (idle + host + dynamic) is shared among the requests
    in proportion to the tokens each had processed.
    """
    n_rep, interval_s, idle_w = cfg[C_N_REP], kf[K_INTERVAL_S], kf[K_IDLE_W]
    t0, t1 = rf[r, F_START], rf[r, F_END]
    dur = t1 - t0
    completed = 0
    if ri[r, R_KIND] == STEP:
        chunked = cfg[C_CHUNKED] != 0
        if chunked:  # every decoding slot takes a token
            ri[r, R_SUM_N] = 0
        _book_busy(bins, r, n_rep, t0, t1, kf[K_PREFILL_W], interval_s, fs)
        share = (idle_w + kf[K_PREFILL_W]) * dur / ri[r, R_STEP_TOKENS]
        for s in range(ri[r, R_NRUN] - 1, ri[r, R_STEP_FIRST] - 1, -1):
            j = sl[r, S_REQ, s]
            c = sl[r, S_CHUNK, s]
            if c > 0:
                rf[r, F_SLOT_E + s] += share * c
                sl[r, S_CTX, s] += c
                sl[r, S_PREF, s] -= c
                sl[r, S_CHUNK, s] = 0
                if sl[r, S_PREF, s] == 0 and np.isnan(out[j, O_FIRST]):
                    out[j, O_FIRST] = t1
            elif chunked and sl[r, S_PREF, s] == 0:
                rf[r, F_SLOT_E + s] += share
                sl[r, S_CTX, s] += 1
                sl[r, S_REM, s] -= 1
            if sl[r, S_PREF, s] == 0 and sl[r, S_REM, s] == 0:
                _complete(r, s, j, t1, ri, rf, sl, out)
                completed += 1
    else:
        decode_w = _decode_w_of(ri[r, R_NRUN], steps, cfg, kf)
        _book_busy(bins, r, n_rep, t0, t1, decode_w, interval_s, fs)
        k = ri[r, R_RUNK]
        n_run = ri[r, R_NRUN]
        share = (idle_w + decode_w) * dur / n_run
        # The hottest loops of the simulation (every sequence, every run), over contiguous
        # columns. The first gives every sequence its k tokens and share without a branch (the
        # replica's counters in locals, written back once) and sums the survivors' summary for
        # the next run (see R_SUM_N); the second, only when some finished, takes those out.
        for s in range(n_run):
            rf[r, F_SLOT_E + s] += share
        kv = ri[r, R_KV]
        min_rem, sum_ctx, sum_need, n_done = _NO_REM, 0, 0, 0
        # The first and last slots that finished bound the second loop (usually one finished:
        # scanning every slot for it took more time than the first loop).
        lo_done, hi_done = n_run, -1
        for s in range(n_run):
            rem = sl[r, S_REM, s] - k
            ctx = sl[r, S_CTX, s] + k
            held = _blocks(ctx)
            kv += held - sl[r, S_BLK, s]
            sl[r, S_REM, s] = rem
            sl[r, S_CTX, s] = ctx
            sl[r, S_BLK, s] = held
            min_rem = min(min_rem, rem if rem > 0 else _NO_REM)
            sum_ctx += ctx
            sum_need += _blocks(ctx + 1)
            n_done += rem == 0
            lo_done = min(lo_done, s if rem == 0 else n_run)
            hi_done = max(hi_done, s if rem == 0 else -1)
        if n_done > 0:
            # Last slot first, each leaving slot taking the last one (as ``_remove_slot``); a
            # slot moved into a freed one comes from beyond it, so it is not visited again.
            for s in range(hi_done, lo_done - 1, -1):
                if sl[r, S_REM, s] != 0:
                    continue
                j = sl[r, S_REQ, s]
                out[j, O_DONE] = t1
                out[j, O_ENERGY] = rf[r, F_SLOT_E + s]
                # Its blocks are freed (the first pass's growth taken back with them).
                ctx = sl[r, S_CTX, s]
                kv -= sl[r, S_BLK, s]
                sum_ctx -= ctx
                sum_need -= _blocks(ctx + 1)
                n_run -= 1
                if s != n_run:
                    for col in range(S_NCOLS):
                        sl[r, col, s] = sl[r, col, n_run]
                    rf[r, F_SLOT_E + s] = rf[r, F_SLOT_E + n_run]
            completed += n_done
        ri[r, R_NRUN] = n_run
        ri[r, R_KV] = kv
        ri[r, R_SUM_N] = n_run
        ri[r, R_SUM_REM], ri[r, R_SUM_CTX], ri[r, R_SUM_NEED] = min_rem, sum_ctx, sum_need
    ri[r, R_KIND] = IDLE
    return completed


# Above any replica's load: the load of a replica that is not ready.
_NOT_READY = 1 << 62


@_inlined
def _pick_replica(ri, n_rep, dispatcher, offset):
    """Ready replica with the least load (requests held, or KV blocks held and queued); ties
    rotate by offset: the first of the least loaded from replica offset (mod n_rep) on.

    Written without a data-dependent branch (a not-ready replica's load is ``_NOT_READY``, the
    best kept by selects) and, for an offset below n_rep (the dispatcher's tie-breaks), without
    a division: the mispredicted comparisons and the 64-bit division took ~250 cycles an
    arrival for 16 replicas."""
    c1 = R_NRUN if dispatcher == JSQ else R_KV
    c2 = R_QLEN if dispatcher == JSQ else R_QKV
    start = offset if 0 <= offset < n_rep else offset % n_rep
    best = -1
    best_load = _NOT_READY
    for r in range(start, n_rep):
        load = ri[r, c1] + ri[r, c2]
        load = load if ri[r, R_STATE] == AWAKE else _NOT_READY
        best = r if load < best_load else best
        best_load = min(load, best_load)
    for r in range(start):
        load = ri[r, c1] + ri[r, c2]
        load = load if ri[r, R_STATE] == AWAKE else _NOT_READY
        best = r if load < best_load else best
        best_load = min(load, best_load)
    return best


@_inlined
def _enqueue(r, j, t, ri, rf, sl, rq, out, st, p, cfg, steps, kv_b):
    """Queue request j at replica r; start or cut the replica's work so that j joins soon."""
    was_empty = ri[r, R_QLEN] == 0
    if was_empty:
        ri[r, R_QHEAD] = j
    else:
        rq[ri[r, R_QTAIL], Q_NEXT] = j
    ri[r, R_QTAIL] = j
    ri[r, R_QLEN] += 1
    ri[r, R_QKV] += rq[j, Q_BLOCKS]
    if ri[r, R_KIND] == IDLE:
        _start_work(r, t, ri, rf, sl, rq, out, st, p, cfg, steps, kv_b)
    elif (ri[r, R_KIND] == RUN and was_empty and ri[r, R_NRUN] < cfg[C_MAX_SEQS]
          and _admit_fits(r, j, ri, rq, cfg, 0)):
        _cut_run(r, t, ri, rf)


@_inlined
def _next_replica_event(ri, rf, n_rep):
    """Earliest end of work or wake-up over the replicas: (time, replica), (inf, -1) if none;
    the lowest replica on a tie. Read at the root of the event tree instead of scanning the
    replicas at every event (three events a request, hundreds of replicas at a large site)."""
    if n_rep > 1:
        r, t_rep = ri[1, R_TREE], rf[1, F_TREE_T]
    else:
        r, t_rep = 0, _event_time(0, ri, rf)
    return (t_rep, r) if t_rep < np.inf else (np.inf, -1)


# The event tree: a tournament over the replicas' next events (``_event_time``), nodes 1..n-1
# internal (winner in ``ri[i, R_TREE]``, its time in ``rf[i, F_TREE_T]``), node n + r the leaf of
# replica r, node i's children 2i and 2i + 1. Whatever changes a replica's event
# (``_start_work``, ``_cut_run``, a state change) updates its path to the root; a match then
# reads the other side's winner and time where they are stored instead of working out that
# replica's event again. ``kernel_init`` builds the tree (``_tree_build``): an all-zero R_TREE
# is not a valid start, although every time is infinite, as a node's winner must lie below it
# (a node never played kept replica 0, which stood for that subtree with replica 0's time: once
# replica 0's event moved later, an earlier event below that node was lost for a while).
@_inlined
def _event_time(r, ri, rf):
    """When replica r's work ends or its loading does; inf if neither is pending."""
    if ri[r, R_KIND] != IDLE:
        return rf[r, F_END]
    if ri[r, R_STATE] == WAKING:
        return rf[r, F_READY]
    return np.inf


@_inlined
def _tree_entry(i, ri, rf, n_rep):
    """Node i's winner and its event time (a leaf's replica and its own event)."""
    if i >= n_rep:
        return i - n_rep, _event_time(i - n_rep, ri, rf)
    return ri[i, R_TREE], rf[i, F_TREE_T]


@_inlined
def _tree_update(r, ri, rf):
    """Replica r's event changed: replay the matches on its path to the root (the earlier of a
    node's two winners, the lower replica on a tie)."""
    n_rep = ri.shape[0]
    w, tw = r, _event_time(r, ri, rf)
    i = r + n_rep
    while i > 1:
        o, to = _tree_entry(i ^ 1, ri, rf, n_rep)
        # The match is (left, right) = (2 i, 2 i + 1) whichever side the path comes from, so
        # that a tie is broken as ``_tree_build`` breaks it; written with selects, not
        # branches (the side and the winner are each a coin toss for the branch predictor).
        right = (i & 1) == 1
        a, ta = (o if right else w), (to if right else tw)
        b, tb = (w if right else o), (tw if right else to)
        a_wins = (ta < tb) | ((ta == tb) & (a < b))
        w = a if a_wins else b
        tw = ta if a_wins else tb
        i >>= 1
        ri[i, R_TREE] = w
        rf[i, F_TREE_T] = tw


@_hot
def _tree_build(ri, rf):
    """Replay every match (after changes to many replicas)."""
    n_rep = ri.shape[0]
    for i in range(n_rep - 1, 0, -1):
        a, ta = _tree_entry(2 * i, ri, rf, n_rep)
        b, tb = _tree_entry(2 * i + 1, ri, rf, n_rep)
        if ta < tb or (ta == tb and a < b):
            ri[i, R_TREE], rf[i, F_TREE_T] = a, ta
        else:
            ri[i, R_TREE], rf[i, F_TREE_T] = b, tb


@_inlined
def _replica_event(r, t, ri, rf, sl, rq, out, bins, st, fs, p, cfg, kf, steps, kv_b):
    """Replica r finished its work (or woke up) at t, the table having a row for t (see
    ``_bins_up_to``); returns whether the site queue may now be dispatched."""
    if ri[r, R_KIND] == IDLE:
        _change_state(r, AWAKE, t, ri, rf, bins, kf)  # loading done: book its energy
        _tree_update(r, ri, rf)
        return True
    completed = _finish_work(r, ri, rf, sl, out, bins, cfg, kf, steps, fs)
    st[G_DONE] += completed
    st[G_IN_SITE] -= completed
    _start_work(r, t, ri, rf, sl, rq, out, st, p, cfg, steps, kv_b)
    if ri[r, R_KIND] == IDLE and ri[r, R_STATE] == DRAINING and ri[r, R_QLEN] == 0:
        _change_state(r, ASLEEP, t, ri, rf, bins, kf)
    return False


@numba.njit(cache=True)
def _on_interval_boundary(t, target, ri, rf, bins, st, cfg, kf):
    """Move the awake fleet to ``target`` replicas; returns (bins, whether the site queue may now
    be dispatched)."""
    n_rep = cfg[C_N_REP]
    dispatch = False
    active = 0
    for r in range(n_rep):
        if ri[r, R_STATE] == WAKING or ri[r, R_STATE] == AWAKE:
            active += 1
    # Revive draining replicas before waking sleeping ones: they are already on.
    for r in range(n_rep):
        if active < target and ri[r, R_STATE] == DRAINING:
            ri[r, R_STATE] = AWAKE
            active += 1
            dispatch = True
    for r in range(n_rep):
        if active < target and ri[r, R_STATE] == ASLEEP:
            st[G_LOADS] += 1
            if kf[K_WAKE_UP_S] > 0.0:
                bins = _set_state(r, WAKING, t, ri, rf, bins, kf)
                rf[r, F_READY] = t + kf[K_WAKE_UP_S]
            else:
                bins = _set_state(r, AWAKE, t, ri, rf, bins, kf)
                dispatch = True
            active += 1
    # Cancel pending wake-ups first, then drain the least loaded awake replicas.
    for r in range(n_rep - 1, -1, -1):
        if active > target and ri[r, R_STATE] == WAKING:
            bins = _set_state(r, ASLEEP, t, ri, rf, bins, kf)
            active -= 1
    while active > target:
        r = _pick_replica(ri, n_rep, JSQ, 0)
        if ri[r, R_KIND] == IDLE and ri[r, R_QLEN] == 0:
            bins = _set_state(r, ASLEEP, t, ri, rf, bins, kf)
        else:
            ri[r, R_STATE] = DRAINING
        active -= 1
    _tree_build(ri, rf)
    return bins, dispatch


@_hot
def _push_site_queue(j, st, rq):
    if st[G_LEN] == 0:
        st[G_HEAD] = j
    else:
        rq[st[G_TAIL], Q_NEXT] = j
    st[G_TAIL] = j
    st[G_LEN] += 1


@_hot
def _hand_off(j, t, out, st):
    """Request j leaves this site unserved at t (its replica, or the whole site, is gone): the
    caller re-dispatches it. A first token it may have had here is void (the stream broke)."""
    out[j, O_HANDOFF] = t
    out[j, O_FIRST] = np.nan
    st[G_IN_SITE] -= 1
    st[G_HANDED] += 1


@numba.njit(cache=True)
def _kill_replica(r, t, ri, rf, sl, rq, out, bins, st, cfg, kf):
    """Replica r loses its GPUs at t: the work in progress is lost (its dynamic energy up to t is
    booked), every request it runs or queues is handed off, the replica is released."""
    n_rep, interval_s = cfg[C_N_REP], kf[K_INTERVAL_S]
    if ri[r, R_KIND] != IDLE:
        dyn = kf[K_PREFILL_W] if ri[r, R_KIND] == STEP else _decode_w(ri[r, R_NRUN], kf)
        bins = _accumulate(bins, r, rf[r, F_START], t, dyn, interval_s)
        bins = _accumulate(bins, n_rep, rf[r, F_START], t, 1.0, interval_s)
        ri[r, R_KIND] = IDLE
    for s in range(ri[r, R_NRUN]):
        j = sl[r, S_REQ, s]
        out[j, O_ENERGY] = rf[r, F_SLOT_E + s]
        _hand_off(j, t, out, st)
    ri[r, R_NRUN] = 0
    ri[r, R_SUM_N] = 0
    ri[r, R_KV] = 0
    j = ri[r, R_QHEAD]
    for _ in range(ri[r, R_QLEN]):
        following = rq[j, Q_NEXT]
        rq[j, Q_NEXT] = -1
        _hand_off(j, t, out, st)
        j = following
    ri[r, R_QLEN] = 0
    ri[r, R_QKV] = 0
    ri[r, R_QHEAD] = -1
    ri[r, R_QTAIL] = -1
    return _set_state(r, ASLEEP, t, ri, rf, bins, kf)


@numba.njit(cache=True)
def _enforce_cap(t, limit, ri, rf, sl, rq, out, bins, st, cfg, kf):
    """Keep at most ``limit`` replicas loaded (the GPUs left after an outage or derate): pending
    loads go first, then draining replicas, then the least loaded serving ones. With no capacity
    left, the site queue is handed off too."""
    n_rep = cfg[C_N_REP]
    loaded = 0
    for r in range(n_rep):
        if ri[r, R_STATE] != ASLEEP:
            loaded += 1
    for state in (WAKING, DRAINING):
        for r in range(n_rep - 1, -1, -1):
            if loaded > limit and ri[r, R_STATE] == state:
                bins = _kill_replica(r, t, ri, rf, sl, rq, out, bins, st, cfg, kf)
                loaded -= 1
    while loaded > limit:
        r = _pick_replica(ri, n_rep, JSQ, 0)
        bins = _kill_replica(r, t, ri, rf, sl, rq, out, bins, st, cfg, kf)
        loaded -= 1
    if limit == 0:
        while st[G_LEN] > 0:
            j = st[G_HEAD]
            st[G_HEAD] = rq[j, Q_NEXT]
            rq[j, Q_NEXT] = -1
            st[G_LEN] -= 1
            _hand_off(j, t, out, st)
    _tree_build(ri, rf)
    return bins


@_inlined
def _on_arrival(t, limit, arrival_s, ri, rf, sl, rq, out, st, p, cfg, kf, steps, kv_b):
    """The next request arrives: refused if its prompt exceeds max_model_len (vLLM rejects it at
    input validation); handed off if the site has no capacity left (``limit`` 0); shed if the
    oldest request waiting ahead of it has waited longer than the admission limit; else to the
    least loaded ready replica, or the site queue (FIFO: while requests wait there, newcomers
    wait behind them)."""
    j = st[G_NEXT]
    st[G_NEXT] += 1
    # The request's result row rewritten as ``kernel_new_requests`` left it: its cache line is
    # fetched now, in arrival order (a stream the prefetcher follows), not at the first token,
    # long after the whole table was initialised (a miss on the event loop's path).
    out[j, O_FIRST] = np.nan
    out[j, O_SHED] = np.nan
    if rq[j, Q_PROMPT] > cfg[C_MAX_LEN]:
        st[G_REFUSED] += 1
        return
    st[G_IN_SITE] += 1
    if limit == 0:
        _hand_off(j, t, out, st)
        return
    r = -1
    if st[G_LEN] == 0:
        r = _pick_replica(ri, cfg[C_N_REP], cfg[C_DISPATCHER], rq[j, Q_TIE])
    # Admission control on the queue's sojourn time (CoDel's signal): the newcomer waits at
    # least about as long as the oldest request ahead of it has.
    waited = 0.0
    if st[G_LEN] > 0:
        waited = t - arrival_s[st[G_HEAD]]
    elif r >= 0 and ri[r, R_QLEN] > 0:
        waited = t - arrival_s[ri[r, R_QHEAD]]
    if waited > kf[K_SHED_WAIT_S]:
        out[j, O_SHED] = t
        st[G_IN_SITE] -= 1
        st[G_SHED] += 1
        return
    if r < 0:
        _push_site_queue(j, st, rq)
        for q in range(cfg[C_N_REP]):
            if ri[q, R_STATE] == WAKING:
                st[G_LOAD_DELAYED] += 1
                break
    else:
        _enqueue(r, j, t, ri, rf, sl, rq, out, st, p, cfg, steps, kv_b)


@_inlined
def _dispatch_site_queue(t, ri, rf, sl, rq, out, st, p, cfg, steps, kv_b):
    """Hand waiting site-queue requests to ready replicas, in order."""
    while st[G_LEN] > 0:
        j = st[G_HEAD]
        r = _pick_replica(ri, cfg[C_N_REP], cfg[C_DISPATCHER], rq[j, Q_TIE])
        if r < 0:
            break
        st[G_HEAD] = rq[j, Q_NEXT]
        rq[j, Q_NEXT] = -1
        st[G_LEN] -= 1
        _enqueue(r, j, t, ri, rf, sl, rq, out, st, p, cfg, steps, kv_b)


@numba.njit(cache=True)
def _close(t, ri, rf, bins, cfg, kf, n_sched):
    """Book what is left at the end; returns (bins cut to the reported intervals, end time)."""
    n_rep, interval_s = cfg[C_N_REP], kf[K_INTERVAL_S]
    end_s = kf[K_HORIZON_S]
    if end_s == np.inf:
        end_s = max(n_sched * interval_s, math.ceil(t / interval_s) * interval_s)
    else:
        # Work cut by the horizon: book its dynamic energy up to the horizon (site totals only).
        for r in range(n_rep):
            if ri[r, R_KIND] != IDLE:
                dyn = kf[K_PREFILL_W] if ri[r, R_KIND] == STEP else _decode_w(ri[r, R_NRUN], kf)
                bins = _accumulate(bins, r, rf[r, F_START], end_s, dyn, interval_s)
                bins = _accumulate(bins, n_rep, rf[r, F_START], end_s, 1.0, interval_s)
    for r in range(n_rep):
        bins = _set_state(r, ri[r, R_STATE], end_s, ri, rf, bins, kf)
    n_out = int(math.ceil(end_s / interval_s - 1e-9))
    if bins.shape[0] < n_out:
        grown = np.zeros((n_out, bins.shape[1]))
        grown[: bins.shape[0]] = bins
        bins = grown
    return bins[:n_out].copy(), end_s


@numba.njit(cache=True)
def simulate_kernel(arrival_s, rq, awake, cap, p, cfg, kf):
    """Run the site.

    arrival_s: sorted arrival times; rq: [n, N_Q] per-request integers (Q_PROMPT, Q_OUTPUT,
    Q_TIE filled, prompt + output within the replica's max_model_len; the other columns are set
    here); awake: replicas on per interval; cap: replicas the site's GPUs can hold per interval
    (an outage or derate: replicas beyond it are lost at once and their requests handed off);
    p: the step-time parameters; cfg, kf: ``pack_settings``. Returns the per-request results
    [n, N_O], the per-interval table (columns 0..n_rep-1: energy of each replica in J, column
    n_rep: busy replica-seconds, column n_rep+1: energy spent loading in J, also inside the
    replicas' columns), the site counters (``G_`` columns: arrivals, completions, requests still
    in the site, preemptions, loads, hand-offs, sheds),
    the time integral of the requests in the site, and the end time.

    One chunk of the resumable form (``kernel_init``, ``kernel_run``, ``kernel_close``;
    ``KernelStream`` feeds it interval by interval): the results are the same bit for bit.
    """
    out = kernel_new_requests(rq, 0)
    ri, rf, sl, st, fs, bins, steps = kernel_init(awake, cap, p, cfg)
    bins = kernel_run(arrival_s, rq, out, awake, cap, p, cfg, kf, ri, rf, sl, st, fs, bins,
                      steps, np.inf)
    bins, area_s, end_s = kernel_close(ri, rf, sl, st, fs, out, bins, cfg, kf, awake.shape[0])
    return out, bins, st, area_s, end_s


# --- resumable form: the site's state carried between chunks of arrivals ----------------------
# Float state: the time of the last event handled, the time integral of the requests in the site.
# FS_BIN, FS_BIN_LO, FS_BIN_HI: the interval of the last work booked across a division and the
# times surely within it (``_remember_bin``; none at first).
FS_T, FS_AREA, FS_BIN, FS_BIN_LO, FS_BIN_HI = range(5)
N_FS = 5


@numba.njit(cache=True)
def kernel_new_requests(rq, first):
    """Set the kernel's columns of requests ``first..`` of rq; their (empty) result rows."""
    n_req = rq.shape[0]
    out = np.empty((n_req - first, N_O))
    for j in range(first, n_req):  # one pass over both tables
        for col in range(N_O):
            out[j - first, col] = np.nan
        out[j - first, O_ENERGY] = 0.0
        rq[j, Q_PREFILL] = rq[j, Q_PROMPT]
        rq[j, Q_TODO] = rq[j, Q_OUTPUT]
        rq[j, Q_BLOCKS] = _blocks(rq[j, Q_PROMPT])
        rq[j, Q_NEXT] = -1
        rq[j, Q_PREEMPTED] = 0
    return out


@numba.njit(cache=True)
def kernel_init(awake, cap, p, cfg):
    """The site at t = 0: replica tables, slots, counters, float state, interval bins and the
    decode step table (``kernel_run`` carries them from chunk to chunk)."""
    n_rep = cfg[C_N_REP]
    bins = np.zeros((cfg[C_N_BINS], n_rep + 2))
    ri = np.zeros((n_rep, R_NCOLS), np.int64)
    rf = np.zeros((n_rep, F_NCOLS + cfg[C_MAX_SEQS]))
    sl = np.zeros((n_rep, S_NCOLS, cfg[C_MAX_SEQS]), np.int64)
    ri[:, R_QHEAD] = -1
    ri[:, R_QTAIL] = -1
    st = np.zeros(N_G, np.int64)
    st[G_HEAD] = -1
    st[G_TAIL] = -1
    fs = np.zeros(N_FS)
    fs[FS_BIN_LO], fs[FS_BIN_HI] = np.inf, -np.inf
    steps = _step_table(p, cfg)
    for r in range(min(awake[0], cap[0], n_rep)):
        ri[r, R_STATE] = AWAKE
    _tree_build(ri, rf)
    return ri, rf, sl, st, fs, bins, steps


@numba.njit(cache=True)
def kernel_run(arrival_s, rq, out, awake, cap, p, cfg, kf, ri, rf, sl, st, fs, bins, steps,
               t_stop):
    """Handle every event before ``t_stop`` (and before the horizon); returns the bins.

    arrival_s, rq, out: the requests the site holds or will receive, requests
    ``st[G_NEXT]..`` not yet arrived; all arrivals after the last must be at or after t_stop.
    An event at t_stop is left to the next call, which handles it in the same order (replica
    event, interval boundary, arrival) as one call would."""
    n_req = arrival_s.shape[0]
    n_rep = cfg[C_N_REP]
    kv_b = kv_read_s_per_token(p)
    n_sched = awake.shape[0]
    interval_s, horizon_s = kf[K_INTERVAL_S], kf[K_HORIZON_S]
    stop_s = min(horizon_s, t_stop)
    while True:
        k_int = st[G_INTERVAL]
        t_bound = (k_int + 1) * interval_s if k_int + 1 < n_sched else np.inf
        # Replica events and arrivals in a loop compiled without the runtime, their handlers
        # inlined; it hands back the next event when it is any other (or the stop).
        _run_events(arrival_s, rq, out, cap, p, cfg, kf, ri, rf, sl, st, fs, bins, steps, kv_b,
                    stop_s, t_bound)
        area_s = fs[FS_AREA]
        t = fs[FS_T]
        i = st[G_NEXT]
        t_arr = arrival_s[i] if i < n_req else np.inf
        t_rep, rr = _next_replica_event(ri, rf, n_rep)
        t_next = min(t_arr, t_rep, t_bound)
        if t_next >= stop_s or t_next == np.inf:
            break
        area_s += st[G_IN_SITE] * (t_next - t)
        t = t_next
        dispatch = False
        if t_rep == t_next:
            if int(t / interval_s) >= bins.shape[0]:
                bins = _bins_up_to(bins, t, interval_s)
            dispatch = _replica_event_cold(rr, t, ri, rf, sl, rq, out, bins, st, fs, p, cfg,
                                           kf, steps, kv_b)
        elif t_bound == t_next:
            st[G_INTERVAL] += 1
            limit = cap[k_int + 1]
            bins = _enforce_cap(t, limit, ri, rf, sl, rq, out, bins, st, cfg, kf)
            bins, dispatch = _on_interval_boundary(t, min(awake[k_int + 1], limit, n_rep), ri,
                                                   rf, bins, st, cfg, kf)
        else:  # (the loop above takes every arrival)
            _on_arrival_cold(t, cap[k_int], arrival_s, ri, rf, sl, rq, out, st, p, cfg, kf,
                             steps, kv_b)
        if dispatch:
            _dispatch_site_queue_cold(t, ri, rf, sl, rq, out, st, p, cfg, steps, kv_b)
        fs[FS_T] = t
        fs[FS_AREA] = area_s
    return bins


@_hot
def _run_events(arrival_s, rq, out, cap, p, cfg, kf, ri, rf, sl, st, fs, bins, steps, kv_b,
                stop_s, t_bound):
    """``kernel_run``'s loop over the events that need neither an interval boundary nor a
    larger bins table: replica events and arrivals before ``t_bound`` and ``stop_s``, in the same
    order (replica event first on a tie); returns at the first other event, the time and the
    time integral of the requests in the site left in ``fs``."""
    n_req = arrival_s.shape[0]
    n_rep = cfg[C_N_REP]
    interval_s = kf[K_INTERVAL_S]
    n_bins = bins.shape[0]
    limit = cap[st[G_INTERVAL]]
    area_s = fs[FS_AREA]
    t = fs[FS_T]
    while True:
        i = st[G_NEXT]
        t_arr = arrival_s[i] if i < n_req else np.inf
        t_rep, rr = _next_replica_event(ri, rf, n_rep)
        t_next = min(t_arr, t_rep, t_bound)
        if t_next >= stop_s or t_next == np.inf:
            break
        if t_rep == t_next:
            # The table has a row for t_next: surely when t_next is within the interval last
            # found (``_remember_bin``), else by the division.
            if not (t_next <= fs[FS_BIN_HI] and fs[FS_BIN] < n_bins) \
                    and int(t_next / interval_s) >= n_bins:
                break
            area_s += st[G_IN_SITE] * (t_next - t)
            t = t_next
            dispatch = _replica_event(rr, t, ri, rf, sl, rq, out, bins, st, fs, p, cfg, kf,
                                      steps, kv_b)
        elif t_bound == t_next:
            break
        else:
            area_s += st[G_IN_SITE] * (t_next - t)
            t = t_next
            _on_arrival(t, limit, arrival_s, ri, rf, sl, rq, out, st, p, cfg, kf, steps, kv_b)
            dispatch = False
        if dispatch:
            _dispatch_site_queue(t, ri, rf, sl, rq, out, st, p, cfg, steps, kv_b)
    fs[FS_T] = t
    fs[FS_AREA] = area_s


# The handlers compiled on their own, for the rare events ``kernel_run`` takes itself.
_replica_event_cold = _hot(_replica_event.py_func)
_on_arrival_cold = _hot(_on_arrival.py_func)
_dispatch_site_queue_cold = _hot(_dispatch_site_queue.py_func)


@numba.njit(cache=True)
def kernel_close(ri, rf, sl, st, fs, out, bins, cfg, kf, n_sched):
    """After the last ``kernel_run`` (t_stop = inf): book what is left, write the energy of the
    requests still in a slot (cut by the horizon) to their result rows; returns (bins cut to the
    reported intervals, the time integral of the requests in the site, end time)."""
    for r in range(cfg[C_N_REP]):
        for s in range(ri[r, R_NRUN]):
            out[sl[r, S_REQ, s], O_ENERGY] = rf[r, F_SLOT_E + s]
    area_s = fs[FS_AREA]
    horizon_s = kf[K_HORIZON_S]
    if horizon_s != np.inf:
        area_s += st[G_IN_SITE] * (horizon_s - fs[FS_T])
    bins, end_s = _close(fs[FS_T], ri, rf, bins, cfg, kf, n_sched)
    return bins, area_s, end_s


class KernelChunk:
    """Requests handed back by ``KernelStream``: their caller ids, integer rows (``Q_``), result
    rows (``O_``), the caller's payload rows, and whether each had arrived."""

    __slots__ = ("ids", "rq", "out", "payload", "arrived")

    def __init__(self, ids: np.ndarray, rq: np.ndarray, out: np.ndarray, payload: np.ndarray,
                 arrived: np.ndarray) -> None:
        self.ids, self.rq, self.out, self.payload, self.arrived = ids, rq, out, payload, arrived

    def __len__(self) -> int:
        return len(self.ids)


class KernelStream:
    """``simulate_kernel`` fed chunk by chunk (e.g. one planning interval of arrivals at a time),
    with the same results bit for bit and memory bounded by the requests of a chunk plus those
    still in the site.

    ``feed(arrival_s, rq, t_stop)`` adds the next chunk's requests (all arriving in
    [previous t_stop, t_stop)), runs the site up to ``t_stop`` and hands back every request that
    has left it (completed, refused, shed, handed off); the requests still in the site (running,
    queued) are carried into the next chunk: compacted, with their indices remapped in the slots,
    the replica and site queues and the queue links. ``finish()`` runs to the end (the horizon,
    or until the site is empty) and hands back the rest with the bins, counters, time integral
    and end time ``simulate_kernel`` returns. ``payload`` is any float columns the caller wants
    carried along with each request (e.g. its round trip)."""

    def __init__(self, awake: np.ndarray, cap: np.ndarray, p: np.ndarray, cfg: np.ndarray,
                 kf: np.ndarray, n_payload: int = 0) -> None:
        self.awake, self.cap, self.p, self.cfg, self.kf = awake, cap, p, cfg, kf
        self.ri, self.rf, self.sl, self.st, self.fs, self.bins, self.steps = kernel_init(
            awake, cap, p, cfg)
        self.arrival_s = np.zeros(0)
        self.rq = np.zeros((0, N_Q), np.int64)
        self.out = np.zeros((0, N_O))
        self.ids = np.zeros(0, np.int64)
        self.payload = np.zeros((0, n_payload))
        self.t_stop = 0.0
        self.finished = False
        self._next_id = 0

    @property
    def n_held(self) -> int:
        """Requests the stream holds now (in the site, or not yet arrived)."""
        return len(self.ids)

    def feed(self, arrival_s: np.ndarray, rq: np.ndarray, t_stop: float,
             ids: np.ndarray | None = None, payload: np.ndarray | None = None) -> KernelChunk:
        """Add requests (``rq`` with Q_PROMPT, Q_OUTPUT, Q_TIE filled), run up to ``t_stop``,
        hand back those that left. ``ids`` default to their running count over all chunks."""
        if self.finished:
            raise RuntimeError("KernelStream.feed after finish")
        arrival_s = np.asarray(arrival_s, np.float64)
        n_new = len(arrival_s)
        if n_new and (arrival_s[0] < self.t_stop or arrival_s[-1] >= t_stop
                      or (np.diff(arrival_s) < 0).any()):
            raise ValueError(f"a chunk's arrivals must be sorted within [{self.t_stop}, "
                             f"{t_stop})")
        if t_stop < self.t_stop:
            raise ValueError(f"t_stop {t_stop} is before the previous {self.t_stop}")
        if ids is None:
            ids = np.arange(self._next_id, self._next_id + n_new, dtype=np.int64)
        if n_new:
            self._next_id = max(self._next_id, int(np.max(ids)) + 1)
        if payload is None:
            payload = np.zeros((n_new, self.payload.shape[1]))
        self._append(arrival_s, np.asarray(rq, np.int64), np.asarray(ids, np.int64),
                     np.asarray(payload, np.float64))
        self.bins = kernel_run(self.arrival_s, self.rq, self.out, self.awake, self.cap, self.p,
                               self.cfg, self.kf, self.ri, self.rf, self.sl, self.st, self.fs,
                               self.bins, self.steps, float(t_stop))
        self.t_stop = float(t_stop)
        return self._compact()

    def finish(self) -> tuple[KernelChunk, np.ndarray, np.ndarray, float, float]:
        """Run to the end; returns (the requests still held, bins, counters, time integral of
        the requests in the site, end time) as ``simulate_kernel`` does."""
        self.bins = kernel_run(self.arrival_s, self.rq, self.out, self.awake, self.cap, self.p,
                               self.cfg, self.kf, self.ri, self.rf, self.sl, self.st, self.fs,
                               self.bins, self.steps, np.inf)
        bins, area_s, end_s = kernel_close(self.ri, self.rf, self.sl, self.st, self.fs,
                                           self.out, self.bins,
                                           self.cfg, self.kf, self.awake.shape[0])
        self.finished = True
        rest = KernelChunk(self.ids, self.rq, self.out, self.payload,
                           np.arange(len(self.ids)) < self.st[G_NEXT])
        return rest, bins, self.st.copy(), float(area_s), float(end_s)

    def _append(self, arrival_s: np.ndarray, rq: np.ndarray, ids: np.ndarray,
                payload: np.ndarray) -> None:
        first = len(self.ids)
        self.arrival_s = np.concatenate([self.arrival_s, arrival_s])
        self.rq = np.concatenate([self.rq, rq])
        self.out = np.concatenate([self.out, kernel_new_requests(self.rq, first)])
        self.ids = np.concatenate([self.ids, ids])
        width = self.payload.shape[1]
        self.payload = np.concatenate([self.payload, payload.reshape(len(ids), width)])

    def _compact(self) -> KernelChunk:
        """Hand back the requests that left; renumber the rest (in their order) everywhere the
        site refers to one."""
        n, st, out, rq = len(self.ids), self.st, self.out, self.rq
        index = np.arange(n)
        arrived = index < st[G_NEXT]
        in_site = (arrived & (rq[:, Q_PROMPT] <= self.cfg[C_MAX_LEN])
                   & np.isnan(out[:, O_DONE]) & np.isnan(out[:, O_HANDOFF])
                   & np.isnan(out[:, O_SHED]))
        if int(in_site.sum()) != st[G_IN_SITE]:
            raise RuntimeError(f"site holds {st[G_IN_SITE]} requests, the rows say "
                               f"{int(in_site.sum())}")
        keep = in_site | ~arrived
        leave = ~keep
        left = KernelChunk(self.ids[leave], rq[leave], out[leave], self.payload[leave],
                           np.ones(int(leave.sum()), bool))
        # Old index -> new (-1: gone); the extra last entry maps -1 to -1.
        renumber = np.full(n + 1, -1, np.int64)
        renumber[:n][keep] = np.arange(int(keep.sum()))
        ri, sl = self.ri, self.sl
        sl[:, S_REQ, :] = renumber[sl[:, S_REQ, :]]
        queued = ri[:, R_QLEN] > 0
        ri[:, R_QHEAD] = np.where(queued, renumber[ri[:, R_QHEAD]], -1)
        ri[:, R_QTAIL] = np.where(queued, renumber[ri[:, R_QTAIL]], -1)
        rq[:, Q_NEXT] = renumber[rq[:, Q_NEXT]]
        if st[G_LEN] > 0:
            st[G_HEAD], st[G_TAIL] = renumber[st[G_HEAD]], renumber[st[G_TAIL]]
        else:
            st[G_HEAD] = st[G_TAIL] = -1
        st[G_NEXT] = int(in_site.sum())
        self.arrival_s = self.arrival_s[keep]
        self.rq = rq[keep]
        self.out = out[keep]
        self.ids = self.ids[keep]
        self.payload = self.payload[keep]
        return left
