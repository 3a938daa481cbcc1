"""The composed step: collectives, pipeline bubble (interleaved too), DP overlap, bounds, MFU, Megatron's
Table 1, the dispatched-op count against a real step, and the CPU's serial host cost."""

from __future__ import annotations

import pytest

from estimator.communication import COLLECTIVE_LATENCY_S, communication_seconds, link_bandwidth, ring_all_reduce_s
from estimator.cost_model import DatasheetCost
from estimator.step_compose import predict_step
from estimator.hardware import get_gpu
from estimator.device_specs import cpu_spec
from estimator.model_config import ModelConfig
from estimator.op_graph import step_graph
from estimator.precision import get_precision
from estimator.predict import predict
from estimator.presets import get_model
from estimator.setup import Efficiency, TrainSetup
from estimator.step_overheads import (
    CPU_OP_OVERHEAD_S,
    StepOverheads,
    adamw_impl,
    cpu_attention_efficiency,
    default_overheads,
)
from estimator.step_time import optimizer_bytes_moved, roofline

A100 = get_gpu("a100-sxm-80gb")
H100 = get_gpu("h100-sxm")
TINY = get_model("gpt-tiny")


def test_roofline_takes_the_slower_side():
    assert roofline(2e12, 1e9, 1e12, 1e12) == (2.0, "compute")
    assert roofline(1e9, 3e12, 1e12, 1e12) == (3.0, "memory")


def test_ring_all_reduce_formula():
    assert ring_all_reduce_s(1e9, 1, 1e11) == 0.0
    assert ring_all_reduce_s(1e9, 8, 1e11) == pytest.approx(2 * 7 / 8 * 1e-2 + 14 * COLLECTIVE_LATENCY_S)


def test_link_bandwidth_inside_and_across_nodes():
    assert link_bandwidth(H100, 8, 1.0) == H100.intra_node_bandwidth / 2  # bidirectional figure, one way
    assert link_bandwidth(H100, 16, 0.5) == H100.inter_node_bandwidth * 0.5


def _step(model, hardware=H100, overlap_dp=True, **kw) -> dict:
    kw.setdefault("seq_len", 1024)
    setup = TrainSetup(**kw)
    cfg = get_model(model) if isinstance(model, str) else model
    return predict_step(cfg, setup, DatasheetCost(hardware, setup), overlap_dp=overlap_dp)


def _terms_sum(step: dict) -> float:
    return sum(v for k, v in step["breakdown"].items() if k != "dp_comm_s")  # dp_exposed_s is its paid part


def test_tensor_parallel_four_all_reduces_per_layer():
    setup = TrainSetup(batch_size=8, seq_len=1024, tp=2)
    op = next(op for op, _ in step_graph(get_model("gpt2"), setup).counted() if op.name.startswith("tp."))
    assert op.shape == (8 * 1024 * 768 * 2, 2)  # b·s·h bf16 activations over 2 ranks
    per = communication_seconds(op, H100, setup)
    assert _step("gpt2", batch_size=8)["breakdown"]["tp_comm_s"] == 0
    assert _step("gpt2", batch_size=8, tp=2)["breakdown"]["tp_comm_s"] == pytest.approx(12 * 4 * per)
    full = _step("gpt2", batch_size=8, tp=2, recompute="full")
    assert full["breakdown"]["tp_comm_s"] == pytest.approx(12 * 6 * per)


def test_pipeline_bubble_and_parts_sum_to_step():
    st = _step("gpt2-xl", batch_size=2, pp=4, grad_accum=8)
    assert st["breakdown"]["pp_bubble_s"] == pytest.approx(3 * st["micro_batch_s"])  # (p − 1) slots
    assert st["time_s"] == pytest.approx(_terms_sum(st), rel=1e-12)
    interleaved = _step("gpt2-xl", batch_size=2, pp=4, vpp=4, grad_accum=8)  # 48 layers: 12 per stage, 3 per chunk
    assert interleaved["breakdown"]["pp_bubble_s"] == pytest.approx(3 / 4 * interleaved["micro_batch_s"])
    assert interleaved["breakdown"]["pp_p2p_s"] == pytest.approx(4 * st["breakdown"]["pp_p2p_s"])  # a send per chunk
    assert interleaved["time_s"] < st["time_s"]


def test_dp_all_reduce_hidden_behind_backward_when_small():
    st = _step("gpt2", batch_size=16, dp=8)
    assert st["breakdown"]["dp_comm_s"] > 0 and st["breakdown"]["dp_exposed_s"] == 0
    paid = _step("gpt2", batch_size=16, dp=8, overlap_dp=False)
    assert paid["breakdown"]["dp_exposed_s"] == paid["breakdown"]["dp_comm_s"] > 0
    assert paid["time_s"] == pytest.approx(st["time_s"] + paid["breakdown"]["dp_comm_s"])


def test_zero_shards_the_optimizer_step():
    plain, sharded = _step("gpt2", batch_size=16, dp=8), _step("gpt2", batch_size=16, dp=8, zero=1)
    assert sharded["breakdown"]["optimizer_s"] == pytest.approx(plain["breakdown"]["optimizer_s"] / 8, rel=0.01)


def test_small_batch_is_memory_bound_large_is_compute_bound():
    assert _step("llama-2-7b", batch_size=1, seq_len=8)["bound"]["layer"] == "memory"
    assert _step("llama-2-7b", batch_size=4, seq_len=2048)["bound"]["layer"] == "compute"


def test_mfu_below_the_gemm_ceiling_and_hfu_counts_recompute():
    r = predict(get_model("gpt2-xl"), H100, TrainSetup(batch_size=8, seq_len=1024, recompute="full"))
    step = r["step"]
    assert 0.3 < step["hfu"] < 792.1 / 989  # below the measured GEMM ceiling of an H100
    assert step["hfu"] == pytest.approx(step["mfu"] * r["flops"]["hardware_total"] / r["flops"]["total"])
    assert step["mfu_causal"] < step["mfu"]
    assert step["tokens_per_s"] == pytest.approx(8 * 1024 / step["time_s"])


def _megatron(h, L, a, t, p, gpus, batch, tflops, micro):
    """Narayanan et al. 2021 Table 1 row, A100-80GB, s = 2048, V = 51200, full recompute; every GEMM at the
    row's achieved rate (--flops-efficiency), so the FLOP conventions can be compared."""
    model = ModelConfig(name=f"gpt-{h}", vocab_size=51200, context_length=2048, d_model=h, n_layers=L, n_heads=a)
    dp = gpus // (t * p)
    setup = TrainSetup(batch_size=micro, seq_len=2048, precision="bf16-master", recompute="full", dp=dp, tp=t, pp=p,
                       grad_accum=batch // dp // micro, efficiency=Efficiency(flops=tflops / 312e12))
    paper = 96 * batch * 2048 * L * h * h * (1 + 2048 / (6 * h) + 51200 / (16 * L * h)) / (gpus * tflops)
    return predict(model, A100, setup), paper


def test_megatron_table1_data_parallel_row():
    """1.7B on 32 GPUs (t = p = 1) at the reported 137 TFLOP/s: our GEMM and attention kernels at that rate
    take the paper's time (the same FLOP count); the memory-bound kernels and the optimizer come on top."""
    r, paper = _megatron(2304, 24, 24, 1, 1, 32, 512, 137e12, micro=4)
    assert paper == pytest.approx(3.528, rel=1e-3)
    cats = r["step"]["categories"]
    assert cats["matmul"] + cats["attention"] == pytest.approx(paper, rel=0.01)
    assert r["step"]["time_s"] > paper
    assert r["flops"]["hardware_per_gpu_per_step"] / 137e12 == pytest.approx(paper, rel=1e-9)


def test_megatron_table1_145b_row():
    """145.6B (t = 8, p = 8, 1536 GPUs, 148 TFLOP/s): ≈ 24.8 s/iteration; the GEMMs at that rate match
    (the last stage adds the head); bubble, TP all-reduces and memory-bound kernels come on top."""
    r, paper = _megatron(12288, 80, 96, 8, 8, 1536, 2304, 148e12, micro=1)
    assert paper == pytest.approx(24.8, rel=0.01)
    parts, cats = r["step"]["breakdown"], r["step"]["categories"]
    m = 2304 // 24  # micro-batches per step; the categories hold m + pp − 1 slots of the busiest stage
    assert (cats["matmul"] + cats["attention"]) * m / (m + 7) == pytest.approx(paper, rel=0.03)
    assert parts["pp_bubble_s"] > 0 and parts["tp_comm_s"] > 0
    assert paper < r["step"]["time_s"] < 1.5 * paper


# ----------------------------------------------------------------- dispatched ops and CPU kernels

def test_op_graph_dispatch_count_matches_a_real_step():
    """The ops the op graph charges a launch/dispatch for (kernels + their host_ops) against a
    TorchDispatchMode count of a real step's forward and backward (within 10 %)."""
    torch = pytest.importorskip("torch")
    from torch.utils._python_dispatch import TorchDispatchMode

    from profiler.step import StepOptions, TrainingStep

    class Count(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Count.n += 1
            return func(*args, **(kwargs or {}))

    for model in (TINY, get_model("llama-tiny")):
        for precision, flash in (("fp32", True), ("bf16-mixed", True), ("fp32", False)):
            trainer = TrainingStep(model, "cpu", StepOptions(precision=precision, flash_attention=flash))
            x, y = trainer.make_batch(2, 16)
            trainer.step(x, y)
            Count.n = 0
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision != "fp32"), Count():
                loss = trainer.model(x, y)
            with Count():
                loss.backward()
            graph = step_graph(model, TrainSetup(batch_size=2, seq_len=16, precision=precision,
                                                 flash_attention=flash))
            charged = sum(n * (1 + op.host_ops) for op, n in graph.counted()
                          if op.category not in ("communication", "host"))
            assert charged == pytest.approx(Count.n, rel=0.10), (model.name, precision, flash)


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


def test_cpu_host_cost_is_serial():
    """On the CPU every dispatched op's host cost adds to the step: the same step with free dispatch is
    shorter by exactly the host time the step reports."""
    spec = cpu_spec("Test CPU", 2, 2.6e9, ["avx512f", "avx512_bf16"], 16 * 2**30)
    assert default_overheads(spec).device_kind == "cpu" and default_overheads(H100).device_kind == "gpu"
    setup = TrainSetup(batch_size=16, seq_len=128)
    st = predict_step(TINY, setup, DatasheetCost(spec, setup))
    free = predict_step(TINY, setup, DatasheetCost(spec, setup, StepOverheads("cpu", 0.0, "fused",
                                                                              cpu_kernels=True)))
    assert st["time_s"] == pytest.approx(_terms_sum(st), rel=1e-12)
    assert st["breakdown"]["op_overhead_s"] == pytest.approx(st["overhead"]["host_s"])
    assert st["time_s"] - free["time_s"] == pytest.approx(st["overhead"]["host_s"])
    assert st["overhead"]["host_s"] > (st["overhead"]["ops_per_micro_batch"] - 1) * CPU_OP_OVERHEAD_S


def test_adamw_impl_follows_the_profiler_defaults():
    assert adamw_impl(None, None, fused_default=True) == "fused"
    assert adamw_impl(None, None, fused_default=False) == "foreach"  # a torch without the device's kernel
    assert adamw_impl(False, None, fused_default=True) == "foreach"
    assert adamw_impl(None, False, fused_default=False) == "for-loop"
    assert adamw_impl(True, False, fused_default=False) == "fused"


def test_gpu_launch_overhead_hides_behind_big_steps():
    small = _step("gpt-tiny", batch_size=1, seq_len=64)
    assert small["bound"]["step"] == "host"
    parts, ops = small["breakdown"], small["overhead"]
    assert small["micro_batch_s"] == pytest.approx(ops["ops_per_micro_batch"] * 7.5e-6)  # the host's launches
    assert small["time_s"] == pytest.approx(_terms_sum(small), rel=1e-12)
    assert parts["op_overhead_s"] > 0
    big = _step("gpt2", batch_size=16)
    assert big["breakdown"]["op_overhead_s"] == 0 and big["bound"]["step"] == "device"


def test_zero_2_and_3_reduce_the_gradients_every_micro_batch():
    """ZeRO-2/3 keep only a shard of the gradients, so they reduce-scatter after every backward; ZeRO-3 also
    all-gathers the weights for each forward and backward: all of ZeRO-3's traffic grows with grad-accum,
    ZeRO-2's but its one gather of the updated weights per step; ZeRO-1's all-reduce does not grow."""
    kw = dict(batch_size=1, seq_len=4096, tp=8, dp=128, sp=True, precision="bf16-master")
    grows = {}
    for zero in (1, 2, 3):
        one, four = (_step("llama-2-70b", zero=zero, grad_accum=m, **kw) for m in (1, 4))
        assert one["time_s"] == pytest.approx(_terms_sum(one), rel=1e-12)
        grows[zero] = four["breakdown"]["dp_comm_s"] / one["breakdown"]["dp_comm_s"]
    p = get_precision("bf16-master")
    rs, ag = p.grad_bytes, p.activation_bytes  # bytes per parameter: gradient reduce-scatter, weight gather
    assert grows[1] == pytest.approx(1.0)
    assert grows[2] == pytest.approx((4 * rs + ag) / (rs + ag), rel=0.02)
    assert grows[3] == pytest.approx(4.0, rel=1e-9)
    assert _step("llama-2-70b", zero=3, grad_accum=4, **kw)["time_s"] > _step("llama-2-70b", zero=2, grad_accum=4,
                                                                              **kw)["time_s"]


def test_data_parallel_traffic_hides_only_behind_its_own_phase():
    """One network: ZeRO-3's forward gather hides only behind the forward's kernels, so a micro-batch whose
    traffic in all (3 equal messages in pure bf16) is shorter than its kernels in all still exposes the
    forward's excess (backward: gather + reduce-scatter behind backward + full recompute, hidden)."""
    m = 2
    step = _step("llama-2-7b", hardware=get_gpu("a100-sxm-80gb"), batch_size=2, seq_len=3584, dp=64, zero=3,
                 precision="bf16", recompute="full", grad_accum=m)
    parts = step["breakdown"]
    forward, backward = parts["forward_s"] / m, (parts["backward_s"] + parts["recompute_s"]) / m
    message = parts["dp_comm_s"] / (3 * m)  # all-gather forward, all-gather backward, reduce-scatter
    assert 3 * message < forward + backward and 2 * message < backward and message > forward  # the regime
    assert parts["dp_exposed_s"] == pytest.approx(m * (message - forward), rel=1e-9)
    assert step["time_s"] == pytest.approx(_terms_sum(step), rel=1e-12)
