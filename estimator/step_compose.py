"""A training step from the costs of its ops: the time, the terms that add up to it, what bound it.

A micro-batch's ops run in sequence on a CPU (device + host); on a GPU the host
launches ahead, so it takes max(device, host). The pipeline runs
(m + (pp − 1)/vpp) micro-batch slots per step (interleaved 1F1B with vpp virtual
stages per GPU; Narayanan et al. 2021 §2.2) and sends per virtual stage. Data-parallel
traffic shares one network: ZeRO-2/3's per-micro-batch gathers and gradient
reduce-scatters hide behind the kernels of their own phase (forward or backward) as far
as they can, and the step's reduction behind what the last micro-batch's backward
(ZeRO-2's parameter gather: the first forward) leaves free of them (``overlap_dp``).
Each op is costed by a source of ``estimator.cost_model`` (measured profile or
datasheet), each block's ops once for all its layers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from estimator.model_config import ModelConfig
from estimator.op_graph import StepGraph, stages, step_graph
from estimator.ops import CATEGORIES
from estimator.setup import TrainSetup


@dataclass
class MicroBatchCost:
    """Seconds of one micro-batch on one stage, by what the time is spent on."""

    device: float = 0.0  # every kernel, on the device stream (communication included)
    host: float = 0.0
    p2p: float = 0.0  # pipeline sends, outside the micro-batch's own time
    by_phase: dict = field(default_factory=lambda: {"forward": 0.0, "backward": 0.0, "recompute": 0.0})
    comm: dict = field(default_factory=dict)  # group prefix (tp, cp, ep) -> seconds
    cats: dict = field(default_factory=lambda: {c: 0.0 for c in CATEGORIES})
    bound: dict = field(default_factory=lambda: {"layer": {}, "head": {}})
    ops: int = 0  # dispatched ops (kernels and views)
    extrapolated: set = field(default_factory=set)
    # ZeRO-2/3's traffic per micro-batch (phase -> seconds), overlapped with the kernels of its phase
    dp_traffic: dict = field(default_factory=lambda: {"forward": 0.0, "backward": 0.0})

    def compute(self, phase: str) -> float:
        """Kernel seconds that can hide data-parallel traffic in ``phase`` (the backward's include recompute)."""
        return self.by_phase["forward"] if phase == "forward" else self.by_phase["backward"] + self.by_phase["recompute"]

    def dp_spare(self, phase: str) -> float:
        """Seconds of ``phase``'s kernels not already hiding this micro-batch's own data-parallel traffic."""
        return max(0.0, self.compute(phase) - self.dp_traffic[phase])

    def dp_traffic_exposed(self) -> float:
        """Seconds of this micro-batch's ZeRO traffic its own phase's kernels cannot hide."""
        return sum(max(0.0, t - self.compute(phase)) for phase, t in self.dp_traffic.items())

    def time(self, sequential: bool) -> float:
        busy = self.device + self.dp_traffic_exposed()
        return busy + (self.host if sequential else max(0.0, self.host - busy))

    def exposed_host(self, sequential: bool) -> float:
        return self.host if sequential else max(0.0, self.host - self.device - self.dp_traffic_exposed())


HEAD_OPS = ("ln_f", "lm_head", "logits", "cross_entropy")


def _time_micro_batch(graph: StepGraph, cost) -> MicroBatchCost:
    """One micro-batch's costs; each segment's ops (a block's, once for all its layers) costed once."""
    out = MicroBatchCost()
    for seg in graph.segments:
        n = seg.count
        for op in cost.prepare(seg.ops):
            c = cost.cost(op)
            if c.extrapolated:
                out.extrapolated.add(op.kernel)
            device = n * c.device_s
            if op.kernel == "p2p":
                out.p2p += device
                continue
            if op.name.startswith("dp."):  # ZeRO-2/3: hidden behind the kernels of the phase its name ends with
                out.dp_traffic["forward" if op.name.endswith(".forward") else "backward"] += device
                continue
            out.device += device
            out.host += n * c.host_s
            out.cats[op.category] += device
            if op.category == "communication":
                group = op.name.split(".")[0]
                out.comm[group] = out.comm.get(group, 0.0) + device
                continue
            if op.kernel != "framework":
                out.ops += n * (1 + op.host_ops)
            phase = "forward" if op.phase == "forward" else "recompute" if op.phase == "recompute" else "backward"
            out.by_phase[phase] += device
            if c.bound:
                where = "head" if op.name.startswith(HEAD_OPS) else "layer" if op.name.startswith("block") else None
                if where:
                    out.bound[where][c.bound] = out.bound[where].get(c.bound, 0.0) + device
    return out


def _dominant(times: dict) -> str | None:
    return max(times, key=times.get) if times else None


def time_stages(graphs: dict[str, StepGraph], cost) -> dict[str, MicroBatchCost]:
    """Each stage's micro-batch costed: what ``compose`` needs of the graphs, reusable across setups that
    share them (the planner's interleaving variants: ``vpp`` changes the schedule, not the kernels)."""
    return {stage: _time_micro_batch(graph, cost) for stage, graph in graphs.items()}


def compose(graphs: dict[str, StepGraph], cost, setup: TrainSetup, overlap_dp: bool = True,
            timed: dict[str, MicroBatchCost] | None = None) -> dict:
    """One optimizer step from the per-op costs: its time, the terms that add up to it (``breakdown``),
    the split per category, what bound it, and the ops a cost source had to extrapolate.

    A micro-batch's ops run in sequence on a CPU (device + host); on a GPU the host launches ahead, so it
    takes max(device, host). The pipeline runs (m + (pp − 1)/vpp) micro-batch slots per step (interleaved
    1F1B with vpp virtual stages per GPU; Narayanan et al. 2021 §2.2) and sends per virtual stage; the step's
    data-parallel reduction hides behind what the last micro-batch's backward leaves free of its own ZeRO
    traffic (ZeRO-2's parameter gather: the next step's first forward, as Megatron's overlapped param
    gather) (``overlap_dp``)."""
    sequential = cost.device_kind == "cpu"
    m, pp, vpp = setup.grad_accum, setup.pp, setup.vpp
    passes = timed if timed is not None else time_stages(graphs, cost)
    timed = {stage: (passes[stage], graph) for stage, graph in graphs.items()}
    busiest = max(timed, key=lambda k: timed[k][0].time(sequential))
    mb, graph = timed[busiest]
    t_micro = mb.time(sequential)
    extrapolated = set().union(*(p.extrapolated for p, _ in timed.values()))

    per_step = [(op, n, cost.cost(op)) for op, n in graph.counted(per_step=True)]
    extrapolated |= {op.kernel for op, _, c in per_step if c.extrapolated}
    dp_comm = sum(n * c.device_s for op, n, c in per_step if op.category == "communication")
    window = mb.dp_spare("forward" if setup.zero == 2 else "backward")
    dp_exposed = max(0.0, dp_comm - window) if overlap_dp else dp_comm
    opt = [(op, n, c) for op, n, c in per_step if op.category != "communication"]
    opt_device = sum(n * c.device_s for _, n, c in opt)
    opt_host = sum(n * c.host_s for _, n, c in opt)
    opt_exposed = opt_host if sequential else max(0.0, opt_host - opt_device)

    bubble = (pp - 1) / vpp * t_micro
    p2p = m * vpp * mb.p2p
    step = m * t_micro + bubble + p2p + dp_exposed + opt_device + opt_exposed
    categories = {c: (m + (pp - 1) / vpp) * mb.cats[c] for c in CATEGORIES}
    categories["host"] += (m + (pp - 1) / vpp) * mb.exposed_host(sequential) + opt_exposed
    categories["optimizer"] += opt_device
    categories["communication"] += p2p + dp_exposed + (m + (pp - 1) / vpp) * mb.dp_traffic_exposed()
    dp_exposed += m * mb.dp_traffic_exposed()
    dp_comm += m * sum(mb.dp_traffic.values())
    breakdown = {
        "forward_s": m * mb.by_phase["forward"], "backward_s": m * mb.by_phase["backward"],
        "recompute_s": m * mb.by_phase["recompute"],
        **{f"{g}_comm_s": m * mb.comm.get(g, 0.0) for g in COMM_GROUPS},
        "op_overhead_s": m * mb.exposed_host(sequential) + opt_exposed,
        "pp_bubble_s": bubble, "pp_p2p_s": p2p, "dp_comm_s": dp_comm, "dp_exposed_s": dp_exposed,
        "optimizer_s": opt_device,
    }
    exposed = mb.exposed_host(sequential)
    return {
        "time_s": step, "micro_batch_s": t_micro, "busiest_stage": busiest,
        "bound": {"layer": _dominant(mb.bound["layer"]), "head": _dominant(mb.bound["head"]),
                  "step": "host" if exposed > 0 and not sequential else "device"},
        "breakdown": breakdown,
        "overhead": {"ops_per_micro_batch": mb.ops, "ops_optimizer": sum(n for _, n, _ in opt),
                     "host_s": m * mb.host + opt_host,
                     "op_overhead_s": getattr(getattr(cost, "overheads", None), "op_overhead_s", None),
                     "overlapped": not sequential, "device_kind": cost.device_kind},
        "categories": categories, "source": cost.source, "extrapolated": sorted(extrapolated),
        "ops": sum(n for _, n in graph.counted()) * m + sum(n for _, n in graph.counted(per_step=True)),
    }


COMM_GROUPS = ("tp", "cp", "ep")  # collectives inside a micro-batch, by parallel group (op-name prefix)


def predict_step(cfg: ModelConfig, setup: TrainSetup, cost, batch_size: int | None = None,
                 seq_len: int | None = None, overlap_dp: bool = True) -> dict:
    """Build the op graph of every distinct pipeline stage and compose its costs into a step."""
    graphs = {stage: step_graph(cfg, setup, batch_size, seq_len, stage) for stage in stages(setup)}
    return compose(graphs, cost, setup, overlap_dp)
