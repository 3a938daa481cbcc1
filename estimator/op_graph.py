"""The op graph: one training step as the list of kernels it runs, each with FLOPs, bytes and a category.

Built from ``ModelConfig`` + ``TrainSetup`` for one GPU of the busiest pipeline
stage (tensor-parallel shapes divided by ``tp``), in execution order: embedding,
blocks, head and loss forward; their backward in reverse; the optimizer per
parameter tensor; the communication each parallelism adds. ``flops`` follows
``estimator.flops`` (matmul FLOPs, full T x T attention, backward = 2 x forward),
so the FLOP sum of a graph equals ``step_flops(...).total`` exactly (recompute
ops aside: they make up ``recompute``). Elementwise ops carry no model FLOPs;
their cost is the bytes they move. ``host_ops`` counts the kernel-less ops
(views, transposes, autograd bookkeeping) dispatched around a kernel: the
datasheet cost model charges each a launch; the measured one times all host
work of a micro-batch at once, per block (the ``framework`` op).

Every family ``ModelConfig`` describes is built: MLA's low-rank projections,
shared experts, DeepSeek's dense first layers (a block's kind follows its
model layer index), parallel residuals and their norm layouts, OPT's
projections. The setup's regimes add ops, never FLOPs beyond ``estimator.flops``:
context parallel (``cp``: b·s/cp tokens per GPU, s/cp queries against s keys,
K/V all-gather and dK/dV reduce-scatter), expert all-to-all (``ep``), dropout
masks, fp8 GEMMs with their per-tensor-scaled casts.

This module builds the embedding and head and assembles the step; a block's
kernels (Linears, norms, attention, MLP) are ``estimator.block_graph``'s, the shapes on one GPU are
``estimator.graph_context``'s, the optimizer, framework and communication ops
``estimator.step_ops``', what one op is ``estimator.ops``'. The cost model
(``estimator.cost_model``) times each op and ``estimator.step_compose`` adds
them up; the breakdown sums them per category, the same categories
``profiler.step_breakdown`` measures.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from estimator.block_graph import (
    attention_forward, block_backward, block_forward, linear_backward, linear_forward, norm, prefixed,
)
from estimator.graph_context import GraphContext, block_runs, graph_context
from estimator.memory_terms import ceil_div, stage_params
from estimator.model_config import ModelConfig
from estimator.ops import (
    cast,
    CATEGORIES,
    elementwise,
    HOST_OPS,
    Op,
    Segment,
)
from estimator.setup import TrainSetup
from estimator.step_ops import (
    communication_ops,
    dp_step_reduction,
    framework_op,
    optimizer_ops,
    param_segments,
    zero_micro_batch_ops,
)

def _embedding(ctx: GraphContext, backward: bool) -> list[Op]:
    """Token (and position) lookups; OPT-350m's project_in from the narrower token table to d_model."""
    c, phase = ctx.cfg, "backward" if backward else "forward"
    n = ctx.t * c.d_model
    ops = [elementwise("wte" + (".bwd" if backward else ""), "embedding", phase, ctx.t * c.embed_width, ctx.res)]
    if c.position == "learned":
        ops.append(elementwise("wpe" + (".bwd" if backward else ""), "embedding", phase, n, ctx.res))
        if not backward:
            ops.append(elementwise("pos_add", "binary", phase, n, ctx.res))
    if c.embed_width != c.d_model:
        if backward:
            ops = linear_backward(ctx, "project_in", c.embed_width, c.d_model, False, out_cast=True,
                                   in_cast=True) + ops
        else:
            ops[1:1] = linear_forward(ctx, "project_in", c.embed_width, c.d_model, False, phase, input_cast=True)
    return ops


def _head(ctx: GraphContext, backward: bool) -> list[Op]:
    c = ctx.cfg
    v = ceil_div(c.vocab_size, ctx.tp)
    e = c.embed_width
    logits = ctx.t * v
    if not backward:
        ops = [norm(ctx, "ln_f", "forward")] if c.final_norm else []
        if e != c.d_model:
            ops += linear_forward(ctx, "project_out", c.d_model, e, False, "forward", input_cast=True)
        ops += linear_forward(ctx, "lm_head", e, v, False, "forward", input_cast=e == c.d_model)
        if ctx.autocast:
            ops.append(cast("logits_cast", "forward", logits, "fp32"))
        ops.append(elementwise("cross_entropy", "cross_entropy", "forward", logits, "fp32",
                               host_ops=HOST_OPS["loss"]))
        return ops
    ops = [elementwise("cross_entropy.bwd", "cross_entropy", "backward", logits, "fp32",
                       host_ops=HOST_OPS["loss_backward"])]
    if ctx.autocast:
        ops.append(cast("logits_grad_cast", "backward", logits, ctx.a))
    ops += linear_backward(ctx, "lm_head", e, v, False, out_cast=False, in_cast=e == c.d_model)
    if e != c.d_model:
        ops += linear_backward(ctx, "project_out", c.d_model, e, False, out_cast=False, in_cast=True)
    if c.final_norm:
        ops.append(norm(ctx, "ln_f.bwd", "backward"))
    return ops


@dataclass(frozen=True)
class StepGraph:
    """The ops of one micro-batch (repeated ``grad_accum`` times), then the per-step ops, as segments."""

    segments: tuple[Segment, ...]
    step_segments: tuple[Segment, ...]
    grad_accum: int
    stage: str  # "only" | "first" | "last"
    device_params: int

    @cached_property
    def micro_batch(self) -> tuple[Op, ...]:
        """One micro-batch's ops in execution order, every block spelled out."""
        return tuple(op for seg in self.segments for op in seg.flat())

    @cached_property
    def per_step(self) -> tuple[Op, ...]:
        """The optimizer's ops (every parameter tensor) and the DP all-reduce, spelled out."""
        return tuple(op for seg in self.step_segments for op in seg.flat())

    def counted(self, per_step: bool = False):
        """(op, times it runs per micro-batch, or per step): without spelling out the blocks."""
        for seg in self.step_segments if per_step else self.segments:
            for op in seg.ops:
                yield op, seg.count

    def ops(self) -> list[Op]:
        return list(self.micro_batch) * self.grad_accum + list(self.per_step)

    def flops(self, include_recompute: bool = False) -> int:
        per_micro = sum(op.flops * n for op, n in self.counted() if include_recompute or op.phase != "recompute")
        return per_micro * self.grad_accum + sum(op.flops * n for op, n in self.counted(per_step=True))

    def totals(self) -> dict[str, dict[str, float]]:
        """Per category: op count, FLOPs and bytes of the whole step."""
        out = {c: {"ops": 0, "flops": 0, "bytes": 0} for c in CATEGORIES}
        rows = [(op, n * self.grad_accum) for op, n in self.counted()] + list(self.counted(per_step=True))
        for op, times in rows:
            row = out[op.category]
            row["ops"] += times
            row["flops"] += times * op.flops
            row["bytes"] += times * op.bytes
        return out


def step_graph(cfg: ModelConfig, setup: TrainSetup, batch_size: int | None = None, seq_len: int | None = None,
               stage: str = "only") -> StepGraph:
    """The ops of one training step on one GPU of ``stage`` ("only" when pp = 1, else "first"/"last")."""
    ctx = graph_context(cfg, setup, batch_size, seq_len)
    stages = stage_params(cfg, setup.tp, setup.pp, setup.ep)
    params = stages["last" if stage == "last" else "first"]
    first, last = stage in ("only", "first"), stage in ("only", "last")
    layers = params.layers
    first_layer = 0 if first else cfg.n_layers - layers  # the model index of this stage's first block
    segs: list[Segment] = []
    once: list[Op] = []

    def flush() -> None:
        if once:
            segs.append(Segment(tuple(once)))
            once.clear()

    if first:
        once.extend(_embedding(ctx, backward=False))
    runs = block_runs(cfg, range(first_layer, first_layer + layers))  # a block's kind follows its model index
    flush()
    for run in runs:
        segs.append(Segment(tuple(block_forward(ctx, run[0])), run))
    if last:
        once.extend(_head(ctx, backward=False) + _head(ctx, backward=True))
        flush()
    for run in reversed(runs):
        top = run[-1]
        ops: list[Op] = []
        if setup.recompute == "full":
            ops += block_forward(ctx, top, "recompute")
        elif setup.recompute == "selective":
            ops += [prefixed(op, f"block{top}") for op in attention_forward(ctx, "recompute")
                    if op.category == "attention"]
        ops += block_backward(ctx, top)
        segs.append(Segment(tuple(ops), tuple(reversed(run))))
    if first:
        once.extend(_embedding(ctx, backward=True))
        if cfg.tied_embeddings and last:
            once.append(elementwise("wte.tied_grad_add", "binary", "backward",
                                    ceil_div(cfg.vocab_size, ctx.tp) * cfg.embed_width, ctx.res))
    once.append(framework_op(ctx, layers))
    flush()
    segs += communication_ops(ctx, tuple(range(first_layer, first_layer + layers)), first, last)
    zero = zero_micro_batch_ops(ctx, params.total)
    if zero:
        segs.append(Segment(tuple(zero)))
    step = optimizer_ops(ctx, param_segments(ctx, layers, first, last, first_layer))
    dp = dp_step_reduction(ctx, params.total)
    if dp is not None:
        step.append(Segment((dp,)))
    return StepGraph(tuple(segs), tuple(step), setup.grad_accum, stage, params.total)


def stages(setup: TrainSetup) -> tuple[str, ...]:
    """The pipeline stages whose graphs differ: one when pp = 1."""
    return ("only",) if setup.pp == 1 else ("first", "last")
