"""Analytic capacity of one replica: the request rate it sustains with a full batch.

With B sequences decoding and prefill steps interleaved (vLLM prioritises prefill), a window of W
seconds serving rate lambda spends lambda W t_prefill on prefill steps and the rest on decode steps
of B sequences, which must produce lambda W (o - 1) tokens:
    lambda = B / ((o - 1) t_decode(B) + B t_prefill)
t_decode is taken at the mean context during decode (prompt + half the output); B is capped by the
engine's sequence limit and by the KV cache, which the simulation reserves per request for its
prompt and output.
"""

from __future__ import annotations

from slit.serving.catalog import ReplicaSpec
from slit.serving.iteration import replica_params, step_time_s

# vLLM defaults: at most 256 running sequences; prefill steps up to 8192 tokens.
DEFAULT_MAX_NUM_SEQS = 256
DEFAULT_MAX_BATCH_TOKENS = 8192


def max_batch(replica: ReplicaSpec, prompt_tokens: float, output_tokens: float,
              max_num_seqs: int = DEFAULT_MAX_NUM_SEQS) -> int:
    """Sequences that can decode together, bounded by the KV cache and the engine limit."""
    per_request = max(1.0, prompt_tokens + output_tokens)
    return max(1, min(max_num_seqs, int(replica.kv_capacity_tokens // per_request)))


def max_throughput_rps(replica: ReplicaSpec, mean_prompt_tokens: float, mean_output_tokens: float,
                       max_num_seqs: int = DEFAULT_MAX_NUM_SEQS,
                       max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS) -> float:
    """Sustainable requests per second of one replica for the given mean token sizes."""
    p_tok, o_tok = max(1.0, float(mean_prompt_tokens)), max(1.0, float(mean_output_tokens))
    params = replica_params(replica)
    per_step = max(1.0, min(float(max_num_seqs), float(max_batch_tokens // p_tok)))
    prefill_s = step_time_s(params, per_step * p_tok, per_step,
                            per_step * p_tok * (p_tok + 1.0) / 2.0, 0.0) / per_step
    batch = float(max_batch(replica, p_tok, o_tok, max_num_seqs))
    decode_s = step_time_s(params, batch, batch, 0.0, batch * (p_tok + o_tok / 2.0))
    return batch / ((o_tok - 1.0) * decode_s + batch * prefill_s)
