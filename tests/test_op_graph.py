"""The op graph: its FLOPs are the analytic counts, its shapes the profiled GPT's kernels."""

from __future__ import annotations

import pytest

from estimator.flops import step_flops
from estimator.op_graph import CATEGORIES, step_graph, stages
from estimator.params import count_params
from estimator.presets import PRESETS, get_model
from estimator.setup import TrainSetup


@pytest.mark.parametrize("name", list(PRESETS))
@pytest.mark.parametrize("recompute", ["none", "selective", "full"])
def test_flop_sum_equals_the_analytic_count_for_every_preset(name, recompute):
    cfg = PRESETS[name]
    seq = min(128, cfg.context_length)
    for flash in (True, False):
        setup = TrainSetup(batch_size=3, seq_len=seq, recompute=recompute, flash_attention=flash)
        graph = step_graph(cfg, setup)
        expected = step_flops(cfg, 3, seq, recompute)
        assert graph.flops() == expected.total
        assert graph.flops(include_recompute=True) == expected.hardware_total


def test_grad_accumulation_repeats_the_micro_batch():
    cfg = get_model("gpt-mini")
    one = step_graph(cfg, TrainSetup(batch_size=2, seq_len=64))
    four = step_graph(cfg, TrainSetup(batch_size=2, seq_len=64, grad_accum=4))
    assert four.flops() == 4 * one.flops()
    assert len(four.ops()) == 4 * len(one.micro_batch) + len(one.per_step)


def test_every_linear_has_its_forward_and_both_backward_gemms():
    cfg = get_model("gpt-tiny")  # d 64, ffn 256, vocab 512
    b, s = 2, 32
    graph = step_graph(cfg, TrainSetup(batch_size=b, seq_len=s, precision="fp32"))
    gemms = {(op.name, op.phase): op.shape for op in graph.micro_batch if op.kernel == "gemm"}
    t = b * s
    assert gemms[("block0.mlp.fc.fwd", "forward")] == (t, 256, 64)
    assert gemms[("block0.mlp.fc.bwd_input", "backward_input")] == (t, 64, 256)
    assert gemms[("block0.mlp.fc.bwd_weight", "backward_weight")] == (256, 64, t)
    assert gemms[("lm_head.fwd", "forward")] == (t, 512, 64)
    n_linears = cfg.n_layers * 4 + 1
    assert len(gemms) == 3 * n_linears


def test_attention_core_shape_and_kind_follow_the_setup():
    cfg = get_model("gpt-mini")  # 4 heads of 32
    for flash, kind in ((True, "sdpa"), (False, "explicit")):
        graph = step_graph(cfg, TrainSetup(batch_size=3, seq_len=64, flash_attention=flash))
        cores = [op for op in graph.micro_batch if op.category == "attention"]
        assert {op.kernel for op in cores} == {kind}
        assert {op.shape for op in cores} == {(12, 64, 32)}
        assert len(cores) == 2 * cfg.n_layers  # forward and backward per layer


def test_optimizer_visits_every_parameter_tensor_once():
    for name in ("gpt-tiny", "gpt2", "llama-2-7b"):
        cfg = get_model(name)
        graph = step_graph(cfg, TrainSetup(batch_size=1, seq_len=16))
        tensors = [op for op in graph.per_step if op.kernel == "adamw"]
        assert sum(op.shape[0] for op in tensors) == count_params(cfg).total


def test_autocast_adds_casts_and_fp32_has_none():
    cfg = get_model("gpt-tiny")
    mixed = step_graph(cfg, TrainSetup(batch_size=2, seq_len=32, precision="bf16-mixed"))
    fp32 = step_graph(cfg, TrainSetup(batch_size=2, seq_len=32, precision="fp32"))
    assert any(op.kernel == "cast" for op in mixed.micro_batch)
    assert not any(op.kernel == "cast" for op in fp32.micro_batch)
    assert {op.dtype for op in mixed.micro_batch if op.kernel == "gemm"} == {"bf16"}


def test_parallelism_adds_communication_and_divides_the_work():
    cfg = get_model("gpt2")
    single = step_graph(cfg, TrainSetup(batch_size=2, seq_len=128))
    tp = TrainSetup(batch_size=2, seq_len=128, tp=4, dp=2)
    graph = step_graph(cfg, tp)
    reduces = [op for op in graph.micro_batch if op.name.startswith("tp.")]
    assert len(reduces) == 4 * cfg.n_layers
    assert any(op.name == "dp.all_reduce" for op in graph.per_step)
    assert graph.flops() == pytest.approx(single.flops() / 4, rel=1e-3)
    assert stages(TrainSetup(pp=2)) == ("first", "last")
    first = step_graph(cfg, TrainSetup(batch_size=2, seq_len=128, pp=2), stage="first")
    assert not any(op.name.startswith("lm_head") for op in first.micro_batch)


def test_categories_are_closed_and_totals_add_up():
    graph = step_graph(get_model("llama-2-7b"), TrainSetup(batch_size=1, seq_len=256))
    assert {op.category for op in graph.ops()} <= set(CATEGORIES)
    totals = graph.totals()
    assert sum(row["flops"] for row in totals.values()) == graph.flops()
    assert totals["elementwise"]["flops"] == 0 and totals["elementwise"]["bytes"] > 0
