"""The cost model: seconds per op of the op graph, from a measured device profile or from the datasheet.

One interface, ``seconds(op)`` (and ``cost(op)``: the device and host parts,
and whether a measured figure was extrapolated outside its grid). Two sources:

- ``MeasuredCost``: a ``DeviceProfile`` (``profiler.calibrate``), interpolated in
  log space; every dispatched op (kernel or view) also pays the measured framework
  cost per op of a training step (Python, module calls, autograd).
- ``DatasheetCost``: for a device you do not have — each op's own roofline,
  max(FLOPs / (peak x efficiency), bytes / (bandwidth x efficiency)), plus a
  launch cost per dispatched op (``estimator.step_overheads``); on a GPU a
  GEMM's efficiency follows its shape (``estimator.gpu_kernels``).

The composition of the costs into a step is ``estimator.step_compose``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from estimator.device_profile import BIAS_KEY, DeviceProfile, optimizer_element_seconds
from estimator.hardware import HardwareSpec
from estimator import gpu_kernels
from estimator.ops import DTYPE_BYTES, Op
from estimator.precision import get_precision
from estimator.setup import TrainSetup
from estimator.step_overheads import (
    CPU_ELEMENT_BYTES,
    EXPLICIT_SCORE_PASSES,
    OPTIMIZER_OPS,
    StepOverheads,
    cpu_attention_factor,
    cpu_matmul_efficiency,
    default_overheads,
)
from estimator.communication import communication_seconds
from estimator.step_time import optimizer_bytes_moved


@dataclass(frozen=True)
class OpCost:
    device_s: float  # the kernel (on a CPU: including its bare dispatch)
    host_s: float  # framework work around it: autograd bookkeeping, views, module calls, launches
    extrapolated: bool = False
    bound: str = ""  # datasheet: "compute" | "memory", the side of the op's roofline that set its time


class _Communication:
    """Collectives and point-to-point sends of the op graph, timed by ``estimator.communication``."""

    def __init__(self, hardware: HardwareSpec, setup: TrainSetup):
        self.hardware, self.setup = hardware, setup

    def comm_cost(self, op: Op) -> OpCost:
        return OpCost(communication_seconds(op, self.hardware, self.setup), 0.0)

    def prepare(self, ops) -> list[Op]:
        """The kernels that run for ``ops`` (a cost source that fuses some overrides it)."""
        return list(ops)


class MeasuredCost(_Communication):
    """Op costs interpolated from a measured device profile."""

    source = "measured"

    def __init__(self, profile: DeviceProfile, hardware: HardwareSpec | None, setup: TrainSetup,
                 optimizer_impl: str = "fused"):
        """``hardware`` times communication and kernels the profile lacks; None for one device's own step.
        ``optimizer_impl``: the AdamW the step runs (``StepOverheads.optimizer_impl``)."""
        super().__init__(hardware, setup)
        self.profile = profile
        self.device_kind = "cpu" if profile.device_kind == "cpu" else "gpu"
        self.optimizer_impl = optimizer_impl
        self.missing: set[str] = set()

    def _grid(self, table: dict, kernel: str, dtype: str, phase: str):
        by_dtype = table.get(kernel)
        if not by_dtype:
            self.missing.add(kernel)
            return None
        by_pass = by_dtype.get(dtype) or by_dtype.get("fp32") or next(iter(by_dtype.values()))
        forward = phase in ("forward", "recompute")
        key = ("forward" if forward else "backward")
        return by_pass.get(key) or by_pass.get(key + "_s") or next(iter(by_pass.values()))

    def cost(self, op: Op) -> OpCost:
        """Kernel time from the grids (a kernel's own dispatch included); the host time of the micro-batch,
        beyond its kernels, is the framework op's: measured per micro-batch and per block."""
        if op.category == "communication":
            return self.comm_cost(op)
        if op.kernel == "framework":
            return OpCost(0.0, self._framework(op.name.removeprefix("framework."), op.shape[0]))
        if op.kernel == "gemm":
            grid = self.profile.gemm.get(op.dtype) or self.profile.gemm.get("fp32")
            t, ext = grid.lookup(op.shape)
            layout = self.profile.gemm_layout.get(op.dtype, {})
            t *= layout.get(op.phase, 1.0)  # dY·W, dYᵀ·X vs x·Wᵀ
            if op.bias:  # addmm: the bias added to each output element, where the backend does not fuse it
                t += layout.get(BIAS_KEY, 0.0) * op.shape[0] * op.shape[1]
            return OpCost(t, 0.0, ext)
        if op.category == "attention":
            grid = self._grid(self.profile.attention, op.kernel, op.dtype, op.phase)
            t, ext = grid.lookup(op.shape) if grid is not None else (0.0, True)
            return OpCost(t, 0.0, ext)
        if op.category == "optimizer":  # measured as a whole AdamW step: per step, per tensor, per element
            opt = self._optimizer()
            if op.kernel == "launch":
                return OpCost(opt["step_s"], 0.0)
            return OpCost(opt["per_tensor_s"] + optimizer_element_seconds(opt, op.shape[1]) * op.shape[0], 0.0)
        grid = self._grid(self.profile.elementwise, op.kernel, op.dtype, op.phase)
        if grid is None:
            bw = self.hardware.memory_bandwidth if self.hardware is not None else 0.0
            return OpCost(op.bytes / bw if bw else 0.0, 0.0, True)
        t, ext = grid.lookup(op.shape)
        return OpCost(t, 0.0, ext)

    def _framework(self, variant: str, layers: int) -> float:
        """Per micro-batch + per block x blocks; another variant of the same family (or any) stands in for
        one the profile lacks, and says so in ``missing``."""
        table = self.profile.framework
        if not table:
            self.missing.add("framework")
            return 0.0
        family = variant.split(".")[0]
        row = table.get(variant) or next((v for k, v in table.items() if k.startswith(family + ".")), None)
        if variant not in table:
            self.missing.add(f"framework {variant}")
        row = row or next(iter(table.values()))
        return row["per_step_s"] + row["per_layer_s"] * layers

    def _optimizer(self) -> dict[str, float]:
        """The measured AdamW the step runs; another one measured stands in (and says so in ``missing``)."""
        key = f"adamw.{self.optimizer_impl}"
        if key not in self.profile.optimizer:
            self.missing.add(key)
            return next(iter(self.profile.optimizer.values()))
        return self.profile.optimizer[key]

    def seconds(self, op: Op) -> float:
        c = self.cost(op)
        return c.device_s + c.host_s


class DatasheetCost(_Communication):
    """Each op's own roofline plus a launch cost per dispatched op, from the hardware's datasheet.

    GEMMs and the attention kernel reach a shape-dependent fraction of the dense peak on a GPU
    (``estimator.gpu_kernels``: the architecture's measured ceiling x tile and wave quantization);
    ``--flops-efficiency`` (``setup.efficiency.flops``) overrides it for every op. Memory-bound
    kernels (norms, activations, residual adds, casts, the loss, explicit attention's passes over the
    scores) each move their bytes at the derated bandwidth; under ``compile`` a run of consecutive
    elementwise kernels is fused into one (its largest traffic, one launch)."""

    source = "datasheet"

    def __init__(self, hardware: HardwareSpec, setup: TrainSetup, overheads: StepOverheads | None = None,
                 memo: dict | None = None):
        """``memo``: a cache of op costs shared by many setups on one hardware (the planner's candidates)."""
        super().__init__(hardware, setup)
        self.overheads = overheads or default_overheads(hardware)
        self.device_kind = self.overheads.device_kind
        self.gpu = self.device_kind == "gpu"
        self.sms = hardware.sm_count or 0
        self.gemm_ceiling = gpu_kernels.matmul_ceiling(hardware) if self.gpu else None
        self._memo: dict[tuple, OpCost] = {} if memo is None else memo
        # What an op's cost depends on beyond the op: the regime, and for communication the groups' spans.
        self._setup_key = (setup.precision, setup.optimizer, setup.compile, setup.efficiency, self.overheads)
        self._comm_key = (setup.tp, setup.pp, setup.cp, setup.ep, setup.vpp, setup.world_size)
        precision = get_precision(setup.precision)
        self._optimizer_passes = (optimizer_bytes_moved(precision, setup.optimizer, self.overheads.optimizer_impl)
                                  / optimizer_bytes_moved(precision, setup.optimizer, "fused"))

    # -- efficiency ---------------------------------------------------------------------------
    def _flat(self) -> float | None:
        """A shape-free efficiency: the user's override, or the CPU's (a measured or theoretical peak)."""
        if self.setup.efficiency.flops is not None:
            return self.setup.efficiency.flops
        if not self.gpu:
            return cpu_matmul_efficiency(self.overheads)
        return None

    def matmul_efficiency(self, op: Op) -> float:
        """Fraction of the dense peak this GEMM / attention kernel reaches."""
        flat = self._flat()
        if op.category == "attention" and not self.gpu and self.overheads.cpu_kernels:
            run, factor = cpu_attention_factor(op.shape[2], op.shape[1], op.kernel == "sdpa", op.dtype)
            return (flat or 1.0) * factor * (self._peak(run) or 1.0) / (self._peak(op.dtype) or 1.0)
        if flat is not None:
            return flat
        ceiling = self.gemm_ceiling.fraction if self.gemm_ceiling else gpu_kernels.UNKNOWN_ARCH_CEILING
        sms = self.sms or 1
        if op.kernel == "gemm":
            m, n, _ = op.shape
            return ceiling * gpu_kernels.gemm_quantization(m, n, sms)
        bh, seq, _ = op.shape
        if op.kernel == "sdpa":
            attn = gpu_kernels.attention_ceiling(self.hardware, op.forward)
            return (attn.fraction if attn else ceiling) * gpu_kernels.attention_quantization(bh, seq, sms)
        return ceiling * gpu_kernels.gemm_quantization(bh * seq, seq, sms)  # explicit: batched q·kᵀ and ·v

    def _peak(self, dtype: str) -> float | None:
        for key in (dtype, "fp32", "tf32", "bf16"):
            peak = self.hardware.peak(key)
            if peak:
                return peak
        return None

    # -- ops ------------------------------------------------------------------------------------
    def prepare(self, ops) -> list[Op]:
        """The kernels that run: eager, every op its own; under ``compile``, runs of consecutive
        elementwise ops of one pass fused into one kernel (its largest traffic, one launch)."""
        if not self.setup.compile:
            return list(ops)
        out: list[Op] = []
        for op in ops:
            prev = out[-1] if out else None
            if (prev is not None and op.category == prev.category == "elementwise" and op.phase == prev.phase):
                out[-1] = replace(prev, name=prev.name.removesuffix("+fused") + "+fused",
                                  bytes=max(prev.bytes, op.bytes),
                                  host_ops=prev.host_ops + op.host_ops)
            else:
                out.append(op)
        return out

    def cost(self, op: Op) -> OpCost:
        comm = op.category == "communication"
        key = (op.kernel, op.category, op.phase, op.shape, op.dtype, op.flops, op.bytes, op.host_ops,
               self._setup_key, (op.name.split(".")[0], self._comm_key) if comm else None)
        hit = self._memo.get(key)
        if hit is None:
            hit = self._memo[key] = self._cost(op)
        return hit

    def _cost(self, op: Op) -> OpCost:
        if op.category == "communication":
            return self.comm_cost(op)
        launch = self.overheads.op_overhead_s
        if op.kernel == "framework":  # the datasheet charges launches per op (host_ops) instead
            return OpCost(0.0, 0.0)
        bw = self.hardware.memory_bandwidth * self.setup.efficiency.memory
        moved = op.bytes
        if self.overheads.cpu_kernels and op.category == "elementwise":  # CPU kernels run at the fp32 rate
            moved = op.bytes * CPU_ELEMENT_BYTES // DTYPE_BYTES.get(op.dtype, CPU_ELEMENT_BYTES)
        if op.category == "optimizer" and op.kernel != "launch":  # an unfused AdamW passes over its tensors
            moved = op.bytes * self._optimizer_passes
        compute = 0.0
        if op.flops:
            peak = self._peak(op.dtype)
            compute = op.flops / (peak * self.matmul_efficiency(op)) if peak else 0.0
        if op.kernel == "explicit":  # q·kᵀ and ·v are GEMMs; the passes over the scores are their own kernels
            bh, q_len = op.shape[0], op.shape[1]  # the keys: the whole sequence (context parallel: cp x q_len)
            scores = (EXPLICIT_SCORE_PASSES * bh * q_len * q_len * self.setup.cp * DTYPE_BYTES.get(op.dtype, 2)
                      * (1 if op.forward else 2))
            io, passes = ((op.bytes - scores) / bw, scores / bw) if bw > 0 else (0.0, 0.0)
            device = max(compute, io) + passes
            bound = "memory" if passes > compute else "compute"
        else:
            memory = moved / bw if bw > 0 else 0.0
            device, bound = (compute, "compute") if compute >= memory else (memory, "memory")
        if op.category == "optimizer":  # launches per tensor and per group of this AdamW implementation
            per_tensor, per_group = OPTIMIZER_OPS[self.device_kind][self.overheads.optimizer_impl]
            host = (per_group if op.kernel == "launch" else per_tensor) * launch
        else:
            host = (1 + op.host_ops) * launch
        return OpCost(device, host, False, bound)

    def seconds(self, op: Op) -> float:
        c = self.cost(op)
        return c.device_s + c.host_s

    def assumptions(self) -> dict[str, object]:
        """What set the kernels' efficiencies, as printed under ``assumptions``."""
        if self._flat() is not None:
            flat = self._flat()
            why = ("--flops-efficiency" if self.setup.efficiency.flops is not None else
                   "measured CPU matmul peak" if self.overheads.matmul_efficiency else
                   "theoretical CPU peak, no measurement")
            return {"time.matmul_efficiency": f"{flat:g} of the dense peak for every GEMM ({why})"}
        ceiling = self.gemm_ceiling
        return {
            "time.matmul_efficiency": (
                f"GEMMs: {ceiling.fraction:.3f} of the dense peak x tile and wave quantization on "
                f"{self.sms} SMs (tiles {', '.join(f'{a}x{b}' for a, b in gpu_kernels.GEMM_TILES)}); "
                f"ceiling: {ceiling.source}" if ceiling else
                f"GEMMs: no published ceiling for {self.hardware.name}: "
                f"{gpu_kernels.UNKNOWN_ARCH_CEILING} assumed x tile and wave quantization"),
            "time.attention_efficiency": _attention_note(self.hardware),
            "time.elementwise": ("each norm, activation, add, cast and the loss is its own memory-bound kernel "
                                 + ("(fused per run under torch.compile)" if self.setup.compile else "(eager)")),
        }


def _attention_note(hardware: HardwareSpec) -> str:
    fwd, bwd = (gpu_kernels.attention_ceiling(hardware, f) for f in (True, False))
    if fwd is None:
        return "flash attention at the GEMM ceiling (no published flash-attention figure for this architecture)"
    return (f"flash attention {fwd.fraction:.2f} (forward) / {bwd.fraction:.2f} (backward) of the peak x "
            f"query-block quantization: {fwd.source}; explicit attention: batched GEMMs + its passes over "
            "the T x T scores at the memory bandwidth")
