"""Step time: roofline, collectives, pipeline bubble, MFU, and Megatron's Table 1."""

from __future__ import annotations

import pytest

from estimator.hardware import get_gpu
from estimator.model_config import ModelConfig
from estimator.predict import predict
from estimator.presets import get_model
from estimator.setup import Efficiency, TrainSetup
from estimator.communication import COLLECTIVE_LATENCY_S, link_bandwidth, ring_all_reduce_s
from estimator.step_time import roofline, train_step_time

A100 = get_gpu("a100-sxm-80gb")
H100 = get_gpu("h100-sxm")


def test_roofline_takes_the_slower_side():
    assert roofline(2e12, 1e9, 1e12, 1e12) == (2.0, "compute")
    assert roofline(1e9, 3e12, 1e12, 1e12) == (3.0, "memory")


def test_ring_all_reduce_formula():
    assert ring_all_reduce_s(1e9, 1, 1e11) == 0.0
    assert ring_all_reduce_s(1e9, 8, 1e11) == pytest.approx(2 * 7 / 8 * 1e-2 + 14 * COLLECTIVE_LATENCY_S)


def test_link_bandwidth_inside_and_across_nodes():
    assert link_bandwidth(H100, 8, 1.0) == H100.intra_node_bandwidth / 2  # bidirectional figure, one way
    assert link_bandwidth(H100, 16, 0.5) == H100.inter_node_bandwidth * 0.5


def _step(model, **kw) -> dict:
    kw.setdefault("seq_len", 1024)
    setup = TrainSetup(**kw)
    return train_step_time(get_model(model) if isinstance(model, str) else model, H100, setup,
                           H100.peak("bf16"))


def test_tensor_parallel_four_all_reduces_per_layer():
    one, two = _step("gpt2", batch_size=8), _step("gpt2", batch_size=8, tp=2)
    message = 8 * 1024 * 768 * 2
    per = ring_all_reduce_s(message, 2, link_bandwidth(H100, 2, 0.7))
    assert one["breakdown"]["tp_comm_s"] == 0
    assert two["breakdown"]["tp_comm_s"] == pytest.approx(12 * 4 * per)
    full = _step("gpt2", batch_size=8, tp=2, recompute="full")
    assert full["breakdown"]["tp_comm_s"] == pytest.approx(12 * 6 * per)


def test_pipeline_bubble_and_parts_sum_to_step():
    st = _step("gpt2-xl", batch_size=2, pp=4, grad_accum=8)
    assert st["breakdown"]["pp_bubble_s"] == pytest.approx(3 * st["micro_batch_s"])
    compute = sum(st["breakdown"][k] for k in ("forward_s", "backward_s", "recompute_s", "tp_comm_s"))
    assert st["breakdown"]["pp_bubble_s"] / compute == pytest.approx(3 / 8)  # (p − 1) / m
    parts = sum(v for k, v in st["breakdown"].items() if k != "dp_comm_s")
    assert st["time_s"] == pytest.approx(parts)


def test_dp_all_reduce_hidden_behind_backward_when_small():
    st = _step("gpt2", batch_size=16, dp=8)
    assert st["breakdown"]["dp_comm_s"] > 0
    assert st["breakdown"]["dp_exposed_s"] == 0


def test_small_batch_is_memory_bound_large_is_compute_bound():
    assert _step("llama-2-7b", batch_size=1, seq_len=8)["bound"]["layer"] == "memory"
    assert _step("llama-2-7b", batch_size=4, seq_len=2048)["bound"]["layer"] == "compute"


def test_mfu_bounded_by_flops_efficiency_and_hfu_counts_recompute():
    r = predict(get_model("gpt2-xl"), H100, TrainSetup(batch_size=8, seq_len=1024, recompute="full"))
    step = r["step"]
    assert 0.3 < step["mfu"] < 0.5
    assert step["hfu"] == pytest.approx(step["mfu"] * r["flops"]["hardware_total"] / r["flops"]["total"])
    assert step["mfu_causal"] < step["mfu"]
    assert step["tokens_per_s"] == pytest.approx(8 * 1024 / step["time_s"])


def _megatron(h, L, a, t, p, gpus, batch, tflops, micro):
    """Narayanan et al. 2021 Table 1 row, A100-80GB, s = 2048, V = 51200, full recompute."""
    model = ModelConfig(name=f"gpt-{h}", vocab_size=51200, context_length=2048, d_model=h, n_layers=L, n_heads=a)
    dp = gpus // (t * p)
    setup = TrainSetup(batch_size=micro, seq_len=2048, precision="bf16-master", recompute="full", dp=dp, tp=t, pp=p,
                       grad_accum=batch // dp // micro, efficiency=Efficiency(flops=tflops / 312e12))
    paper = 96 * batch * 2048 * L * h * h * (1 + 2048 / (6 * h) + 51200 / (16 * L * h)) / (gpus * tflops)
    return predict(model, A100, setup), paper


def test_megatron_table1_data_parallel_row():
    """1.7B on 32 GPUs (t = p = 1) at the reported 137 TFLOP/s: the only overheads we add are a
    hidden DP all-reduce and the optimizer step, so the time matches the paper's within 2 %."""
    r, paper = _megatron(2304, 24, 24, 1, 1, 32, 512, 137e12, micro=4)
    assert paper == pytest.approx(3.528, rel=1e-3)
    assert r["step"]["time_s"] == pytest.approx(paper, rel=0.02)
    assert r["flops"]["hardware_per_gpu_per_step"] / 137e12 == pytest.approx(paper, rel=1e-9)


def test_megatron_table1_145b_row():
    """145.6B (t = 8, p = 8, 1536 GPUs, 148 TFLOP/s): ≈ 24.8 s/iteration. The achieved figure
    already includes bubble and TP comm, which we add on top: compute alone matches."""
    r, paper = _megatron(12288, 80, 96, 8, 8, 1536, 2304, 148e12, micro=1)
    assert paper == pytest.approx(24.8, rel=0.01)
    parts = r["step"]["breakdown"]
    compute = parts["forward_s"] + parts["backward_s"] + parts["recompute_s"]
    assert compute == pytest.approx(paper, rel=0.03)  # + the head on the last stage
    assert parts["pp_bubble_s"] > 0 and parts["tp_comm_s"] > 0
    assert paper < r["step"]["time_s"] < 1.35 * paper


def test_dp_all_reduce_paid_in_full_without_overlap():
    hidden = _step("gpt2", batch_size=16, dp=8)
    paid = train_step_time(get_model("gpt2"), H100, TrainSetup(batch_size=16, seq_len=1024, dp=8),
                           H100.peak("bf16"), overlap_dp=False)
    assert paid["breakdown"]["dp_exposed_s"] == paid["breakdown"]["dp_comm_s"] > 0
    assert paid["time_s"] == pytest.approx(hidden["time_s"] + paid["breakdown"]["dp_comm_s"])


# ----------------------------------------------------------------- per-op overhead and CPU kernels

from estimator.memory_terms import stage_params  # noqa: E402
from estimator.step_overheads import (  # noqa: E402
    CPU_OP_OVERHEAD_S,
    StepOverheads,
    adamw_impl,
    cpu_attention_efficiency,
    default_overheads,
    param_tensors,
    step_op_counts,
)
from estimator.step_time import optimizer_bytes_moved  # noqa: E402
from estimator.precision import get_precision  # noqa: E402

TINY = get_model("gpt-tiny")
CPU_FOREACH = StepOverheads("cpu", CPU_OP_OVERHEAD_S, "foreach", cpu_kernels=True)


def _ops(precision="fp32", flash=True, overheads=CPU_FOREACH, model=TINY, **kw):
    setup = TrainSetup(batch_size=1, seq_len=8, precision=precision, flash_attention=flash, **kw)
    return step_op_counts(model, setup, stage_params(model)["first"], True, True, overheads)


def test_gpt_tiny_op_counts():
    """Per block: 4 Linears x 4 ops, 2 norms, 2 residual adds, GELU, 11 for SDPA = 32; + 10 autocast casts;
    embeddings 4, final norm 1, head 4, loss 5; backward 2x; foreach AdamW: 2 per tensor + 12 per group."""
    assert _ops() == {"forward": 2 * 32 + 14, "backward": 2 * (2 * 32 + 14), "micro_batch": 234,
                      "optimizer": 2 * 28 + 12 * 2, "param_tensors": 28}
    assert _ops("bf16-mixed")["forward"] == 2 * 42 + 16
    explicit = _ops(flash=False)
    assert explicit["forward"] == 2 * 53 + 14 and explicit["backward"] == 2 * explicit["forward"] - 2 * 21
    assert _ops(overheads=StepOverheads("gpu", 7.5e-6, "fused"))["optimizer"] == 2 * 2
    assert _ops(overheads=StepOverheads("cpu", 1e-5, "for-loop"))["optimizer"] == 3 * 28
    assert param_tensors(TINY, 2, True, True) == 2 * 12 + 4  # per block: 4 Linears + 2 norms, weight + bias
    llama = get_model("llama-2-7b")  # no biases, RMSNorm, SwiGLU, RoPE, untied head
    assert param_tensors(llama, 32, True, True) == 32 * (2 + 3 + 2) + 1 + 1 + 1


def test_op_counts_match_the_dispatched_aten_ops():
    """The structural count against a TorchDispatchMode count of a real gpt-tiny step (within 10 %)."""
    torch = pytest.importorskip("torch")
    from torch.utils._python_dispatch import TorchDispatchMode

    from profiler.step import StepOptions, TrainingStep

    class Count(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Count.n += 1
            return func(*args, **(kwargs or {}))

    for precision, flash in (("fp32", True), ("bf16-mixed", True), ("fp32", False)):
        trainer = TrainingStep(TINY, "cpu", StepOptions(precision=precision, flash_attention=flash))
        x, y = trainer.make_batch(2, 16)
        trainer.step(x, y)
        Count.n = 0
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision != "fp32"), Count():
            loss = trainer.model(x, y)
        with Count():
            loss.backward()
        assert Count.n == pytest.approx(_ops(precision, flash)["micro_batch"], rel=0.10)


def test_cpu_attention_kernel_model():
    """rate = fp32 peak x eff x d_h/(d_h + c_d) x T/(T + c_T): SDPA computes in fp32 on the CPU."""
    assert cpu_attention_efficiency(TINY, 128, True, get_precision("bf16-mixed")) == ("fp32", 16 / 48 * 128 / 256)
    assert cpu_attention_efficiency(TINY, 128, True, get_precision("fp32")) == ("fp32", 16 / 32 * 128 / 160)
    assert cpu_attention_efficiency(TINY, 128, False, get_precision("bf16-mixed")) == ("bf16", 16 / 32)


def test_optimizer_bytes_by_implementation():
    fp32, bf16m, master = (get_precision(n) for n in ("fp32", "bf16-mixed", "bf16-master"))
    assert optimizer_bytes_moved(fp32, "adamw", "fused") == 28  # read p, g, m, v; write p, m, v
    assert optimizer_bytes_moved(fp32, "adamw", "foreach") == 80  # 8 passes of torch's unfused AdamW
    assert optimizer_bytes_moved(bf16m, "adamw", "for-loop") == 80
    assert optimizer_bytes_moved(master, "adamw", "fused") == 2 * 2 + 2 + 2 * 12


def test_cpu_parts_add_up_and_overhead_is_serial():
    from estimator.hardware import cpu_spec

    spec = cpu_spec("Test CPU", 2, 2.6e9, ["avx512f", "avx512_bf16"], 16 * 2**30)
    assert default_overheads(spec).device_kind == "cpu" and default_overheads(H100).device_kind == "gpu"
    setup = TrainSetup(batch_size=16, seq_len=128)
    st = train_step_time(TINY, spec, setup, spec.peak("bf16"))
    parts = sum(st["parts"].values())
    assert st["breakdown"]["forward_s"] + st["breakdown"]["backward_s"] == pytest.approx(parts)
    assert st["breakdown"]["op_overhead_s"] == pytest.approx(st["overhead"]["host_s"])
    assert st["time_s"] == pytest.approx(sum(v for k, v in st["breakdown"].items() if k != "dp_comm_s"))
    # Serial on the CPU: the same device work plus every op's dispatch.
    free = train_step_time(TINY, spec, setup, spec.peak("bf16"),
                           overheads=StepOverheads("cpu", 0.0, "foreach", cpu_kernels=True))
    assert st["time_s"] - free["time_s"] == pytest.approx((300 + 80) * CPU_OP_OVERHEAD_S)


def test_adamw_impl_follows_the_profiler_defaults():
    assert adamw_impl(None, None, on_cuda=True) == "fused"
    assert adamw_impl(None, None, on_cuda=False) == "foreach"
    assert adamw_impl(False, None, on_cuda=True) == "foreach"
    assert adamw_impl(None, False, on_cuda=False) == "for-loop"
    assert adamw_impl(True, False, on_cuda=False) == "fused"



def test_gpu_launch_overhead_hides_behind_big_steps():
    small = _step("gpt-tiny", batch_size=1, seq_len=64)
    assert small["bound"]["step"] == "host"
    parts, ops = small["breakdown"], small["overhead"]
    # micro-batch: max(device, host) = the host; optimizer step: max(traffic, launches) = the launches.
    host_bound = parts["forward_s"] + parts["backward_s"] + parts["optimizer_s"] + parts["op_overhead_s"]
    assert host_bound == pytest.approx((ops["ops_per_micro_batch"] + ops["ops_optimizer"]) * 7.5e-6)
    assert small["time_s"] == pytest.approx(host_bound)
    big = _step("gpt2", batch_size=16)
    assert big["breakdown"]["op_overhead_s"] == 0 and big["bound"]["step"] == "device"
