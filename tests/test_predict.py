"""`predict()`: the contract keys, MFU when the peak is unknown, train time and cost, validation."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from estimator.errors import ConfigError
from estimator.hardware import get_gpu, with_peak_override
from estimator.predict import MFU_NA, predict
from estimator.presets import get_model
from estimator.setup import Efficiency, TrainSetup

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
    assert r["memory"]["total"] == sum(r["memory"][k] for k in ("weights", "gradients", "optimizer", "activations",
                                                                 "logits", "weight_casts", "zero3_buffers"))
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
    assert train["six_nd_time_s"] == pytest.approx(6 * 124_439_808 * 9e9 / (8 * 989.4e12 * 0.5))
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
        "import estimator, estimator.predict, estimator.memory, estimator.timing, estimator.inference\n"
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
    from estimator.hardware import derived_gpu_spec

    spec = derived_gpu_spec("NVIDIA Mystery 9000", "9.0", 132, 1.83e9, 80 * 2**30)  # bandwidth unknown
    r = predict(get_model("gpt2"), spec, TrainSetup(batch_size=4, dp=2))
    assert r["hardware"]["derived"] is True
    assert any("memory bandwidth unknown" in w for w in r["warnings"])
    assert any("upper bound" in w for w in r["warnings"])
    assert r["step"]["time_s"] > 0 and 0 < r["step"]["mfu"] <= 0.5
    i = predict(get_model("gpt2"), spec, TrainSetup(batch_size=4), mode="infer")
    assert i["decode"]["time_s"] > 0
