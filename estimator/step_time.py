"""Step time: a per-layer roofline, per-op host overhead, and the communication each parallelism adds.

GPU (kernels launched asynchronously): each layer's forward is ``max(FLOPs /
(peak·eff_flops), bytes / (bw·eff_memory))`` (compute- or memory-bound,
whichever is slower); backward costs twice the FLOPs and twice the traffic.
The host dispatches every op ahead of the device, so a micro-batch takes
``max(device time, ops × launch overhead)``.

CPU (eager ops run one after another on the same cores): the parts add up —
linear matmuls at the matmul dtype's peak, the attention core at the CPU
attention kernel's rate (see ``cpu_attention_efficiency``), elementwise
traffic at the memory bandwidth, and ``ops × dispatch overhead``.

Tensor parallelism adds 4 ring all-reduces per layer per micro-batch (2
forward, 2 backward; +2 with full recompute), the pipeline a bubble of (pp−1)
micro-batch times per step (fraction (pp−1)/m) and a send per stage boundary,
data parallelism a gradient all-reduce that DDP overlaps with the last
backward. The optimizer step is memory-bound plus its per-tensor host cost.

Every constant below is reported under ``assumptions`` by
``timing_assumptions``; the efficiency factors come from ``TrainSetup``, the
per-op and kernel figures from ``StepOverheads`` (``default_overheads``),
which with the op counts lives in ``estimator.step_overheads``.
"""

from __future__ import annotations

from estimator.communication import COLLECTIVE_LATENCY_S, GPUS_PER_NODE, link_bandwidth, ring_all_reduce_s, transfer_s
from estimator.flops import forward_breakdown
from estimator.hardware import HardwareSpec
from estimator.memory_terms import (
    StageParams,
    activation_bytes_per_layer,
    head_activation_bytes,
    is_autocast,
    logits_bytes,
    model_state_bytes,
    optimizer_bytes_per_param,
    residual_bytes,
    stage_params,
)
from estimator.model_config import ModelConfig
from estimator.precision import Precision, get_precision
from estimator.setup import TrainSetup
from estimator.step_overheads import (
    CPU_ELEMENT_BYTES,
    EXPLICIT_SCORE_PASSES,
    StepOverheads,
    cpu_attention_efficiency,
    default_overheads,
    overhead_assumptions,
    step_op_counts,
)


ACTIVATION_TRAFFIC = 2  # each saved activation is written once and read once in the forward
BACKWARD_FACTOR = 2  # backward = 2 x forward FLOPs and 2 x forward traffic
ZERO3_COMM_FACTOR = 1.5  # ZeRO-3: params all-gathered in forward and backward + grad reduce-scatter
# AdamW passes over parameter-sized tensors when not fused (torch _multi_tensor_adamw / the for-loop):
# mul_(p) 2w, lerp_(m, g) 2s+g, mul_(v) 2s, addcmul_(v, g, g) 2s+g, sqrt(v) 2s, div_ 2s, add_ 2s,
# addcdiv_(p, m, ·) 2w+2s  ->  4w + 2g + 14s bytes per parameter (80 in fp32); fused: 2w + g + 2o.


def roofline(flops: float, traffic_bytes: float, peak: float, bandwidth: float) -> tuple[float, str]:
    """(seconds, 'compute' | 'memory'); ``peak`` and ``bandwidth`` already derated."""
    compute = flops / peak
    memory = traffic_bytes / bandwidth if bandwidth > 0 else 0.0
    return (compute, "compute") if compute >= memory else (memory, "memory")


# ----------------------------------------------------------------- compute

def _layer_traffic(cfg: ModelConfig, setup: TrainSetup, p: Precision, b: int, s: int, layer_params: int,
                   device_kind: str, cpu_kernels: bool) -> float:
    """Bytes a block's forward moves: weights (+ autocast's cast of them), activations written and
    read, and on the CPU (``cpu_kernels``) every pass of explicit attention over the s² scores."""
    tp = setup.tp
    element = get_precision("fp32") if cpu_kernels else p  # CPU elementwise passes at the fp32 rate
    acts = activation_bytes_per_layer(cfg, b, s, element, tp=tp, sp=setup.sp, recompute="none",
                                      flash_attention=setup.flash_attention, device_kind=device_kind)
    traffic = layer_params * p.weight_bytes + ACTIVATION_TRAFFIC * acts["total"]
    if is_autocast(p):
        traffic += layer_params * (p.weight_bytes + p.activation_bytes)  # read fp32, write the 16-bit copy
    if cpu_kernels and not setup.flash_attention:  # every eager pass over the scores, not just the saved probs
        scores = b * -(-cfg.n_heads // tp) * s * s
        traffic += EXPLICIT_SCORE_PASSES * CPU_ELEMENT_BYTES * scores - ACTIVATION_TRAFFIC * acts["attention/core"]
    return traffic


def _stage_time(cfg: ModelConfig, setup: TrainSetup, p: Precision, params: StageParams, b: int, s: int,
                peak_flops: float, bw: float, tp_bw: float, first: bool, last: bool, hardware: HardwareSpec,
                overheads: StepOverheads) -> dict:
    """Seconds one micro-batch spends on one GPU of a stage (compute, TP comm, host overhead);
    ``peak_flops`` is the matmul dtype's dense peak, derated here."""
    tp = setup.tp
    eff = setup.efficiency
    peak = peak_flops * (eff.flops if overheads.matmul_efficiency is None else overheads.matmul_efficiency)
    fwd = forward_breakdown(cfg, s)
    sequential = overheads.device_kind == "cpu"
    layer_flops = b * fwd["block"] / tp
    attn_flops = b * (fwd["attention/scores"] + fwd["attention/reduce"]) / tp
    layer_bytes = _layer_traffic(cfg, setup, p, b, s, params.largest_layer, overheads.device_kind,
                                 overheads.cpu_kernels)
    parts = {"matmul_s": 0.0, "attention_s": 0.0, "elementwise_s": 0.0}
    if sequential:  # CPU: matmuls, attention core and elementwise passes one after another
        attn_rate = peak
        if overheads.cpu_kernels:
            dtype, factor = cpu_attention_efficiency(cfg, s, setup.flash_attention, p)
            attn_rate = peak * factor * (hardware.peak(dtype) or peak_flops) / peak_flops
        matmul = (layer_flops - attn_flops) / peak
        attention = attn_flops / attn_rate
        elementwise = transfer_s(layer_bytes, bw)
        layer_fwd = matmul + attention + elementwise
        layer_bound = "compute" if matmul + attention >= elementwise else "memory"
        for key, value in (("matmul_s", matmul), ("attention_s", attention), ("elementwise_s", elementwise)):
            parts[key] += (1 + BACKWARD_FACTOR) * params.layers * value
    else:
        layer_fwd, layer_bound = roofline(layer_flops, layer_bytes, peak, bw)
    layer_bwd = BACKWARD_FACTOR * layer_fwd

    if setup.recompute == "full":
        layer_rec = layer_fwd
    elif setup.recompute == "selective":
        layer_rec, _ = roofline(attn_flops, 0, peak, bw)
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
        if sequential:
            head_fwd = head_flops / peak + transfer_s(head_bytes, bw)
            head_bound = "compute" if head_flops / peak >= transfer_s(head_bytes, bw) else "memory"
            parts["matmul_s"] += (1 + BACKWARD_FACTOR) * head_flops / peak
            parts["elementwise_s"] += (1 + BACKWARD_FACTOR) * transfer_s(head_bytes, bw)
        else:
            head_fwd, head_bound = roofline(head_flops, head_bytes, peak, bw)
        forward += head_fwd
        backward += BACKWARD_FACTOR * head_fwd
    if first:  # embedding gather and its gradient scatter: pure traffic
        emb = b * s * cfg.d_model * residual_bytes(p)
        forward += transfer_s(emb, bw)
        backward += transfer_s(BACKWARD_FACTOR * emb, bw)
        parts["elementwise_s"] += transfer_s((1 + BACKWARD_FACTOR) * emb, bw)

    all_reduces = 4 + (2 if setup.recompute == "full" else 0)
    message = b * s * cfg.d_model * p.activation_bytes
    ops = step_op_counts(cfg, setup, params, first, last, overheads)
    return {
        "forward_s": forward,
        "backward_s": backward,
        "recompute_s": recompute,
        "tp_comm_s": params.layers * all_reduces * ring_all_reduce_s(message, tp, tp_bw),
        "host_s": ops["micro_batch"] * overheads.op_overhead_s,
        "ops": ops,
        "parts": parts,
        "layer_bound": layer_bound,
        "head_bound": head_bound,
    }


def _hidden(device_s: float, host_s: float, overlapped: bool) -> float:
    """Host time not hidden behind device work: all of it on the CPU, the excess on a GPU."""
    return max(0.0, host_s - device_s) if overlapped else host_s

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


def train_step_time(cfg: ModelConfig, hardware: HardwareSpec, setup: TrainSetup, peak_flops: float,
                    batch_size: int | None = None, seq_len: int | None = None, overlap_dp: bool = True,
                    overheads: StepOverheads | None = None) -> dict:
    """Seconds per optimizer step and its parts, for the busiest pipeline stage.

    ``peak_flops`` is the dense peak the matmuls run at (not derated); the
    efficiency factors of ``setup.efficiency`` derate it and the bandwidths.
    ``overlap_dp``: the gradient all-reduce hides behind the last backward (DDP
    buckets); otherwise it is paid in full after it. ``overheads``: per-op host
    cost and CPU kernel behaviour (default: ``default_overheads(hardware)``).
    """
    overheads = overheads or default_overheads(hardware)
    p = get_precision(setup.precision)
    eff = setup.efficiency
    b = setup.batch_size if batch_size is None else batch_size
    s = seq_len or setup.seq_len or cfg.context_length
    m, pp, dp = setup.grad_accum, setup.pp, setup.dp
    bw = hardware.memory_bandwidth * eff.memory
    tp_bw = link_bandwidth(hardware, setup.tp, eff.interconnect)

    stages = stage_params(cfg, setup.tp, pp, setup.ep)
    args = (peak_flops, bw, tp_bw)
    if pp == 1:
        timed = {"only": _stage_time(cfg, setup, p, stages["first"], b, s, *args, True, True, hardware, overheads)}
    else:
        timed = {
            "first": _stage_time(cfg, setup, p, stages["first"], b, s, *args, True, False, hardware, overheads),
            "last": _stage_time(cfg, setup, p, stages["last"], b, s, *args, False, True, hardware, overheads),
        }

    def device(st: dict) -> float:
        return st["forward_s"] + st["backward_s"] + st["recompute_s"] + st["tp_comm_s"]

    def micro(st: dict) -> float:
        return device(st) + _hidden(device(st), st["host_s"], overheads.overlapped)

    busiest = max(timed, key=lambda k: micro(timed[k]))
    st = timed[busiest]
    params = stages["first" if busiest == "only" else busiest]
    t_micro = micro(st)
    micro_exposed = t_micro - device(st)

    # Pipeline: (m + pp − 1) micro-batch slots per step; a send forward and one backward per micro-batch.
    pp_bw = link_bandwidth(hardware, setup.tp * pp, eff.interconnect)
    p2p_message = b * s * cfg.d_model * p.activation_bytes / (setup.tp if setup.sp else 1)
    p2p = 2 * (transfer_s(p2p_message, pp_bw) + COLLECTIVE_LATENCY_S) if pp > 1 else 0.0

    # Data parallel: gradients of this GPU's parameters, ring all-reduce (ZeRO: same volume, ×1.5 for stage 3).
    dp_bw = link_bandwidth(hardware, setup.world_size, eff.interconnect)
    if setup.zero == 3:
        # ZeRO-3 re-gathers the weights in every micro-batch's forward and backward (an all-gather
        # moves half an all-reduce's volume) and reduce-scatters the gradients once per step.
        gather = ring_all_reduce_s(params.total * p.activation_bytes, dp, dp_bw) / 2
        dp_comm = 2 * m * gather + ring_all_reduce_s(params.total * p.grad_bytes, dp, dp_bw) / 2
    else:
        dp_comm = ring_all_reduce_s(params.total * p.grad_bytes, dp, dp_bw)
    dp_exposed = max(0.0, dp_comm - st["backward_s"]) if overlap_dp else dp_comm

    # Optimizer: memory-bound over this GPU's (ZeRO-sharded) states, plus its per-tensor host cost;
    # unfused AdamW makes more passes over the same tensors.
    dense = model_state_bytes(params.dense, p, dp, setup.zero, setup.optimizer)
    expert = model_state_bytes(params.expert, p, max(dp // setup.ep, 1), setup.zero, setup.optimizer)
    w, g, o = (dense[k] + expert[k] for k in ("weights", "gradients", "optimizer"))
    passes = (optimizer_bytes_moved(p, setup.optimizer, overheads.optimizer_impl)
              / optimizer_bytes_moved(p, setup.optimizer, "fused"))
    optimizer = transfer_s((2 * w + g + 2 * o) * passes, bw)  # fused: read weights, grads, states; write w, s
    opt_host = st["ops"]["optimizer"] * overheads.op_overhead_s
    opt_exposed = _hidden(optimizer, opt_host, overheads.overlapped)

    step = (m + pp - 1) * t_micro + m * p2p + dp_exposed + optimizer + opt_exposed
    ops = st["ops"]
    return {
        "time_s": step,
        "micro_batch_s": t_micro,
        "busiest_stage": busiest,
        "bound": {"layer": st["layer_bound"], "head": st["head_bound"],
                  "step": "host" if micro_exposed > 0 and overheads.overlapped else "device"},
        "breakdown": {
            "forward_s": m * st["forward_s"],
            "backward_s": m * st["backward_s"],
            "recompute_s": m * st["recompute_s"],
            "tp_comm_s": m * st["tp_comm_s"],
            "op_overhead_s": m * micro_exposed + opt_exposed,
            "pp_bubble_s": (pp - 1) * t_micro,
            "pp_p2p_s": m * p2p,
            "dp_comm_s": dp_comm,
            "dp_exposed_s": dp_exposed,
            "optimizer_s": optimizer,
        },
        "overhead": {
            "ops_per_micro_batch": ops["micro_batch"], "ops_forward": ops["forward"],
            "ops_backward": ops["backward"], "ops_optimizer": ops["optimizer"],
            "param_tensors": ops["param_tensors"], "op_overhead_s": overheads.op_overhead_s,
            "host_s": m * st["host_s"] + opt_host, "overlapped": overheads.overlapped,
            "device_kind": overheads.device_kind, "optimizer_impl": overheads.optimizer_impl,
        },
        "parts": {k: m * v for k, v in st["parts"].items()} if overheads.device_kind == "cpu" else None,
    }


def optimizer_traffic_note(setup: TrainSetup, optimizer_impl: str = "fused") -> str:
    p = get_precision(setup.precision)
    per_param = optimizer_bytes_moved(p, setup.optimizer, optimizer_impl)
    how = ("one pass: read+write weights and states, read grads" if optimizer_impl == "fused"
           or setup.optimizer != "adamw" else "8 elementwise passes of torch's unfused AdamW")
    return f"optimizer step memory-bound ({optimizer_impl}): {per_param} B/param moved ({how})"

def timing_assumptions(setup: TrainSetup, hardware: HardwareSpec, overlap_dp: bool = True,
                       overheads: StepOverheads | None = None, cfg: ModelConfig | None = None,
                       seq_len: int | None = None) -> dict[str, object]:
    overheads = overheads or default_overheads(hardware)
    return {
        "efficiency.flops": setup.efficiency.flops,
        "efficiency.memory": setup.efficiency.memory,
        "efficiency.interconnect": setup.efficiency.interconnect,
        "time.roofline": ("per layer: " + ("max" if overheads.overlapped else "sum") + "(FLOPs / (peak x "
                          + ("eff.flops" if overheads.matmul_efficiency is None else "time.matmul_efficiency") + "), "
                          f"bytes / (memory bw x eff.memory)); bytes = weights (+ autocast's copy) + "
                          f"{ACTIVATION_TRAFFIC} x saved activations (explicit attention: {EXPLICIT_SCORE_PASSES} "
                          f"passes over the scores); backward = {BACKWARD_FACTOR} x forward FLOPs and traffic"),
        "time.optimizer": optimizer_traffic_note(setup, overheads.optimizer_impl),
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
        **overhead_assumptions(overheads, setup, cfg, seq_len or setup.seq_len or (cfg and cfg.context_length)),
        "time.not_modelled": "expert all-to-all, data loading, torch.compile fusion, cache effects on the CPU "
                             "(small tensors run faster than the DRAM bandwidth), thread contention",
    }
