"""The cost model: seconds per op of the op graph, from a measured device profile or from the datasheet.

One interface, ``seconds(op)`` (and ``cost(op)``: the device and host parts,
and whether a measured figure was extrapolated outside its grid). Two sources:

- ``MeasuredCost``: a ``DeviceProfile`` (``profiler.calibrate``), interpolated in
  log space; every dispatched op (kernel or view) also pays the measured framework
  cost per op of a training step (Python, module calls, autograd).
- ``DatasheetCost``: for a device you do not have — each op's own roofline,
  max(FLOPs / (peak x efficiency), bytes / (bandwidth x efficiency)), plus a
  launch cost per dispatched op (``estimator.step_overheads``). The efficiency
  is a method (``matmul_efficiency(op)``) so a later model can make it depend on
  the GEMM's shape.

``compose`` turns the op costs into a step: on a CPU the ops run one after
another (device + host); on a GPU the host launches ahead, so a micro-batch
takes max(host, device); communication and the pipeline as in
``estimator.step_time`` (ring collectives, (m + pp − 1) micro-batch slots, the
DP all-reduce hidden behind the last backward).
"""

from __future__ import annotations

from dataclasses import dataclass

from estimator.device_profile import DeviceProfile
from estimator.hardware import HardwareSpec
from estimator.op_graph import CATEGORIES, Op, StepGraph, stages, step_graph
from estimator.model_config import ModelConfig
from estimator.setup import TrainSetup
from estimator.step_overheads import OPTIMIZER_OPS, StepOverheads, default_overheads
from estimator.communication import communication_seconds


@dataclass(frozen=True)
class OpCost:
    device_s: float  # the kernel (on a CPU: including its bare dispatch)
    host_s: float  # framework work around it: autograd bookkeeping, views, module calls, launches
    extrapolated: bool = False


class _Communication:
    """Collectives and point-to-point sends of the op graph, timed by ``estimator.communication``."""

    def __init__(self, hardware: HardwareSpec, setup: TrainSetup):
        self.hardware, self.setup = hardware, setup

    def comm_cost(self, op: Op) -> OpCost:
        return OpCost(communication_seconds(op, self.hardware, self.setup), 0.0)


class MeasuredCost(_Communication):
    """Op costs interpolated from a measured device profile."""

    source = "measured"

    def __init__(self, profile: DeviceProfile, hardware: HardwareSpec | None, setup: TrainSetup):
        """``hardware`` times communication and kernels the profile lacks; None for one device's own step."""
        super().__init__(hardware, setup)
        self.profile = profile
        self.device_kind = "cpu" if profile.device_kind == "cpu" else "gpu"
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
            t *= self.profile.gemm_layout.get(op.dtype, {}).get(op.phase, 1.0)  # dY·W, dYᵀ·X vs x·Wᵀ
            return OpCost(t, 0.0, ext)
        if op.category == "attention":
            grid = self._grid(self.profile.attention, op.kernel, op.dtype, op.phase)
            t, ext = grid.lookup(op.shape) if grid is not None else (0.0, True)
            return OpCost(t, 0.0, ext)
        if op.category == "optimizer":  # measured as a whole AdamW step: per step, per tensor, per element
            opt = self.profile.optimizer.get(f"adamw.{self._impl()}") or next(iter(self.profile.optimizer.values()))
            if op.kernel == "launch":
                return OpCost(opt["step_s"], 0.0)
            return OpCost(opt["per_tensor_s"] + opt["per_element_s"] * op.shape[0], 0.0)
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

    def _impl(self) -> str:
        return "fused" if self.device_kind == "gpu" else "foreach"

    def seconds(self, op: Op) -> float:
        c = self.cost(op)
        return c.device_s + c.host_s


class DatasheetCost(_Communication):
    """Each op's own roofline plus a launch cost per dispatched op, from the hardware's datasheet."""

    source = "datasheet"

    def __init__(self, hardware: HardwareSpec, setup: TrainSetup, overheads: StepOverheads | None = None):
        super().__init__(hardware, setup)
        self.overheads = overheads or default_overheads(hardware)
        self.device_kind = self.overheads.device_kind

    def matmul_efficiency(self, op: Op) -> float:
        """Fraction of the dense peak a GEMM / attention kernel reaches; a shape-free figure for now."""
        return self.overheads.matmul_efficiency or self.setup.efficiency.flops

    def _peak(self, dtype: str) -> float | None:
        for key in (dtype, "fp32", "tf32", "bf16"):
            peak = self.hardware.peak(key)
            if peak:
                return peak
        return None

    def cost(self, op: Op) -> OpCost:
        if op.category == "communication":
            return self.comm_cost(op)
        launch = self.overheads.op_overhead_s
        if op.kernel == "framework":  # the datasheet charges launches per op (host_ops) instead
            return OpCost(0.0, 0.0)
        bw = self.hardware.memory_bandwidth * self.setup.efficiency.memory
        memory = op.bytes / bw if bw > 0 else 0.0
        compute = 0.0
        if op.flops:
            peak = self._peak(op.dtype)
            compute = op.flops / (peak * self.matmul_efficiency(op)) if peak else 0.0
        if op.category == "optimizer":  # launches per tensor and per group of this AdamW implementation
            per_tensor, per_group = OPTIMIZER_OPS[self.device_kind][self.overheads.optimizer_impl]
            host = (per_group if op.kernel == "launch" else per_tensor) * launch
        else:
            host = (1 + op.host_ops) * launch
        return OpCost(max(compute, memory), host)

    def seconds(self, op: Op) -> float:
        c = self.cost(op)
        return c.device_s + c.host_s


def _sequence(costs: list[tuple[Op, OpCost]], sequential: bool) -> tuple[float, dict[str, float]]:
    """(seconds, per category) of ops issued in order: summed on a CPU, max(host, device) on a GPU."""
    cats = {c: 0.0 for c in CATEGORIES}
    device = host = 0.0
    for op, c in costs:
        cats[op.category] += c.device_s
        device += c.device_s
        host += c.host_s
    if sequential:
        cats["host"] += host
        return device + host, cats
    exposed = max(0.0, host - device)
    cats["host"] += exposed
    return device + exposed, cats


def compose(graphs: dict[str, StepGraph], cost, setup: TrainSetup, overlap_dp: bool = True) -> dict:
    """Seconds of one optimizer step from the per-op costs, its per-category split and the extrapolations."""
    sequential = cost.device_kind == "cpu"
    m, pp = setup.grad_accum, setup.pp
    extrapolated: set[str] = set()
    timed = {}
    for stage, graph in graphs.items():
        micro = [(op, cost.cost(op)) for op in graph.micro_batch if op.kernel != "p2p"]
        p2p = sum(cost.cost(op).device_s for op in graph.micro_batch if op.kernel == "p2p")
        t_micro, cats = _sequence(micro, sequential)
        backward = sum(c.device_s + (c.host_s if sequential else 0.0) for op, c in micro
                       if op.phase.startswith("backward"))
        extrapolated |= {op.kernel for op, c in micro if c.extrapolated}
        timed[stage] = (t_micro, cats, p2p, backward, graph)
    busiest = max(timed, key=lambda k: timed[k][0])
    t_micro, cats, p2p, backward, graph = timed[busiest]
    per_step = [(op, cost.cost(op)) for op in graph.per_step]
    extrapolated |= {op.kernel for op, c in per_step if c.extrapolated}
    dp_ops = [(op, c) for op, c in per_step if op.category == "communication"]
    opt_ops = [(op, c) for op, c in per_step if op.category != "communication"]
    dp_comm = sum(c.device_s for _, c in dp_ops)
    dp_exposed = max(0.0, dp_comm - backward) if overlap_dp else dp_comm
    optimizer, opt_cats = _sequence(opt_ops, sequential)
    slots = m + pp - 1
    categories = {c: slots * cats[c] + opt_cats[c] for c in CATEGORIES}
    categories["communication"] += m * p2p + dp_exposed
    step = slots * t_micro + m * p2p + dp_exposed + optimizer
    return {
        "time_s": step, "micro_batch_s": t_micro, "busiest_stage": busiest, "optimizer_s": optimizer,
        "dp_comm_s": dp_comm, "dp_exposed_s": dp_exposed, "pp_bubble_s": (pp - 1) * t_micro,
        "categories": categories, "source": cost.source, "extrapolated": sorted(extrapolated),
        "ops": len(graph.micro_batch) * m + len(graph.per_step),
    }


def predict_step(cfg: ModelConfig, setup: TrainSetup, cost, batch_size: int | None = None,
                 seq_len: int | None = None, overlap_dp: bool = True) -> dict:
    """Build the op graph of every distinct pipeline stage and compose its costs into a step."""
    graphs = {stage: step_graph(cfg, setup, batch_size, seq_len, stage) for stage in stages(setup)}
    return compose(graphs, cost, setup, overlap_dp)
