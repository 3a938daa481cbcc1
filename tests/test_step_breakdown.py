"""The measured breakdown: aten ops mapped to the op graph's categories, from one profiled step."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from estimator.ops import CATEGORIES
from profiler.step_breakdown import (
    category_errors, classify_cpu_event, classify_cuda_kernel, cpu_categories, cuda_categories,
)


def _event(name, self_us=0.0, parent=None, shapes=None):
    return SimpleNamespace(name=name, self_cpu_time_total=self_us, cpu_parent=parent, input_shapes=shapes,
                           device_type="DeviceType.CPU")


def test_cpu_events_map_to_categories():
    step = _event("Optimizer.step#AdamW.step")
    assert classify_cpu_event(_event("aten::addmm")) == "matmul"
    assert classify_cpu_event(_event("aten::mm")) == "matmul"
    assert classify_cpu_event(_event("aten::bmm")) == "attention"
    assert classify_cpu_event(_event("aten::_scaled_dot_product_flash_attention_for_cpu")) == "attention"
    assert classify_cpu_event(_event("aten::mul", shapes=[[2, 4, 64, 64], []])) == "attention"  # on the scores
    assert classify_cpu_event(_event("aten::mul", shapes=[[2, 64, 128]])) == "elementwise"
    assert classify_cpu_event(_event("aten::_foreach_mul_", parent=step)) == "optimizer"
    assert classify_cpu_event(_event("aten::view")) == "host"
    assert classify_cpu_event(_event("autograd::engine::evaluate_function: MmBackward0")) == "host"
    assert classify_cpu_event(_event("aten::native_layer_norm")) == "elementwise"


def test_host_is_what_the_kernels_leave_of_the_step():
    events = [_event("aten::mm", 3000), _event("aten::gelu", 1000), _event("aten::view", 50)]
    out = cpu_categories(events, wall_s=0.006)
    assert out["matmul"] == pytest.approx(0.003) and out["elementwise"] == pytest.approx(0.001)
    assert out["host"] == pytest.approx(0.002) and set(out) == set(CATEGORIES)
    scaled = cpu_categories(events, wall_s=0.006, reference_s=0.0045)  # the profiler's overhead taken out
    assert scaled["matmul"] == pytest.approx(0.003 * 0.75) and sum(scaled.values()) == pytest.approx(0.0045)


def test_cuda_kernels_map_to_categories():
    assert classify_cuda_kernel("sm90_xmma_gemm_bf16bf16_bf16f32") == "matmul"
    assert classify_cuda_kernel("pytorch_flash::flash_fwd_kernel") == "attention"
    assert classify_cuda_kernel("void at::native::multi_tensor_apply_kernel<FusedAdamMathFunctor>") == "optimizer"
    assert classify_cuda_kernel("ncclDevKernel_AllReduce_Sum_f32_RING_LL") == "communication"
    assert classify_cuda_kernel("vectorized_elementwise_kernel") == "elementwise"
    out = cuda_categories([("gemm", 0.002), ("elementwise", 0.001)], wall_s=0.004)
    assert out["host"] == pytest.approx(0.001)


def test_category_errors_keep_large_categories():
    errs = category_errors({"matmul": 0.9, "host": 0.3}, {"matmul": 1.0, "host": 0.05}, min_share=0.10)
    assert set(errs) == {"matmul"} and errs["matmul"]["error"] == pytest.approx(-0.1)


@pytest.mark.slow
def test_a_profiled_step_of_the_tiny_gpt_is_broken_down():
    pytest.importorskip("torch")
    from estimator.presets import get_model
    from profiler.step import StepOptions, TrainingStep
    from profiler.step_breakdown import breakdown_event, measure_breakdown

    trainer = TrainingStep(get_model("gpt-tiny"), "cpu", StepOptions(precision="fp32", flash_attention=False))
    x, y = trainer.make_batch(2, 32)
    trainer.step(x, y)
    result = measure_breakdown(trainer, x, y)
    cats = result["categories"]
    assert set(cats) == set(CATEGORIES)
    assert cats["matmul"] > 0 and cats["attention"] > 0 and cats["optimizer"] > 0 and cats["elementwise"] > 0
    assert 0 < sum(cats.values()) <= result["profiled_step_s"]  # less the instrumentation's own cost
    scaled = measure_breakdown(trainer, x, y, reference_s=0.5)["categories"]
    assert sum(scaled.values()) == pytest.approx(0.5)  # the split at the median timed step's scale
    event = breakdown_event(result, {"matmul": 1e-3})
    assert event.to_dict()["event"] == "step_breakdown" and event.measured_s == cats
