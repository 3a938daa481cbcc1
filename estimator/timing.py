"""Step time: a per-layer roofline plus the communication each parallelism adds.

Each layer's forward is ``max(FLOPs / (peak·eff_flops), bytes / (bw·eff_memory))``
(compute- or memory-bound, whichever is slower); backward costs twice the
FLOPs and twice the traffic. Tensor parallelism adds 4 ring all-reduces per
layer per micro-batch (2 forward, 2 backward; +2 with full recompute), the
pipeline a bubble of (pp−1) micro-batch times per step (fraction (pp−1)/m)
and a send per stage boundary, data parallelism a gradient all-reduce that
DDP overlaps with the last backward. The optimizer step is memory-bound.

Every constant below is reported under ``assumptions`` by
``timing_assumptions``; the efficiency factors come from ``TrainSetup``.
"""

from __future__ import annotations

from estimator.flops import forward_breakdown
from estimator.hardware import HardwareSpec
from estimator.memory import (
    StageParams,
    activation_bytes_per_layer,
    head_activation_bytes,
    logits_bytes,
    model_state_bytes,
    optimizer_bytes_per_param,
    residual_bytes,
    stage_params,
)
from estimator.model_config import ModelConfig
from estimator.precision import Precision, get_precision
from estimator.setup import TrainSetup

GPUS_PER_NODE = 8  # a group larger than this crosses the network
COLLECTIVE_LATENCY_S = 10e-6  # α per ring step (NCCL, formulas.md §4.3: 5-20 µs)
ACTIVATION_TRAFFIC = 2  # each saved activation is written once and read once in the forward
BACKWARD_FACTOR = 2  # backward = 2 x forward FLOPs and 2 x forward traffic
ZERO3_COMM_FACTOR = 1.5  # ZeRO-3: params all-gathered in forward and backward + grad reduce-scatter


def roofline(flops: float, traffic_bytes: float, peak: float, bandwidth: float) -> tuple[float, str]:
    """(seconds, 'compute' | 'memory'); ``peak`` and ``bandwidth`` already derated."""
    compute = flops / peak
    memory = traffic_bytes / bandwidth if bandwidth > 0 else 0.0
    return (compute, "compute") if compute >= memory else (memory, "memory")


def ring_all_reduce_s(message_bytes: float, ranks: int, bandwidth: float,
                      latency: float = COLLECTIVE_LATENCY_S) -> float:
    """2(n−1)/n · M / B + 2(n−1)·α; zero for one rank."""
    if ranks <= 1 or message_bytes <= 0:
        return 0.0
    return 2 * (ranks - 1) / ranks * transfer_s(message_bytes, bandwidth) + 2 * (ranks - 1) * latency


def transfer_s(n_bytes: float, bandwidth: float) -> float:
    """Seconds to move ``n_bytes``; an unknown (zero) bandwidth contributes nothing (predict warns)."""
    return n_bytes / bandwidth if bandwidth > 0 else 0.0


def link_bandwidth(hardware: HardwareSpec, span: int, interconnect_efficiency: float) -> float:
    """Per-direction bytes/s for a group spanning ``span`` GPUs: NVLink/PCIe (a
    bidirectional aggregate, halved) inside a node, the per-GPU NIC across nodes."""
    raw = hardware.intra_node_bandwidth / 2 if span <= GPUS_PER_NODE else hardware.inter_node_bandwidth
    return raw * interconnect_efficiency


def _stage_time(cfg: ModelConfig, setup: TrainSetup, p: Precision, params: StageParams, b: int, s: int,
                peak: float, bw: float, tp_bw: float, first: bool, last: bool) -> dict:
    """Seconds one micro-batch spends on one GPU of a stage (compute and TP comm only)."""
    tp = setup.tp
    fwd = forward_breakdown(cfg, s)
    layer_params = params.largest_layer
    acts = activation_bytes_per_layer(cfg, b, s, p, tp=tp, sp=setup.sp, recompute="none",
                                      flash_attention=setup.flash_attention)["total"]
    layer_flops = b * fwd["block"] / tp
    layer_bytes = layer_params * p.weight_bytes + ACTIVATION_TRAFFIC * acts
    layer_fwd, layer_bound = roofline(layer_flops, layer_bytes, peak, bw)
    layer_bwd, _ = roofline(BACKWARD_FACTOR * layer_flops, BACKWARD_FACTOR * layer_bytes, peak, bw)

    if setup.recompute == "full":
        layer_rec = layer_fwd
    elif setup.recompute == "selective":
        core = b * (fwd["attention/scores"] + fwd["attention/reduce"]) / tp
        layer_rec, _ = roofline(core, 0, peak, bw)
    else:
        layer_rec = 0.0

    forward = params.layers * layer_fwd
    backward = params.layers * layer_bwd
    recompute = params.layers * layer_rec
    head_bound = None
    if last:
        head_flops = b * fwd["dense"] / tp
        head_bytes = (cfg.vocab_size * cfg.d_model // tp * p.weight_bytes + logits_bytes(cfg, b, s, p, tp)
                      + head_activation_bytes(cfg, b, s, p, tp, setup.sp))
        head_fwd, head_bound = roofline(head_flops, head_bytes, peak, bw)
        head_bwd, _ = roofline(BACKWARD_FACTOR * head_flops, BACKWARD_FACTOR * head_bytes, peak, bw)
        forward += head_fwd
        backward += head_bwd
    if first:  # embedding gather and its gradient scatter: pure traffic
        emb = b * s * cfg.d_model * residual_bytes(p)
        forward += transfer_s(emb, bw)
        backward += transfer_s(BACKWARD_FACTOR * emb, bw)

    all_reduces = 4 + (2 if setup.recompute == "full" else 0)
    message = b * s * cfg.d_model * p.activation_bytes
    return {
        "forward_s": forward,
        "backward_s": backward,
        "recompute_s": recompute,
        "tp_comm_s": params.layers * all_reduces * ring_all_reduce_s(message, tp, tp_bw),
        "layer_bound": layer_bound,
        "head_bound": head_bound,
    }


def train_step_time(cfg: ModelConfig, hardware: HardwareSpec, setup: TrainSetup, peak_flops: float,
                    batch_size: int | None = None, seq_len: int | None = None, overlap_dp: bool = True) -> dict:
    """Seconds per optimizer step and its parts, for the busiest pipeline stage.

    ``peak_flops`` is the dense peak the matmuls run at (not derated); the
    efficiency factors of ``setup.efficiency`` derate it and the bandwidths.
    ``overlap_dp``: the gradient all-reduce hides behind the last backward (DDP
    buckets); otherwise it is paid in full after it.
    """
    p = get_precision(setup.precision)
    eff = setup.efficiency
    b = setup.batch_size if batch_size is None else batch_size
    s = seq_len or setup.seq_len or cfg.context_length
    m, pp, dp = setup.grad_accum, setup.pp, setup.dp
    peak = peak_flops * eff.flops
    bw = hardware.memory_bandwidth * eff.memory
    tp_bw = link_bandwidth(hardware, setup.tp, eff.interconnect)

    stages = stage_params(cfg, setup.tp, pp, setup.ep)
    if pp == 1:
        timed = {"only": _stage_time(cfg, setup, p, stages["first"], b, s, peak, bw, tp_bw, True, True)}
    else:
        timed = {
            "first": _stage_time(cfg, setup, p, stages["first"], b, s, peak, bw, tp_bw, True, False),
            "last": _stage_time(cfg, setup, p, stages["last"], b, s, peak, bw, tp_bw, False, True),
        }

    def micro(st: dict) -> float:
        return st["forward_s"] + st["backward_s"] + st["recompute_s"] + st["tp_comm_s"]

    busiest = max(timed, key=lambda k: micro(timed[k]))
    st = timed[busiest]
    params = stages["first" if busiest == "only" else busiest]
    t_micro = micro(st)

    # Pipeline: (m + pp − 1) micro-batch slots per step; a send forward and one backward per micro-batch.
    pp_bw = link_bandwidth(hardware, setup.tp * pp, eff.interconnect)
    p2p_message = b * s * cfg.d_model * p.activation_bytes / (setup.tp if setup.sp else 1)
    p2p = 2 * (transfer_s(p2p_message, pp_bw) + COLLECTIVE_LATENCY_S) if pp > 1 else 0.0

    # Data parallel: gradients of this GPU's parameters, ring all-reduce (ZeRO: same volume, ×1.5 for stage 3).
    dp_bw = link_bandwidth(hardware, setup.world_size, eff.interconnect)
    grad_message = params.total * p.grad_bytes * (ZERO3_COMM_FACTOR if setup.zero == 3 else 1)
    dp_comm = ring_all_reduce_s(grad_message, dp, dp_bw)
    dp_exposed = max(0.0, dp_comm - st["backward_s"]) if overlap_dp else dp_comm

    dense = model_state_bytes(params.dense, p, dp, setup.zero, setup.optimizer)
    expert = model_state_bytes(params.expert, p, max(dp // setup.ep, 1), setup.zero, setup.optimizer)
    w, g, o = (dense[k] + expert[k] for k in ("weights", "gradients", "optimizer"))
    optimizer = transfer_s(2 * w + g + 2 * o, bw)  # read weights, grads, states; write weights, states

    step = (m + pp - 1) * t_micro + m * p2p + dp_exposed + optimizer
    return {
        "time_s": step,
        "micro_batch_s": t_micro,
        "busiest_stage": busiest,
        "bound": {"layer": st["layer_bound"], "head": st["head_bound"]},
        "breakdown": {
            "forward_s": m * st["forward_s"],
            "backward_s": m * st["backward_s"],
            "recompute_s": m * st["recompute_s"],
            "tp_comm_s": m * st["tp_comm_s"],
            "pp_bubble_s": (pp - 1) * t_micro,
            "pp_p2p_s": m * p2p,
            "dp_comm_s": dp_comm,
            "dp_exposed_s": dp_exposed,
            "optimizer_s": optimizer,
        },
    }


def optimizer_traffic_note(setup: TrainSetup) -> str:
    p = get_precision(setup.precision)
    per_param = 2 * p.weight_bytes + p.grad_bytes + 2 * optimizer_bytes_per_param(p, setup.optimizer)
    return f"optimizer step memory-bound: {per_param} B/param moved (read+write weights and states, read grads)"


def timing_assumptions(setup: TrainSetup, hardware: HardwareSpec, overlap_dp: bool = True) -> dict[str, object]:
    return {
        "efficiency.flops": setup.efficiency.flops,
        "efficiency.memory": setup.efficiency.memory,
        "efficiency.interconnect": setup.efficiency.interconnect,
        "time.roofline": "per layer: max(FLOPs / (peak x eff.flops), bytes / (HBM bw x eff.memory)); "
                         f"bytes = weights + {ACTIVATION_TRAFFIC} x saved activations; backward = "
                         f"{BACKWARD_FACTOR} x forward FLOPs and traffic",
        "time.optimizer": optimizer_traffic_note(setup),
        "time.gpus_per_node": GPUS_PER_NODE,
        "time.collective_latency_s": COLLECTIVE_LATENCY_S,
        "time.intra_node_bandwidth": hardware.intra_node_bandwidth / 2,
        "time.inter_node_bandwidth": hardware.inter_node_bandwidth,
        "time.links": "ring collectives; NVLink/PCIe figure is bidirectional, halved per direction; "
                      "the inter-node figure is per GPU and an assumption of the hardware table",
        "time.tp_comm": "4 all-reduces of b·s·h activations per layer per micro-batch (6 with full recompute), "
                        "not overlapped",
        "time.pp": "1F1B: (grad_accum + pp − 1) micro-batch slots per step, bubble (pp−1)/grad_accum; "
                   "one send forward and one backward per micro-batch, not overlapped",
        "time.dp": ("gradient ring all-reduce " + ("overlapped with the last micro-batch's backward"
                    if overlap_dp else "after the backward, not overlapped")
                    + f" (ZeRO-3: x{ZERO3_COMM_FACTOR} volume)"),
        "time.not_modelled": "kernel launch overheads, expert all-to-all, data loading, torch.compile fusion",
    }
