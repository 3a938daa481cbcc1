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
per-op and kernel figures from ``StepOverheads`` (``default_overheads``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from estimator.errors import ConfigError
from estimator.flops import forward_breakdown
from estimator.hardware import HardwareSpec
from estimator.memory import (
    OPTIMIZER_IMPLS,
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

GPUS_PER_NODE = 8  # a group larger than this crosses the network
COLLECTIVE_LATENCY_S = 10e-6  # α per ring step (NCCL, formulas.md §4.3: 5-20 µs)
ACTIVATION_TRAFFIC = 2  # each saved activation is written once and read once in the forward
BACKWARD_FACTOR = 2  # backward = 2 x forward FLOPs and 2 x forward traffic
ZERO3_COMM_FACTOR = 1.5  # ZeRO-3: params all-gathered in forward and backward + grad reduce-scatter

# --- per-op host overhead -------------------------------------------------------------------------
# GPU: formulas.md §4.1 "+ kernel launch ~5–10 µs for small ops"; the midpoint, per dispatched op.
GPU_OP_OVERHEAD_S = 7.5e-6
# CPU: one eager op's Python + dispatcher + autograd bookkeeping (+ OpenMP wake-up with several
# threads). Measured (benchmarks/bench_prediction_accuracy.py --overhead): gpt-tiny steps at batch
# 1 x 1 token, where the arithmetic is nil, on a 2-core AMD EPYC VM, torch 2.13, Python 3.11:
# medians 7.6–15 µs per op with 2 threads (autocast's extra dispatch at the top), 4.4–10 with 1.
CPU_OP_OVERHEAD_S = 10e-6
BACKWARD_OPS_FACTOR = 2  # autograd runs about two ops (grad input, grad weight, views) per forward op
# Dispatched ops of the profiled GPT's forward, by part (counted with a TorchDispatchMode, torch 2.13).
OPS_PER_LINEAR = 4  # weight.t(), view in, addmm/mm, view out
OPS_PER_NORM = {"layernorm": 1, "rmsnorm": 6}  # native_layer_norm | pow, mean, add, rsqrt, mul, mul
OPS_ATTENTION = {"sdpa": 11, "explicit": 32}  # split, q/k/v/y views and transposes, the kernel(s)
OPS_ROPE = 18  # q and k: slices, 4 muls, sub, add, cat
OPS_GQA_REPEAT = 8  # repeat_interleave of k and v
OPS_LOSS = 5  # views, log_softmax, nll_loss
# Optimizer host cost per parameter tensor and per parameter group, in ops (CPU, measured with
# tiny tensors: foreach ~13–21 µs/tensor, for-loop ~22–38, fused ~5–6; GPU: foreach and fused
# launch multi-tensor kernels per group, the for-loop ~9 kernels per tensor).
OPTIMIZER_OPS = {  # device kind -> impl -> (per tensor, per group)
    "cpu": {"foreach": (2.0, 12), "for-loop": (3.0, 0), "fused": (0.5, 1)},
    "gpu": {"foreach": (0.0, 12), "for-loop": (9.0, 0), "fused": (0.0, 2)},
}
ADAMW_GROUPS = 2  # nanoGPT's decay / no-decay groups
FOREACH_TENSORS_PER_LAUNCH = 36  # multi_tensor_apply: 4 tensor lists -> 36 tensors per launch (CUDA)

# --- CPU kernels ------------------------------------------------------------------------------------
# The CPU peak the profiler uses is itself a measured matmul rate (profiler/cpu_probe: best of large
# square matmuls, same library and threads), so the linear layers are not derated by eff.flops again:
# they reach 0.7–0.98 of it on the 2-core EPYC (gpt-tiny..gpt-small, fp32 and bf16). A theoretical
# CPU peak (cores x clock x ISA) keeps eff.flops.
CPU_MEASURED_MATMUL_EFFICIENCY = 0.85
# Attention core (scores + probs·V): rate = peak(dtype) x matmul efficiency x d_h/(d_h + c_d) x T/(T + c_T).
# c_d: fixed softmax work per score element (max, exp, rescale, mask) in head-dim multiply-adds;
# c_T: fixed work per query row (block setup, conversions, output rescale) in key positions.
# torch 2.13's CPU SDPA computes in fp32 whatever the input (its bf16 path converts every block),
# so it runs at the fp32 peak. Measured SDPA forward+backward, 2-core EPYC, d_h 16–64, T 64–512:
# fp32 0.24–0.64 of the fp32 peak, bf16 0.04–0.67 (strongly T-dependent) -> (c_d, c_T) below.
# Explicit attention: batched matmuls at the matmul dtype's peak, narrow K = d_h (c_d = 16); its
# scale / mask / softmax passes are elementwise traffic (EXPLICIT_SCORE_PASSES).
CPU_ATTENTION_COST = {"sdpa-fp32": (16.0, 32.0), "sdpa-bf16": (32.0, 128.0), "explicit": (16.0, 0.0)}
# Explicit attention on the CPU: passes over the b·a·s² scores in the forward — write scores, scale
# (r+w), mask (r+w), softmax (r+w), read by att @ v (CPU autocast keeps them all in bf16). On a GPU
# the roofline keeps counting the saved probabilities only.
EXPLICIT_SCORE_PASSES = 8
# CPU elementwise kernels (norms, GELU, softmax, adds) convert bf16 to fp32 in registers and are
# bound by their per-element work: a bf16 tensor costs what an fp32 one does (measured: the
# non-matmul time of a bf16-mixed step is 1.1x the fp32 step's, not 0.5x). Counted at 4 B/element.
CPU_ELEMENT_BYTES = 4
# AdamW passes over parameter-sized tensors when not fused (torch _multi_tensor_adamw / the for-loop):
# mul_(p) 2w, lerp_(m, g) 2s+g, mul_(v) 2s, addcmul_(v, g, g) 2s+g, sqrt(v) 2s, div_ 2s, add_ 2s,
# addcdiv_(p, m, ·) 2w+2s  ->  4w + 2g + 14s bytes per parameter (80 in fp32); fused: 2w + g + 2o.


@dataclass(frozen=True)
class StepOverheads:
    """What a roofline does not see: host time per op, how it overlaps, CPU kernel rates."""

    device_kind: str  # "gpu" (async launches overlap device work) | "cpu" (everything in sequence)
    op_overhead_s: float  # host seconds per dispatched op
    optimizer_impl: str = "fused"  # foreach | fused | for-loop AdamW
    cpu_kernels: bool = False  # CPU attention-kernel rates and fp32-rate elementwise passes
    matmul_efficiency: float | None = None  # fraction of the peak linear matmuls reach; None: eff.flops

    def __post_init__(self) -> None:
        if self.device_kind not in ("gpu", "cpu"):
            raise ConfigError(f"device kind must be gpu or cpu, got {self.device_kind!r}")
        if not (isinstance(self.op_overhead_s, (int, float)) and math.isfinite(self.op_overhead_s)
                and self.op_overhead_s >= 0):
            raise ConfigError(f"op overhead must be a non-negative number of seconds, got {self.op_overhead_s!r}")
        if self.matmul_efficiency is not None and not 0 < self.matmul_efficiency <= 1:
            raise ConfigError(f"matmul efficiency must be in (0, 1], got {self.matmul_efficiency!r}")
        if self.optimizer_impl not in OPTIMIZER_IMPLS:
            raise ConfigError(f"optimizer implementation must be one of {', '.join(OPTIMIZER_IMPLS)}, "
                              f"got {self.optimizer_impl!r}")

    @property
    def overlapped(self) -> bool:
        return self.device_kind == "gpu"

    def to_dict(self) -> dict:
        return asdict(self)


def default_overheads(hardware: HardwareSpec) -> StepOverheads:
    """CPU (``hardware.vendor == "cpu"``): measured dispatch cost, foreach AdamW (the profiler's
    choice off CUDA), CPU kernel rates, and no second derating of a measured matmul peak.
    GPU: formulas.md's launch figure, fused AdamW (the profiler's default on CUDA)."""
    if hardware.vendor == "cpu":
        measured = "measured matmul" in hardware.source
        return StepOverheads("cpu", CPU_OP_OVERHEAD_S, "foreach", cpu_kernels=True,
                             matmul_efficiency=CPU_MEASURED_MATMUL_EFFICIENCY if measured else None)
    return StepOverheads("gpu", GPU_OP_OVERHEAD_S, "fused")


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


# ----------------------------------------------------------------- op counts

def _linears(cfg: ModelConfig) -> list[bool]:
    """The Linear layers of one block (dense path), each as 'has a bias'."""
    mlp = [cfg.mlp_bias] * (3 if cfg.mlp == "swiglu" else 2) * cfg.top_k
    return [cfg.qkv_bias, cfg.proj_bias] + mlp + ([False] if cfg.is_moe else [])  # + router


def layer_forward_ops(cfg: ModelConfig, flash_attention: bool, autocast: bool) -> int:
    """Ops one block's forward dispatches (the profiled GPT; views included)."""
    linears = _linears(cfg)
    ops = OPS_PER_LINEAR * len(linears) + 2 * OPS_PER_NORM[cfg.norm] + 2  # + two residual adds
    ops += 2 * cfg.top_k if cfg.mlp == "swiglu" else cfg.top_k  # silu and the product | GELU
    ops += OPS_ATTENTION["sdpa" if flash_attention else "explicit"]
    ops += OPS_ROPE if cfg.position == "rope" else 0
    ops += OPS_GQA_REPEAT if cfg.kv_heads != cfg.n_heads else 0
    if autocast:  # casts: each weight (cached per step), each bias, the two norm outputs
        ops += len(linears) + sum(linears) + 2
    return ops


def param_tensors(cfg: ModelConfig, layers: int, first: bool, last: bool, ep: int = 1) -> int:
    """Parameter tensors on a stage: what a foreach/for-loop optimizer iterates over."""
    per_norm = 2 if cfg.norm_bias else 1
    attention = 2 + cfg.qkv_bias + cfg.proj_bias
    experts = -(-cfg.n_experts // ep)
    mlp = experts * (3 if cfg.mlp == "swiglu" else 2) * (1 + cfg.mlp_bias) + (1 if cfg.is_moe else 0)
    n = layers * (attention + mlp + 2 * per_norm)
    if first:
        n += 1 + (1 if cfg.position == "learned" else 0)
    if last:
        n += per_norm + (0 if cfg.tied_embeddings and first else 1)
    return n


def step_op_counts(cfg: ModelConfig, setup: TrainSetup, params: StageParams, first: bool, last: bool,
                   overheads: StepOverheads) -> dict[str, float]:
    """Ops per micro-batch (forward, backward) and per optimizer step on one GPU of a stage."""
    p = get_precision(setup.precision)
    autocast = is_autocast(p)
    forward = params.layers * layer_forward_ops(cfg, setup.flash_attention, autocast)
    if first:
        forward += 1 + (3 if cfg.position == "learned" else 0)  # token lookup (+ arange, lookup, add)
    if last:
        forward += OPS_PER_NORM[cfg.norm] + OPS_PER_LINEAR + OPS_LOSS + (2 if autocast else 0)
    recompute = {"full": forward, "selective": params.layers * 2}.get(setup.recompute, 0)
    backward = BACKWARD_OPS_FACTOR * forward + recompute
    if not setup.flash_attention:  # explicit attention's reshapes and mask get one backward op each, not two
        backward -= params.layers * (OPS_ATTENTION["explicit"] - OPS_ATTENTION["sdpa"])
    per_tensor, per_group = OPTIMIZER_OPS[overheads.device_kind][overheads.optimizer_impl]
    tensors = param_tensors(cfg, params.layers, first, last, setup.ep)
    groups = ADAMW_GROUPS
    if overheads.device_kind == "gpu" and overheads.optimizer_impl == "foreach":
        groups = max(groups, math.ceil(tensors / FOREACH_TENSORS_PER_LAUNCH))
    optimizer = per_tensor * tensors + per_group * groups
    return {"forward": forward, "backward": backward, "micro_batch": forward + backward,
            "optimizer": optimizer, "param_tensors": tensors}


# ----------------------------------------------------------------- compute

def cpu_attention_efficiency(cfg: ModelConfig, seq_len: int, flash_attention: bool,
                             precision: Precision) -> tuple[str, float]:
    """(dtype whose peak the attention core runs at, d_h/(d_h + c_d) x T/(T + c_T)) on the CPU."""
    if flash_attention:
        dtype, key = "fp32", ("sdpa-fp32" if precision.activation_bytes >= 4 else "sdpa-bf16")
    else:
        dtype, key = precision.matmul_dtype, "explicit"
    c_d, c_t = CPU_ATTENTION_COST[key]
    return dtype, cfg.dh / (cfg.dh + c_d) * seq_len / (seq_len + c_t)


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
    grad_message = params.total * p.grad_bytes * (ZERO3_COMM_FACTOR if setup.zero == 3 else 1)
    dp_comm = ring_all_reduce_s(grad_message, dp, dp_bw)
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


def overhead_assumptions(overheads: StepOverheads, setup: TrainSetup, cfg: ModelConfig | None = None,
                         seq_len: int | None = None) -> dict:
    """The per-op and CPU-kernel assumptions, as printed under ``assumptions``."""
    kind = overheads.device_kind
    source = ("formulas.md §4.1: kernel launch ~5–10 µs for small ops" if kind == "gpu" else
              "measured on a 2-core AMD EPYC VM (torch 2.13): gpt-tiny at batch 1 x 1 token, 7.6–15 µs per op "
              "with 2 threads, 4.4–10 with 1")
    out = {
        "time.op_overhead_s": overheads.op_overhead_s,
        "time.op_overhead": (f"{overheads.op_overhead_s * 1e6:.1f} µs per dispatched op ({source}); ops counted from "
                             f"the model's structure: per block {OPS_PER_LINEAR} per Linear, norms, adds, "
                             f"activation, attention reshapes + kernel, autocast casts; backward "
                             f"{BACKWARD_OPS_FACTOR} x forward; optimizer per parameter tensor "
                             f"({overheads.optimizer_impl} AdamW)"),
        "time.op_overlap": ("GPU: the host launches ahead of the device; a micro-batch takes max(device time, "
                            "ops x overhead)" if overheads.overlapped else
                            "CPU: ops run in sequence on the same cores; matmul, attention, elementwise and "
                            "dispatch times add up"),
        "time.optimizer_impl": overheads.optimizer_impl,
    }
    if overheads.matmul_efficiency is not None:
        out["time.matmul_efficiency"] = (f"{overheads.matmul_efficiency}: linear matmuls at this fraction of the "
                                         "measured CPU matmul peak (already an achieved rate; eff.flops not applied)")
    if overheads.cpu_kernels:
        here = ""
        if cfg is not None and seq_len:
            dtype, factor = cpu_attention_efficiency(cfg, seq_len, setup.flash_attention,
                                                     get_precision(setup.precision))
            here = f"; here {factor:.3f} of the {dtype} rate"
        out["time.cpu_attention"] = (
            "attention core at peak x matmul efficiency x d_h/(d_h + c_d) x T/(T + c_T); (c_d, c_T) = "
            + ", ".join(f"{k} {v}" for k, v in CPU_ATTENTION_COST.items())
            + "; CPU SDPA computes in fp32, so it runs at the fp32 peak (measured with SDPA forward+backward, "
            "d_h 16–64, T 64–512, on a 2-core EPYC, torch 2.13)" + here)
        out["time.cpu_elementwise"] = (f"elementwise passes at {CPU_ELEMENT_BYTES} B/element whatever the dtype "
                                       "(CPU kernels convert bf16 to fp32 in registers), at the memory bandwidth")
    return out


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
