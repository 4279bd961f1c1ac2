"""Replica lifecycle figures: how long a replica takes to load and what it draws meanwhile.

States of a replica (per site and model): released (0 W attributed, its GPUs are free for other
tenants), loading (weights read into GPU memory plus engine start-up; draws power, serves
nothing), serving, draining (finishes the requests it holds, takes no new ones).

Load time = fixed start-up + weight bytes per GPU / load bandwidth per GPU.

Calibration (measurement): ServerlessLLM (Fu et al., OSDI 2024, sec. 2) reports that loading
Llama-2-70B (138 GB in BF16) into GPU memory with today's loaders (PyTorch / Safetensors from local
storage) takes about 84 s; production serving stacks report 52-110 s pod start. We take that 84 s
as the time of a 4-GPU tensor-parallel replica (34.5 GB per GPU) with a fixed start-up of 20 s
(CUDA contexts, vLLM KV-cache profiling and CUDA-graph capture: an ASSUMPTION, see
docs/serving.md), which leaves 64 s for 34.5 GB per GPU, i.e. about 0.54 GB/s per GPU (4.3 GB/s
per 8-GPU node, about what two local NVMe drives deliver). The split into start-up and transfer
and the TP-4 reading of the measurement are assumptions; the figures they give for the default
replicas (Llama-3.1-8B on one GPU ~50 s, Llama-3.1-70B on 4 H100 ~86 s, on 8 A100 ~53 s) all sit
in the 52-110 s range observed in production.

Loading power (ASSUMPTION, docs/serving.md): loading is I/O bound, the GPUs run no kernels of
note, so a loading replica draws its GPUs' idle power plus its share of the host (the same as an
idle serving replica).
"""

from __future__ import annotations

from slit.serving.catalog import ReplicaSpec

# Fixed start-up of a vLLM replica once its weights are on the GPU (assumption, see above).
STARTUP_S = 20.0
# Llama-2-70B, 138 GB BF16, measured 84 s to load (ServerlessLLM, OSDI 2024), read as TP 4.
_MEASURED_WEIGHT_BYTES = 69.0e9 * 2.0
_MEASURED_TP = 4
_MEASURED_LOAD_S = 84.0
LOAD_BANDWIDTH_BYTES_PER_S_PER_GPU = (_MEASURED_WEIGHT_BYTES / _MEASURED_TP) / (
    _MEASURED_LOAD_S - STARTUP_S)


def weight_bytes_per_gpu(spec: ReplicaSpec) -> float:
    """Bytes of weights each GPU of the tensor-parallel group holds."""
    return spec.model_spec.weight_bytes / spec.tp


def load_time_s(spec: ReplicaSpec) -> float:
    """Seconds from the decision to load a replica until it serves its first request."""
    return STARTUP_S + weight_bytes_per_gpu(spec) / LOAD_BANDWIDTH_BYTES_PER_S_PER_GPU


def loading_power_w(spec: ReplicaSpec) -> float:
    """Power drawn by a loading replica: its GPUs at idle plus their share of the host."""
    gpu = spec.gpu_spec
    return spec.tp * (gpu.idle_w + gpu.host_w_per_gpu)


def loading_energy_kwh(spec: ReplicaSpec) -> float:
    """Energy one load costs (before PUE)."""
    return loading_power_w(spec) * load_time_s(spec) / 3.6e6
