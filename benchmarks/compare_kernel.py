"""Old kernel vs this tree's: the site simulation's outputs must be identical bit for bit.

The site module and kernel of a git revision (``--ref``, default: where this branch left main)
are extracted into a private package and run side by side with this tree's on configurations
that each exercise a path of the event loop: the default site, chunked prefill, both
dispatchers, faults (capacity to 0 and back, a derate), shedding, a horizon cut, a loading
schedule, hand-offs, preemption with a small KV cache, refused prompts, few sequences per
batch, a large fleet, and streaming (chunk by chunk = one shot). Every per-request array, table,
counter and scalar is compared with ``np.array_equal`` (NaN where NaN). Prints one line per
configuration and ``identical=<all>``; exits 1 on any difference.

``--samples [MODEL ...]``: then also the surrogate's training samples
(``slit.optimise.surrogate_design.simulate_samples``, 160 steady-state runs of the default
scenario's view of each model, default both: Llama-3.1-8B and Llama-3.1-70B) with the old and
this tree's site module; every row and column must be equal (``samples_identical=``). Its runs
start 16 idle replicas at low loads, where the reference configurations above did not catch a
lost event (main's all-zero event tree, fixed in c1e610d: run 152 of the 70B view differed).
Needs the data the default scenario reads; a few minutes.

``--speed N``: then times both on ``bench_des.py``'s site (200 k requests, 16 replicas), in
turns in this one process, N times each: ``old_cpu_requests_per_s=``, ``new_cpu_requests_per_s=``
(best, per CPU second), ``speedup=`` (their ratio) and ``speedup_median=`` (the median over the
turns of old / new CPU time, each turn's two runs side by side); on a shared machine a ratio
measured in turns is steadier than two separate runs, and the median steadier than the best
when the other users' load comes and goes.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

import slit.simulate.kernel as new_kernel
import slit.simulate.site as new_site
from slit.serving.capacity import max_throughput_rps
from slit.serving.catalog import ReplicaSpec
from slit.simulate.arrivals import poisson_from_trace
from slit.workload.requests import RequestBatch
from slit.workload.traces import load_trace

REPO = Path(__file__).resolve().parents[1]
H100_70B = ReplicaSpec("Llama-3.1-70B", "H100-SXM5-80GB", 4)
H100_8B = ReplicaSpec("Llama-3.1-8B", "H100-SXM5-80GB", 1)
A100_70B_TP2 = ReplicaSpec("Llama-3.1-70B", "A100-SXM4-80GB", 2)  # a small KV cache
LLAMA2 = ReplicaSpec("Llama-2-70B", "H100-SXM5-80GB", 4)  # 4,096 context: some are refused


def reference(ref: str) -> tuple[ModuleType, ModuleType]:
    """The kernel and site modules of revision ``ref`` as a private package (numba caches its
    compilation next to it, so later runs load it)."""
    sha = subprocess.run(["git", "-C", str(REPO), "rev-parse", ref], check=True,
                         capture_output=True, text=True).stdout.strip()
    name = f"slitref_{sha[:10]}"
    root = Path("/tmp") / "slit-kernel-ref" / sha
    package = root / name
    if not (package / "site.py").exists():
        package.mkdir(parents=True, exist_ok=True)
        for module in ("kernel", "site"):
            text = subprocess.run(["git", "-C", str(REPO), "show",
                                   f"{sha}:src/slit/simulate/{module}.py"], check=True,
                                  capture_output=True, text=True).stdout
            text = text.replace("slit.simulate.kernel", f"{name}.kernel")
            (package / f"{module}.py").write_text(text)
        (package / "__init__.py").write_text("")
    sys.path.insert(0, str(root))
    return (importlib.import_module(f"{name}.kernel"), importlib.import_module(f"{name}.site"))


def same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        return a.dtype == b.dtype and a.shape == b.shape and bool(
            np.array_equal(a, b, equal_nan=a.dtype.kind == "f"))
    if isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b):
        return True
    return bool(a == b) and type(a) is type(b)


def diff_fields(old: Any, new: Any) -> list[str]:
    """Fields of two dataclasses (or tuples) that differ."""
    if dataclasses.is_dataclass(old):
        pairs = [(f.name, getattr(old, f.name), getattr(new, f.name))
                 for f in dataclasses.fields(old)]
    else:
        pairs = [(str(i), a, b) for i, (a, b) in enumerate(zip(old, new, strict=True))]
    return [name for name, a, b in pairs if not same(a, b)]


@dataclasses.dataclass
class Case:
    name: str
    requests: RequestBatch
    site: Any  # SiteConfig fields as a dict (each module builds its own)
    awake: np.ndarray | int
    interval_s: float = 900.0
    horizon_s: float | None = None
    capacity: np.ndarray | None = None
    shed_wait_s: float = np.inf
    rtt: bool = False
    stream_s: float = 0.0  # > 0: also fed to SiteStream in chunks of this length

    def kwargs(self, seed: int) -> dict[str, Any]:
        n = len(self.requests)
        rtt = np.random.default_rng(seed).uniform(0.01, 0.2, n) if self.rtt else None
        return dict(awake=self.awake, interval_s=self.interval_s, seed=seed,
                    horizon_s=self.horizon_s, network_rtt_s=rtt, capacity=self.capacity,
                    shed_wait_s=self.shed_wait_s)


def cases(data_dir: Path, scale: float) -> list[Case]:
    trace = load_trace(data_dir, "conv")
    mean_p, mean_o = float(np.mean(trace.prompt_tokens)), float(np.mean(trace.output_tokens))

    def load(replica: ReplicaSpec, n_rep: int, frac: float, n: int, seed: int) -> RequestBatch:
        rate = frac * max_throughput_rps(replica, mean_p, mean_o) * n_rep
        return poisson_from_trace(trace, rate, max(1, int(n * scale)) / rate, seed=seed)

    def synthetic(n: int, span_s: float, seed: int, max_prompt: int = 9000,
                  max_output: int = 2000) -> RequestBatch:
        rng = np.random.default_rng(seed)
        n = max(1, int(n * scale))
        return RequestBatch(np.sort(rng.uniform(0.0, span_s, n)),
                            rng.integers(1, max_prompt, n).astype(np.int32),
                            rng.integers(1, max_output, n).astype(np.int32),
                            np.zeros(n, np.int16))

    base = load(H100_70B, 16, 0.7, 40_000, 1)
    span = float(base.arrival_s[-1])
    n_int = int(np.ceil(span / 15.0)) + 1
    varying = np.resize(np.array([4, 16, 2, 10, 16, 1, 8, 12]), n_int)  # per 15 s
    n_int = int(np.ceil(span / 60.0)) + 1
    faults = np.full(n_int, 16)
    faults[n_int // 5: n_int // 5 + 2] = 0  # outage: everything handed off, back after
    faults[n_int // 2: n_int // 2 + 3] = 7  # derate
    return [
        Case("default", base, dict(replica=H100_70B, n_replicas=16), 16, stream_s=37.0),
        Case("chunked", base, dict(replica=H100_70B, n_replicas=16, chunked_prefill=True), 16,
             stream_s=61.0),
        Case("least_kv", base, dict(replica=H100_70B, n_replicas=16, dispatcher="least_kv"), 16),
        Case("least_kv_chunked", base, dict(replica=H100_70B, n_replicas=16,
                                            dispatcher="least_kv", chunked_prefill=True), 16),
        Case("high_load_rtt", load(H100_70B, 8, 0.95, 20_000, 2),
             dict(replica=H100_70B, n_replicas=8), 8, rtt=True),
        Case("loading_schedule", base, dict(replica=H100_70B, n_replicas=16, wake_up_s=12.0),
             varying, interval_s=15.0, stream_s=60.0),
        Case("loading_instant", base, dict(replica=H100_70B, n_replicas=16, wake_up_s=0.0),
             varying, interval_s=15.0),
        Case("faults_handoff", base, dict(replica=H100_70B, n_replicas=16, wake_up_s=20.0),
             16, interval_s=60.0, capacity=faults, rtt=True, stream_s=45.0),
        Case("shedding", load(H100_70B, 4, 1.4, 10_000, 3), dict(replica=H100_70B, n_replicas=4),
             4, interval_s=60.0, shed_wait_s=5.0, stream_s=30.0),
        Case("horizon_cut", base, dict(replica=H100_70B, n_replicas=16), 16, interval_s=60.0,
             horizon_s=0.6 * span, stream_s=50.0),
        Case("preemption_small_kv", synthetic(3000, 300.0, 4, 8000, 3000),
             dict(replica=A100_70B_TP2, n_replicas=2), 2, interval_s=60.0, stream_s=40.0),
        Case("preemption_small_kv_chunked", synthetic(3000, 300.0, 5, 8000, 3000),
             dict(replica=A100_70B_TP2, n_replicas=2, chunked_prefill=True,
                  max_batch_tokens=2048), 2, interval_s=60.0),
        Case("refused_llama2", synthetic(4000, 400.0, 6), dict(replica=LLAMA2, n_replicas=3), 3,
             interval_s=60.0),
        Case("few_seqs_small_budget", load(H100_8B, 3, 0.9, 20_000, 7),
             dict(replica=H100_8B, n_replicas=3, max_num_seqs=8, max_batch_tokens=1024), 3),
        Case("few_seqs_chunked", load(H100_8B, 3, 0.9, 20_000, 8),
             dict(replica=H100_8B, n_replicas=3, max_num_seqs=16, max_batch_tokens=512,
                  chunked_prefill=True), 3),
        Case("large_fleet", load(H100_8B, 108, 0.6, 60_000, 9),
             dict(replica=H100_8B, n_replicas=108), 108, stream_s=20.0),
    ]


def run_site(site_mod: ModuleType, case: Case, seed: int) -> Any:
    return site_mod.simulate_site(case.requests, site_mod.SiteConfig(**case.site),
                                  **case.kwargs(seed))


def run_stream(site_mod: ModuleType, case: Case, seed: int) -> tuple[dict[str, np.ndarray], Any]:
    """SiteStream in chunks of ``case.stream_s``; the outcomes put back in request order."""
    kw = case.kwargs(seed)
    stream = site_mod.SiteStream(site_mod.SiteConfig(**case.site), kw["awake"],
                                 kw["interval_s"], seed, kw["horizon_s"], kw["capacity"],
                                 kw["shed_wait_s"])
    arrival = case.requests.arrival_s
    parts = []
    lo = 0.0
    while lo <= arrival[-1]:
        take = (arrival >= lo) & (arrival < lo + case.stream_s)
        rtt = None if kw["network_rtt_s"] is None else kw["network_rtt_s"][take]
        parts.append(stream.feed(case.requests.take(take), lo + case.stream_s, rtt))
        lo += case.stream_s
    rest, totals = stream.finish()
    parts.append(rest)
    ids = np.concatenate([p.ids for p in parts])
    fields = {}
    for f in dataclasses.fields(rest):
        col = np.concatenate([getattr(p, f.name) for p in parts])
        got = np.empty_like(col)
        got[ids] = col
        fields[f.name] = got
    return fields, totals


def kernel_direct(kmod: ModuleType, case: Case, seed: int) -> tuple:
    """``simulate_kernel`` itself on the case's inputs (every output, the counters whole)."""
    schedule, cap, cfg, kf = new_site._settings(new_site.SiteConfig(**case.site), case.awake,
                                                case.interval_s, case.horizon_s, case.capacity,
                                                case.shed_wait_s)
    replica = case.site["replica"]
    prompt, output = new_site._clipped_tokens(case.requests, replica.max_model_len)
    n = len(case.requests)
    rq = np.empty((n, kmod.N_Q), np.int64)
    rq[:, kmod.Q_PROMPT], rq[:, kmod.Q_OUTPUT] = prompt, output
    rq[:, kmod.Q_TIE] = np.random.default_rng(seed).integers(0, case.site["n_replicas"], n)
    from slit.serving.iteration import replica_params
    result = kmod.simulate_kernel(case.requests.arrival_s.astype(np.float64), rq, schedule, cap,
                                  replica_params(replica), cfg, kf)
    return (*result, rq)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", default=None, help="git revision (default: merge-base with main)")
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--scale", type=float, default=1.0, help="requests per case, relative")
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--speed", type=int, default=0, help="timed turns of each (0: none)")
    parser.add_argument("--samples", nargs="*", default=None,
                        help="compare simulate_samples of these models' views (none: both)")
    args = parser.parse_args()
    ref = args.ref or subprocess.run(["git", "-C", str(REPO), "merge-base", "HEAD", "main"],
                                     check=True, capture_output=True, text=True).stdout.strip()
    old_kernel, old_site = reference(ref)
    print(f"reference: {ref} ({old_kernel.__file__})")
    all_same = True
    for case in cases(args.data_dir, args.scale):
        if args.only and case.name not in args.only:
            continue
        seed = 3
        start = time.perf_counter()
        old, new = run_site(old_site, case, seed), run_site(new_site, case, seed)
        bad = diff_fields(old, new)
        bad += [f"kernel.{i}" for i in diff_fields(kernel_direct(old_kernel, case, seed),
                                                   kernel_direct(new_kernel, case, seed))]
        if case.stream_s > 0:
            old_parts, old_totals = run_stream(old_site, case, seed)
            new_parts, new_totals = run_stream(new_site, case, seed)
            bad += [f"stream.{k}" for k in old_parts if not same(old_parts[k], new_parts[k])]
            bad += [f"stream.{k}" for k in diff_fields(old_totals, new_totals)]
            # Chunked = one shot, in this tree.
            for name, col in new_parts.items():
                if name != "ids" and not same(col, getattr(new, name)):
                    bad.append(f"stream_vs_oneshot.{name}")
            for f in dataclasses.fields(new_totals):
                if not same(getattr(new_totals, f.name), getattr(new, f.name)):
                    bad.append(f"stream_vs_oneshot.{f.name}")
        all_same &= not bad
        stats = (f"n={len(case.requests)} completed={new.n_completed} "
                 f"preempt={new.n_preemptions} handed={new.n_handed_off} shed={new.n_shed} "
                 f"refused={new.n_refused} loads={new.n_loads} in_flight={new.n_in_flight}")
        verdict = "identical" if not bad else "DIFFERENT: " + ", ".join(bad)
        print(f"{case.name:28s} {stats} {time.perf_counter() - start:6.1f} s  {verdict}",
              flush=True)
    print(f"identical={all_same}")
    if args.samples is not None:
        all_same &= samples(old_site, args.samples or ["Llama-3.1-8B", "Llama-3.1-70B"])
    if args.speed > 0:
        speed(old_site, args.data_dir, args.speed)
    sys.exit(0 if all_same else 1)


def samples(old_site: ModuleType, models: list[str]) -> bool:
    """``simulate_samples`` of the default scenario's view of each model, run with the old and
    with this tree's site module (``_measure`` calls ``simulate_site`` and ``SiteConfig`` by the
    names it imported, swapped here); prints each model's verdict and ``samples_identical=``."""
    import slit.optimise.surrogate_design as design
    from slit.experiment.scenario import default_scenario

    all_same = True
    for model in models:
        view = default_scenario().for_model(model)
        spec = design.SurrogateSpec(
            replicas=tuple(sorted({s.replica for s in view.sites}, key=str)),
            code_shares=(view.code_share,), seed=view.seed,
            n_awake=tuple(sorted({1, 2, 3, 4, 6, 8, 12, 16} | {s.installed for s in view.sites})),
            token_source=view.data.key)
        frames = {}
        for name, module in (("old", old_site), ("new", new_site)):
            start = time.perf_counter()
            swapped = (module.simulate_site, module.SiteConfig)
            design.simulate_site, design.SiteConfig = swapped  # type: ignore[misc]
            try:
                frames[name] = design.simulate_samples(spec)
            finally:
                design.simulate_site, design.SiteConfig = (  # type: ignore[misc]
                    new_site.simulate_site, new_site.SiteConfig)
            print(f"samples {model} {name}: {len(frames[name])} runs "
                  f"{time.perf_counter() - start:.1f} s", flush=True)
        old, new = frames["old"], frames["new"]
        differ = [] if old.shape != new.shape else [
            int(run) for run, a, b in zip(new["run"], old.to_dict("records"),
                                          new.to_dict("records"), strict=True)
            if not all(same(a[c], b[c]) for c in old.columns)]
        ok = old.shape == new.shape and list(old.columns) == list(new.columns) and not differ
        all_same &= ok
        print(f"samples {model}: " + ("identical" if ok else f"DIFFERENT runs {differ}"),
              flush=True)
    print(f"samples_identical={all_same}")
    return all_same


def speed(old_site: ModuleType, data_dir: Path, turns: int) -> None:
    """Old and new ``simulate_site`` on bench_des.py's site, in turns; best CPU time of each."""
    trace = load_trace(data_dir, "conv")
    rate = 0.7 * 16 * max_throughput_rps(H100_70B, float(np.mean(trace.prompt_tokens)),
                                         float(np.mean(trace.output_tokens)))
    requests = poisson_from_trace(trace, rate, 200_000 / rate, seed=1)
    best = {"old": np.inf, "new": np.inf}
    ratios = []
    modules = {"old": old_site, "new": new_site}
    for module in modules.values():  # compile or load, untimed
        module.simulate_site(requests.take(np.arange(100)), module.SiteConfig(H100_70B, 16), 16)
    for _ in range(turns):
        took = {}
        for name, module in modules.items():
            start = time.process_time()
            module.simulate_site(requests, module.SiteConfig(H100_70B, 16), 16)
            took[name] = time.process_time() - start
            best[name] = min(best[name], took[name])
        ratios.append(took["old"] / took["new"])
    n = len(requests)
    print(f"old_cpu_requests_per_s={n / best['old']:.0f}")
    print(f"new_cpu_requests_per_s={n / best['new']:.0f}")
    print(f"speedup={best['old'] / best['new']:.2f}")
    print(f"speedup_median={float(np.median(ratios)):.2f}")


if __name__ == "__main__":
    main()
