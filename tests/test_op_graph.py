"""The op graph: its FLOPs are the analytic counts, its shapes the profiled GPT's kernels."""

from __future__ import annotations

from pathlib import Path

import pytest

from estimator.errors import ConfigError
from estimator.flops import step_flops
from estimator.model_config import from_hf_config
from estimator.op_graph import stages, step_graph
from estimator.ops import CATEGORIES
from estimator.params import count_params
from estimator.precision import get_precision
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


# New families (tests/data: public config.json files) and the parallelism / regime fields ----------------

FAMILY_CONFIGS = sorted((Path(__file__).parent / "data").glob("*.config.json"))


@pytest.mark.parametrize("path", FAMILY_CONFIGS, ids=lambda p: p.name.split(".config")[0])
@pytest.mark.parametrize("recompute", ["none", "selective", "full"])
def test_flop_sum_equals_the_analytic_count_for_every_family(path, recompute):
    cfg = from_hf_config(path)
    for flash in (True, False):
        setup = TrainSetup(batch_size=2, seq_len=32, recompute=recompute, flash_attention=flash)
        graph = step_graph(cfg, setup)
        expected = step_flops(cfg, 2, 32, recompute)
        assert graph.flops() == expected.total
        assert graph.flops(include_recompute=True) == expected.hardware_total


def test_context_parallel_splits_the_tokens_and_gathers_k_and_v():
    cfg = get_model("llama-3-8b")  # 32 heads, 8 KV heads of 128
    b, s, cp = 2, 256, 4
    one = step_graph(cfg, TrainSetup(batch_size=b, seq_len=s))
    graph = step_graph(cfg, TrainSetup(batch_size=b, seq_len=s, cp=cp))
    assert graph.flops() * cp == one.flops() == step_flops(cfg, b, s).total  # every FLOP divides by cp
    gemms = {op.name: op.shape for op in graph.micro_batch if op.kernel == "gemm"}
    assert gemms["block0.mlp.fc.fwd"] == (b * s // cp, 14336, 4096)
    cores = [op for op in graph.micro_batch if op.category == "attention" and op.phase == "forward"]
    assert cores[0].shape == (b * 32, s // cp, 128)
    assert cores[0].flops == 2 * b * 32 * (s // cp) * s * (128 + 128)  # s/cp queries against all s keys
    gathers = [op for op in graph.micro_batch if op.name.startswith("cp.all_gather")]
    scatters = [op for op in graph.micro_batch if op.name.startswith("cp.reduce_scatter")]
    assert len(gathers) == len(scatters) == cfg.n_layers
    assert {op.kernel for op in gathers} == {"all_gather"} and {op.kernel for op in scatters} == {"reduce_scatter"}
    kv_bytes = b * (s // cp) * 8 * (128 + 128) * 2  # this rank's tokens, K and V of its 8 KV heads, bf16
    assert {op.shape for op in gathers + scatters} == {(kv_bytes, cp)}
    assert {op.category for op in gathers} == {"communication"}
    with pytest.raises(ConfigError, match="cp=3 must divide the sequence"):
        step_graph(cfg, TrainSetup(batch_size=b, seq_len=256, cp=3))


def test_expert_parallel_adds_two_all_to_alls_each_way_per_moe_layer():
    cfg = from_hf_config(Path(__file__).parent / "data" / "deepseek-v2-lite.config.json")  # 1 dense + 26 MoE
    b, s, ep = 1, 64, 4
    graph = step_graph(cfg, TrainSetup(batch_size=b, seq_len=s, ep=ep, dp=ep))
    a2a = [op for op in graph.micro_batch if op.name.startswith("ep.")]
    assert len(a2a) == 4 * 26 and {op.kernel for op in a2a} == {"all_to_all"}
    assert {op.shape for op in a2a} == {(b * s * 6 * 2048 * 2, ep)}  # every token's hidden state to its 6 experts
    assert not any(op.name.startswith("ep.") for op in step_graph(cfg, TrainSetup(batch_size=b, seq_len=s)).micro_batch)


def test_dropout_adds_mask_ops_and_no_flops():
    cfg = get_model("gpt-mini")
    b, s = 2, 64
    for flash, per_layer in ((True, 4), (False, 6)):  # output + MLP, fwd + bwd; explicit: the probabilities too
        plain = step_graph(cfg, TrainSetup(batch_size=b, seq_len=s, flash_attention=flash))
        graph = step_graph(cfg, TrainSetup(batch_size=b, seq_len=s, flash_attention=flash, dropout=0.1))
        drops = [op for op in graph.micro_batch if op.kernel == "dropout"]
        assert len(drops) == per_layer * cfg.n_layers and graph.flops() == plain.flops()
        out = next(op for op in drops if op.name == "block0.attn.dropout")
        assert out.bytes == b * s * 128 * (2 + 2 + 1)  # read x, write y (bf16) and a 1-byte mask


def _fp8():
    try:
        return get_precision("fp8")
    except ConfigError:
        pytest.skip("precision 'fp8' is not in estimator.precision yet (the other helper adds it)")


def test_fp8_gemms_and_their_per_tensor_casts():
    _fp8()
    cfg = get_model("gpt-tiny")
    graph = step_graph(cfg, TrainSetup(batch_size=2, seq_len=32, precision="fp8"))
    assert {op.dtype for op in graph.micro_batch if op.kernel == "gemm"} == {"fp8"}
    casts = {op.name for op in graph.micro_batch if op.kernel == "fp8_cast"}
    assert {"block0.mlp.fc.input_fp8", "block0.mlp.fc.weight_fp8", "block0.mlp.fc.grad_fp8"} <= casts
    assert graph.flops() == step_flops(cfg, 2, 32).total


def test_rope_is_one_complex_multiply_in_fp32_between_casts():
    """profiler.model.apply_rope: q and k times e^(i·angle) in fp32; under bf16 autocast a cast in and out."""
    cfg = get_model("llama-tiny")
    for precision, fwd, bwd in (
        ("fp32", ["mul"], ["grad_copy", "mul"]),
        ("bf16-mixed", ["to_fp32", "mul", "to_bf16"], ["to_fp32", "grad_copy", "mul", "to_bf16"]),
    ):
        graph = step_graph(cfg, TrainSetup(batch_size=2, seq_len=64, precision=precision))
        ops = [op for op in graph.micro_batch if op.name.startswith("block0.attn.rope_q.")]
        assert [op.name.split(".")[-1] for op in ops if op.forward] == fwd
        assert [op.name.split(".")[-1] for op in ops if not op.forward] == bwd
        mul = next(op for op in ops if op.name == "block0.attn.rope_q.mul")
        assert mul.kernel == "binary" and mul.dtype == "fp32" and mul.shape == (2 * 64 * cfg.n_heads * cfg.dh,)
