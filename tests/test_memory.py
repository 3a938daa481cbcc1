"""Training memory: ZeRO model states, Korthikanti activations and variants, sharding, max batch."""

from __future__ import annotations

from dataclasses import replace

import pytest

from estimator.errors import ConfigError
from estimator.hardware import get_gpu
from estimator.max_batch import default_memory_limit, largest_fitting, max_batch_size
from estimator.memory import training_memory
from estimator.memory_terms import (
    activation_bytes_per_layer,
    head_activation_bytes,
    logits_bytes,
    model_state_bytes,
    optimizer_bytes_per_param,
    stage_params,
)
from estimator.model_config import ModelConfig
from estimator.params import count_params
from estimator.precision import get_precision
from estimator.presets import get_model
from estimator.setup import TrainSetup

# Korthikanti et al. 2022, Table 3 "22B": a = 64, h = 6144, L = 48, s = 2048, micro-batch 4, t = 8.
GPT22B = ModelConfig(name="gpt-22b", vocab_size=51200, context_length=2048, d_model=6144, n_layers=48, n_heads=64)
S, B, H, A, T = 2048, 4, 6144, 64, 8
SBH = S * B * H
SQUARED = A * S * S * B  # a·s²·b


def _layer(**kw) -> int:
    kw.setdefault("flash_attention", False)
    return activation_bytes_per_layer(GPT22B, B, S, "bf16-master", **kw)["total"]


def test_zero_paper_figure_1():
    """Ψ = 7.5B, N_d = 64, K = 12: 120 GB, 31.4 GB, 16.6 GB, 1.9 GB of model states."""
    psi = 7_500_000_000
    totals = [sum(model_state_bytes(psi, "bf16-master", dp=64, zero=z).values()) for z in range(4)]
    assert totals == [120_000_000_000, 31_406_250_000, 16_640_625_000, 1_875_000_000]
    assert [round(t / 1e9, 1) for t in totals] == [120.0, 31.4, 16.6, 1.9]


def test_bytes_per_param_by_regime():
    assert sum(model_state_bytes(1, "fp32").values()) == 16
    assert sum(model_state_bytes(1, "bf16-mixed").values()) == 16
    assert sum(model_state_bytes(1, "bf16").values()) == 8
    assert optimizer_bytes_per_param(get_precision("fp32"), "sgd") == 4  # momentum
    assert optimizer_bytes_per_param(get_precision("bf16-master"), "sgd") == 8  # fp32 master + momentum
    assert optimizer_bytes_per_param(get_precision("bf16"), "sgd") == 2


@pytest.mark.parametrize("kw,expected", [
    ({}, 34 * SBH + 5 * SQUARED),  # no parallelism
    ({"tp": T}, 10 * SBH + 24 * SBH // T + 5 * SQUARED // T),  # tensor parallel
    ({"tp": T, "sp": True}, 34 * SBH // T + 5 * SQUARED // T),  # + sequence parallel
    ({"tp": T, "recompute": "selective"}, 10 * SBH + 24 * SBH // T),
    ({"tp": T, "sp": True, "recompute": "selective"}, 34 * SBH // T),
    ({"recompute": "full"}, 2 * SBH),
    ({"tp": T, "sp": True, "recompute": "full"}, 2 * SBH // T),
])
def test_korthikanti_table_2_with_dropout(kw, expected):
    assert _layer(dropout=True, **kw) == expected


def test_dropout_free_gpt_drops_masks():
    """Our GPT has no dropout: two sbh masks and 3·a·s²·b (mask + dropped probs) disappear."""
    assert _layer() == 32 * SBH + 2 * SQUARED
    assert _layer(flash_attention=True) == 32 * SBH + 4 * A * S * B  # probs -> fp32 logsumexp


def test_autocast_keeps_fp32_norm_inputs_and_probs():
    layer = activation_bytes_per_layer(GPT22B, B, S, "bf16-mixed", flash_attention=False)
    assert layer["attention/norm_input"] == layer["mlp/norm_input"] == 4 * SBH
    assert layer["attention/core"] == (4 + 2) * SQUARED  # fp32 softmax output + bf16 copy for att @ v
    assert layer["total"] == 36 * SBH + 6 * SQUARED
    fp32 = activation_bytes_per_layer(GPT22B, B, S, "fp32", flash_attention=True)["total"]
    assert fp32 == 64 * SBH + 4 * A * S * B


def test_llama_gqa_swiglu_keeps_rotated_q_and_expanded_k_v():
    """formulas.md §3.2's derived form, s·b·h·(12 + 4·g·d_h/h) + 8·s·b·f + 4·a·s·b (flash, 16-bit), keeps
    K and V at the KV heads' size, as a kernel with native GQA does. The profiled GPT (as HF's LLaMA and
    torchtitan) keeps what SDPA is given: the rotated Q and K, V expanded to the query heads by
    ``repeat_interleave`` (the projection output itself freed) — 3 x 2·s·b·h bytes where the derived form
    has 2·s·b·h + 4·s·b·g·d_h."""
    m = get_model("llama-3-8b")
    b, s = 2, 4096
    sbh, g_dh, f = s * b * m.d_model, m.kv_heads * m.dh, m.ffn
    derived = 12 * sbh + 4 * s * b * g_dh + 8 * s * b * f + 4 * m.n_heads * s * b
    ours = activation_bytes_per_layer(m, b, s, "bf16-master")["total"]
    assert ours == derived - (2 * sbh + 4 * s * b * g_dh) + 3 * 2 * sbh


def test_gqa_tensor_parallel_keeps_one_kv_head_per_gpu():
    """llama-2-70b's 8 KV heads under TP 8 and 16: one KV head per GPU either way (replicated at 16).
    Without RoPE the fused projection (q heads + 2 KV heads) stays alive beside the expanded K, V; with
    it only the rotated Q and the expanded K, V (each the GPU's query heads)."""
    rope = get_model("llama-2-70b")
    learned = replace(rope, position="learned")
    per_head = 2 * 1024 * rope.dh  # bytes of one head's q (or k or v) at batch 1
    for t, heads in ((8, 64 // 8), (16, 64 // 16)):
        assert activation_bytes_per_layer(learned, 1, 1024, "bf16", tp=t)["attention/qkv"] == \
            per_head * (heads + 2 * 1 + 2 * heads)
        assert activation_bytes_per_layer(rope, 1, 1024, "bf16", tp=t)["attention/qkv"] == per_head * 3 * heads


def test_mha_with_rope_keeps_the_projection_and_the_rotated_q_k():
    """q, k, v are views of one fused projection: v keeps it alive, and RoPE's Q and K are new tensors."""
    m = replace(get_model("gpt2"), position="rope")
    sbh = 1024 * m.d_model
    assert activation_bytes_per_layer(m, 1, 1024, "fp32")["attention/qkv"] == 4 * 5 * sbh
    assert activation_bytes_per_layer(get_model("gpt2"), 1, 1024, "fp32")["attention/qkv"] == 4 * 3 * sbh


def test_rmsnorm_on_a_cpu_keeps_its_normalised_copy():
    """torch's RMSNorm decomposes on a CPU (autograd keeps x·rstd beside x); a CUDA kernel keeps x alone."""
    m = get_model("llama-tiny")
    sbh = 256 * m.d_model
    cpu = activation_bytes_per_layer(m, 1, 256, "fp32", device_kind="cpu")
    gpu = activation_bytes_per_layer(m, 1, 256, "fp32", device_kind="gpu")
    assert cpu["attention/norm_input"] == cpu["mlp/norm_input"] == 2 * 4 * sbh
    assert gpu["attention/norm_input"] == gpu["mlp/norm_input"] == 4 * sbh
    assert head_activation_bytes(m, 1, 256, "fp32", device_kind="cpu") - head_activation_bytes(m, 1, 256, "fp32") \
        == 4 * sbh


def test_logits_implementation_bytes():
    m = get_model("gpt2")
    assert logits_bytes(m, 12, 1024, "bf16-mixed") == 10 * 12 * 1024 * 50257
    assert logits_bytes(m, 12, 1024, "fp32") == 12 * 12 * 1024 * 50257
    assert logits_bytes(m, 12, 1024, "bf16-mixed", tp=2) == 5 * 12 * 1024 * 50257


@pytest.mark.parametrize("name", ["gpt2", "nanogpt-124m", "gpt2-from-scratch", "llama-2-7b", "mixtral-8x7b"])
def test_one_gpu_holds_every_parameter(name):
    m = get_model(name)
    assert stage_params(m)["first"].total == count_params(m).total


def test_tensor_and_pipeline_sharding():
    m = get_model("llama-2-7b")
    bd = count_params(m).breakdown
    st = stage_params(m, tp=2, pp=4)
    assert st["first"].layers == st["last"].layers == 8
    norms = bd["attention/ln"] + bd["mlp/ln"]
    assert st["first"].largest_layer == (bd["block"] - norms) // 2 + norms  # norms replicated
    assert st["first"].total == bd["embedding/token"] // 2 + 8 * st["first"].largest_layer
    assert st["last"].total == bd["ln_f"] + bd["dense"] // 2 + 8 * st["last"].largest_layer


def test_pipeline_first_stage_holds_p_microbatches():
    m = get_model("gpt2-xl")
    per_layer = activation_bytes_per_layer(m, 1, 1024, "bf16-mixed")["total"]
    deep = training_memory(m, TrainSetup(batch_size=1, seq_len=1024, pp=4, grad_accum=8))
    assert deep.stage == "first"
    assert deep.breakdown["activations/layers"] == 48 * per_layer  # L/p layers x p micro-batches
    short = training_memory(m, TrainSetup(batch_size=1, seq_len=1024, pp=4, grad_accum=2))
    assert short.breakdown["activations/layers"] == 12 * per_layer * 2


def test_zero3_and_autocast_terms():
    m = get_model("llama-2-7b")
    plain = training_memory(m, TrainSetup(batch_size=1, seq_len=1024))
    assert plain.weight_casts == 2 * count_params(m).total  # autocast's bf16 copies
    sharded = training_memory(m, TrainSetup(batch_size=1, seq_len=1024, dp=8, zero=3))
    assert sharded.weight_casts == 0
    assert sharded.zero3_buffers == 2 * 2 * stage_params(m)["first"].largest_layer
    assert sharded.weights == -(-4 * count_params(m).total // 8)


def test_full_recompute_adds_one_layer_buffer():
    m = get_model("gpt2")
    setup = TrainSetup(batch_size=4, seq_len=1024, recompute="full")
    mem = training_memory(m, setup)
    full_layer = activation_bytes_per_layer(m, 4, 1024, "bf16-mixed")["total"]
    kept = 4 * 4 * 1024 * 768  # fp32 residual stream at each layer input
    assert mem.breakdown["activations/per_layer"] == kept
    assert mem.breakdown["activations/recompute_buffer"] == full_layer - kept


def test_total_is_monotonic_and_max_batch_exact():
    m, gpu = get_model("gpt2"), get_gpu("a100-sxm-40gb")
    setup = TrainSetup(batch_size=1, seq_len=1024)
    best = max_batch_size(m, gpu, setup)
    limit = default_memory_limit(gpu)
    # a GPU: fused AdamW, as the profiler and predict() run it there
    assert training_memory(m, setup, batch_size=best, optimizer_impl="fused").total <= limit
    assert training_memory(m, setup, batch_size=best + 1, optimizer_impl="fused").total > limit
    totals = [training_memory(m, setup, batch_size=b).total for b in (1, 2, 3, 8, 9)]
    assert totals == sorted(totals)
    assert max_batch_size(m, gpu, setup, memory_limit_bytes=20 * 2**30) < best


def test_max_batch_on_a_cpu_uses_the_cpu_memory_model():
    """CPU autocast keeps eager softmax in bf16 (2 B, not 4 + 2) and the profiler runs foreach AdamW there."""
    from estimator.device_specs import cpu_spec

    cpu = cpu_spec("Test CPU", 2, 2.6e9, ["avx512f", "avx512_bf16"], 16 * 2**30)
    m = get_model("gpt-small")
    setup = TrainSetup(batch_size=1, seq_len=1024, precision="bf16-mixed", flash_attention=False)
    limit = 2 * 2**30

    def fits(kind: str) -> int:
        return largest_fitting(lambda b: training_memory(m, setup, batch_size=b, device_kind=kind,
                                                         optimizer_impl="foreach").total, limit)

    best = max_batch_size(m, cpu, setup, memory_limit_bytes=limit)
    assert best == fits("cpu") > fits("gpu") > 0



def test_max_batch_zero_when_batch_one_does_not_fit():
    assert max_batch_size(get_model("llama-2-70b"), get_gpu("t4"), TrainSetup(batch_size=1)) == 0


def test_largest_fitting_search():
    assert largest_fitting(lambda b: 10 * b, 95) == 9
    assert largest_fitting(lambda b: 10 * b, 9) == 0
    assert largest_fitting(lambda b: 1000 + b, 1000 + 2**20) == 2**20


def test_impossible_layouts_raise():
    m = get_model("gpt2")
    with pytest.raises(ConfigError, match="must divide the attention heads"):
        training_memory(m, TrainSetup(tp=5))
    with pytest.raises(ConfigError, match="cannot exceed the layers"):
        training_memory(m, TrainSetup(pp=13))
    with pytest.raises(ConfigError, match="needs an MoE model"):
        training_memory(m, TrainSetup(ep=2, dp=2))
    with pytest.raises(ConfigError, match="needs tensor parallel"):
        training_memory(m, TrainSetup(sp=True))
    with pytest.raises(ConfigError, match="must divide dp"):
        training_memory(get_model("mixtral-8x7b"), TrainSetup(ep=4, dp=2))


def test_expert_parallel_shards_experts():
    m = get_model("mixtral-8x7b")
    one = stage_params(m)["first"]
    four = stage_params(m, ep=4)["first"]
    assert four.expert * 4 == one.expert
    assert four.dense == one.dense


def test_nanogpt_defaults_sanity():
    """formulas.md §5.3: 16 B/param ≈ 2.0 GB, 34·sbh x 12 ≈ 3.85 GB, logits ≈ 6.2 GB at b = 12."""
    m = get_model("nanogpt-124m").with_vocab_padded(64)
    mem = training_memory(m, TrainSetup(batch_size=12, seq_len=1024))
    assert mem.weights + mem.gradients + mem.optimizer == 16 * 124_373_760  # bias=False, V padded to 50304
    assert mem.logits == 10 * 12 * 1024 * 50304  # 6.18 GB
    assert 3.85e9 < mem.activations < 5.5e9  # autocast keeps fp32 norm inputs: 36·sbh, not 34
    assert 12e9 < mem.total < 15e9


def test_batch_override_does_not_change_setup():
    m = get_model("gpt-tiny")
    setup = TrainSetup(batch_size=3, seq_len=64)
    assert training_memory(m, setup).total == training_memory(m, replace(setup, batch_size=1), batch_size=3).total


@pytest.mark.parametrize("precision", ["fp32", "bf16-mixed"])
def test_matches_tensors_the_profiled_gpt_saves(precision):
    """Cross-check against the real block (CPU, SDPA): every tensor autograd saves for backward,
    by storage. Equal to our per-layer figure plus the LayerNorm statistics we leave out
    (mean and rstd, 8 B per token per norm); under autocast the bf16 weight copies are our
    ``weight_casts`` term (Linear weights x 2 B)."""
    torch = pytest.importorskip("torch")
    gpt = pytest.importorskip("profiler.model")
    cfg = get_model("gpt-tiny")
    b, s = 2, 64
    model = gpt.GPT(cfg)
    block = model.blocks[0]
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, tuple[int, tuple]] = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            saved[storage.data_ptr()] = (storage.nbytes(), tuple(t.shape))
        return t

    x = torch.randn(b, s, cfg.d_model, requires_grad=True)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16-mixed")
    with autocast, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        block(x, None)
    linear_weights = {tuple(m.weight.T.shape) for m in block.modules() if isinstance(m, torch.nn.Linear)}
    casts = sum(n for n, shape in saved.values() if shape in linear_weights)
    activations = sum(n for n, _ in saved.values()) - casts
    norm_stats = 2 * 2 * b * s * 4
    assert activations == activation_bytes_per_layer(cfg, b, s, precision)["total"] + norm_stats
    linear_params = sum(m.weight.numel() for m in block.modules() if isinstance(m, torch.nn.Linear))
    assert casts == (2 * linear_params if precision == "bf16-mixed" else 0)


# ----------------------------------------------------------------- phase-aware peak

from estimator.memory_phases import logit_phase_bytes, optimizer_transient_bytes  # noqa: E402


def test_logit_buffers_by_phase():
    """Forward end: head output (+ autocast's fp32 copy) + log-softmax; loss backward: log-softmax + its
    incoming and outgoing gradients, in the loss dtype (fp32 unless everything is bf16)."""
    assert logit_phase_bytes(get_precision("fp32")) == {"forward_end": 8, "loss_backward": 12}
    assert logit_phase_bytes(get_precision("bf16-mixed")) == {"forward_end": 10, "loss_backward": 12}
    assert logit_phase_bytes(get_precision("bf16")) == {"forward_end": 4, "loss_backward": 6}


def test_cpu_autocast_keeps_softmax_in_bf16():
    gpu = activation_bytes_per_layer(GPT22B, B, S, "bf16-mixed", flash_attention=False)
    cpu = activation_bytes_per_layer(GPT22B, B, S, "bf16-mixed", flash_attention=False, device_kind="cpu")
    assert gpu["attention/core"] == 6 * SQUARED and cpu["attention/core"] == 2 * SQUARED
    assert gpu["total"] - cpu["total"] == 4 * SQUARED


def test_phase_peak_below_the_old_sum_for_gpt_small():
    """gpt-small, batch 2 x 256, fp32: the measured CPU peak is at the loss backward, before any gradient."""
    mem = training_memory(get_model("gpt-small"), TrainSetup(batch_size=2, seq_len=256, precision="fp32"),
                          device_kind="cpu")
    assert mem.peak_phase == "loss_backward"
    at_peak = mem.phase_terms["loss_backward"]
    assert at_peak["gradients"] == 0 and at_peak["logit_buffers"] == 12 * 2 * 256 * 8192
    # fp32: the old sum's logits term is the same 12 B per logit; the phase drops the gradients (-13.6 %)
    assert mem.total == sum(at_peak.values()) == mem.sum_of_terms - mem.gradients
    assert mem.total < mem.sum_of_terms
    old = training_memory(get_model("gpt-small"), TrainSetup(batch_size=2, seq_len=256, precision="fp32"),
                          peak="sum")
    assert old.total == old.sum_of_terms == mem.sum_of_terms


def test_optimizer_step_is_the_peak_at_tiny_batches():
    """foreach AdamW's sqrt(v) scratch (4 B/param) beside weights, gradients and states: 20 B/param."""
    m = get_model("gpt-small")
    n = count_params(m).total
    mem = training_memory(m, TrainSetup(batch_size=1, seq_len=16, precision="fp32"))
    assert mem.peak_phase == "optimizer_step" and mem.total == 20 * n
    fused = training_memory(m, TrainSetup(batch_size=1, seq_len=16, precision="fp32"), optimizer_impl="fused")
    assert fused.phases["optimizer_step"] == 16 * n and fused.peak_phase == "backward_end"
    # backward end: all gradients + the tied embedding's dense gradient and the sum it is accumulated into
    assert fused.phase_terms["backward_end"]["transient"] == 2 * 4 * 8192 * 256
    params = stage_params(m)["first"]
    assert optimizer_transient_bytes(m, get_precision("bf16"), params, TrainSetup(precision="bf16"), "foreach") == 2 * n
    sharded = TrainSetup(precision="fp32", dp=4, zero=1)
    assert optimizer_transient_bytes(m, get_precision("fp32"), params, sharded, "foreach") == 4 * -(-n // 4)


def test_gradient_accumulation_keeps_gradients_through_the_forward():
    m = get_model("gpt2")
    one = training_memory(m, TrainSetup(batch_size=4, seq_len=1024))
    accum = training_memory(m, TrainSetup(batch_size=4, seq_len=1024, grad_accum=4))
    assert one.phase_terms["forward_end"]["gradients"] == 0
    assert accum.phase_terms["forward_end"]["gradients"] == accum.gradients
    assert accum.total - one.total == accum.gradients


def test_bad_peak_options_raise():
    m = get_model("gpt-tiny")
    for kw, message in (({"peak": "max"}, "peak must be"), ({"device_kind": "tpu"}, "device_kind must be"),
                        ({"optimizer_impl": "lion"}, "optimizer_impl must be")):
        with pytest.raises(ConfigError, match=message):
            training_memory(m, TrainSetup(), **kw)


@pytest.mark.parametrize("precision,flash", [("fp32", True), ("bf16-mixed", True), ("fp32", False),
                                             ("bf16-mixed", False)])
def test_phase_peak_matches_the_cpu_tracker(precision, flash):
    """The real profiled step under the live-storage tracker (CPU): within 1 % of the phase-aware peak."""
    pytest.importorskip("torch")
    from profiler.memory_meter import LiveStorageTracker, training_state_tensors
    from profiler.step import StepOptions, TrainingStep

    cfg = get_model("gpt-tiny")
    trainer = TrainingStep(cfg, "cpu", StepOptions(precision=precision, flash_attention=flash))
    x, y = trainer.make_batch(4, 64)
    trainer.step(x, y)  # AdamW state exists, as in steady state
    tracker = LiveStorageTracker("cpu")
    tracker.track(training_state_tensors(trainer.raw_model, trainer.optimizer))
    with tracker:
        trainer.step(x, y)
    setup = TrainSetup(batch_size=4, seq_len=64, precision=precision, flash_attention=flash)
    predicted = training_memory(trainer.cfg, setup, device_kind="cpu")
    assert predicted.total == pytest.approx(tracker.peak_bytes, rel=0.01)
