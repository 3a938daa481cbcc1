"""FLOP counts: the nanoGPT notebook's exact figures and the cross-check formulas."""

import pytest

from estimator.flops import forward_breakdown, megatron_flops, step_flops
from estimator.presets import get_model


def test_nanogpt_forward_matches_notebook():
    b = forward_breakdown(get_model("nanogpt-124m"), 1024)
    assert b["attention/kqv"] == 3_623_878_656
    assert b["attention/scores"] == 1_610_612_736
    assert b["attention/reduce"] == 1_610_612_736
    assert b["attention/proj"] == 1_207_959_552
    assert b["mlp/ffw1"] == 4_831_838_208
    assert b["block"] == 17_716_740_096
    assert b["dense"] == 79_047_426_048
    assert b["forward_total"] == 291_648_307_200


def test_step_totals_and_palm():
    f = step_flops(get_model("nanogpt-124m"), 1, 1024)
    assert f.forward == 291_648_307_200
    assert f.backward == 583_296_614_400
    assert f.total == 874_944_921_600
    assert f.palm_total == 875_062_886_400


def test_batch_scales_linearly():
    one = step_flops(get_model("gpt2"), 1, 512)
    eight = step_flops(get_model("gpt2"), 8, 512)
    assert eight.total == 8 * one.total
    assert eight.palm_total == 8 * one.palm_total


@pytest.mark.parametrize("name", ["gpt2", "gpt2-xl", "llama-2-7b", "llama-3-8b"])
def test_megatron_formula_equals_ours_for_dense_models(name):
    """Megatron's closed form counts the same matmuls with full attention: equal exactly."""
    cfg = get_model(name)
    assert megatron_flops(cfg, 2, 1024) == step_flops(cfg, 2, 1024).total


def test_moe_counts_top_k_experts_and_router():
    cfg = get_model("mixtral-8x7b")
    f = step_flops(cfg, 1, 128)
    router = 3 * cfg.n_layers * 2 * 128 * cfg.d_model * cfg.n_experts
    assert f.total - router == megatron_flops(cfg, 1, 128)


def test_recompute_adds_hardware_flops_only():
    cfg = get_model("gpt2")
    none = step_flops(cfg, 1, 1024)
    full = step_flops(cfg, 1, 1024, recompute="full")
    selective = step_flops(cfg, 1, 1024, recompute="selective")
    assert full.total == none.total
    assert full.hardware_total == none.total + none.breakdown["transformer"]
    assert selective.recompute == 12 * (2 * 1024 * 1024 * 768 * 2)


def test_causal_convention_halves_attention_core():
    cfg = get_model("nanogpt-124m")
    f = step_flops(cfg, 1, 1024)
    core = 12 * (1_610_612_736 * 2)
    assert f.total - f.causal_total == 3 * core // 2
