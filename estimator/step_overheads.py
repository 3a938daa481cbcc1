"""What a roofline does not see: per-op host overhead, op counts, and the CPU's kernel rates.

Every eager op costs host time (Python, dispatcher, autograd bookkeeping, a
kernel launch). On a GPU that time overlaps the device's work (launches run
ahead); on the CPU it adds to it. The ops are counted from the model's
structure (the profiled GPT, counted with a TorchDispatchMode), the optimizer's
per parameter tensor and group by AdamW implementation. ``StepOverheads``
carries the per-op cost, the overlap and the CPU kernel behaviour that
``estimator.step_time`` applies; ``default_overheads`` picks them by device kind.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from estimator.errors import ConfigError
from estimator.hardware import HardwareSpec
from estimator.memory_terms import OPTIMIZER_IMPLS, StageParams, is_autocast
from estimator.model_config import ModelConfig
from estimator.precision import Precision, get_precision
from estimator.setup import TrainSetup

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


def adamw_impl(fused_adamw: bool | None, adamw_foreach: bool | None, on_cuda: bool) -> str:
    """The AdamW the profiler builds (``profiler.step.make_adamw``): fused by default on CUDA,
    foreach elsewhere; ``adamw_foreach=False`` without fused is the single-tensor for-loop."""
    fused = fused_adamw if fused_adamw is not None else on_cuda
    if fused:
        return "fused"
    return "for-loop" if adamw_foreach is False else "foreach"


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



# ----------------------------------------------------------------- CPU kernels

def cpu_attention_efficiency(cfg: ModelConfig, seq_len: int, flash_attention: bool,
                             precision: Precision) -> tuple[str, float]:
    """(dtype whose peak the attention core runs at, d_h/(d_h + c_d) x T/(T + c_T)) on the CPU."""
    if flash_attention:
        dtype, key = "fp32", ("sdpa-fp32" if precision.activation_bytes >= 4 else "sdpa-bf16")
    else:
        dtype, key = precision.matmul_dtype, "explicit"
    c_d, c_t = CPU_ATTENTION_COST[key]
    return dtype, cfg.dh / (cfg.dh + c_d) * seq_len / (seq_len + c_t)


def overhead_assumptions(overheads: StepOverheads, setup: TrainSetup, cfg: ModelConfig | None = None,
                         seq_len: int | None = None) -> dict:
    """The per-op and CPU-kernel assumptions, as printed under ``assumptions``."""
    kind = overheads.device_kind
    source = ("roofline per op, kernel launch ~5–10 µs for small ops" if kind == "gpu" else
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
