"""Interleaved 1F1B, context parallel, dropout, fp8 and Megatron's fp32-gradient regime, the global batch."""

from __future__ import annotations

import pytest

from estimator.errors import ConfigError
from estimator.hardware import get_gpu
from estimator.memory import chunks_in_flight, training_memory
from estimator.memory_terms import activation_bytes_per_layer, logits_bytes, model_state_bytes, stage_params
from estimator.model_config import ModelConfig
from estimator.precision import check_precision_on, get_precision
from estimator.presets import get_model
from estimator.setup import TrainSetup, grad_accum_for

# Korthikanti et al. 2022, Table 3 "22B": a = 64, h = 6144, L = 48, s = 2048, micro-batch 4.
GPT22B = ModelConfig(name="gpt-22b", vocab_size=51200, context_length=2048, d_model=6144, n_layers=48, n_heads=64)
S, B, H, A = 2048, 4, 6144, 64
SBH = S * B * H
LLAMA = get_model("llama-2-7b")


def _per_layer(setup: TrainSetup, cfg: ModelConfig = GPT22B) -> int:
    return training_memory(cfg, setup).breakdown["activations/per_layer"]


@pytest.mark.parametrize("dropout, expected", [
    (0.1, 34 * SBH + 5 * A * S * S * B),  # Korthikanti eq. (1): masks and dropout outputs
    (0.0, 32 * SBH + 2 * A * S * S * B),  # the profiled GPT: no dropout
])
def test_dropout_switch_reaches_the_papers_per_layer_total(dropout, expected):
    """Uniform 16-bit activations (pure bf16), explicit attention, no recompute: the paper's sbh(34 + 5as/h)."""
    setup = TrainSetup(batch_size=B, seq_len=S, precision="bf16", flash_attention=False, dropout=dropout)
    assert _per_layer(setup) == expected


def test_interleaved_first_stage_holds_the_korthikanti_factor():
    """L(1 + (p-1)/(pv)) layers of activations (Korthikanti 2022 §4.2.3): 32 (1 + 3/8) = 44 for p = 4, v = 2."""
    plain = TrainSetup(seq_len=1024, pp=4, grad_accum=8)
    inter = TrainSetup(seq_len=1024, pp=4, vpp=2, grad_accum=8)
    per_layer = _per_layer(plain, LLAMA)
    assert training_memory(LLAMA, plain).breakdown["activations/layers"] == per_layer * 32
    mem = training_memory(LLAMA, inter, batch_size=1)
    assert mem.breakdown["activations/layers"] == per_layer * 44
    assert mem.breakdown["model_chunks_in_flight"] == 11  # 2(p-1) + (v-1)p warm-up + 1 = pv + p - 1


def test_chunks_in_flight_capped_by_the_micro_batches_of_a_step():
    assert chunks_in_flight(TrainSetup(pp=4, vpp=2, grad_accum=1)) == 2  # one micro-batch: its 2 chunks
    assert chunks_in_flight(TrainSetup(pp=4, grad_accum=2)) == 2
    assert chunks_in_flight(TrainSetup(pp=4, vpp=2, grad_accum=8), first=False) == 5  # (v-1)p + 1


def test_context_parallel_keeps_s_over_cp_tokens_and_shards_zero_over_dp_cp():
    setup = TrainSetup(seq_len=4096, cp=2, dp=2, zero=1)
    mem = training_memory(LLAMA, setup)
    assert mem.breakdown["activations/per_layer"] == activation_bytes_per_layer(LLAMA, 1, 2048, "bf16-mixed")["total"]
    assert mem.logits == logits_bytes(LLAMA, 1, 2048, "bf16-mixed")
    n = stage_params(LLAMA)["first"].total
    assert mem.optimizer == model_state_bytes(n, "bf16-mixed", 4, 1)["optimizer"] == -(-n * 8 // 4)


@pytest.mark.parametrize("setup, message", [
    (TrainSetup(vpp=2), "needs pipeline parallel"),
    (TrainSetup(pp=4, vpp=3), r"vpp \(3\) must divide the layers per pipeline stage: 32 layers / pp 4 = 8 per"),
    (TrainSetup(pp=3, vpp=2), r"32 layers / pp 3 = 10.6667 per stage do not split into pp x vpp = 6"),
    (TrainSetup(cp=3, seq_len=4096), r"divisible by 2 x cp = 6 \(load-balanced ring attention\); seq-len 4096"),
    (TrainSetup(cp=2, seq_len=4098), "seq-len 4098"),
    (TrainSetup(cp=2, seq_len=4096, flash_attention=False), "needs flash attention"),
])
def test_impossible_interleaving_and_context_parallel_raise(setup, message):
    with pytest.raises(ConfigError, match=message):
        training_memory(LLAMA, setup)


def test_fp32_gradient_regime_is_megatrons_18_bytes_per_parameter():
    """Megatron-core distributed optimizer guide: "float16 param, fp32 grads: 18" (6 + 12/d distributed)."""
    p = get_precision("bf16-fp32-grads")
    n, d = 1200, 4
    assert sum(model_state_bytes(n, p).values()) == 18 * n
    assert sum(model_state_bytes(n, p, dp=d, zero=1).values()) == (6 + 12 // d) * n


def test_fp8_keeps_gemm_inputs_in_fp8_and_caches_fp8_weights():
    fp8, ref = get_precision("fp8"), get_precision("bf16-fp32-grads")
    assert fp8.matmul_dtype == "fp8" and sum(model_state_bytes(10, fp8).values()) == 180
    kw = dict(batch_size=B, seq_len=S, flash_attention=True)
    # GEMM inputs 2 -> 1 byte: QKV input sbh, projection input sbh, fc input sbh, GELU output 4sbh
    assert (_per_layer(TrainSetup(precision=ref.name, **kw)) - _per_layer(TrainSetup(precision="fp8", **kw))
            == 7 * SBH)
    mem = training_memory(GPT22B, TrainSetup(precision="fp8", **kw))
    assert mem.weight_casts == 2 * mem.breakdown["params_on_gpu"]  # fp8 weight + its transpose


def test_fp8_needs_a_gpu_with_an_fp8_peak():
    check_precision_on("fp8", get_gpu("h100-sxm"))
    with pytest.raises(ConfigError, match="NVIDIA A100 SXM4 80GB has no fp8 peak"):
        check_precision_on("fp8", get_gpu("a100-sxm-80gb"))
    check_precision_on("bf16-fp32-grads", get_gpu("a100-sxm-80gb"))


def test_global_batch_derives_gradient_accumulation():
    assert grad_accum_for(2, 8, 1024, global_batch=64) == (64, 4)
    # Llama-2's 4M tokens at 4096: 976.56 sequences -> the nearest multiple of 1 x 8
    assert grad_accum_for(1, 8, 4096, global_batch_tokens=4_000_000) == (976, 122)
    assert grad_accum_for(1, 8, 4096, global_batch_tokens=2**22) == (1024, 128)


@pytest.mark.parametrize("kw, message", [
    (dict(global_batch=12), "not a multiple of micro-batch x dp = 1 x 8 = 8"),
    (dict(global_batch=4), "smaller than dp"),
    (dict(global_batch_tokens=1000), "fewer than dp"),
    (dict(global_batch=8, global_batch_tokens=8192), "not both"),
])
def test_global_batch_that_does_not_divide_raises(kw, message):
    with pytest.raises(ConfigError, match=message):
        grad_accum_for(1, 8, 1024, **kw)
