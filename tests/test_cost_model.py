"""The cost model: measured (interpolated from a profile) and datasheet sources, and their composition."""

from __future__ import annotations

import pytest

from estimator.cost_model import DatasheetCost, MeasuredCost
from estimator.step_compose import compose, predict_step
from estimator.hardware import get_gpu
from estimator.op_graph import step_graph
from estimator.ops import CATEGORIES, gemm
from estimator.predict import predict
from estimator.presets import get_model
from estimator.setup import TrainSetup
from tests.fixtures.device_profiles import (
    CALL_S, FRAMEWORK, GEMM_RATE, gemm_seconds, log_close, synthetic_profile,
)

H100 = get_gpu("h100-sxm")


def _measured(setup=None):
    return MeasuredCost(synthetic_profile(), H100, setup or TrainSetup())


def test_measured_gemm_interpolates_inside_the_grid():
    cost = _measured()
    on_grid = cost.cost(gemm("g", "forward", 256, 1024, 64, "fp32"))
    assert on_grid.device_s == pytest.approx(gemm_seconds(256, 1024, 64)) and not on_grid.extrapolated
    between = cost.cost(gemm("g", "forward", 512, 1024, 64, "fp32"))
    assert not between.extrapolated
    assert gemm_seconds(256, 1024, 64) < between.device_s < gemm_seconds(1024, 1024, 64)
    assert log_close(between.device_s, gemm_seconds(512, 1024, 64), 0.05)
    assert on_grid.host_s == 0  # the host work of a step is the framework op's
    bf16 = cost.cost(gemm("g", "forward", 4096, 4096, 4096, "bf16")).device_s
    assert bf16 == pytest.approx(CALL_S + 2 * 4096**3 / GEMM_RATE["bf16"])


def test_measured_gemm_says_when_it_extrapolates():
    cost = _measured()
    big = cost.cost(gemm("g", "forward", 16384, 4096, 4096, "fp32"))
    assert big.extrapolated
    assert big.device_s == pytest.approx(4 * gemm_seconds(4096, 4096, 4096))  # throughput held
    cfg = get_model("gpt-small")
    setup = TrainSetup(batch_size=32, seq_len=256, precision="fp32")
    step = predict_step(cfg, setup, MeasuredCost(synthetic_profile(), H100, setup))
    assert "gemm" in step["extrapolated"]


def test_backward_layouts_are_charged():
    profile = synthetic_profile(gemm_layout={"fp32": {"backward_input": 1.0, "backward_weight": 1.25}})
    cost = MeasuredCost(profile, H100, TrainSetup())
    fwd = cost.cost(gemm("g", "forward", 1024, 256, 256, "fp32")).device_s
    dw = cost.cost(gemm("g", "backward_weight", 1024, 256, 256, "fp32")).device_s
    assert dw == pytest.approx(1.25 * fwd)
    dx = cost.cost(gemm("g", "backward_input", 1024, 256, 256, "fp32")).device_s
    assert dx == pytest.approx(fwd)


def test_a_linears_bias_is_charged_per_output_element_on_its_forward_gemm_only():
    """addmm = mm + a pass over the output where the backend does not fuse the bias (measured per dtype);
    the op graph marks the forward GEMMs of Linears that have one (GPT-2's, not LLaMA's)."""
    per_output = 1e-10
    profile = synthetic_profile(gemm_layout={"bf16": {"backward_input": 1.0, "backward_weight": 1.0,
                                                      "bias_per_output_s": per_output}})
    cost = MeasuredCost(profile, H100, TrainSetup())
    plain = cost.cost(gemm("g", "forward", 1024, 256, 64, "bf16")).device_s
    biased = cost.cost(gemm("g", "forward", 1024, 256, 64, "bf16", bias=True)).device_s
    assert biased - plain == pytest.approx(per_output * 1024 * 256)
    assert cost.cost(gemm("g", "backward_input", 1024, 256, 64, "bf16")).device_s == pytest.approx(plain)
    fp32 = cost.cost(gemm("g", "forward", 1024, 256, 64, "fp32", bias=True)).device_s  # none measured: free
    assert fp32 == pytest.approx(cost.cost(gemm("g", "forward", 1024, 256, 64, "fp32")).device_s)
    for model, has_bias in (("gpt-tiny", True), ("llama-tiny", False)):
        ops = [op for seg in step_graph(get_model(model), TrainSetup(batch_size=2, seq_len=32)).segments
               for op in seg.ops if op.kernel == "gemm"]
        forward_linears = [op for op in ops if op.phase == "forward" and ".mlp." in op.name]
        assert forward_linears and all(op.bias == has_bias for op in forward_linears), model
        assert not any(op.bias for op in ops if op.phase != "forward")


def test_cpu_composition_is_the_sum_of_every_op():
    cfg = get_model("gpt-tiny")
    setup = TrainSetup(batch_size=2, seq_len=64, precision="fp32")
    cost = _measured(setup)
    graph = step_graph(cfg, setup)
    total = sum(cost.seconds(op) for op in graph.ops())
    step = compose({"only": graph}, cost, setup)
    assert step["time_s"] == pytest.approx(total)
    assert sum(step["categories"].values()) == pytest.approx(total)
    assert set(step["categories"]) == set(CATEGORIES)
    assert step["categories"]["host"] > 0 and step["categories"]["matmul"] > 0


def test_measured_host_time_is_per_micro_batch_plus_per_block_of_the_models_design():
    setup = TrainSetup(batch_size=2, seq_len=64, precision="bf16-mixed", flash_attention=False)
    for name in ("gpt-tiny", "llama-tiny"):
        cfg = get_model(name)
        graph = step_graph(cfg, setup)
        framework = [op for op in graph.ops() if op.kernel == "framework"]
        family = "llama" if name == "llama-tiny" else "gpt"
        assert [op.name for op in framework] == [f"framework.{family}.explicit.autocast"]
        cost = _measured(setup)
        c = cost.cost(framework[0])
        assert c.device_s == 0
        assert c.host_s == pytest.approx(FRAMEWORK["per_step_s"] + cfg.n_layers * FRAMEWORK["per_layer_s"])
        assert not cost.missing
        step = compose({"only": graph}, cost, setup)
        assert step["categories"]["host"] == pytest.approx(c.host_s)
    only_gpt = synthetic_profile(framework={"gpt.sdpa.plain": {"per_step_s": 1e-3, "per_layer_s": 5e-4}})
    cost = MeasuredCost(only_gpt, H100, setup)
    llama = [op for op in step_graph(get_model("llama-tiny"), setup).ops() if op.kernel == "framework"][0]
    assert cost.cost(llama).host_s == pytest.approx(1e-3 + get_model("llama-tiny").n_layers * 5e-4)
    assert cost.missing == {"framework llama.explicit.autocast"}  # another design stood in: said


def test_gpu_micro_batch_is_the_larger_of_host_and_device():
    cfg = get_model("gpt-tiny")
    setup = TrainSetup(batch_size=1, seq_len=8)
    cost = DatasheetCost(H100, setup)
    graph = step_graph(cfg, setup)
    costs = [cost.cost(op) for op in graph.micro_batch]
    device, host = sum(c.device_s for c in costs), sum(c.host_s for c in costs)
    assert host > device  # a tiny model on an H100 is launch-bound
    step = compose({"only": graph}, cost, setup)
    assert step["micro_batch_s"] == pytest.approx(host)
    big = TrainSetup(batch_size=8, seq_len=1024)
    step = predict_step(get_model("gpt2"), big, DatasheetCost(H100, big))
    assert step["categories"]["host"] == 0  # hidden behind the device


def test_datasheet_gemm_is_its_roofline_plus_a_launch():
    setup = TrainSetup()
    cost = DatasheetCost(H100, setup)
    op = gemm("g", "forward", 8192, 8192, 8192, "bf16")
    eff = cost.matmul_efficiency(op)
    c = cost.cost(op)
    assert c.device_s == pytest.approx(op.flops / (H100.peak("bf16") * eff))
    assert c.host_s == pytest.approx(cost.overheads.op_overhead_s)


def test_data_parallel_all_reduce_is_hidden_behind_the_backward():
    cfg = get_model("gpt2")
    one = TrainSetup(batch_size=8, seq_len=1024)
    eight = TrainSetup(batch_size=8, seq_len=1024, dp=8)
    a = predict_step(cfg, one, DatasheetCost(H100, one))
    b = predict_step(cfg, eight, DatasheetCost(H100, eight))
    assert b["breakdown"]["dp_comm_s"] > 0 and b["breakdown"]["dp_exposed_s"] == 0
    assert b["time_s"] == pytest.approx(a["time_s"])
    c = predict_step(cfg, eight, DatasheetCost(H100, eight), overlap_dp=False)
    assert c["time_s"] == pytest.approx(a["time_s"] + c["breakdown"]["dp_comm_s"])
    terms = {k: v for k, v in c["breakdown"].items() if k != "dp_comm_s"}  # dp_exposed_s is its paid part
    assert sum(terms.values()) == pytest.approx(c["time_s"], rel=1e-12)


def test_predict_with_a_profile_keeps_the_datasheet_beside_it():
    cfg = get_model("gpt-tiny")
    setup = TrainSetup(batch_size=4, seq_len=64, precision="fp32")
    plain = predict(cfg, H100, setup)
    measured = predict(cfg, H100, setup, device_profile=synthetic_profile())
    step = measured["step"]
    assert step["source"] == "measured" and plain["step"]["source"] == "datasheet"
    assert step["spec"]["time_s"] == pytest.approx(plain["step"]["time_s"])
    expected = predict_step(cfg, setup, MeasuredCost(synthetic_profile(), H100, setup))["time_s"]
    assert step["time_s"] == pytest.approx(expected)
    assert step["tokens_per_s"] == pytest.approx(4 * 64 / expected)
    assert step["mfu"] == pytest.approx(measured["flops"]["total"] / expected / H100.peak("fp32"))
    assert sum(step["categories"].values()) == pytest.approx(expected)


def test_optimizer_element_cost_follows_the_steps_working_set():
    """AdamW's per-element cost is the cache-resident rate for a small model's optimizer state, the DRAM rate
    for one past OPTIMIZER_DRAM_ELEMENTS, log-linear between: every tensor of the step is one working set."""
    from dataclasses import replace as _replace

    from estimator.device_profile import OPTIMIZER_CACHE_ELEMENTS, OPTIMIZER_DRAM_ELEMENTS

    profile = synthetic_profile()
    opt = {"step_s": 1e-5, "per_tensor_s": 4e-6, "per_element_s": 1e-9, "per_element_dram_s": 3e-9}
    profile = _replace(profile, optimizer={"adamw.foreach": opt})
    setup = TrainSetup(batch_size=2, seq_len=64, precision="fp32")
    cost = MeasuredCost(profile, H100, setup)

    def per_tensor_op(cfg):
        graph = step_graph(cfg, setup)
        return next(op for op in graph.per_step if op.category == "optimizer" and op.kernel != "launch")

    small = per_tensor_op(get_model("gpt-tiny"))
    assert small.shape[1] < OPTIMIZER_CACHE_ELEMENTS
    assert cost.seconds(small) == pytest.approx(4e-6 + 1e-9 * small.shape[0])
    big = per_tensor_op(get_model("gpt2"))
    assert big.shape[1] > OPTIMIZER_DRAM_ELEMENTS  # 124M parameters
    assert cost.seconds(big) == pytest.approx(4e-6 + 3e-9 * big.shape[0])
    middle = _replace(big, shape=(big.shape[0], 2 * OPTIMIZER_CACHE_ELEMENTS))  # a third of the way, in log
    assert cost.seconds(middle) == pytest.approx(4e-6 + (1e-9 + 2e-9 / 3) * big.shape[0])


def test_the_optimizer_cost_is_the_measured_adamw_the_step_runs():
    """fused and foreach AdamW cost differently (2.4-3x on a CPU): the run's own is looked up; a profile that
    measured only another one stands in with it and says which was missing."""
    from dataclasses import replace as _replace

    fused = {"step_s": 1e-5, "per_tensor_s": 1e-6, "per_element_s": 1e-9, "per_element_dram_s": 1e-9}
    foreach = {"step_s": 1e-5, "per_tensor_s": 5e-6, "per_element_s": 3e-9, "per_element_dram_s": 3e-9}
    setup = TrainSetup(batch_size=2, seq_len=64, precision="fp32")
    op = next(op for op in step_graph(get_model("gpt-tiny"), setup).per_step
              if op.category == "optimizer" and op.kernel != "launch")
    both = _replace(synthetic_profile(), optimizer={"adamw.fused": fused, "adamw.foreach": foreach})
    run_fused, run_foreach = (MeasuredCost(both, H100, setup, impl) for impl in ("fused", "foreach"))
    assert run_fused.seconds(op) == pytest.approx(1e-6 + 1e-9 * op.shape[0])
    assert run_foreach.seconds(op) == pytest.approx(5e-6 + 3e-9 * op.shape[0])
    assert not run_fused.missing and not run_foreach.missing
    only_foreach = MeasuredCost(_replace(both, optimizer={"adamw.foreach": foreach}), H100, setup, "fused")
    assert only_foreach.seconds(op) == run_foreach.seconds(op) and "adamw.fused" in only_foreach.missing
