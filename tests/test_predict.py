"""`predict()`: the contract keys, MFU when the peak is unknown, train time and cost, validation."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from estimator.errors import ConfigError
from estimator.flops import forward_breakdown
from estimator.hardware import get_gpu
from estimator.device_specs import cpu_spec, with_peak_override
from estimator.op_graph import step_graph
from estimator.predict import MFU_NA, predict
from estimator.presets import get_model
from estimator.setup import Efficiency, TrainSetup
from estimator.step_overheads import CPU_OP_OVERHEAD_S, GPU_OP_OVERHEAD_S, StepOverheads

H100 = get_gpu("h100-sxm")
TRAIN_KEYS = ["params.total", "params.breakdown", "flops.forward", "flops.backward", "flops.total",
              "flops.palm_total", "memory.weights", "memory.gradients", "memory.optimizer", "memory.activations",
              "memory.logits", "memory.total", "max_batch_size", "step.time_s", "step.tokens_per_s", "step.mfu",
              "hardware.peak_flops", "hardware.peak_dtype", "hardware.source", "hardware.derived", "setup.seq_len",
              "assumptions", "warnings", "model.name"]
INFER_KEYS = ["memory.kv_cache", "memory.weights", "memory.total", "prefill.time_s", "decode.time_s",
              "decode.tokens_per_s", "max_batch_size"]


def _get(d: dict, dotted: str):
    for part in dotted.split("."):
        d = d[part]
    return d


def test_contract_keys_and_json_round_trip():
    r = predict(get_model("gpt2"), H100, TrainSetup(batch_size=4, seq_len=1024), tokens=10**9, gpu_hour_cost=2.5)
    for key in TRAIN_KEYS + ["train.time_s", "train.cost"]:
        _get(r, key)
    assert json.loads(json.dumps(r)) == r  # plain JSON types only
    i = predict(get_model("gpt2"), H100, TrainSetup(batch_size=4), mode="infer", prompt_len=512, gen_len=64)
    for key in INFER_KEYS:
        _get(i, key)


def test_nanogpt_reference_figures():
    r = predict(get_model("nanogpt-124m"), H100, TrainSetup(batch_size=1, seq_len=1024))
    assert r["params"]["total"] == 124_337_664
    assert r["flops"]["forward"] == 291_648_307_200
    assert r["flops"]["palm_total"] == 875_062_886_400
    assert r["flops"]["total"] == 874_944_921_600
    m = r["memory"]
    terms = ("weights", "gradients", "optimizer", "activations", "logits", "weight_casts", "zero3_buffers")
    assert m["sum_of_terms"] == sum(m[k] for k in terms)  # the old conservative figure, still reported
    # Phase-aware peak: the largest phase, whose terms add up to it; no gradients yet at the loss backward.
    assert m["total"] == max(m["phases"].values()) == m["phases"][m["peak_phase"]] == sum(m["at_peak"].values())
    assert m["peak_phase"] == "loss_backward" and m["at_peak"]["gradients"] == 0
    assert m["total"] < m["sum_of_terms"]
    assert r["hardware"]["peak_flops"] == 989.4e12 and r["hardware"]["peak_dtype"] == "bf16"


def test_assumptions_carry_the_efficiency_values():
    r = predict(get_model("gpt2"), H100, TrainSetup(batch_size=2, efficiency=Efficiency(0.4, 0.7, 0.6)))
    a = r["assumptions"]
    assert (a["efficiency.flops"], a["efficiency.memory"], a["efficiency.interconnect"]) == (0.4, 0.7, 0.6)
    assert a["memory.limit_bytes"] == r["memory"]["limit"]
    assert r["step"]["mfu"] <= 0.4


def test_unknown_peak_gives_mfu_na_not_zero():
    t4 = get_gpu("t4")  # no bf16 tensor path
    r = predict(get_model("gpt2"), t4, TrainSetup(batch_size=1, seq_len=512))
    assert r["step"]["mfu"] is None and r["step"]["hfu"] is None
    assert r["hardware"]["peak_flops"] is None
    assert any(w.startswith(MFU_NA) for w in r["warnings"])
    assert MFU_NA == "MFU n/a (unknown peak; --peak-tflops)"
    assert r["step"]["time_s"] > 0  # timed at the fp32 peak, said so
    assert r["hardware"]["time_peak_dtype"] == "fp32"
    fixed = predict(get_model("gpt2"), with_peak_override(t4, "bf16", 30e12), TrainSetup(batch_size=1, seq_len=512))
    assert 0 < fixed["step"]["mfu"] < 1


def test_train_time_cost_and_six_nd():
    setup = TrainSetup(batch_size=8, seq_len=1024, dp=8, grad_accum=4)
    r = predict(get_model("gpt2"), H100, setup, tokens=9 * 10**9, gpu_hour_cost=2.0)
    train, step = r["train"], r["step"]
    per_step = 8 * 1024 * 4 * 8
    assert step["tokens_per_step"] == per_step
    assert train["steps"] == -(-9 * 10**9 // per_step)
    assert train["time_s"] == pytest.approx(train["steps"] * step["time_s"])
    assert train["gpu_hours"] == pytest.approx(train["time_s"] * 8 / 3600)
    assert train["cost"] == pytest.approx(train["gpu_hours"] * 2.0)
    assert train["six_nd_time_s"] == pytest.approx(6 * 124_439_808 * 9e9 / (8 * step["achieved_flops_per_gpu"]))
    assert train["six_nd_time_s"] < train["time_s"]  # attention, head traffic, optimizer on top
    assert predict(get_model("gpt2"), H100, setup)["train"] is None


@pytest.mark.parametrize("kwargs,message", [
    ({"tokens": -5}, "tokens must be a positive integer"),
    ({"gpu_hour_cost": -1.0}, "gpu-hour-cost"),
    ({"mode": "serve"}, "mode must be one of"),
    ({"memory_limit_bytes": 0}, "memory limit must be positive"),
])
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        predict(get_model("gpt2"), H100, TrainSetup(), **kwargs)


def test_seq_len_over_context_and_batch_zero():
    with pytest.raises(ConfigError, match="exceeds gpt2's context length 1024"):
        predict(get_model("gpt2"), H100, TrainSetup(seq_len=2048))
    with pytest.raises(ConfigError, match="batch-size must be a positive integer"):
        TrainSetup(batch_size=0)


def test_does_not_fit_at_batch_one():
    with pytest.raises(ConfigError, match=r"does not fit at batch 1: needs .* GiB, limit 13.75 GiB"):
        predict(get_model("llama-2-70b"), get_gpu("t4"), TrainSetup(precision="fp16-mixed"))
    r = predict(get_model("llama-2-70b"), get_gpu("t4"), TrainSetup(precision="fp16-mixed"), check_fit=False)
    assert r["max_batch_size"] == 0 and r["memory"]["fits"] is False


def test_batch_over_max_is_a_warning():
    r = predict(get_model("gpt2"), H100, TrainSetup(batch_size=1), memory_limit_bytes=8 * 2**30)
    big = predict(get_model("gpt2"), H100, TrainSetup(batch_size=r["max_batch_size"] + 1),
                  memory_limit_bytes=8 * 2**30)
    assert big["memory"]["fits"] is False
    assert any(f"largest that fits: {r['max_batch_size']}" in w for w in big["warnings"])


def test_estimator_imports_no_torch():
    code = (
        "import sys\n"
        "import estimator, estimator.predict, estimator.memory, estimator.step_time, estimator.inference\n"
        "from estimator.predict import predict\n"
        "from estimator.presets import get_model\n"
        "from estimator.hardware import get_gpu\n"
        "from estimator.setup import TrainSetup\n"
        "predict(get_model('gpt2'), get_gpu('h100-sxm'), TrainSetup(batch_size=2), tokens=10**9)\n"
        "predict(get_model('gpt2'), get_gpu('h100-sxm'), TrainSetup(batch_size=2), mode='infer')\n"
        "heavy = sorted(m for m in ('torch', 'numpy') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_derived_gpu_with_unknown_bandwidth_still_predicts():
    from estimator.device_specs import derived_gpu_spec

    spec = derived_gpu_spec("NVIDIA Mystery 9000", "9.0", 132, 1.83e9, 80 * 2**30)  # bandwidth unknown
    r = predict(get_model("gpt2"), spec, TrainSetup(batch_size=4, dp=2))
    assert r["hardware"]["derived"] is True
    assert any("memory bandwidth unknown" in w for w in r["warnings"])
    assert any("upper bound" in w for w in r["warnings"])
    assert r["step"]["time_s"] > 0 and 0 < r["step"]["mfu"] <= 0.5
    i = predict(get_model("gpt2"), spec, TrainSetup(batch_size=4), mode="infer")
    assert i["decode"]["time_s"] > 0


def _measured_cpu():
    """A 2-core CPU whose fp32/bf16 peaks were measured, as the profiler's detection builds it."""
    spec = cpu_spec("AMD EPYC", 2, 2.6e9, ["avx512f", "avx512_bf16"], 16 * 2**30)
    spec = with_peak_override(spec, "fp32", 150e9, label="measured matmul benchmark (n=2048, 2 threads)")
    return with_peak_override(spec, "bf16", 365e9, label="measured matmul benchmark (n=2048, 2 threads)")


def test_per_op_overhead_is_a_named_assumption_by_device_kind():
    tiny = get_model("gpt-tiny")
    cpu = predict(tiny, _measured_cpu(), TrainSetup(batch_size=32, seq_len=128))
    gpu = predict(tiny, H100, TrainSetup(batch_size=32, seq_len=128))
    assert cpu["assumptions"]["time.op_overhead_s"] == CPU_OP_OVERHEAD_S == 10e-6
    assert gpu["assumptions"]["time.op_overhead_s"] == GPU_OP_OVERHEAD_S == 7.5e-6
    assert "kernel launch ~5–10 µs" in gpu["assumptions"]["time.op_overhead"]  # its published range
    assert "kernel launch" not in cpu["assumptions"]["time.not_modelled"]
    assert cpu["assumptions"]["time.optimizer_impl"] == "fused"  # the profiler's CPU default (torch >= 2.4)
    assert gpu["assumptions"]["time.optimizer_impl"] == "fused"
    assert "time.cpu_attention" in cpu["assumptions"] and "time.cpu_attention" not in gpu["assumptions"]
    # CPU: ops run in sequence, all host time is on the step; GPU: launches hide behind nothing here
    # (a tiny model is host-bound), so the exposed overhead is the host time minus the device time.
    ov = cpu["step"]["overhead"]
    graph = step_graph(tiny, TrainSetup(batch_size=32, seq_len=128))
    dispatched = sum(n * (1 + op.host_ops) for op, n in graph.counted() if op.category not in ("communication",
                                                                                             "host"))
    assert ov["ops_per_micro_batch"] == dispatched  # gpt-tiny, bf16-mixed, SDPA: the op graph's count
    assert ov["ops_optimizer"] == 28 + 2  # a foreach AdamW op per parameter tensor + one launch per group
    assert cpu["step"]["breakdown"]["op_overhead_s"] == pytest.approx(cpu["step"]["overhead"]["host_s"])
    assert gpu["step"]["bound"]["step"] == "host"
    assert gpu["step"]["micro_batch_s"] == pytest.approx(dispatched * 7.5e-6)


def test_overheads_override_and_overlap():
    tiny, spec = get_model("gpt-tiny"), _measured_cpu()
    setup = TrainSetup(batch_size=32, seq_len=128)
    default = predict(tiny, spec, setup)["step"]
    free = predict(tiny, spec, setup, overheads=StepOverheads("cpu", 0.0, "fused", cpu_kernels=True,
                                                                matmul_efficiency=0.85))["step"]
    assert default["time_s"] - free["time_s"] == pytest.approx(default["overhead"]["host_s"])
    assert free["breakdown"]["op_overhead_s"] == 0
    # A big GPU step hides its launches entirely.
    big = predict(get_model("gpt2-xl"), H100, TrainSetup(batch_size=8, seq_len=1024))["step"]
    assert big["breakdown"]["op_overhead_s"] == 0 and big["bound"]["step"] == "device"
    assert 0 < big["overhead"]["host_s"] < big["time_s"]
    with pytest.raises(ConfigError, match="optimizer implementation"):
        StepOverheads("cpu", 1e-5, "lion")
    with pytest.raises(ConfigError, match="op overhead"):
        StepOverheads("gpu", -1.0)


def test_cpu_matmuls_not_derated_twice_when_the_peak_is_measured():
    """A measured CPU peak is an achieved matmul rate: eff.flops (0.5) is not applied on top."""
    tiny = get_model("gpt-small")
    setup = TrainSetup(batch_size=4, seq_len=256, precision="fp32")
    measured = predict(tiny, _measured_cpu(), setup)
    given = with_peak_override(cpu_spec("AMD EPYC", 2, 2.6e9, ["avx512f"], 16 * 2**30), "fp32", 150e9,
                               label="--peak-tflops")  # not a measured rate: eff.flops applies
    theoretical = predict(tiny, given, setup)
    assert "measured CPU matmul peak" in measured["assumptions"]["time.matmul_efficiency"]
    assert "theoretical CPU peak" in theoretical["assumptions"]["time.matmul_efficiency"]
    per_seq = forward_breakdown(tiny, 256)
    attention = 6 * (per_seq["attention/scores"] + per_seq["attention/reduce"])
    linear = 3 * (measured["flops"]["forward"] - 4 * attention) / (150e9 * 0.85)  # forward + 2 x backward
    assert measured["step"]["categories"]["matmul"] == pytest.approx(linear, rel=1e-9)
    assert theoretical["step"]["categories"]["matmul"] == pytest.approx(linear * 0.85 / 0.5, rel=1e-9)


def test_memory_peak_choice():
    m = get_model("gpt2")
    phases = predict(m, H100, TrainSetup(batch_size=8, seq_len=1024))
    summed = predict(m, H100, TrainSetup(batch_size=8, seq_len=1024), memory_peak="sum")
    assert summed["memory"]["total"] == phases["memory"]["sum_of_terms"]
    assert summed["assumptions"]["memory.peak_model"] == "sum"
    # The old sum is no bound: at batch 8 GPT-2's loss backward holds 12 B per logit, the sum 10 + the
    # gradients, so the phase figure is the larger here (and the smaller at small batches).
    assert phases["memory"]["total"] > summed["memory"]["total"]
    assert phases["max_batch_size"] < summed["max_batch_size"]
    with pytest.raises(ConfigError, match="memory peak must be one of"):
        predict(m, H100, TrainSetup(batch_size=8), memory_peak="max")
