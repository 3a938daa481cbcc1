"""Step-time conventions shared by the cost model, inference and the DDP check; the printed assumptions.

The step time itself is the op graph's (``estimator.op_graph``) timed by a cost
source and composed by ``estimator.step_compose.compose``: on a GPU each kernel
its own roofline at a shape-dependent efficiency (``estimator.gpu_kernels``),
the host launching ahead; on a CPU every op in sequence. This module keeps the
pieces other estimators share — the roofline of one kernel, the optimizer's
bytes per parameter by AdamW implementation, ZeRO-3's communication factor —
and ``timing_assumptions``, the list printed under ``assumptions``.
"""

from __future__ import annotations

from estimator.communication import GPUS_PER_NODE
from estimator.hardware import HardwareSpec
from estimator.memory_terms import optimizer_bytes_per_param
from estimator.model_config import ModelConfig
from estimator.precision import Precision, get_precision
from estimator.setup import TrainSetup
from estimator.step_overheads import StepOverheads, default_overheads, overhead_assumptions

# FSDP / ZeRO-3 over one step: params all-gathered in forward and backward + grads reduce-scattered, in
# all-reduce volumes (the DDP check's prediction, profiler.ddp_summary)
ZERO3_COMM_FACTOR = 1.5
# AdamW passes over parameter-sized tensors when not fused (torch _multi_tensor_adamw / the for-loop):
# mul_(p) 2w, lerp_(m, g) 2s+g, mul_(v) 2s, addcmul_(v, g, g) 2s+g, sqrt(v) 2s, div_ 2s, add_ 2s,
# addcdiv_(p, m, ·) 2w+2s  ->  4w + 2g + 14s bytes per parameter (80 in fp32); fused: 2w + g + 2o.


def roofline(flops: float, traffic_bytes: float, peak: float, bandwidth: float) -> tuple[float, str]:
    """(seconds, 'compute' | 'memory'); ``peak`` and ``bandwidth`` already derated."""
    compute = flops / peak
    memory = traffic_bytes / bandwidth if bandwidth > 0 else 0.0
    return (compute, "compute") if compute >= memory else (memory, "memory")


def optimizer_bytes_moved(p: Precision, optimizer: str, optimizer_impl: str) -> int:
    """Bytes per parameter an optimizer step reads and writes (see the AdamW note above)."""
    o = optimizer_bytes_per_param(p, optimizer)
    fused = 2 * p.weight_bytes + p.grad_bytes + 2 * o
    if optimizer != "adamw" or optimizer_impl == "fused":
        return fused
    master = 4 if p.weight_bytes < 4 and o >= 12 else 0
    s = (o - master) // 2
    w = master or p.weight_bytes
    return 4 * w + 2 * p.grad_bytes + 14 * s + (2 * p.weight_bytes if master else 0)  # + the 16-bit copy


def optimizer_traffic_note(setup: TrainSetup, optimizer_impl: str = "fused") -> str:
    p = get_precision(setup.precision)
    per_param = optimizer_bytes_moved(p, setup.optimizer, optimizer_impl)
    how = ("one pass: read+write weights and states, read grads" if optimizer_impl == "fused"
           or setup.optimizer != "adamw" else "8 elementwise passes of torch's unfused AdamW")
    return f"optimizer step memory-bound ({optimizer_impl}): {per_param} B/param moved ({how})"

def timing_assumptions(setup: TrainSetup, hardware: HardwareSpec, overlap_dp: bool = True,
                       overheads: StepOverheads | None = None, cfg: ModelConfig | None = None,
                       seq_len: int | None = None, kernels: dict | None = None) -> dict[str, object]:
    """Every constant and rule behind a predicted step, as printed under ``assumptions``; ``kernels``:
    the cost source's own (``DatasheetCost.assumptions``: what set each kernel's efficiency)."""
    overheads = overheads or default_overheads(hardware)
    return {
        "efficiency.flops": setup.efficiency.flops,
        "efficiency.memory": setup.efficiency.memory,
        "efficiency.interconnect": setup.efficiency.interconnect,
        "time.roofline": ("per kernel of the op graph: max(FLOPs / (peak x matmul efficiency), bytes / (memory bw x "
                          "eff.memory)); " + ("the host launches ahead: a micro-batch takes max(device, host)"
                                              if overheads.overlapped else "ops in sequence: device + host")),
        **(kernels or {}),
        "time.optimizer": optimizer_traffic_note(setup, overheads.optimizer_impl),
        "time.gpus_per_node": GPUS_PER_NODE,
        "time.intra_node_bandwidth": hardware.intra_node_bandwidth / 2,
        "time.inter_node_bandwidth": hardware.inter_node_bandwidth,
        "time.links": "NVLink/PCIe figure is bidirectional, halved per direction; the inter-node figure is per "
                      "GPU and an assumption of the hardware table (collectives: comm.model)",
        "time.tp_comm": "4 all-reduces of b·s·h activations per layer per micro-batch (6 with full recompute), "
                        "not overlapped",
        "time.pp": ("1F1B: (grad_accum + (pp − 1)/vpp) micro-batch slots per step, bubble (pp−1)/(vpp·grad_accum); "
                    "one send forward and one backward per micro-batch per virtual stage, not overlapped"),
        "time.dp": ("ZeRO 0/1: the gradient all-reduce once per step, " + ("overlapped with what the last "
                    "micro-batch's backward leaves free" if overlap_dp else "after the backward, not overlapped")
                    + "; ZeRO-2/3 reduce-scatter the gradients after every micro-batch's backward (sharded "
                      "gradients), ZeRO-3 also all-gathers the weights for each forward and backward, each "
                      "hidden behind its own phase's kernels as far as they last (one network); ZeRO-2 "
                      "all-gathers the updated weights once per step, behind the first forward"),
        **overhead_assumptions(overheads, setup, cfg, seq_len or setup.seq_len or (cfg and cfg.context_length)),
        "time.not_modelled": "data loading, cache effects on the CPU (small tensors run faster than the DRAM "
                             "bandwidth), thread contention, compute/communication overlap inside a micro-batch",
    }
