"""What a roofline does not see: per-op host overhead, and the CPU's kernel rates.

Every eager op costs host time (Python, dispatcher, autograd bookkeeping, a
kernel launch). On a GPU that time overlaps the device's work (launches run
ahead); on the CPU it adds to it. The op graph counts the ops (each kernel and
the ops dispatched around it, ``estimator.ops.HOST_OPS``), the optimizer's
per parameter tensor and group by AdamW implementation (``OPTIMIZER_OPS``).
``StepOverheads`` carries the per-op cost, the overlap and the CPU kernel
behaviour the datasheet cost model applies; ``default_overheads`` picks them by
device kind.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from estimator.errors import ConfigError
from estimator.hardware import HardwareSpec
from estimator.memory_terms import OPTIMIZER_IMPLS
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
# Optimizer host cost per parameter tensor and per parameter group, in ops (CPU, measured with
# tiny tensors: foreach ~13–21 µs/tensor, for-loop ~22–38, fused ~5–6; GPU: foreach and fused
# launch multi-tensor kernels per group, the for-loop ~9 kernels per tensor).
OPTIMIZER_OPS = {  # device kind -> impl -> (per tensor, per group)
    "cpu": {"foreach": (2.0, 12), "for-loop": (3.0, 0), "fused": (0.5, 1)},
    "gpu": {"foreach": (0.0, 12), "for-loop": (9.0, 0), "fused": (0.0, 2)},
}

# --- CPU kernels ------------------------------------------------------------------------------------
# The CPU peak the profiler uses is itself a measured matmul rate (profiler/cpu_probe: best of large
# square matmuls, same library and threads), so the linear layers are not derated by eff.flops again:
# they reach 0.7–0.98 of it on the 2-core EPYC (gpt-tiny..gpt-small, fp32 and bf16). A theoretical
# CPU peak (cores x clock x ISA) keeps eff.flops.
CPU_MEASURED_MATMUL_EFFICIENCY = 0.85
# A CPU peak computed from cores x clock x ISA (no measurement): the fraction large matmuls reach is
# unknown; half is the figure formulas.md §4.1 gives for a full step. Printed under assumptions.
CPU_THEORETICAL_MATMUL_EFFICIENCY = 0.5
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
    """CPU (``hardware.vendor == "cpu"``): measured dispatch cost, fused AdamW (the profiler's default
    where torch has the CPU kernel, 2.4 on; a run on an older torch says foreach), CPU kernel rates, and
    no second derating of a measured matmul peak.
    GPU: formulas.md's launch figure, fused AdamW (the profiler's default on CUDA)."""
    if hardware.vendor == "cpu":
        measured = "measured matmul" in hardware.source
        return StepOverheads("cpu", CPU_OP_OVERHEAD_S, "fused", cpu_kernels=True,
                             matmul_efficiency=CPU_MEASURED_MATMUL_EFFICIENCY if measured else None)
    return StepOverheads("gpu", GPU_OP_OVERHEAD_S, "fused")


def cpu_matmul_efficiency(overheads: StepOverheads) -> float:
    """The fraction of a CPU's peak its matmuls reach: of a measured peak (already an achieved rate), or of
    a theoretical one (``CPU_THEORETICAL_MATMUL_EFFICIENCY``)."""
    return overheads.matmul_efficiency or CPU_THEORETICAL_MATMUL_EFFICIENCY


def adamw_impl(fused_adamw: bool | None, adamw_foreach: bool | None, fused_default: bool) -> str:
    """The AdamW the profiler builds (``profiler.step.make_adamw``): fused by default where the device has
    the kernel (``fused_default``), else foreach; ``adamw_foreach=False`` without fused is the for-loop."""
    fused = fused_adamw if fused_adamw is not None else fused_default
    if fused:
        return "fused"
    return "for-loop" if adamw_foreach is False else "foreach"


# ----------------------------------------------------------------- CPU kernels

def cpu_attention_factor(head_dim: int, seq_len: int, flash_attention: bool, dtype: str) -> tuple[str, float]:
    """(dtype whose peak the CPU attention core runs at, d_h/(d_h + c_d) x T/(T + c_T)) for a core whose
    inputs are ``dtype``: SDPA computes in fp32 whatever its inputs, explicit attention at the inputs' rate."""
    if flash_attention:
        run, key = "fp32", ("sdpa-fp32" if dtype == "fp32" else "sdpa-bf16")
    else:
        run, key = dtype, "explicit"
    c_d, c_t = CPU_ATTENTION_COST[key]
    return run, head_dim / (head_dim + c_d) * seq_len / (seq_len + c_t)


def cpu_attention_efficiency(cfg: ModelConfig, seq_len: int, flash_attention: bool,
                             precision: Precision) -> tuple[str, float]:
    """``cpu_attention_factor`` for a model's attention under a precision regime."""
    dtype = "fp32" if precision.activation_bytes >= 4 else precision.matmul_dtype
    return cpu_attention_factor(cfg.dh, seq_len, flash_attention, dtype)


def overhead_assumptions(overheads: StepOverheads, setup: TrainSetup, cfg: ModelConfig | None = None,
                         seq_len: int | None = None) -> dict:
    """The per-op and CPU-kernel assumptions, as printed under ``assumptions``."""
    kind = overheads.device_kind
    source = ("roofline per op, kernel launch ~5–10 µs for small ops" if kind == "gpu" else
              "measured on a 2-core AMD EPYC VM (torch 2.13): gpt-tiny at batch 1 x 1 token, 7.6–15 µs per op "
              "with 2 threads, 4.4–10 with 1")
    out = {
        "time.op_overhead_s": overheads.op_overhead_s,
        "time.op_overhead": (f"{overheads.op_overhead_s * 1e6:.1f} µs per dispatched op ({source}); the ops are "
                             "the op graph's kernels and the views, transposes and autograd ops dispatched "
                             "around them (estimator.ops.HOST_OPS, counted on a real step); optimizer per "
                             f"parameter tensor ({overheads.optimizer_impl} AdamW)"),
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
