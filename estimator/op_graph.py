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

This module builds the blocks (Linears, norms, attention, MLP), the embedding
and head, and assembles the step; the shapes on one GPU are
``estimator.graph_context``'s, the optimizer, framework and communication ops
``estimator.step_ops``', what one op is ``estimator.ops``'. The cost model
(``estimator.cost_model``) times each op and ``estimator.step_compose`` adds
them up; the breakdown sums them per category, the same categories
``profiler.step_breakdown`` measures.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

from estimator.graph_context import GraphContext, attn_linears_on_gpu, block_runs, graph_context, is_dense, mlp_layout
from estimator.memory_terms import ceil_div, stage_params
from estimator.model_config import ModelConfig
from estimator.ops import (
    ACTIVATION_KERNEL,
    attention_core,
    cast,
    CATEGORIES,
    dropout,
    elementwise,
    fp8_cast,
    gemm,
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

def _linear_forward(ctx: GraphContext, name: str, d_in: int, d_out: int, bias: bool, phase: str,
                    input_cast: bool) -> list[Op]:
    ops = []
    if ctx.autocast and phase == "forward" and not ctx.fp8:  # weights cast once per forward (autocast's cache)
        ops.append(cast(f"{name}.weight_cast", phase, d_in * d_out + (d_out if bias else 0), ctx.a))
    if ctx.autocast and input_cast and not ctx.fp8:
        ops.append(cast(f"{name}.input_cast", phase, ctx.t * d_in, ctx.a))
    if ctx.fp8:  # per-tensor scaling: the weight (from its stored dtype) and the 16-bit input cast to fp8
        if phase == "forward":
            ops.append(fp8_cast(f"{name}.weight_fp8", phase, d_in * d_out, ctx.res))
        ops.append(fp8_cast(f"{name}.input_fp8", phase, ctx.t * d_in, ctx.a))
    ops.append(gemm(f"{name}.fwd", phase, ctx.t, d_out, d_in, ctx.mm, host_ops=HOST_OPS["linear"]))
    return ops


def _linear_backward(ctx: GraphContext, name: str, d_in: int, d_out: int, bias: bool, out_cast: bool,
                     in_cast: bool) -> list[Op]:
    """dX = dY·W (m=tokens, n=in, k=out) and dW = dYᵀ·X (m=out, n=in, k=tokens), bias grad, autocast casts:
    ``out_cast`` the fp32 grad arriving from a residual add cast to 16 bits, ``in_cast`` the input grad
    cast back to the fp32 input's dtype (the backward of the forward's input cast). Under fp8 the
    output grad is cast to fp8 once for both GEMMs (the forward's fp8 input and weight are reused)."""
    ops = []
    if ctx.autocast and out_cast:
        ops.append(cast(f"{name}.grad_cast", "backward", ctx.t * d_out, ctx.a))
    if ctx.fp8:
        ops.append(fp8_cast(f"{name}.grad_fp8", "backward", ctx.t * d_out, ctx.a))
    ops.append(gemm(f"{name}.bwd_input", "backward_input", ctx.t, d_in, d_out, ctx.mm,
                    host_ops=HOST_OPS["linear_backward"]))
    ops.append(gemm(f"{name}.bwd_weight", "backward_weight", d_out, d_in, ctx.t, ctx.mm))
    if bias:
        ops.append(elementwise(f"{name}.bias_grad", "sum", "backward", ctx.t * d_out, ctx.a))
    if ctx.autocast:  # the weight (and bias) grad cast back to the fp32 parameter
        ops.append(cast(f"{name}.weight_grad_cast", "backward", d_in * d_out + (d_out if bias else 0), "fp32"))
        if in_cast:
            ops.append(cast(f"{name}.input_grad_cast", "backward", ctx.t * d_in, "fp32"))
    return ops


def _norm(ctx: GraphContext, name: str, phase: str, width: int | None = None) -> Op:
    host = 0
    if ctx.cfg.norm == "rmsnorm":  # an unfused RMSNorm dispatches its pow, mean, add, rsqrt and muls
        host = HOST_OPS["rmsnorm_backward" if phase == "backward" else "rmsnorm_forward"]
    return elementwise(name, ctx.cfg.norm, phase, ctx.t * (width or ctx.cfg.d_model), ctx.res, host_ops=host)


def _rope_widths(ctx: GraphContext, heads: int, kv: int) -> list[tuple[str, int]]:
    """(part, rotated width per token) of q and k on this GPU: partial rotary rotates rotary_dim of each
    head; MLA rotates the rope part of each query head and one key shared by all heads."""
    c = ctx.cfg
    if c.is_mla:
        return [("q", heads * c.rope_head_dim), ("k", c.rope_head_dim)]
    rot = c.rotary_dim or c.dh
    return [("q", heads * rot), ("k", kv * rot)]


def _rope(ctx: GraphContext, name: str, phase: str, elements: int) -> list[Op]:
    """``profiler.model.apply_rope`` on ``elements`` rotated values, or its backward: the complex multiply
    (by the angle's conjugate backward, after a copy of the incoming gradient) in fp32, between casts from
    and back to a 16-bit activation dtype."""
    forward = phase != "backward"
    ops = [] if ctx.a == "fp32" else [cast(f"{name}.to_fp32", phase, elements, "fp32")]
    if not forward:
        ops.append(elementwise(f"{name}.grad_copy", "copy", phase, elements, "fp32"))
    ops.append(elementwise(f"{name}.mul", "binary", phase, elements, "fp32",
                           host_ops=HOST_OPS["rope_forward" if forward else "rope_backward"]))
    return ops if ctx.a == "fp32" else ops + [cast(f"{name}.to_{ctx.a}", phase, elements, ctx.a)]


def _attention_forward(ctx: GraphContext, phase: str) -> list[Op]:
    """RoPE, GQA repeat, the attention core, the head merge (the q/kv matrices are the caller's)."""
    c = ctx.cfg
    heads, kv = ceil_div(c.n_heads, ctx.tp), ceil_div(c.kv_heads, ctx.tp)
    kind = "sdpa" if ctx.setup.flash_attention else "explicit"
    ops = []
    if c.position == "rope":  # q and k: each pair times e^(i·angle), one complex multiply in fp32
        for part, width in _rope_widths(ctx, heads, kv):
            ops += _rope(ctx, f"attn.rope_{part}", phase, ctx.t * width)
    if kv != heads:  # GQA: repeat_interleave of k and v
        ops += [elementwise(f"attn.repeat_{x}", "copy", phase, ctx.t * heads * w, ctx.a)
                for x, w in (("k", c.dh), ("v", c.vdh))]
    q_len = ctx.s // ctx.cp
    core = attention_core(f"attn.{kind}", kind, phase, ctx.b * heads, q_len, c.dh, ctx.a, ctx.s, c.vdh)
    host = HOST_OPS["qkv_split"] + (HOST_OPS["explicit_forward"] if kind == "explicit" else 0)
    ops.append(replace(core, host_ops=host))
    if kind == "explicit" and ctx.setup.dropout > 0:
        ops.append(dropout("attn.probs_dropout", phase, ctx.b * heads * q_len * ctx.s, ctx.a))
    ops.append(elementwise("attn.merge_heads", "copy", phase, ctx.t * heads * c.vdh, ctx.a,
                           host_ops=HOST_OPS["attention_out"]))
    return ops


def _attention_backward(ctx: GraphContext) -> list[Op]:
    c = ctx.cfg
    heads, kv = ceil_div(c.n_heads, ctx.tp), ceil_div(c.kv_heads, ctx.tp)
    kind = "sdpa" if ctx.setup.flash_attention else "explicit"
    q_len = ctx.s // ctx.cp
    ops = [elementwise("attn.merge_heads.bwd", "copy", "backward", ctx.t * heads * c.vdh, ctx.a)]
    if kind == "explicit" and ctx.setup.dropout > 0:
        ops.append(dropout("attn.probs_dropout.bwd", "backward", ctx.b * heads * q_len * ctx.s, ctx.a))
    core = attention_core(f"attn.{kind}.bwd", kind, "backward", ctx.b * heads, q_len, c.dh, ctx.a, ctx.s, c.vdh)
    ops.append(replace(core, host_ops=HOST_OPS["explicit_backward"] if kind == "explicit" else 0))
    if kv != heads:  # the repeated heads' grads summed back
        ops += [elementwise(f"attn.repeat_{x}.bwd", "sum", "backward", ctx.t * heads * w, ctx.a)
                for x, w in (("k", c.dh), ("v", c.vdh))]
    if c.position == "rope":
        for part, width in _rope_widths(ctx, heads, kv):
            ops += _rope(ctx, f"attn.rope_{part}.bwd", "backward", ctx.t * width)
    ops.append(elementwise("attn.qkv_grad_cat", "copy", "backward", ctx.t * (heads * (c.dh + c.vdh) + kv * c.dh),
                           ctx.a, host_ops=HOST_OPS["attention_backward_reshape"]))
    return ops


def _qkv_forward(ctx: GraphContext, phase: str) -> list[Op]:
    """The projections into q, k, v: one fused qkv GEMM, or MLA's down-projection, latent norm and
    up-projection of the query and of the joint kv."""
    ops = []
    for name, d_in, d_out, bias in attn_linears_on_gpu(ctx)[:-1]:
        ops += _linear_forward(ctx, name, d_in, d_out, bias, phase, input_cast=not name.endswith("_up"))
        if name.endswith("_down"):
            width = ctx.cfg.q_lora_rank if name == "attn.q_down" else ctx.cfg.kv_lora_rank
            ops.append(_norm(ctx, f"{name[:-5]}_norm", phase, width))
    return ops


def _qkv_backward(ctx: GraphContext) -> list[Op]:
    ops = []
    for name, d_in, d_out, bias in reversed(attn_linears_on_gpu(ctx)[:-1]):
        if name.endswith("_down"):
            width = ctx.cfg.q_lora_rank if name == "attn.q_down" else ctx.cfg.kv_lora_rank
            ops.append(_norm(ctx, f"{name[:-5]}_norm.bwd", "backward", width))
        ops += _linear_backward(ctx, name, d_in, d_out, bias, out_cast=False, in_cast=not name.endswith("_up"))
    return ops


def _mlp_forward(ctx: GraphContext, dense: bool, phase: str) -> list[Op]:
    c, ops = ctx.cfg, []
    routers, groups = mlp_layout(ctx, dense)
    for name, d_in, d_out, bias in routers:
        ops += _linear_forward(ctx, name, d_in, d_out, bias, phase, input_cast=True)
    act = ACTIVATION_KERNEL[c.mlp]
    for group in groups:
        ups, down = group[:-1], group[-1]
        for name, d_in, d_out, bias in ups:
            ops += _linear_forward(ctx, name, d_in, d_out, bias, phase, input_cast=True)
        width = ctx.t * ups[0][2]
        ops.append(elementwise(f"{down[0]}.{act}", act, phase, width, ctx.a))
        if c.gated:
            ops.append(elementwise(f"{down[0]}.gate_mul", "binary", phase, width, ctx.a))
        ops += _linear_forward(ctx, down[0], down[1], down[2], down[3], phase, input_cast=False)
    return ops


def _mlp_backward(ctx: GraphContext, dense: bool) -> list[Op]:
    c, ops = ctx.cfg, []
    routers, groups = mlp_layout(ctx, dense)
    act = ACTIVATION_KERNEL[c.mlp]
    for group in groups:
        ups, down = group[:-1], group[-1]
        ops += _linear_backward(ctx, *down, out_cast=True, in_cast=False)
        width = ctx.t * ups[0][2]
        if c.gated:
            ops += [elementwise(f"{down[0]}.gate_mul.bwd", "binary", "backward", width, ctx.a),
                    elementwise(f"{down[0]}.gate_mul.bwd", "binary", "backward", width, ctx.a)]
        ops.append(elementwise(f"{down[0]}.{act}.bwd", act, "backward", width, ctx.a))
        for name, d_in, d_out, bias in reversed(ups):
            ops += _linear_backward(ctx, name, d_in, d_out, bias, out_cast=False, in_cast=True)
        if len(ups) > 1:  # both up-projections' input grads summed
            ops.append(elementwise(f"{ups[0][0]}.input_grad_add", "binary", "backward", ctx.t * c.d_model, ctx.a))
    for name, d_in, d_out, bias in routers:
        ops += _linear_backward(ctx, name, d_in, d_out, bias, out_cast=False, in_cast=True)
    return ops


def block_forward(ctx: GraphContext, layer: int, phase: str = "forward") -> list[Op]:
    """One transformer block's forward on this GPU (``phase`` "recompute" for activation recomputation).

    Sequential (pre-norm) or parallel residual (GPT-NeoX, Falcon: both branches read the block input;
    Falcon-7B shares one norm); Gemma-2 norms each branch's output too. Dropout (setup.dropout > 0)
    follows the attention output projection and the MLP, as in Megatron's GPT."""
    c, attn = ctx.cfg, attn_linears_on_gpu(ctx)
    proj, dense, drop = attn[-1], is_dense(c, layer), ctx.setup.dropout > 0
    ops = [_norm(ctx, "ln_1", phase)]
    ops += _qkv_forward(ctx, phase)
    ops += _attention_forward(ctx, phase)
    ops += _linear_forward(ctx, proj[0], proj[1], proj[2], proj[3], phase, input_cast=False)
    if c.post_norms:
        ops.append(_norm(ctx, "post_ln_1", phase))
    if drop:
        ops.append(dropout("attn.dropout", phase, ctx.t * c.d_model, ctx.a))
    ops.append(elementwise("residual_1", "binary", phase, ctx.t * c.d_model, ctx.res))
    if not c.shared_block_norm:
        ops.append(_norm(ctx, "ln_2", phase))
    ops += _mlp_forward(ctx, dense, phase)
    if c.post_norms:
        ops.append(_norm(ctx, "post_ln_2", phase))
    if drop:
        ops.append(dropout("mlp.dropout", phase, ctx.t * c.d_model, ctx.a))
    ops.append(elementwise("residual_2", "binary", phase, ctx.t * c.d_model, ctx.res))
    return [_prefix(op, f"block{layer}") for op in ops]


def block_backward(ctx: GraphContext, layer: int) -> list[Op]:
    c, attn = ctx.cfg, attn_linears_on_gpu(ctx)
    proj, dense, drop = attn[-1], is_dense(c, layer), ctx.setup.dropout > 0
    ops = [dropout("mlp.dropout.bwd", "backward", ctx.t * c.d_model, ctx.a)] if drop else []
    if c.post_norms:
        ops.append(_norm(ctx, "post_ln_2.bwd", "backward"))
    ops += _mlp_backward(ctx, dense)
    if not c.shared_block_norm:
        ops.append(_norm(ctx, "ln_2.bwd", "backward"))
    ops.append(elementwise("residual_2.grad_add", "binary", "backward", ctx.t * c.d_model, ctx.res))
    if drop:
        ops.append(dropout("attn.dropout.bwd", "backward", ctx.t * c.d_model, ctx.a))
    if c.post_norms:
        ops.append(_norm(ctx, "post_ln_1.bwd", "backward"))
    ops += _linear_backward(ctx, *proj, out_cast=True, in_cast=False)
    ops += _attention_backward(ctx)
    ops += _qkv_backward(ctx)
    ops.append(_norm(ctx, "ln_1.bwd", "backward"))
    ops.append(elementwise("residual_1.grad_add", "binary", "backward", ctx.t * c.d_model, ctx.res))
    return [_prefix(op, f"block{layer}") for op in ops]


def _prefix(op: Op, prefix: str) -> Op:
    return Op(f"{prefix}.{op.name}", op.kernel, op.category, op.phase, op.shape, op.dtype, op.flops, op.bytes,
              op.host_ops)


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
            ops = _linear_backward(ctx, "project_in", c.embed_width, c.d_model, False, out_cast=True,
                                   in_cast=True) + ops
        else:
            ops[1:1] = _linear_forward(ctx, "project_in", c.embed_width, c.d_model, False, phase, input_cast=True)
    return ops


def _head(ctx: GraphContext, backward: bool) -> list[Op]:
    c = ctx.cfg
    v = ceil_div(c.vocab_size, ctx.tp)
    e = c.embed_width
    logits = ctx.t * v
    if not backward:
        ops = [_norm(ctx, "ln_f", "forward")] if c.final_norm else []
        if e != c.d_model:
            ops += _linear_forward(ctx, "project_out", c.d_model, e, False, "forward", input_cast=True)
        ops += _linear_forward(ctx, "lm_head", e, v, False, "forward", input_cast=e == c.d_model)
        if ctx.autocast:
            ops.append(cast("logits_cast", "forward", logits, "fp32"))
        ops.append(elementwise("cross_entropy", "cross_entropy", "forward", logits, "fp32",
                               host_ops=HOST_OPS["loss"]))
        return ops
    ops = [elementwise("cross_entropy.bwd", "cross_entropy", "backward", logits, "fp32",
                       host_ops=HOST_OPS["loss_backward"])]
    if ctx.autocast:
        ops.append(cast("logits_grad_cast", "backward", logits, ctx.a))
    ops += _linear_backward(ctx, "lm_head", e, v, False, out_cast=False, in_cast=e == c.d_model)
    if e != c.d_model:
        ops += _linear_backward(ctx, "project_out", c.d_model, e, False, out_cast=False, in_cast=True)
    if c.final_norm:
        ops.append(_norm(ctx, "ln_f.bwd", "backward"))
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
            ops += [_prefix(op, f"block{top}") for op in _attention_forward(ctx, "recompute")
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
