"""Power of a replica: GPU idle power, phase- and batch-dependent GPU dynamic power, host power.

GPU power = idle + u x (TDP - idle). Prefill is compute-bound and runs the GPUs near TDP
(Patel et al., Splitwise, ISCA 2024, sec. III-E; Patel et al., POLCA, ASPLOS 2024): u = 0.9, an
assumption in that range. Decode is memory-bound and its power rises with the batch: the ML.ENERGY
benchmark (Chung et al., "The ML.ENERGY Benchmark", 2025; v3.0 measurements on H100-SXM5, as
used for the calibration anchors of vLLM's fleet simulator power model) measures about 300 W per
GPU decoding one sequence and about 600 W at a batch of 128. With H100 idle 75 W and TDP 700 W
that is u = 0.36 at batch 1 and u = 0.84 at batch >= 128; in between u rises linearly in log2 of
the batch (an assumption: the measured curve is concave in the batch). The same shares are used
for A100 (an assumption: no comparable A100 measurement). Host power (CPUs, memory, network, fans,
per 8-GPU server) is drawn whenever the replica is on, split evenly over the GPUs of the server.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from slit.serving.catalog import ReplicaSpec

PREFILL_DYNAMIC_SHARE = 0.9
# ML.ENERGY v3.0, H100-SXM5 decode: ~300 W at batch 1, ~600 W at batch 128 (idle 75, TDP 700).
DECODE_DYNAMIC_SHARE_ONE = (300.0 - 75.0) / (700.0 - 75.0)
DECODE_DYNAMIC_SHARE_FULL = (600.0 - 75.0) / (700.0 - 75.0)
DECODE_FULL_BATCH = 128
# A sleeping replica is powered down (GPUs off, its share of the server suspended).
STANDBY_W_PER_GPU = 0.0

Phase = Literal["off", "idle", "prefill", "decode"]


@dataclass(frozen=True, slots=True)
class ReplicaPower:
    """Power levels of one replica (all its GPUs and their share of the host), in W."""

    standby_w: float
    idle_w: float  # on, no step running: GPU idle + host
    prefill_dynamic_w: float  # added while a step with prefill tokens runs
    decode_dynamic_w: float  # added while a decode step of one sequence runs
    decode_full_dynamic_w: float  # added while a decode step of DECODE_FULL_BATCH or more runs

    def decode_dynamic_at(self, batch: int) -> float:
        """Dynamic power of a decode step of ``batch`` sequences (log2 interpolation)."""
        if batch <= 1:
            return self.decode_dynamic_w
        x = min(1.0, math.log2(batch) / math.log2(DECODE_FULL_BATCH))
        return self.decode_dynamic_w + (self.decode_full_dynamic_w - self.decode_dynamic_w) * x


def replica_power(replica: ReplicaSpec) -> ReplicaPower:
    gpu, n = replica.gpu_spec, replica.tp
    swing = gpu.tdp_w - gpu.idle_w
    return ReplicaPower(
        standby_w=n * STANDBY_W_PER_GPU,
        idle_w=n * (gpu.idle_w + gpu.host_w_per_gpu),
        prefill_dynamic_w=n * PREFILL_DYNAMIC_SHARE * swing,
        decode_dynamic_w=n * DECODE_DYNAMIC_SHARE_ONE * swing,
        decode_full_dynamic_w=n * DECODE_DYNAMIC_SHARE_FULL * swing,
    )


def replica_power_w(replica: ReplicaSpec, phase: Phase, batch: int = 1) -> float:
    """Total power of a replica in a phase ("off" = sleeping); decode at ``batch`` sequences."""
    levels = replica_power(replica)
    return {
        "off": levels.standby_w,
        "idle": levels.idle_w,
        "prefill": levels.idle_w + levels.prefill_dynamic_w,
        "decode": levels.idle_w + levels.decode_dynamic_at(batch),
    }[phase]
