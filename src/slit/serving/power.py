"""Power of a replica: GPU idle power, phase-dependent GPU dynamic power, and host power.

GPU power = idle + u(phase) x (TDP - idle). Prefill is compute-bound and runs the GPUs near TDP;
decode is memory-bound and draws clearly less (Patel et al., Splitwise, ISCA 2024, sec. III-E;
Patel et al., POLCA, ASPLOS 2024). The utilisation shares below are assumptions in that range,
documented in docs/serving.md. Host power (CPUs, memory, network, fans, per 8-GPU server) is drawn
whenever the replica is on, split evenly over the GPUs of the server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from slit.serving.catalog import ReplicaSpec

PREFILL_DYNAMIC_SHARE = 0.9
DECODE_DYNAMIC_SHARE = 0.55
# A sleeping replica is powered down (GPUs off, its share of the server suspended).
STANDBY_W_PER_GPU = 0.0
# Power-up, driver init and loading weights from local NVMe (about 2 GB/s per GPU for a 70B
# model's 35 GB shard on 4 GPUs) before the replica serves.
DEFAULT_WAKE_UP_S = 60.0

Phase = Literal["off", "idle", "prefill", "decode"]


@dataclass(frozen=True, slots=True)
class ReplicaPower:
    """Power levels of one replica (all its GPUs and their share of the host), in W."""

    standby_w: float
    idle_w: float  # on, no step running: GPU idle + host
    prefill_dynamic_w: float  # added while a step with prefill tokens runs
    decode_dynamic_w: float  # added while a decode-only step runs


def replica_power(replica: ReplicaSpec) -> ReplicaPower:
    gpu, n = replica.gpu_spec, replica.tp
    swing = gpu.tdp_w - gpu.idle_w
    return ReplicaPower(
        standby_w=n * STANDBY_W_PER_GPU,
        idle_w=n * (gpu.idle_w + gpu.host_w_per_gpu),
        prefill_dynamic_w=n * PREFILL_DYNAMIC_SHARE * swing,
        decode_dynamic_w=n * DECODE_DYNAMIC_SHARE * swing,
    )


def replica_power_w(replica: ReplicaSpec, phase: Phase) -> float:
    """Total power of a replica in a phase ("off" = sleeping)."""
    levels = replica_power(replica)
    return {
        "off": levels.standby_w,
        "idle": levels.idle_w,
        "prefill": levels.idle_w + levels.prefill_dynamic_w,
        "decode": levels.idle_w + levels.decode_dynamic_w,
    }[phase]
