"""GPU and model catalogs, and the replica (one model on a tensor-parallel group of GPUs).

Sources for the GPU figures: NVIDIA A100 datasheet (80GB SXM4: 312 TFLOP/s dense BF16, 2,039 GB/s
HBM2e, 400 W, NVLink 600 GB/s total) and NVIDIA H100 datasheet (SXM5: 989 TFLOP/s dense BF16,
3.35 TB/s HBM3, 700 W, NVLink 900 GB/s total). Idle power and host power are the assumptions
documented in docs/serving.md. Model shapes are from each model's Hugging Face ``config.json``.
"""

from __future__ import annotations

from dataclasses import dataclass

from slit.errors import SlitInputError

GIB = 1024**3


@dataclass(frozen=True, slots=True)
class GpuSpec:
    name: str
    peak_bf16_flops: float  # dense, FLOP/s
    hbm_bandwidth_bytes_per_s: float
    memory_bytes: float
    tdp_w: float
    idle_w: float
    nvlink_bytes_per_s: float  # one direction, per GPU
    gpus_per_server: int
    host_cpu_w: float  # per server, typical while serving
    host_memory_w: float
    host_network_w: float
    host_other_w: float  # fans, storage, NVSwitch, PSU losses

    @property
    def host_w_per_gpu(self) -> float:
        server = self.host_cpu_w + self.host_memory_w + self.host_network_w + self.host_other_w
        return server / self.gpus_per_server


@dataclass(frozen=True, slots=True)
class ModelSpec:
    name: str
    params: float
    n_layers: int
    hidden: int
    n_heads: int
    n_kv_heads: int
    ffn_hidden: int
    vocab: int
    context_tokens: int  # max_position_embeddings of config.json
    bytes_per_weight: float = 2.0  # BF16
    gated_mlp: bool = True

    @property
    def head_dim(self) -> int:
        return self.hidden // self.n_heads

    @property
    def weight_bytes(self) -> float:
        return self.params * self.bytes_per_weight

    @property
    def kv_bytes_per_token(self) -> float:
        """K and V of every layer for one token, BF16 cache."""
        return 2 * self.n_layers * self.n_kv_heads * self.head_dim * 2.0


GPUS: dict[str, GpuSpec] = {
    g.name: g
    for g in (
        GpuSpec("A100-SXM4-80GB", 312e12, 2.039e12, 80 * GIB, 400.0, 55.0, 300e9, 8,
                host_cpu_w=300.0, host_memory_w=150.0, host_network_w=200.0,
                host_other_w=300.0),
        GpuSpec("H100-SXM5-80GB", 989e12, 3.35e12, 80 * GIB, 700.0, 75.0, 450e9, 8,
                host_cpu_w=420.0, host_memory_w=150.0, host_network_w=250.0,
                host_other_w=400.0),
    )
}

MODELS: dict[str, ModelSpec] = {
    m.name: m
    for m in (
        # Context: Llama 3.1 128k (131,072, Meta's model card), Llama 3 8,192, Llama 2 4,096.
        ModelSpec("Llama-3.1-8B", 8.03e9, 32, 4096, 32, 8, 14336, 128256, 131072),
        ModelSpec("Llama-3.1-70B", 70.6e9, 80, 8192, 64, 8, 28672, 128256, 131072),
        ModelSpec("Llama-3-8B", 8.03e9, 32, 4096, 32, 8, 14336, 128256, 8192),
        ModelSpec("Llama-3-70B", 70.6e9, 80, 8192, 64, 8, 28672, 128256, 8192),
        ModelSpec("Llama-2-7B", 6.74e9, 32, 4096, 32, 32, 11008, 32000, 4096),
        ModelSpec("Llama-2-70B", 69.0e9, 80, 8192, 64, 8, 28672, 32000, 4096),
    )
}

# vLLM's default share of GPU memory it may use, and what it keeps for activations per GPU.
GPU_MEMORY_UTILISATION = 0.9
ACTIVATION_RESERVE_BYTES = 2 * GIB
# A replica must hold at least one long request's KV cache to be worth deploying.
MIN_KV_TOKENS = 4096
# vLLM's paged KV cache: 16 tokens per block (default --block-size); the V0 scheduler admits a
# prompt only while 1 % of the blocks stay free (BlockSpaceManager watermark=0.01).
KV_BLOCK_TOKENS = 16
KV_WATERMARK_SHARE = 0.01


@dataclass(frozen=True, slots=True)
class ReplicaSpec:
    """One model served on ``tp`` GPUs of one type (tensor parallel)."""

    model: str
    gpu: str
    tp: int = 1

    def validate(self) -> ReplicaSpec:
        """Return self if the replica can serve, else raise SlitInputError."""
        where = f"replica {self.model} on {self.tp}x {self.gpu}"
        if self.gpu not in GPUS:
            raise SlitInputError(where, f"unknown GPU {self.gpu!r}",
                                 f"use one of {', '.join(GPUS)}")
        if self.model not in MODELS:
            raise SlitInputError(where, f"unknown model {self.model!r}",
                                 f"use one of {', '.join(MODELS)}")
        model = MODELS[self.model]
        if self.tp not in (1, 2, 4, 8):
            raise SlitInputError(where, f"tensor-parallel degree {self.tp} is not supported",
                                 "use tp = 1, 2, 4 or 8")
        if self.kv_capacity_tokens < MIN_KV_TOKENS:
            need = (model.weight_bytes + MIN_KV_TOKENS * model.kv_bytes_per_token) / GIB
            raise SlitInputError(
                where,
                f"weights and a {MIN_KV_TOKENS}-token KV cache need {need:.0f} GiB but "
                f"{self.tp} GPU(s) offer {self.usable_memory_bytes / GIB:.0f} GiB usable",
                "raise tp or use a GPU with more memory",
            )
        return self

    @property
    def gpu_spec(self) -> GpuSpec:
        return GPUS[self.gpu]

    @property
    def model_spec(self) -> ModelSpec:
        return MODELS[self.model]

    @property
    def usable_memory_bytes(self) -> float:
        gpu = self.gpu_spec
        return self.tp * (gpu.memory_bytes * GPU_MEMORY_UTILISATION - ACTIVATION_RESERVE_BYTES)

    @property
    def kv_capacity_tokens(self) -> int:
        model = self.model_spec
        free = self.usable_memory_bytes - model.weight_bytes
        return max(0, int(free // model.kv_bytes_per_token))

    @property
    def kv_blocks(self) -> int:
        return self.kv_capacity_tokens // KV_BLOCK_TOKENS

    @property
    def kv_watermark_blocks(self) -> int:
        return int(KV_WATERMARK_SHARE * self.kv_blocks)

    @property
    def max_model_len(self) -> int:
        """Longest sequence (prompt + output) the replica serves: the model's context, unless the
        KV cache cannot hold it alone (vLLM then refuses to start until --max-model-len is
        lowered to what fits; we take that value). One block per sequence stays free for the
        next decode step (see ``slit.simulate.kernel``)."""
        fits = (self.kv_blocks - self.kv_watermark_blocks - 1) * KV_BLOCK_TOKENS
        return max(0, min(self.model_spec.context_tokens, fits))


def make_replica(model: str, gpu: str, tp: int = 1) -> ReplicaSpec:
    """A validated replica (raises SlitInputError when it cannot serve)."""
    return ReplicaSpec(model, gpu, tp).validate()
