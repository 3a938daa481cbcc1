"""The exact relations between the analytic FLOPs, FlopCounterMode and thop."""

from dataclasses import replace

import pytest
import torch

from estimator.flops import step_flops
from estimator.presets import get_model
from profiler.flop_count import attention_core_forward, count_flops, counter_step_flops, thop_layernorm_forward
from profiler.model import build_model


@pytest.mark.parametrize("name,batch,seq", [("gpt-tiny", 2, 128), ("gpt2", 4, 1024), ("nanogpt-124m", 1, 512)])
def test_flop_counter_on_meta_equals_the_analytic_total_exactly(name, batch, seq):
    cfg = get_model(name)
    counts = count_flops(cfg, batch, seq, use_thop=False)
    assert counts.counter == step_flops(cfg, batch, seq).total
    # every forward matmul appears once forward and twice backward (grad-input + grad-weight)
    assert sum(counts.counter_by_op.values()) == counts.counter


@pytest.mark.parametrize("name,batch,seq", [("gpt-tiny", 2, 128), ("gpt2", 2, 1024), ("nanogpt-124m", 3, 256)])
def test_thop_is_analytic_minus_attention_core_plus_layernorm_work(name, batch, seq):
    cfg = get_model(name)
    counts = count_flops(cfg, batch, seq, use_counter=False)
    core = batch * cfg.n_layers * (2 * seq * seq * cfg.q_width + 2 * cfg.n_heads * seq * seq * cfg.dh)
    assert counts.attention_core_forward == core
    layernorm = 8 * batch * seq * cfg.d_model * (2 * cfg.n_layers + 1)  # 4 "MACs"/element, 2L+1 affine norms
    assert counts.thop_forward == counts.analytic_forward - core + layernorm
    assert counts.thop == 3 * counts.thop_forward


def test_thop_counts_no_norm_work_for_rmsnorm_models():
    cfg = replace(get_model("gpt-tiny"), name="tiny-llama", mlp="swiglu", norm="rmsnorm", norm_bias=False,
                  position="rope", n_kv_heads=2, tied_embeddings=False)
    counts = count_flops(cfg, 2, 64)
    assert thop_layernorm_forward(cfg, 2, 64) == 0
    assert counts.thop_forward == counts.analytic_forward - attention_core_forward(cfg, 2, 64)
    assert counts.counter == counts.analytic


def test_flop_counter_on_cpu_misses_sdpa_entirely():
    """On the CPU, SDPA dispatches to a kernel FlopCounterMode has no formula for: it counts 0."""
    cfg = get_model("gpt-tiny")
    torch.manual_seed(0)
    idx = torch.randint(0, cfg.vocab_size, (2, 64))
    analytic = step_flops(cfg, 2, 64).total
    core_step = 3 * attention_core_forward(cfg, 2, 64)
    sdpa, by_op = counter_step_flops(build_model(cfg, "cpu", attention="sdpa"), idx)
    explicit, _ = counter_step_flops(build_model(cfg, "cpu", attention="explicit"), idx)
    assert "bmm" not in by_op
    assert sdpa == analytic - core_step
    assert explicit == analytic


@pytest.mark.parametrize("name,expected", [("gpt2", "5.1e+11"), ("gpt2-medium", "1.4e+12"),
                                           ("gpt2-large", "3.2e+12"), ("gpt2-xl", "6.4e+12")])
def test_thop_reproduces_the_seed_notebook_forward_figures(name, expected):
    """flops-analysis notebook: LLMs-from-scratch GPTModel (untied head, qkv bias), batch 2 x 1024."""
    cfg = replace(get_model(name), qkv_bias=True, tied_embeddings=False)
    counts = count_flops(cfg, 2, 1024, use_counter=False)
    assert f"{counts.thop_forward:.1e}" == expected


def test_thop_leaves_the_counted_model_untouched():
    model = build_model(get_model("gpt-tiny"), "meta")
    from profiler.flop_count import thop_forward_flops

    thop_forward_flops(model, torch.zeros((1, 8), dtype=torch.long, device="meta"))
    assert not any(name.endswith(("total_ops", "total_params")) for name, _ in model.named_buffers())
    assert all(not m._forward_hooks for m in model.modules())
