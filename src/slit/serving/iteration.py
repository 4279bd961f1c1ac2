"""Roofline iteration-time model of a replica: how long one vLLM engine step takes.

A step processes ``m_tokens`` tokens through every layer (prefill chunks plus one token per
decoding sequence). Per layer:
- each linear operator (QKV, output, MLP up/gate, MLP down) takes the larger of its compute time
  (FLOPs / (peak x compute efficiency)) and its memory time (weights + activations / (bandwidth x
  memory efficiency)), plus a kernel-launch cost; elementwise operators (norms, RoPE, activation,
  residual add) are memory-bound plus a launch cost. The three efficiency factors are fitted per
  GPU on the Vidur layer timings (``slit calibrate``), which cover exactly these operators;
- attention of prefill chunks is compute-bound with a FlashAttention efficiency (not in the data);
- attention of decoding sequences reads their KV cache (memory-bound, grows with context);
- tensor parallelism adds two all-reduces of the activations, timed by the table fitted on the
  measured NCCL all-reduce times (``slit.serving.communication``).
Once per step: the LM head for the tokens that produce output, and a fixed engine overhead.

The functions are compiled and take a packed float64 vector (``replica_params``) so that the
simulation kernel can call them; ``layer_linear_s`` also takes an array of token counts, for the
calibration fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

from slit.serving.allreduce_table import ALLREDUCE_US
from slit.serving.catalog import GPUS, ReplicaSpec
from slit.serving.communication import GRID_LOG2, LOG2_MIN, LOG2_STEP, N_POINTS


@dataclass(frozen=True, slots=True)
class GpuEfficiency:
    compute: float  # share of peak BF16 FLOP/s a GEMM reaches
    memory: float  # share of HBM bandwidth a memory-bound kernel reaches
    launch_s: float  # fixed cost per kernel


# Fitted by `slit calibrate --data-dir ../shared/data` (all Vidur models of each GPU pooled);
# tests/test_serving.py re-fits them on the real data and checks they still match.
CALIBRATED: dict[str, GpuEfficiency] = {
    "A100-SXM4-80GB": GpuEfficiency(compute=0.6862, memory=0.7313, launch_s=6.284e-6),
    "H100-SXM5-80GB": GpuEfficiency(compute=0.6348, memory=0.8682, launch_s=5.421e-6),
}

# FlashAttention-2 forward reaches roughly half of peak on A100/H100 at the prompt lengths of the
# traces (Dao 2023, fig. 4-5); the Vidur MLP profiles hold no attention timings to fit it.
ATTENTION_COMPUTE_EFFICIENCY = 0.5
# vLLM scheduler, sampling and Python overhead per engine step (CUDA graphs on).
STEP_OVERHEAD_S = 1.0e-3

# Layout of the packed parameter vector.
P_LAYERS, P_HIDDEN, P_HEADS, P_KV_HEADS, P_HEAD_DIM, P_FFN, P_GATED, P_VOCAB, P_TP = range(9)
P_PEAK, P_BW, P_EFF_C, P_EFF_M, P_LAUNCH, P_ATTN_EFF, P_STEP = range(9, 16)
# log(all-reduce time in s) at the message sizes of ``communication.GRID_LOG2`` (tp > 1 only).
P_COMM = 16
N_PARAMS = P_COMM + N_POINTS
COMM_LOG2_MAX = float(GRID_LOG2[-1])
BYTES = 2.0  # BF16 activations, weights and KV cache


def replica_params(replica: ReplicaSpec, efficiency: GpuEfficiency | None = None) -> np.ndarray:
    """The packed vector the step-time functions read."""
    model, gpu = replica.model_spec, GPUS[replica.gpu]
    eff = efficiency or CALIBRATED[replica.gpu]
    p = np.zeros(N_PARAMS)
    p[P_LAYERS], p[P_HIDDEN], p[P_HEADS] = model.n_layers, model.hidden, model.n_heads
    p[P_KV_HEADS], p[P_HEAD_DIM], p[P_FFN] = model.n_kv_heads, model.head_dim, model.ffn_hidden
    p[P_GATED], p[P_VOCAB], p[P_TP] = float(model.gated_mlp), model.vocab, replica.tp
    p[P_PEAK], p[P_BW] = gpu.peak_bf16_flops, gpu.hbm_bandwidth_bytes_per_s
    p[P_EFF_C], p[P_EFF_M], p[P_LAUNCH] = eff.compute, eff.memory, eff.launch_s
    p[P_ATTN_EFF], p[P_STEP] = ATTENTION_COMPUTE_EFFICIENCY, STEP_OVERHEAD_S
    if replica.tp > 1:
        p[P_COMM:] = np.log(np.asarray(ALLREDUCE_US[(replica.gpu, replica.tp)]) * 1e-6)
    return p


@numba.njit(cache=True)
def allreduce_s(p, nbytes):
    """Measured-table time of one all-reduce of ``nbytes`` over the replica's GPUs: log-log
    interpolation, flat below the table (latency-bound), proportional to size above it."""
    x = math.log2(max(nbytes, 1.0))
    if x >= COMM_LOG2_MAX:
        return math.exp(p[P_COMM + N_POINTS - 1]) * nbytes / 2.0 ** COMM_LOG2_MAX
    pos = max(0.0, (x - LOG2_MIN) / LOG2_STEP)
    i = int(pos)
    frac = pos - i
    return math.exp(p[P_COMM + i] * (1.0 - frac) + p[P_COMM + i + 1] * frac)


@numba.njit(cache=True)
def _gemm_s(p, m, k, n):
    flops_s = 2.0 * m * k * n / (p[P_PEAK] * p[P_EFF_C])
    bytes_s = BYTES * (k * n + m * k + m * n) / (p[P_BW] * p[P_EFF_M])
    return np.maximum(flops_s, bytes_s) + p[P_LAUNCH]


@numba.njit(cache=True)
def _elementwise_s(p, nbytes):
    return nbytes / (p[P_BW] * p[P_EFF_M]) + p[P_LAUNCH]


@numba.njit(cache=True)
def layer_linear_s(p, m):
    """One layer's linear and elementwise operators for ``m`` tokens (scalar or array)."""
    d, tp, hd = p[P_HIDDEN], p[P_TP], p[P_HEAD_DIM]
    q_dim, kv_dim = p[P_HEADS] * hd / tp, p[P_KV_HEADS] * hd / tp
    ffn = p[P_FFN] / tp
    up_width = ffn * (1.0 + p[P_GATED])
    norm = _elementwise_s(p, 2.0 * BYTES * m * d)
    return (
        2.0 * norm
        + _gemm_s(p, m, d, q_dim + 2.0 * kv_dim)
        + _elementwise_s(p, 2.0 * BYTES * m * (q_dim + kv_dim))  # RoPE on Q and K
        + _gemm_s(p, m, q_dim, d)
        + _gemm_s(p, m, d, up_width)
        + _elementwise_s(p, BYTES * m * (up_width + ffn))  # activation (x gate)
        + _gemm_s(p, m, ffn, d)
        + _elementwise_s(p, 3.0 * BYTES * m * d)  # residual add
    )


@numba.njit(cache=True)
def kv_read_s_per_token(p):
    """Decode step time added per token of context held by the batch (KV read, all layers)."""
    per_layer = 2.0 * p[P_KV_HEADS] * p[P_HEAD_DIM] * BYTES / p[P_TP]
    return p[P_LAYERS] * per_layer / (p[P_BW] * p[P_EFF_M])


@numba.njit(cache=True)
def step_time_s(p, m_tokens, m_out, prefill_attn_pairs, decode_ctx_tokens):
    """One engine step.

    m_tokens: tokens through the layers; m_out: tokens that get logits (decodes + finished
    prefills); prefill_attn_pairs: sum over prefill chunks of c * (c0 + (c + 1) / 2), the
    query-key pairs of causal attention for a chunk of c tokens after c0 cached ones;
    decode_ctx_tokens: total context of the decoding sequences.
    """
    tp = p[P_TP]
    layer = layer_linear_s(p, m_tokens)
    attn_flops = 4.0 * p[P_HEADS] / tp * p[P_HEAD_DIM] * prefill_attn_pairs
    layer += attn_flops / (p[P_PEAK] * p[P_ATTN_EFF])
    if tp > 1.0:
        layer += 2.0 * allreduce_s(p, BYTES * m_tokens * p[P_HIDDEN])
    total = p[P_LAYERS] * layer + kv_read_s_per_token(p) * decode_ctx_tokens
    if m_out > 0:
        total += _gemm_s(p, m_out, p[P_HIDDEN], p[P_VOCAB] / tp)
    return total + p[P_STEP]


def prefill_time_s(replica: ReplicaSpec, prompt_tokens: int) -> float:
    """Time of a prefill step holding one prompt alone (the TTFT of an unloaded replica)."""
    c = float(prompt_tokens)
    return float(step_time_s(replica_params(replica), c, 1.0, c * (c + 1.0) / 2.0, 0.0))


def decode_time_s(replica: ReplicaSpec, batch: int, context_tokens: float) -> float:
    """Time of a decode step of ``batch`` sequences holding ``context_tokens`` in total."""
    b = float(batch)
    return float(step_time_s(replica_params(replica), b, b, 0.0, float(context_tokens)))
