"""Request-level simulation of one site: N replicas of one model behind a dispatcher.

Semantics (docs/serving.md has the full account):
- ``awake[k]`` replicas should be loaded (loading or serving) during interval k; replicas
  0..awake[0]-1 are loaded and serving at t = 0. When the target rises, draining replicas are
  kept first, then released ones load: they draw the loading power at once and serve after
  ``wake_up_s`` (default: the replica's load time, ``slit.serving.lifecycle.load_time_s``);
  requests that find no serving replica wait in the site queue meanwhile. When it falls, pending
  loads are cancelled, then the least loaded replicas stop taking requests, finish what they hold
  (draining) and are released (0 W attributed).
- An arriving request goes to the ready replica with the fewest requests held ("jsq") or the
  least KV cache reserved ("least_kv"); with no ready replica it waits in the site queue.
- Context limit as vLLM's: a request whose prompt is longer than the replica's ``max_model_len``
  (the model's context, or less if the KV cache cannot hold it) is refused on arrival; the output
  of the others is clipped so that prompt + output fits (vLLM caps max_tokens the same way).
- A replica runs vLLM-style continuous batching with a paged KV cache (16-token blocks): waiting
  requests are admitted in order when blocks for their prompt fit; decoding sequences take blocks
  as they grow, and when none are left the most recently admitted request is preempted
  (recompute: back to the front of the queue, prefilled again). Prefill steps take priority over
  decode steps, or with ``chunked_prefill`` each step carries every decode plus prefill chunks up
  to ``max_batch_tokens``.
- Without a horizon the simulation runs until every request has finished (unless no replica is
  ever awake); with one, it stops there and reports the requests still in flight.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from slit.errors import SlitInputError
from slit.serving.capacity import DEFAULT_MAX_BATCH_TOKENS, DEFAULT_MAX_NUM_SEQS
from slit.serving.catalog import ReplicaSpec
from slit.serving.iteration import replica_params
from slit.serving.lifecycle import load_time_s, loading_power_w
from slit.serving.power import replica_power
from slit.simulate.kernel import (
    G_DONE,
    G_HANDED,
    G_IN_SITE,
    G_LOAD_DELAYED,
    G_LOADS,
    G_NEXT,
    G_PREEMPTIONS,
    G_SHED,
    JSQ,
    LEAST_KV,
    N_Q,
    O_DONE,
    O_ENERGY,
    O_FIRST,
    O_HANDOFF,
    O_SHED,
    Q_OUTPUT,
    Q_PROMPT,
    Q_TIE,
    KernelChunk,
    KernelStream,
    pack_settings,
    simulate_kernel,
)
from slit.workload.requests import RequestBatch

DISPATCHERS = {"jsq": JSQ, "least_kv": LEAST_KV}


@dataclass(frozen=True, slots=True)
class SiteConfig:
    replica: ReplicaSpec
    n_replicas: int  # installed
    dispatcher: str = "jsq"
    chunked_prefill: bool = False
    max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS
    max_num_seqs: int = DEFAULT_MAX_NUM_SEQS
    wake_up_s: float | None = None  # time to load a replica; None: load_time_s(replica)

    @property
    def load_s(self) -> float:
        return load_time_s(self.replica) if self.wake_up_s is None else float(self.wake_up_s)

    def validate(self) -> SiteConfig:
        self.replica.validate()
        where = "site config"
        if self.n_replicas < 1:
            raise SlitInputError(where, f"n_replicas = {self.n_replicas}", "install >= 1 replica")
        if self.dispatcher not in DISPATCHERS:
            raise SlitInputError(where, f"unknown dispatcher {self.dispatcher!r}",
                                 f"use one of {', '.join(DISPATCHERS)}")
        if self.max_num_seqs < 1 or self.max_batch_tokens < 1:
            raise SlitInputError(where, "max_num_seqs and max_batch_tokens must be >= 1",
                                 "raise them")
        if self.chunked_prefill and self.max_batch_tokens <= self.max_num_seqs:
            raise SlitInputError(
                where, f"max_batch_tokens = {self.max_batch_tokens} leaves no room for prefill "
                f"chunks next to {self.max_num_seqs} decodes",
                "make max_batch_tokens larger than max_num_seqs")
        if not self.load_s >= 0.0:
            raise SlitInputError(where, f"wake_up_s = {self.wake_up_s}", "give a time >= 0")
        return self


@dataclass(frozen=True)
class SiteSimResult:
    """Per-request arrays in input order (NaN where a request did not get that far)."""

    ttft_s: np.ndarray  # queueing + prefill, without network
    ttft_with_network_s: np.ndarray
    tpot_s: np.ndarray  # (e2e - ttft) / (output - 1); 0 for one-token outputs
    e2e_s: np.ndarray  # arrival to last token, without network
    energy_j: np.ndarray  # attributed share of the replica's power while it served the request
    completed: np.ndarray  # bool
    arrived: np.ndarray  # bool: arrived before the horizon
    arrival_s: np.ndarray
    output_tokens: np.ndarray
    interval_s: float
    end_s: float  # the horizon, or the end of the last interval with work
    it_energy_j_per_interval: np.ndarray  # all replicas: idle, host, dynamic, standby
    replica_energy_j_per_interval: np.ndarray  # [interval, replica]
    busy_replica_s_per_interval: np.ndarray
    request_area_s: float  # integral over time of the number of requests in the site
    # Added for context limits and KV preemption (defaults keep older constructors working).
    refused: np.ndarray | None = None  # bool: prompt longer than max_model_len
    n_preemptions: int = 0  # recompute preemptions (a request may be preempted several times)
    kernel_in_site: int = -1  # requests the event loop still held at the end (its own count)
    kernel_completed: int = -1  # completions the event loop counted
    # Lifecycle: energy spent loading (also inside it_energy), loads started, and arrivals that
    # found no serving replica while one was loading (their TTFT includes the wait).
    loading_energy_j_per_interval: np.ndarray | None = None
    n_loads: int = 0
    n_load_delayed: int = 0
    # Faults and admission control: requests handed off when the site lost the replica holding
    # them or all its capacity (at ``handoff_s``, site time; the caller re-dispatches them), and
    # requests shed on arrival because the queue ahead had waited too long.
    handed_off: np.ndarray | None = None  # bool
    handoff_s: np.ndarray | None = None  # NaN where not handed off
    shed: np.ndarray | None = None  # bool
    kernel_handed: int = -1
    kernel_shed: int = -1
    n_received: int = 0  # of the requests, those handed off here by another site (set by the judge)

    @property
    def n_arrivals(self) -> int:
        return int(self.arrived.sum())

    @property
    def n_completed(self) -> int:
        return int(self.completed.sum())

    @property
    def n_refused(self) -> int:
        return 0 if self.refused is None else int(self.refused.sum())

    @property
    def n_handed_off(self) -> int:
        return 0 if self.handed_off is None else int(self.handed_off.sum())

    @property
    def n_shed(self) -> int:
        return 0 if self.shed is None else int(self.shed.sum())

    @property
    def n_in_flight(self) -> int:
        return (self.n_arrivals - self.n_completed - self.n_refused - self.n_handed_off
                - self.n_shed)

    @property
    def conservation_ok(self) -> bool:
        """No request lost: every arrival completed, was refused, or is still in the site, by the
        per-request arrays and by the event loop's own counters alike."""
        none = np.zeros_like(self.arrived)
        refused = none if self.refused is None else self.refused
        handed = none if self.handed_off is None else self.handed_off
        shed = none if self.shed is None else self.shed
        counters_agree = self.kernel_in_site < 0 or (
            self.kernel_in_site == self.n_in_flight
            and self.kernel_completed == self.n_completed)
        fault_counters_agree = (self.kernel_handed < 0 or self.kernel_handed == self.n_handed_off) \
            and (self.kernel_shed < 0 or self.kernel_shed == self.n_shed)
        # Each arrival has at most one outcome.
        outcomes = (self.completed.astype(np.int64) + refused + handed + shed)
        return bool(
            counters_agree
            and fault_counters_agree
            and self.n_in_flight >= 0
            and not (outcomes[~self.arrived] > 0).any()
            and not (outcomes > 1).any()
            and np.isfinite(self.e2e_s[self.completed]).all()
        )

    def conservation_statement(self) -> str:
        verdict = "no request lost" if self.conservation_ok else "REQUESTS LOST"
        return (f"arrivals={self.n_arrivals} = completions={self.n_completed} + "
                f"refused={self.n_refused} + shed={self.n_shed} + handed_off="
                f"{self.n_handed_off} + in_flight={self.n_in_flight}: {verdict}")

    def replica_power_w(self) -> np.ndarray:
        """Mean power of each replica in each interval, [interval, replica]."""
        return self.replica_energy_j_per_interval / self.interval_s

    def summary(self) -> dict[str, float]:
        done = self.completed
        ttft = self.ttft_s[done]
        multi = done & (self.output_tokens > 1)
        n = int(done.sum())
        # Without a horizon end_s is rounded up to an interval: count up to the last completion.
        span_s = min(self.end_s, float(np.nanmax(self.e2e_s + self.arrival_s))) if n else 0.0
        return {
            "n_arrivals": float(self.n_arrivals),
            "n_completed": float(n),
            "n_refused": float(self.n_refused),
            "n_preemptions": float(self.n_preemptions),
            "ttft_p50_s": float(np.percentile(ttft, 50)) if n else float("nan"),
            "ttft_p95_s": float(np.percentile(ttft, 95)) if n else float("nan"),
            "ttft_p99_s": float(np.percentile(ttft, 99)) if n else float("nan"),
            "tpot_mean_s": float(self.tpot_s[multi].mean()) if multi.any() else float("nan"),
            "e2e_mean_s": float(self.e2e_s[done].mean()) if n else float("nan"),
            "throughput_rps": n / span_s if span_s > 0 else 0.0,
            "mean_power_w": float(self.it_energy_j_per_interval.sum() / self.end_s)
            if self.end_s > 0 else 0.0,
            "energy_per_request_wh": float(self.energy_j[done].mean() / 3600.0)
            if n else float("nan"),
            "site_energy_per_request_wh": float(self.it_energy_j_per_interval.sum() / n / 3600.0)
            if n else float("nan"),
        }


def simulate_site(requests: RequestBatch, site: SiteConfig, awake: np.ndarray | int,
                  interval_s: float = 900.0, seed: int = 0, horizon_s: float | None = None,
                  network_rtt_s: np.ndarray | None = None,
                  capacity: np.ndarray | int | None = None, shed_wait_s: float = np.inf,
                  first_arrival_s: np.ndarray | None = None) -> SiteSimResult:
    """Simulate one site serving ``requests``; ``seed`` breaks dispatcher ties reproducibly.

    Faults: ``capacity`` (per interval, like ``awake``; None: no limit) is the replicas the
    site's GPUs can hold; when it drops below the loaded replicas the excess are lost at once and
    the requests they held are handed off (``handed_off``, ``handoff_s``); with no capacity,
    queued and arriving requests are handed off too. ``shed_wait_s``: an arrival is shed when the
    oldest request waiting ahead of it has waited longer. ``first_arrival_s``: when the user
    first sent each request (a request handed off by another site arrives here later); TTFT is
    counted from it (default: ``requests.arrival_s``)."""
    schedule, cap, cfg, kf = _settings(site, awake, interval_s, horizon_s, capacity,
                                       shed_wait_s)
    n = len(requests)
    if n and (np.diff(requests.arrival_s) < 0).any():
        raise SlitInputError("simulate_site", "requests are not sorted by arrival",
                             "sort them (RequestBatch.concat does)")
    if network_rtt_s is not None and len(network_rtt_s) != n:
        raise SlitInputError("simulate_site", f"network_rtt_s has {len(network_rtt_s)} rows",
                             f"give one round trip per request ({n})")
    if first_arrival_s is not None and len(first_arrival_s) != n:
        raise SlitInputError("simulate_site", f"first_arrival_s has {len(first_arrival_s)} "
                             "rows", f"give one time per request ({n})")
    replica = site.replica
    max_len = replica.max_model_len
    rq = np.empty((n, N_Q), np.int64)
    _fill_tokens(requests.prompt_tokens, requests.output_tokens, max_len, rq)
    rq[:, Q_TIE] = np.random.default_rng(seed).integers(0, site.n_replicas, n)
    # The kernel only reads the arrivals: no copy when they are float64 already.
    out, bins, counters, area_s, end_s = simulate_kernel(
        np.ascontiguousarray(requests.arrival_s, dtype=np.float64), rq, schedule, cap,
        replica_params(replica), cfg, kf)
    arrival = requests.arrival_s if first_arrival_s is None else np.asarray(first_arrival_s,
                                                                            np.float64)
    rtt = np.zeros(0) if network_rtt_s is None else np.asarray(network_rtt_s, np.float64)
    (ttft, ttft_net, tpot, e2e, energy, completed, arrived, refused, output, handed_off,
     handoff_s, shed) = _results(out, rq, np.ascontiguousarray(arrival, dtype=np.float64),
                                 rtt, max_len, int(counters[G_NEXT]))
    return SiteSimResult(
        ttft_s=ttft, ttft_with_network_s=ttft_net, tpot_s=tpot, e2e_s=e2e, energy_j=energy,
        completed=completed, arrived=arrived, arrival_s=arrival,
        output_tokens=output,
        interval_s=float(interval_s), end_s=float(end_s),
        it_energy_j_per_interval=bins[:, : site.n_replicas].sum(axis=1),
        replica_energy_j_per_interval=bins[:, : site.n_replicas].copy(),
        busy_replica_s_per_interval=bins[:, site.n_replicas].copy(),
        request_area_s=float(area_s), refused=refused,
        n_preemptions=int(counters[G_PREEMPTIONS]), kernel_in_site=int(counters[G_IN_SITE]),
        kernel_completed=int(counters[G_DONE]),
        loading_energy_j_per_interval=bins[:, site.n_replicas + 1].copy(),
        n_loads=int(counters[G_LOADS]), n_load_delayed=int(counters[G_LOAD_DELAYED]),
        handed_off=handed_off, handoff_s=handoff_s, shed=shed,
        kernel_handed=int(counters[G_HANDED]), kernel_shed=int(counters[G_SHED]),
    )


# simulate_site's preparation and results in one pass each: with whole-array operations their
# temporaries and strided passes over the result rows took about a tenth of a site's time.
@numba.njit(cache=True)
def _fill_tokens(prompt_tokens, output_tokens, max_len, rq):
    """rq's prompt and output columns as ``_clipped_tokens`` gives them."""
    for i in range(prompt_tokens.shape[0]):
        prompt = np.int64(prompt_tokens[i])
        asked = np.int64(output_tokens[i])
        rq[i, Q_PROMPT] = prompt
        rq[i, Q_OUTPUT] = asked if prompt > max_len else max(1, min(asked, max_len - prompt))


@numba.njit(cache=True)
def _results(out, rq, arrival, rtt, max_len, n_arrived):
    """The per-request columns of ``SiteSimResult`` from the kernel's result rows (``rtt``
    empty: no network); the same operations as the whole-array form in ``_outcomes``."""
    n = out.shape[0]
    ttft, ttft_net, tpot, e2e = np.empty(n), np.empty(n), np.empty(n), np.empty(n)
    energy, handoff_s = np.empty(n), np.empty(n)
    completed, arrived = np.empty(n, np.bool_), np.empty(n, np.bool_)
    refused, handed, shed = np.empty(n, np.bool_), np.empty(n, np.bool_), np.empty(n, np.bool_)
    output = np.empty(n, np.int32)
    with_rtt = rtt.shape[0] > 0
    for i in range(n):
        first, done = out[i, O_FIRST], out[i, O_DONE]
        to_first = first - arrival[i]
        to_done = done - arrival[i]
        ttft[i] = to_first
        e2e[i] = to_done
        ttft_net[i] = to_first + rtt[i] if with_rtt else to_first
        tokens = rq[i, Q_OUTPUT]
        output[i] = tokens
        done_ok = not np.isnan(done)
        completed[i] = done_ok
        if not done_ok:
            tpot[i] = np.nan  # refused and in-flight requests
        elif tokens <= 1:
            tpot[i] = 0.0
        else:
            tpot[i] = (to_done - to_first) / float(tokens - 1)
        energy[i] = out[i, O_ENERGY]
        handoff_s[i] = out[i, O_HANDOFF]
        handed[i] = not np.isnan(out[i, O_HANDOFF])
        shed[i] = not np.isnan(out[i, O_SHED])
        arrived[i] = i < n_arrived  # arrivals are handled in order
        refused[i] = rq[i, Q_PROMPT] > max_len and i < n_arrived
    return (ttft, ttft_net, tpot, e2e, energy, completed, arrived, refused, output, handed,
            handoff_s, shed)


def _settings(site: SiteConfig, awake: np.ndarray | int, interval_s: float,
              horizon_s: float | None, capacity: np.ndarray | int | None, shed_wait_s: float
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Checked schedule and capacity per interval, and the kernel's settings vectors."""
    site.validate()
    if not interval_s > 0.0:
        raise SlitInputError("simulate_site", f"interval_s = {interval_s}", "give a length > 0")
    schedule = np.atleast_1d(np.asarray(awake, dtype=np.int64))
    if schedule.size == 0 or (schedule < 0).any():
        raise SlitInputError("simulate_site", "awake schedule is empty or negative",
                             "give one replica count >= 0 per interval")
    if capacity is None:
        cap = np.full(schedule.size, site.n_replicas, np.int64)
    else:
        cap = np.asarray(capacity, dtype=np.int64)
        try:
            schedule, cap = (np.broadcast_to(x, np.broadcast_shapes(schedule.shape, cap.shape))
                             .copy() for x in (schedule, cap))
        except ValueError:
            raise SlitInputError("simulate_site", f"capacity has {cap.size} intervals, awake "
                                 f"{schedule.size}", "give both per interval") from None
        if (cap < 0).any():
            raise SlitInputError("simulate_site", "capacity is negative",
                                 "give replicas >= 0 per interval")
    if not shed_wait_s > 0.0:
        raise SlitInputError("simulate_site", f"shed_wait_s = {shed_wait_s}", "give a time > 0")
    replica = site.replica
    power = replica_power(replica)
    horizon = np.inf if horizon_s is None else float(horizon_s)
    n_bins = int(np.ceil(horizon / interval_s)) if horizon_s is not None else schedule.size
    cfg, kf = pack_settings(
        n_rep=int(site.n_replicas), chunked=bool(site.chunked_prefill),
        dispatcher=DISPATCHERS[site.dispatcher], max_seqs=int(site.max_num_seqs),
        max_batch_tokens=int(site.max_batch_tokens), kv_blocks=replica.kv_blocks,
        watermark_blocks=replica.kv_watermark_blocks, max_len=replica.max_model_len,
        n_bins=n_bins, interval_s=float(interval_s), horizon_s=horizon, idle_w=power.idle_w,
        standby_w=power.standby_w, prefill_w=power.prefill_dynamic_w,
        decode_w=power.decode_dynamic_w, wake_up_s=site.load_s,
        decode_full_w=power.decode_full_dynamic_w, loading_w=loading_power_w(replica),
        shed_wait_s=float(shed_wait_s))
    return schedule, cap, cfg, kf


def _clipped_tokens(requests: RequestBatch, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Prompt and output tokens as the replica takes them: vLLM caps max_tokens at
    max_model_len - prompt, so prompt + output never exceeds the context (a prompt beyond it
    is refused on arrival and keeps its output)."""
    prompt = requests.prompt_tokens.astype(np.int64)
    refused = prompt > max_len
    asked = requests.output_tokens.astype(np.int64)
    return prompt, np.where(refused, asked, np.maximum(1, np.minimum(asked, max_len - prompt)))


# --- streaming: the same simulation fed one chunk of arrivals at a time ------------------------
@dataclass(frozen=True)
class SiteOutcomes:
    """Per-request results of the requests a ``SiteStream`` handed back, in the order it handed
    them back (``ids``: their running index over everything fed, in arrival order); the columns
    mean what ``SiteSimResult``'s do."""

    ids: np.ndarray
    ttft_s: np.ndarray
    ttft_with_network_s: np.ndarray
    tpot_s: np.ndarray
    e2e_s: np.ndarray
    energy_j: np.ndarray
    completed: np.ndarray
    arrived: np.ndarray
    refused: np.ndarray
    handed_off: np.ndarray
    handoff_s: np.ndarray
    shed: np.ndarray
    arrival_s: np.ndarray  # when the user first sent it
    output_tokens: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class SiteTotals:
    """What a ``SiteStream`` reports at its end besides the per-request results: the
    per-interval tables and the event loop's counters, as ``SiteSimResult`` has them."""

    interval_s: float
    end_s: float
    it_energy_j_per_interval: np.ndarray
    replica_energy_j_per_interval: np.ndarray
    busy_replica_s_per_interval: np.ndarray
    loading_energy_j_per_interval: np.ndarray
    request_area_s: float
    n_preemptions: int
    n_loads: int
    n_load_delayed: int
    kernel_in_site: int
    kernel_completed: int
    kernel_handed: int
    kernel_shed: int


# Payload columns a SiteStream carries with each request through the kernel.
_P_FIRST, _P_RTT, _P_OUTPUT = range(3)


class SiteStream:
    """``simulate_site`` fed one chunk of arrivals at a time (e.g. one planning interval), in
    memory bounded by a chunk plus the requests still in the site. Fed the same requests in
    order, in chunks that each end before the next one's first arrival, it gives the same
    per-request results and totals as one ``simulate_site`` call, bit for bit (the kernel is
    ``KernelStream``; the dispatcher's tie-breaks are drawn from the same generator in order).

    ``feed(requests, t_stop)``: requests arriving in [previous t_stop, t_stop), sorted; returns
    the outcomes of every request that left the site meanwhile. ``finish()``: runs to the end
    (the horizon, or until the site is empty); returns the outcomes of the rest (in flight, or
    never arrived before the horizon) and the totals."""

    def __init__(self, site: SiteConfig, awake: np.ndarray | int, interval_s: float = 900.0,
                 seed: int = 0, horizon_s: float | None = None,
                 capacity: np.ndarray | int | None = None, shed_wait_s: float = np.inf) -> None:
        schedule, cap, cfg, kf = _settings(site, awake, interval_s, horizon_s, capacity,
                                           shed_wait_s)
        self.site, self.interval_s = site, float(interval_s)
        self._max_len = site.replica.max_model_len
        self._tie = np.random.default_rng(seed)
        self._kernel = KernelStream(schedule, cap, replica_params(site.replica), cfg, kf,
                                    n_payload=3)

    @property
    def n_held(self) -> int:
        return self._kernel.n_held

    def feed(self, requests: RequestBatch, t_stop: float,
             network_rtt_s: np.ndarray | None = None,
             first_arrival_s: np.ndarray | None = None) -> SiteOutcomes:
        n = len(requests)
        if network_rtt_s is not None and len(network_rtt_s) != n:
            raise SlitInputError("SiteStream.feed", f"network_rtt_s has {len(network_rtt_s)} "
                                 "rows", f"give one round trip per request ({n})")
        if first_arrival_s is not None and len(first_arrival_s) != n:
            raise SlitInputError("SiteStream.feed", f"first_arrival_s has "
                                 f"{len(first_arrival_s)} rows", f"give one time per request ({n})")
        prompt, output = _clipped_tokens(requests, self._max_len)
        rq = np.empty((n, N_Q), np.int64)
        rq[:, Q_PROMPT] = prompt
        rq[:, Q_OUTPUT] = output
        rq[:, Q_TIE] = self._tie.integers(0, self.site.n_replicas, n)
        payload = np.empty((n, 3))
        payload[:, _P_FIRST] = requests.arrival_s if first_arrival_s is None else first_arrival_s
        payload[:, _P_RTT] = 0.0 if network_rtt_s is None else network_rtt_s
        payload[:, _P_OUTPUT] = output
        left = self._kernel.feed(requests.arrival_s.astype(np.float64), rq, float(t_stop),
                                 payload=payload)
        return _outcomes(left, self._max_len)

    def finish(self) -> tuple[SiteOutcomes, SiteTotals]:
        rest, bins, counters, area_s, end_s = self._kernel.finish()
        n_rep = self.site.n_replicas
        totals = SiteTotals(
            interval_s=self.interval_s, end_s=float(end_s),
            it_energy_j_per_interval=bins[:, :n_rep].sum(axis=1),
            replica_energy_j_per_interval=bins[:, :n_rep].copy(),
            busy_replica_s_per_interval=bins[:, n_rep].copy(),
            loading_energy_j_per_interval=bins[:, n_rep + 1].copy(),
            request_area_s=float(area_s), n_preemptions=int(counters[G_PREEMPTIONS]),
            n_loads=int(counters[G_LOADS]), n_load_delayed=int(counters[G_LOAD_DELAYED]),
            kernel_in_site=int(counters[G_IN_SITE]), kernel_completed=int(counters[G_DONE]),
            kernel_handed=int(counters[G_HANDED]), kernel_shed=int(counters[G_SHED]))
        return _outcomes(rest, self._max_len), totals


def _outcomes(chunk: KernelChunk, max_len: int) -> SiteOutcomes:
    """The per-request columns of ``simulate_site`` for the requests of a kernel chunk."""
    out, payload = chunk.out, chunk.payload
    first, done = out[:, O_FIRST], out[:, O_DONE]
    arrival = payload[:, _P_FIRST]
    output = payload[:, _P_OUTPUT].astype(np.int64)
    completed = ~np.isnan(done)
    ttft = first - arrival
    e2e = done - arrival
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where(output > 1, (e2e - ttft) / np.maximum(output - 1, 1), 0.0)
    tpot[~completed] = np.nan
    arrived = np.asarray(chunk.arrived, bool)
    return SiteOutcomes(
        ids=chunk.ids, ttft_s=ttft, ttft_with_network_s=ttft + payload[:, _P_RTT], tpot_s=tpot,
        e2e_s=e2e, energy_j=out[:, O_ENERGY].copy(), completed=completed, arrived=arrived,
        refused=(chunk.rq[:, Q_PROMPT] > max_len) & arrived,
        handed_off=~np.isnan(out[:, O_HANDOFF]), handoff_s=out[:, O_HANDOFF].copy(),
        shed=~np.isnan(out[:, O_SHED]), arrival_s=arrival, output_tokens=output.astype(np.int32))
