"""Compiled event loop of one site: replicas with vLLM-style continuous batching.

Events are request arrivals, ends of engine work on a replica, wake-ups and interval boundaries.
A replica's work is either one step (a prefill step, or with chunked prefill a mixed step) or a
*decode run*: the k identical-composition decode steps until its first sequence finishes. Step i of
a run takes a + b (C + i n) (n sequences, C tokens of context, b the KV read time per token), so the
run's end is known in closed form and the steps in between are never visited. A request dispatched
to a replica in a run joins at the first step boundary after its arrival: the run is cut there.

All state lives in flat arrays so that the loop compiles with numba (nopython, cache=True).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from slit.serving.iteration import kv_read_s_per_token, step_time_s

# Replica states.
ASLEEP, WAKING, AWAKE, DRAINING = 0, 1, 2, 3
# Kinds of work in progress.
IDLE, STEP, RUN = 0, 1, 2
# Columns of the integer replica table.
R_STATE, R_KIND, R_NRUN, R_KV, R_QHEAD, R_QTAIL, R_QLEN, R_QKV, R_RUNK, R_STEP_TOKENS = range(10)
R_NCOLS = 10
# Columns of the float replica table.
F_SINCE, F_READY, F_START, F_END, F_A, F_B, F_C, F_NCOLS = range(8)
# Columns of a slot: request, decode tokens left, context in KV, prompt left, tokens this step.
S_REQ, S_REM, S_CTX, S_PREF, S_CHUNK = range(5)
# Dispatchers.
JSQ, LEAST_KV = 0, 1


@numba.njit(cache=True)
def _accumulate(bins, col, t0, t1, rate, interval_s):
    """Add rate x overlap of [t0, t1) to each interval bin; grows the table when needed."""
    if t1 <= t0:
        return bins
    last = int(t1 / interval_s)
    if last >= bins.shape[0]:
        grown = np.zeros((max(last + 1, 2 * bins.shape[0]), bins.shape[1]))
        grown[: bins.shape[0]] = bins
        bins = grown
    k = int(t0 / interval_s)
    while k <= last and k < bins.shape[0]:
        lo = max(t0, k * interval_s)
        hi = min(t1, (k + 1) * interval_s)
        if hi > lo:
            bins[k, col] += rate * (hi - lo)
        k += 1
    return bins


@numba.njit(cache=True)
def _base_w(state, idle_w, standby_w):
    return standby_w if state == ASLEEP else idle_w


@numba.njit(cache=True)
def _set_state(r, new_state, t, ri, rf, bins, idle_w, standby_w, interval_s):
    """Change a replica's state, booking its base power up to t."""
    bins = _accumulate(bins, r, rf[r, F_SINCE], t, _base_w(ri[r, R_STATE], idle_w, standby_w),
                       interval_s)
    rf[r, F_SINCE] = t
    ri[r, R_STATE] = new_state
    return bins


@numba.njit(cache=True)
def _run_time(a, b, c, n, k):
    return k * a + b * (k * c + n * k * (k - 1.0) / 2.0)


@numba.njit(cache=True)
def _start_work(r, t, ri, rf, sl, nxt, prompt, output, reserve, p, chunked, max_seqs,
                max_batch_tokens, kv_cap):
    """Pick the next step of replica r at time t (vLLM scheduler: prefill first)."""
    n_run = ri[r, R_NRUN]
    budget = max_batch_tokens
    n_dec = 0
    dec_ctx = 0.0
    if chunked:
        for s in range(n_run):
            if sl[r, s, S_PREF] == 0:
                n_dec += 1
                dec_ctx += sl[r, s, S_CTX]
        budget -= n_dec
    prefill_tokens = 0
    finishing = 0
    pairs = 0.0
    if chunked:
        for s in range(n_run):
            pref = sl[r, s, S_PREF]
            if pref > 0 and budget > 0:
                c = min(pref, budget)
                sl[r, s, S_CHUNK] = c
                budget -= c
                prefill_tokens += c
                pairs += c * (sl[r, s, S_CTX] + (c + 1.0) / 2.0)
                if c == pref:
                    finishing += 1
    # Admit waiting requests in arrival order while sequences, KV and the token budget allow.
    while ri[r, R_QLEN] > 0 and ri[r, R_NRUN] < max_seqs:
        j = ri[r, R_QHEAD]
        if ri[r, R_KV] + reserve[j] > kv_cap:
            break
        if chunked:
            if budget <= 0:
                break
            c = min(prompt[j], budget)
        else:
            if prefill_tokens > 0 and prefill_tokens + prompt[j] > max_batch_tokens:
                break
            c = prompt[j]
        ri[r, R_QHEAD] = nxt[j]
        ri[r, R_QLEN] -= 1
        ri[r, R_QKV] -= reserve[j]
        ri[r, R_KV] += reserve[j]
        s = ri[r, R_NRUN]
        ri[r, R_NRUN] += 1
        sl[r, s, S_REQ] = j
        sl[r, s, S_REM] = output[j] - 1
        sl[r, s, S_CTX] = 0
        sl[r, s, S_PREF] = prompt[j]
        sl[r, s, S_CHUNK] = c
        budget -= c
        prefill_tokens += c
        pairs += c * (c + 1.0) / 2.0
        if c == prompt[j]:
            finishing += 1
    if prefill_tokens > 0:
        ri[r, R_KIND] = STEP
        ri[r, R_STEP_TOKENS] = prefill_tokens + n_dec
        rf[r, F_START] = t
        rf[r, F_END] = t + step_time_s(p, float(prefill_tokens + n_dec), float(finishing + n_dec),
                                       pairs, dec_ctx)
        return
    n_run = ri[r, R_NRUN]
    if n_run == 0:
        ri[r, R_KIND] = IDLE
        return
    # Decode run until the first sequence finishes.
    k = sl[r, 0, S_REM]
    ctx = 0.0
    for s in range(n_run):
        k = min(k, sl[r, s, S_REM])
        ctx += sl[r, s, S_CTX]
    n = float(n_run)
    ri[r, R_KIND] = RUN
    ri[r, R_RUNK] = k
    rf[r, F_A] = step_time_s(p, n, n, 0.0, 0.0)
    rf[r, F_B] = kv_read_s_per_token(p)
    rf[r, F_C] = ctx
    rf[r, F_START] = t
    rf[r, F_END] = t + _run_time(rf[r, F_A], rf[r, F_B], ctx, n, float(k))


@numba.njit(cache=True)
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
    while _run_time(a, b, c, n, float(k)) < elapsed:
        k += 1
    if k < ri[r, R_RUNK]:
        ri[r, R_RUNK] = k
        rf[r, F_END] = rf[r, F_START] + _run_time(a, b, c, n, float(k))


@numba.njit(cache=True)
def _remove_slot(r, s, ri, sl):
    last = ri[r, R_NRUN] - 1
    if s != last:
        sl[r, s, :] = sl[r, last, :]
    ri[r, R_NRUN] = last


@numba.njit(cache=True)
def _finish_work(r, ri, rf, sl, reserve, first_s, done_s, energy_j, bins, idle_w, prefill_w,
                 decode_w, chunked, interval_s, busy_col):
    """Apply replica r's finished step or run; returns (bins, requests completed).

    The replica's whole power during the work (idle + host + dynamic) is shared among the requests
    in proportion to the tokens each had processed.
    """
    t0, t1 = rf[r, F_START], rf[r, F_END]
    dur = t1 - t0
    completed = 0
    if ri[r, R_KIND] == STEP:
        bins = _accumulate(bins, r, t0, t1, prefill_w, interval_s)
        share = (idle_w + prefill_w) * dur / ri[r, R_STEP_TOKENS]
        for s in range(ri[r, R_NRUN] - 1, -1, -1):
            j = sl[r, s, S_REQ]
            c = sl[r, s, S_CHUNK]
            if c > 0:
                energy_j[j] += share * c
                sl[r, s, S_CTX] += c
                sl[r, s, S_PREF] -= c
                sl[r, s, S_CHUNK] = 0
                if sl[r, s, S_PREF] == 0:
                    first_s[j] = t1
            elif chunked and sl[r, s, S_PREF] == 0:
                energy_j[j] += share
                sl[r, s, S_CTX] += 1
                sl[r, s, S_REM] -= 1
            if sl[r, s, S_PREF] == 0 and sl[r, s, S_REM] == 0:
                done_s[j] = t1
                ri[r, R_KV] -= reserve[j]
                _remove_slot(r, s, ri, sl)
                completed += 1
    else:
        bins = _accumulate(bins, r, t0, t1, decode_w, interval_s)
        k = ri[r, R_RUNK]
        share = (idle_w + decode_w) * dur / ri[r, R_NRUN]
        for s in range(ri[r, R_NRUN] - 1, -1, -1):
            j = sl[r, s, S_REQ]
            energy_j[j] += share
            sl[r, s, S_CTX] += k
            sl[r, s, S_REM] -= k
            if sl[r, s, S_REM] == 0:
                done_s[j] = t1
                ri[r, R_KV] -= reserve[j]
                _remove_slot(r, s, ri, sl)
                completed += 1
    bins = _accumulate(bins, busy_col, t0, t1, 1.0, interval_s)
    ri[r, R_KIND] = IDLE
    return bins, completed


@numba.njit(cache=True)
def _pick_replica(ri, n_rep, dispatcher, offset):
    """Ready replica with the least load (requests held, or KV reserved); ties rotate by offset."""
    best = -1
    best_load = 0
    for i in range(n_rep):
        r = (i + offset) % n_rep
        if ri[r, R_STATE] != AWAKE:
            continue
        if dispatcher == JSQ:
            load = ri[r, R_NRUN] + ri[r, R_QLEN]
        else:
            load = ri[r, R_KV] + ri[r, R_QKV]
        if best < 0 or load < best_load:
            best = r
            best_load = load
    return best


@numba.njit(cache=True)
def _enqueue(r, j, t, ri, rf, sl, nxt, prompt, output, reserve, p, chunked, max_seqs,
             max_batch_tokens, kv_cap):
    """Queue request j at replica r; start or cut the replica's work so that j joins soon."""
    was_empty = ri[r, R_QLEN] == 0
    if was_empty:
        ri[r, R_QHEAD] = j
    else:
        nxt[ri[r, R_QTAIL]] = j
    ri[r, R_QTAIL] = j
    ri[r, R_QLEN] += 1
    ri[r, R_QKV] += reserve[j]
    if ri[r, R_KIND] == IDLE:
        _start_work(r, t, ri, rf, sl, nxt, prompt, output, reserve, p, chunked, max_seqs,
                    max_batch_tokens, kv_cap)
    elif (ri[r, R_KIND] == RUN and was_empty and ri[r, R_NRUN] < max_seqs
          and ri[r, R_KV] + reserve[j] <= kv_cap):
        _cut_run(r, t, ri, rf)


@numba.njit(cache=True)
def simulate_kernel(arrival_s, prompt, output, tiebreak, awake, interval_s, horizon_s, n_rep, p,
                    idle_w, standby_w, prefill_w, decode_w, wake_up_s, chunked, dispatcher,
                    max_seqs, max_batch_tokens, kv_cap, n_bins):
    """Run the site; returns per-request times and energy, per-interval energy, counters."""
    n_req = arrival_s.shape[0]
    first_s = np.full(n_req, np.nan)
    done_s = np.full(n_req, np.nan)
    energy_j = np.zeros(n_req)
    reserve = np.minimum(prompt + output, kv_cap)
    nxt = np.full(n_req, -1, np.int64)
    # Columns 0..n_rep-1: energy of each replica (J); column n_rep: busy replica-seconds.
    bins = np.zeros((max(n_bins, 1), n_rep + 1))
    ri = np.zeros((n_rep, R_NCOLS), np.int64)
    rf = np.zeros((n_rep, F_NCOLS))
    sl = np.zeros((n_rep, max_seqs, 5), np.int64)
    ri[:, R_QHEAD] = -1
    ri[:, R_QTAIL] = -1
    site_head = -1
    site_tail = -1
    site_len = 0
    n_sched = awake.shape[0]
    for r in range(min(awake[0], n_rep)):
        ri[r, R_STATE] = AWAKE
    i = 0
    n_done = 0
    in_system = 0
    area_s = 0.0
    t = 0.0
    k_int = 0
    while True:
        t_arr = arrival_s[i] if i < n_req else np.inf
        t_rep = np.inf
        rr = -1
        for r in range(n_rep):
            if ri[r, R_KIND] != IDLE:
                if rf[r, F_END] < t_rep:
                    t_rep = rf[r, F_END]
                    rr = r
            elif ri[r, R_STATE] == WAKING and rf[r, F_READY] < t_rep:
                t_rep = rf[r, F_READY]
                rr = r
        t_bound = (k_int + 1) * interval_s if k_int + 1 < n_sched else np.inf
        t_next = min(t_arr, t_rep, t_bound)
        if t_next >= horizon_s or t_next == np.inf:
            break
        area_s += in_system * (t_next - t)
        t = t_next
        dispatch_from_site = False
        if t_rep == t_next:
            r = rr
            if ri[r, R_KIND] != IDLE:
                bins, completed = _finish_work(r, ri, rf, sl, reserve, first_s, done_s, energy_j,
                                               bins, idle_w, prefill_w, decode_w, chunked,
                                               interval_s, n_rep)
                n_done += completed
                in_system -= completed
                _start_work(r, t, ri, rf, sl, nxt, prompt, output, reserve, p, chunked, max_seqs,
                            max_batch_tokens, kv_cap)
                if (ri[r, R_KIND] == IDLE and ri[r, R_STATE] == DRAINING
                        and ri[r, R_QLEN] == 0):
                    bins = _set_state(r, ASLEEP, t, ri, rf, bins, idle_w, standby_w, interval_s)
            else:
                ri[r, R_STATE] = AWAKE  # waking draws idle power already: nothing to book
                dispatch_from_site = True
        elif t_bound == t_next:
            k_int += 1
            target = min(awake[k_int], n_rep)
            active = 0
            for r in range(n_rep):
                if ri[r, R_STATE] == WAKING or ri[r, R_STATE] == AWAKE:
                    active += 1
            # Revive draining replicas before waking sleeping ones: they are already on.
            for r in range(n_rep):
                if active < target and ri[r, R_STATE] == DRAINING:
                    ri[r, R_STATE] = AWAKE
                    active += 1
                    dispatch_from_site = True
            for r in range(n_rep):
                if active < target and ri[r, R_STATE] == ASLEEP:
                    if wake_up_s > 0.0:
                        bins = _set_state(r, WAKING, t, ri, rf, bins, idle_w, standby_w,
                                          interval_s)
                        rf[r, F_READY] = t + wake_up_s
                    else:
                        bins = _set_state(r, AWAKE, t, ri, rf, bins, idle_w, standby_w,
                                          interval_s)
                        dispatch_from_site = True
                    active += 1
            # Cancel pending wake-ups first, then drain the least loaded awake replicas.
            for r in range(n_rep - 1, -1, -1):
                if active > target and ri[r, R_STATE] == WAKING:
                    bins = _set_state(r, ASLEEP, t, ri, rf, bins, idle_w, standby_w, interval_s)
                    active -= 1
            while active > target:
                r = _pick_replica(ri, n_rep, JSQ, 0)
                if ri[r, R_KIND] == IDLE and ri[r, R_QLEN] == 0:
                    bins = _set_state(r, ASLEEP, t, ri, rf, bins, idle_w, standby_w, interval_s)
                else:
                    ri[r, R_STATE] = DRAINING
                active -= 1
        else:
            in_system += 1
            j = i
            i += 1
            if site_len == 0:
                r = _pick_replica(ri, n_rep, dispatcher, tiebreak[j])
            else:
                r = -1
            if r < 0:
                if site_len == 0:
                    site_head = j
                else:
                    nxt[site_tail] = j
                site_tail = j
                site_len += 1
            else:
                _enqueue(r, j, t, ri, rf, sl, nxt, prompt, output, reserve, p, chunked, max_seqs,
                         max_batch_tokens, kv_cap)
        if dispatch_from_site:
            while site_len > 0:
                r = _pick_replica(ri, n_rep, dispatcher, tiebreak[site_head])
                if r < 0:
                    break
                j = site_head
                site_head = nxt[j]
                nxt[j] = -1
                site_len -= 1
                _enqueue(r, j, t, ri, rf, sl, nxt, prompt, output, reserve, p, chunked, max_seqs,
                         max_batch_tokens, kv_cap)
    end_s = horizon_s
    if end_s == np.inf:
        end_s = max(n_sched * interval_s, math.ceil(t / interval_s) * interval_s)
    else:
        # Work cut by the horizon: book its dynamic energy up to the horizon (site totals only).
        for r in range(n_rep):
            if ri[r, R_KIND] != IDLE:
                dyn = prefill_w if ri[r, R_KIND] == STEP else decode_w
                bins = _accumulate(bins, r, rf[r, F_START], end_s, dyn, interval_s)
                bins = _accumulate(bins, n_rep, rf[r, F_START], end_s, 1.0, interval_s)
        area_s += in_system * (end_s - t)
    for r in range(n_rep):
        bins = _set_state(r, ri[r, R_STATE], end_s, ri, rf, bins, idle_w, standby_w, interval_s)
    n_out = int(math.ceil(end_s / interval_s - 1e-9))
    if bins.shape[0] < n_out:
        grown = np.zeros((n_out, n_rep + 1))
        grown[: bins.shape[0]] = bins
        bins = grown
    return first_s, done_s, energy_j, bins[:n_out].copy(), i, n_done, area_s, end_s
