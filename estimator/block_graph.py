"""One transformer block of the op graph: the kernels of its forward and backward, in execution order.

Linears (forward and both backward GEMMs, bias, autocast casts, fp8 casts),
norms, RoPE, the attention core (SDPA or explicit; context parallel's K/V
all-gather and dK/dV reduce-scatter), the MLP (dense or experts, gated or
not) and the residual adds, for one GPU's shapes (``estimator.graph_context``).
``estimator.op_graph`` assembles the step from them.
"""

from __future__ import annotations

from dataclasses import replace

from estimator.graph_context import GraphContext, attn_linears_on_gpu, is_dense, mlp_layout
from estimator.memory_terms import ceil_div
from estimator.ops import (
    ACTIVATION_KERNEL,
    attention_core,
    cast,
    dropout,
    elementwise,
    fp8_cast,
    gemm,
    HOST_OPS,
    Op,
)


def prefixed(op: Op, prefix: str) -> Op:
    return replace(op, name=f"{prefix}.{op.name}")


def linear_forward(ctx: GraphContext, name: str, d_in: int, d_out: int, bias: bool, phase: str,
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
    ops.append(gemm(f"{name}.fwd", phase, ctx.t, d_out, d_in, ctx.mm, host_ops=HOST_OPS["linear"], bias=bias))
    return ops


def linear_backward(ctx: GraphContext, name: str, d_in: int, d_out: int, bias: bool, out_cast: bool,
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


def norm(ctx: GraphContext, name: str, phase: str, width: int | None = None) -> Op:
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


def attention_forward(ctx: GraphContext, phase: str) -> list[Op]:
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
        ops += linear_forward(ctx, name, d_in, d_out, bias, phase, input_cast=not name.endswith("_up"))
        if name.endswith("_down"):
            width = ctx.cfg.q_lora_rank if name == "attn.q_down" else ctx.cfg.kv_lora_rank
            ops.append(norm(ctx, f"{name[:-5]}_norm", phase, width))
    return ops


def _qkv_backward(ctx: GraphContext) -> list[Op]:
    ops = []
    for name, d_in, d_out, bias in reversed(attn_linears_on_gpu(ctx)[:-1]):
        if name.endswith("_down"):
            width = ctx.cfg.q_lora_rank if name == "attn.q_down" else ctx.cfg.kv_lora_rank
            ops.append(norm(ctx, f"{name[:-5]}_norm.bwd", "backward", width))
        ops += linear_backward(ctx, name, d_in, d_out, bias, out_cast=False, in_cast=not name.endswith("_up"))
    return ops


def _mlp_forward(ctx: GraphContext, dense: bool, phase: str) -> list[Op]:
    c, ops = ctx.cfg, []
    routers, groups = mlp_layout(ctx, dense)
    for name, d_in, d_out, bias in routers:
        ops += linear_forward(ctx, name, d_in, d_out, bias, phase, input_cast=True)
    act = ACTIVATION_KERNEL[c.mlp]
    for group in groups:
        ups, down = group[:-1], group[-1]
        for name, d_in, d_out, bias in ups:
            ops += linear_forward(ctx, name, d_in, d_out, bias, phase, input_cast=True)
        width = ctx.t * ups[0][2]
        ops.append(elementwise(f"{down[0]}.{act}", act, phase, width, ctx.a))
        if c.gated:
            ops.append(elementwise(f"{down[0]}.gate_mul", "binary", phase, width, ctx.a))
        ops += linear_forward(ctx, down[0], down[1], down[2], down[3], phase, input_cast=False)
    return ops


def _mlp_backward(ctx: GraphContext, dense: bool) -> list[Op]:
    c, ops = ctx.cfg, []
    routers, groups = mlp_layout(ctx, dense)
    act = ACTIVATION_KERNEL[c.mlp]
    for group in groups:
        ups, down = group[:-1], group[-1]
        ops += linear_backward(ctx, *down, out_cast=True, in_cast=False)
        width = ctx.t * ups[0][2]
        if c.gated:
            ops += [elementwise(f"{down[0]}.gate_mul.bwd", "binary", "backward", width, ctx.a),
                    elementwise(f"{down[0]}.gate_mul.bwd", "binary", "backward", width, ctx.a)]
        ops.append(elementwise(f"{down[0]}.{act}.bwd", act, "backward", width, ctx.a))
        for name, d_in, d_out, bias in reversed(ups):
            ops += linear_backward(ctx, name, d_in, d_out, bias, out_cast=False, in_cast=True)
        if len(ups) > 1:  # both up-projections' input grads summed
            ops.append(elementwise(f"{ups[0][0]}.input_grad_add", "binary", "backward", ctx.t * c.d_model, ctx.a))
    for name, d_in, d_out, bias in routers:
        ops += linear_backward(ctx, name, d_in, d_out, bias, out_cast=False, in_cast=True)
    return ops


def block_forward(ctx: GraphContext, layer: int, phase: str = "forward") -> list[Op]:
    """One transformer block's forward on this GPU (``phase`` "recompute" for activation recomputation).

    Sequential (pre-norm) or parallel residual (GPT-NeoX, Falcon: both branches read the block input;
    Falcon-7B shares one norm); Gemma-2 norms each branch's output too. Dropout (setup.dropout > 0)
    follows the attention output projection and the MLP, as in Megatron's GPT."""
    c, attn = ctx.cfg, attn_linears_on_gpu(ctx)
    proj, dense, drop = attn[-1], is_dense(c, layer), ctx.setup.dropout > 0
    ops = [norm(ctx, "ln_1", phase)]
    ops += _qkv_forward(ctx, phase)
    ops += attention_forward(ctx, phase)
    ops += linear_forward(ctx, proj[0], proj[1], proj[2], proj[3], phase, input_cast=False)
    if c.post_norms:
        ops.append(norm(ctx, "post_ln_1", phase))
    if drop:
        ops.append(dropout("attn.dropout", phase, ctx.t * c.d_model, ctx.a))
    ops.append(elementwise("residual_1", "binary", phase, ctx.t * c.d_model, ctx.res))
    if not c.shared_block_norm:
        ops.append(norm(ctx, "ln_2", phase))
    ops += _mlp_forward(ctx, dense, phase)
    if c.post_norms:
        ops.append(norm(ctx, "post_ln_2", phase))
    if drop:
        ops.append(dropout("mlp.dropout", phase, ctx.t * c.d_model, ctx.a))
    ops.append(elementwise("residual_2", "binary", phase, ctx.t * c.d_model, ctx.res))
    return [prefixed(op, f"block{layer}") for op in ops]


def block_backward(ctx: GraphContext, layer: int) -> list[Op]:
    c, attn = ctx.cfg, attn_linears_on_gpu(ctx)
    proj, dense, drop = attn[-1], is_dense(c, layer), ctx.setup.dropout > 0
    ops = [dropout("mlp.dropout.bwd", "backward", ctx.t * c.d_model, ctx.a)] if drop else []
    if c.post_norms:
        ops.append(norm(ctx, "post_ln_2.bwd", "backward"))
    ops += _mlp_backward(ctx, dense)
    if not c.shared_block_norm:
        ops.append(norm(ctx, "ln_2.bwd", "backward"))
    ops.append(elementwise("residual_2.grad_add", "binary", "backward", ctx.t * c.d_model, ctx.res))
    if drop:
        ops.append(dropout("attn.dropout.bwd", "backward", ctx.t * c.d_model, ctx.a))
    if c.post_norms:
        ops.append(norm(ctx, "post_ln_1.bwd", "backward"))
    ops += linear_backward(ctx, *proj, out_cast=True, in_cast=False)
    ops += _attention_backward(ctx)
    ops += _qkv_backward(ctx)
    ops.append(norm(ctx, "ln_1.bwd", "backward"))
    ops.append(elementwise("residual_1.grad_add", "binary", "backward", ctx.t * c.d_model, ctx.res))
    return [prefixed(op, f"block{layer}") for op in ops]
