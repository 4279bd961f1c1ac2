"""Catalogs, step-time model, power, capacity and calibration of the serving model."""

from __future__ import annotations

import pytest

from slit.errors import SlitInputError
from slit.serving.calibrate import calibrate
from slit.serving.capacity import max_throughput_rps
from slit.serving.catalog import GPUS, MODELS, ReplicaSpec, make_replica
from slit.serving.iteration import CALIBRATED, decode_time_s, prefill_time_s
from slit.serving.power import replica_power_w

H100_70B = ReplicaSpec("Llama-3.1-70B", "H100-SXM5-80GB", 4)
A100_8B = ReplicaSpec("Llama-3.1-8B", "A100-SXM4-80GB", 1)


def test_catalogs_hold_the_required_entries() -> None:
    assert {"A100-SXM4-80GB", "H100-SXM5-80GB"} <= set(GPUS)
    assert {"Llama-3.1-8B", "Llama-3.1-70B", "Llama-2-7B", "Llama-2-70B", "Llama-3-8B",
            "Llama-3-70B"} <= set(MODELS)
    assert MODELS["Llama-3.1-70B"].kv_bytes_per_token == 80 * 2 * 8 * 128 * 2


def test_replica_that_does_not_fit_is_refused() -> None:
    with pytest.raises(SlitInputError, match="raise tp"):
        make_replica("Llama-3.1-70B", "A100-SXM4-80GB", 1)
    with pytest.raises(SlitInputError, match="unknown GPU"):
        make_replica("Llama-3.1-8B", "V100", 1)
    with pytest.raises(SlitInputError, match="tensor-parallel"):
        make_replica("Llama-3.1-8B", "H100-SXM5-80GB", 3)
    assert make_replica("Llama-3.1-70B", "H100-SXM5-80GB", 4).kv_capacity_tokens > 100_000


def test_step_times_follow_the_roofline() -> None:
    assert prefill_time_s(A100_8B, 2000) > 1.8 * prefill_time_s(A100_8B, 1000)  # compute-bound
    one, many = decode_time_s(A100_8B, 1, 1000), decode_time_s(A100_8B, 32, 32 * 1000)
    assert many < 3 * one  # memory-bound: batching is nearly free
    assert decode_time_s(A100_8B, 32, 32 * 4000) > many  # KV reads grow with context
    h100_8b = ReplicaSpec("Llama-3.1-8B", "H100-SXM5-80GB", 1)
    assert prefill_time_s(h100_8b, 1000) < prefill_time_s(A100_8B, 1000)
    # 8B decode on one H100 is about 7 ms a token in vLLM.
    assert 0.004 < decode_time_s(h100_8b, 1, 500) < 0.012


def test_power_levels_are_ordered() -> None:
    off, idle, decode, prefill = (replica_power_w(H100_70B, phase)
                                  for phase in ("off", "idle", "decode", "prefill"))
    assert off <= idle < decode < prefill
    assert prefill <= 4 * (GPUS["H100-SXM5-80GB"].tdp_w + GPUS["H100-SXM5-80GB"].host_w_per_gpu)


def test_capacity_is_sensible() -> None:
    conv = max_throughput_rps(H100_70B, 1155, 211)
    a100 = max_throughput_rps(ReplicaSpec("Llama-3.1-70B", "A100-SXM4-80GB", 4), 1155, 211)
    assert 1.0 < a100 < conv < 50.0
    assert max_throughput_rps(A100_8B, 1155, 211) > a100


def test_calibration_reproduces_shipped_factors(data_dir) -> None:
    reports, median = calibrate(data_dir)
    print(f"median_rel_error={median:.4f}")
    assert median <= 0.15
    pooled = {r.gpu: r for r in reports if r.model == "all"}
    for gpu, shipped in CALIBRATED.items():
        fitted = pooled[gpu].efficiency
        assert fitted.compute == pytest.approx(shipped.compute, rel=0.02)
        assert fitted.memory == pytest.approx(shipped.memory, rel=0.02)
        assert fitted.launch_s == pytest.approx(shipped.launch_s, rel=0.05)
        assert pooled[gpu].p90_rel_error < 0.25


def test_calibrate_command_ends_with_the_figure(data_dir) -> None:
    from typer.testing import CliRunner

    from slit.cli.app import app

    result = CliRunner().invoke(app, ["calibrate", "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("median_rel_error=") and float(last.split("=")[1]) <= 0.15
