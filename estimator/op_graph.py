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

The cost model (``estimator.cost_model``) times each op; the breakdown sums
them per category, the same categories ``profiler.step_breakdown`` measures.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from estimator.memory_terms import ceil_div, is_autocast, stage_params
from estimator.model_config import ModelConfig
from estimator.precision import get_precision
from estimator.setup import TrainSetup

OPTIMIZER_GROUPS = 2  # the profiled AdamW's decay / no-decay groups (profiler.step.make_adamw)
CATEGORIES = ("matmul", "attention", "elementwise", "optimizer", "communication", "host")
PASSES = ("forward", "backward_input", "backward_weight", "backward", "recompute", "optimizer", "step")
DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "int64": 8}
# Tensor-sized reads + writes per element of an elementwise kernel, by (kernel, forward?):
# binary ops read two operands and write one; norms/activations read x (and dy) and write one.
ACCESSES = {
    ("binary", True): 3, ("binary", False): 3, ("cast", True): 2, ("copy", True): 2, ("copy", False): 2,
    ("layernorm", True): 2, ("layernorm", False): 3, ("rmsnorm", True): 2, ("rmsnorm", False): 3,
    ("gelu", True): 2, ("gelu", False): 3, ("silu", True): 2, ("silu", False): 3,
    ("cross_entropy", True): 2, ("cross_entropy", False): 3, ("embedding", True): 2, ("embedding", False): 2,
    ("sum", False): 1,
}
ELEMENTWISE_KERNELS = ("binary", "cast", "copy", "layernorm", "rmsnorm", "gelu", "silu", "cross_entropy",
                       "embedding", "sum")
ATTENTION_KINDS = ("sdpa", "explicit")
# Kernel-less ops dispatched around each kernel in the profiled GPT (profiler/model.py, counted with a
# TorchDispatchMode, torch 2.13): a Linear's view/t/view; the attention reshapes; the loss's views.
HOST_OPS = {"linear": 3, "qkv_split": 7, "attention_out": 2, "loss": 4, "linear_backward": 4,
            "attention_backward_reshape": 9, "accumulate_grad": 1}


@dataclass(frozen=True)
class Op:
    """One kernel of the step. ``shape``: gemm (m, n, k); attention (batch·heads, seq, head_dim);
    elementwise / optimizer (elements,); communication (message bytes, ranks)."""

    name: str
    kernel: str  # gemm | sdpa | explicit | an ELEMENTWISE_KERNELS entry | adamw | all_reduce | p2p | launch
    category: str
    phase: str  # a PASSES entry
    shape: tuple[int, ...]
    dtype: str
    flops: int = 0  # model FLOPs (the analytic convention); 0 for elementwise work
    bytes: int = 0  # bytes read + written by the kernel
    host_ops: int = 0  # kernel-less ops dispatched with it

    @property
    def forward(self) -> bool:
        return self.phase in ("forward", "recompute")

    def to_dict(self) -> dict:
        return asdict(self)


def gemm(name: str, phase: str, m: int, n: int, k: int, dtype: str, category: str = "matmul",
         host_ops: int = 0) -> Op:
    """(m x k) @ (k x n): 2·m·n·k FLOPs; reads both operands, writes the result."""
    b = DTYPE_BYTES[dtype]
    return Op(name, "gemm", category, phase, (m, n, k), dtype, 2 * m * n * k, (m * k + k * n + m * n) * b, host_ops)


def elementwise(name: str, kernel: str, phase: str, elements: int, dtype: str, host_ops: int = 0) -> Op:
    forward = phase in ("forward", "recompute")
    accesses = ACCESSES.get((kernel, forward), ACCESSES.get((kernel, True), 2))
    return Op(name, kernel, "elementwise", phase, (elements,), dtype, 0, accesses * elements * DTYPE_BYTES[dtype],
              host_ops)


def cast(name: str, phase: str, elements: int, to: str) -> Op:
    """An autocast copy between fp32 and a 16-bit dtype: reads one, writes the other."""
    return Op(name, "cast", "elementwise", phase, (elements,), to, 0, elements * (4 + DTYPE_BYTES[to]))


def attention_core(name: str, kind: str, phase: str, bh: int, seq: int, head_dim: int, dtype: str) -> Op:
    """q·kᵀ, mask, softmax, ·v (forward: 2 matmuls of 2·bh·T²·d_h FLOPs; backward: 4)."""
    fwd = 4 * bh * seq * seq * head_dim
    flops = fwd if phase in ("forward", "recompute") else 2 * fwd
    b = DTYPE_BYTES[dtype]
    io = 4 * bh * seq * head_dim * b  # q, k, v read, y written
    scores = bh * seq * seq * b * (8 if kind == "explicit" else 0)  # explicit: each pass over the T x T scores
    return Op(name, kind, "attention", phase, (bh, seq, head_dim), dtype, flops,
              (io + scores) * (1 if phase in ("forward", "recompute") else 2))


@dataclass(frozen=True)
class GraphContext:
    """What every op builder needs: sizes on this GPU and the dtypes that run."""

    cfg: ModelConfig
    setup: TrainSetup
    b: int
    s: int
    tp: int
    mm: str  # matmul / 16-bit activation dtype
    res: str  # residual stream and norms: the weights' dtype
    autocast: bool

    @property
    def t(self) -> int:
        return self.b * self.s


def _context(cfg: ModelConfig, setup: TrainSetup, batch_size: int | None, seq_len: int | None) -> GraphContext:
    p = get_precision(setup.precision)
    mm = "fp32" if p.activation_bytes == 4 else ("fp16" if p.matmul_dtype == "fp16" else "bf16")
    res = "fp32" if p.weight_bytes == 4 else mm
    b = setup.batch_size if batch_size is None else batch_size
    s = seq_len or setup.seq_len or cfg.context_length
    return GraphContext(cfg, setup, b, s, setup.tp, mm, res, is_autocast(p))


def _linears(ctx: GraphContext) -> list[tuple[str, int, int, bool]]:
    """(name, in, out, bias) per Linear of one block on this GPU, in forward order."""
    c, tp = ctx.cfg, ctx.tp
    qkv = ceil_div(c.q_width + 2 * c.kv_width, tp)
    out = [("attn.qkv", c.d_model, qkv, c.qkv_bias), ("attn.proj", ceil_div(c.q_width, tp), c.d_model, c.proj_bias)]
    f = ceil_div(c.ffn, tp)
    for e in range(c.top_k):
        tag = f"mlp{e}" if c.is_moe else "mlp"
        ups = [(f"{tag}.gate", c.d_model, f, c.mlp_bias)] if c.mlp == "swiglu" else []
        out += ups + [(f"{tag}.fc", c.d_model, f, c.mlp_bias), (f"{tag}.proj", f, c.d_model, c.mlp_bias)]
    if c.is_moe:
        out.insert(2, ("mlp.router", c.d_model, c.n_experts, False))
    return out


def _linear_forward(ctx: GraphContext, name: str, d_in: int, d_out: int, bias: bool, phase: str,
                    input_cast: bool) -> list[Op]:
    ops = []
    if ctx.autocast and phase == "forward":  # weights cast once per forward (autocast's cache)
        ops.append(cast(f"{name}.weight_cast", phase, d_in * d_out + (d_out if bias else 0), ctx.mm))
    if ctx.autocast and input_cast:
        ops.append(cast(f"{name}.input_cast", phase, ctx.t * d_in, ctx.mm))
    ops.append(gemm(f"{name}.fwd", phase, ctx.t, d_out, d_in, ctx.mm, host_ops=HOST_OPS["linear"]))
    return ops


def _linear_backward(ctx: GraphContext, name: str, d_in: int, d_out: int, bias: bool, out_cast: bool,
                     in_cast: bool) -> list[Op]:
    """dX = dY·W (m=tokens, n=in, k=out) and dW = dYᵀ·X (m=out, n=in, k=tokens), bias grad, autocast casts:
    ``out_cast`` the fp32 grad arriving from a residual add cast to 16 bits, ``in_cast`` the input grad
    cast back to the fp32 input's dtype (the backward of the forward's input cast)."""
    ops = []
    if ctx.autocast and out_cast:
        ops.append(cast(f"{name}.grad_cast", "backward", ctx.t * d_out, ctx.mm))
    ops.append(gemm(f"{name}.bwd_input", "backward_input", ctx.t, d_in, d_out, ctx.mm,
                    host_ops=HOST_OPS["linear_backward"]))
    ops.append(gemm(f"{name}.bwd_weight", "backward_weight", d_out, d_in, ctx.t, ctx.mm))
    if bias:
        ops.append(elementwise(f"{name}.bias_grad", "sum", "backward", ctx.t * d_out, ctx.mm))
    if ctx.autocast:  # the weight (and bias) grad cast back to the fp32 parameter
        ops.append(cast(f"{name}.weight_grad_cast", "backward", d_in * d_out + (d_out if bias else 0), "fp32"))
        if in_cast:
            ops.append(cast(f"{name}.input_grad_cast", "backward", ctx.t * d_in, "fp32"))
    return ops


def _norm(ctx: GraphContext, name: str, phase: str) -> Op:
    return elementwise(name, ctx.cfg.norm, phase, ctx.t * ctx.cfg.d_model, ctx.res)


def _attention_forward(ctx: GraphContext, phase: str) -> list[Op]:
    c = ctx.cfg
    heads, kv = ceil_div(c.n_heads, ctx.tp), ceil_div(c.kv_heads, ctx.tp)
    kind = "sdpa" if ctx.setup.flash_attention else "explicit"
    ops = []
    if c.position == "rope":  # q and k: x1·cos − x2·sin, x1·sin + x2·cos, cat
        for part, width in (("q", heads * c.dh), ("k", kv * c.dh)):
            half = ctx.t * width // 2
            ops += [elementwise(f"attn.rope_{part}.mul", "binary", phase, half, ctx.mm) for _ in range(4)]
            ops += [elementwise(f"attn.rope_{part}.add", "binary", phase, half, ctx.mm) for _ in range(2)]
            ops.append(elementwise(f"attn.rope_{part}.cat", "copy", phase, 2 * half, ctx.mm))
    if kv != heads:  # GQA: repeat_interleave of k and v
        ops += [elementwise(f"attn.repeat_{x}", "copy", phase, ctx.t * heads * c.dh, ctx.mm) for x in "kv"]
    ops.append(attention_core(f"attn.{kind}", kind, phase, ctx.b * heads, ctx.s, c.dh, ctx.mm))
    ops.append(elementwise("attn.merge_heads", "copy", phase, ctx.t * heads * c.dh, ctx.mm,
                           host_ops=HOST_OPS["attention_out"]))
    return ops


def _attention_backward(ctx: GraphContext) -> list[Op]:
    c = ctx.cfg
    heads, kv = ceil_div(c.n_heads, ctx.tp), ceil_div(c.kv_heads, ctx.tp)
    kind = "sdpa" if ctx.setup.flash_attention else "explicit"
    ops = [elementwise("attn.merge_heads.bwd", "copy", "backward", ctx.t * heads * c.dh, ctx.mm),
           attention_core(f"attn.{kind}.bwd", kind, "backward", ctx.b * heads, ctx.s, c.dh, ctx.mm)]
    if kv != heads:  # the repeated heads' grads summed back
        ops += [elementwise(f"attn.repeat_{x}.bwd", "sum", "backward", ctx.t * heads * c.dh, ctx.mm) for x in "kv"]
    if c.position == "rope":
        for part, width in (("q", heads * c.dh), ("k", kv * c.dh)):
            half = ctx.t * width // 2
            ops += [elementwise(f"attn.rope_{part}.bwd", "binary", "backward", half, ctx.mm) for _ in range(6)]
    ops.append(elementwise("attn.qkv_grad_cat", "copy", "backward", ctx.t * (heads + 2 * kv) * c.dh, ctx.mm,
                           host_ops=HOST_OPS["attention_backward_reshape"]))
    return ops


def _mlp_forward(ctx: GraphContext, linears: list, phase: str) -> list[Op]:
    c, ops = ctx.cfg, []
    mlp = [x for x in linears if x[0].startswith("mlp")]
    router = [x for x in mlp if x[0] == "mlp.router"]
    for name, d_in, d_out, bias in router:
        ops += _linear_forward(ctx, name, d_in, d_out, bias, phase, input_cast=True)
    experts = [x for x in mlp if x[0] != "mlp.router"]
    per = 3 if c.mlp == "swiglu" else 2
    for e in range(0, len(experts), per):
        group = experts[e:e + per]
        ups, down = group[:-1], group[-1]
        for name, d_in, d_out, bias in ups:
            ops += _linear_forward(ctx, name, d_in, d_out, bias, phase, input_cast=True)
        width = ctx.t * ups[0][2]
        if c.mlp == "swiglu":
            ops += [elementwise(f"{down[0]}.silu", "silu", phase, width, ctx.mm),
                    elementwise(f"{down[0]}.gate_mul", "binary", phase, width, ctx.mm)]
        else:
            ops.append(elementwise(f"{down[0]}.gelu", "gelu", phase, width, ctx.mm))
        ops += _linear_forward(ctx, down[0], down[1], down[2], down[3], phase, input_cast=False)
    return ops


def _mlp_backward(ctx: GraphContext, linears: list) -> list[Op]:
    c, ops = ctx.cfg, []
    mlp = [x for x in linears if x[0].startswith("mlp") and x[0] != "mlp.router"]
    per = 3 if c.mlp == "swiglu" else 2
    for e in range(0, len(mlp), per):
        group = mlp[e:e + per]
        ups, down = group[:-1], group[-1]
        ops += _linear_backward(ctx, *down, out_cast=True, in_cast=False)
        width = ctx.t * ups[0][2]
        if c.mlp == "swiglu":
            ops += [elementwise(f"{down[0]}.gate_mul.bwd", "binary", "backward", width, ctx.mm),
                    elementwise(f"{down[0]}.gate_mul.bwd", "binary", "backward", width, ctx.mm),
                    elementwise(f"{down[0]}.silu.bwd", "silu", "backward", width, ctx.mm)]
        else:
            ops.append(elementwise(f"{down[0]}.gelu.bwd", "gelu", "backward", width, ctx.mm))
        for name, d_in, d_out, bias in reversed(ups):
            ops += _linear_backward(ctx, name, d_in, d_out, bias, out_cast=False, in_cast=True)
        if len(ups) > 1:  # both up-projections' input grads summed
            ops.append(elementwise(f"{ups[0][0]}.input_grad_add", "binary", "backward", ctx.t * c.d_model, ctx.mm))
    for name, d_in, d_out, bias in (x for x in linears if x[0] == "mlp.router"):
        ops += _linear_backward(ctx, name, d_in, d_out, bias, out_cast=False, in_cast=True)
    return ops


def block_forward(ctx: GraphContext, layer: int, phase: str = "forward") -> list[Op]:
    """One transformer block's forward on this GPU (``phase`` "recompute" for activation recomputation)."""
    c, linears = ctx.cfg, _linears(ctx)
    qkv, proj = linears[0], linears[1]
    ops = [_norm(ctx, "ln_1", phase)]
    ops += _linear_forward(ctx, qkv[0], qkv[1], qkv[2], qkv[3], phase, input_cast=True)
    ops += _attention_forward(ctx, phase)
    ops += _linear_forward(ctx, proj[0], proj[1], proj[2], proj[3], phase, input_cast=False)
    ops.append(elementwise("residual_1", "binary", phase, ctx.t * c.d_model, ctx.res))
    ops.append(_norm(ctx, "ln_2", phase))
    ops += _mlp_forward(ctx, linears, phase)
    ops.append(elementwise("residual_2", "binary", phase, ctx.t * c.d_model, ctx.res))
    return [_prefix(op, f"block{layer}") for op in ops]


def block_backward(ctx: GraphContext, layer: int) -> list[Op]:
    c, linears = ctx.cfg, _linears(ctx)
    qkv, proj = linears[0], linears[1]
    ops = _mlp_backward(ctx, linears)
    ops.append(_norm(ctx, "ln_2.bwd", "backward"))
    ops.append(elementwise("residual_2.grad_add", "binary", "backward", ctx.t * c.d_model, ctx.res))
    ops += _linear_backward(ctx, *proj, out_cast=True, in_cast=False)
    ops += _attention_backward(ctx)
    ops += _linear_backward(ctx, *qkv, out_cast=False, in_cast=True)
    ops.append(_norm(ctx, "ln_1.bwd", "backward"))
    ops.append(elementwise("residual_1.grad_add", "binary", "backward", ctx.t * c.d_model, ctx.res))
    return [_prefix(op, f"block{layer}") for op in ops]


def _prefix(op: Op, prefix: str) -> Op:
    return Op(f"{prefix}.{op.name}", op.kernel, op.category, op.phase, op.shape, op.dtype, op.flops, op.bytes,
              op.host_ops)


def _embedding(ctx: GraphContext, backward: bool) -> list[Op]:
    c, phase = ctx.cfg, "backward" if backward else "forward"
    n = ctx.t * c.d_model
    ops = [elementwise("wte" + (".bwd" if backward else ""), "embedding", phase, n, ctx.res)]
    if c.position == "learned":
        ops.append(elementwise("wpe" + (".bwd" if backward else ""), "embedding", phase, n, ctx.res))
        if not backward:
            ops.append(elementwise("pos_add", "binary", phase, n, ctx.res))
    return ops


def _head(ctx: GraphContext, backward: bool) -> list[Op]:
    c = ctx.cfg
    v = ceil_div(c.vocab_size, ctx.tp)
    logits = ctx.t * v
    if not backward:
        ops = [_norm(ctx, "ln_f", "forward")]
        ops += _linear_forward(ctx, "lm_head", c.d_model, v, False, "forward", input_cast=True)
        if ctx.autocast:
            ops.append(cast("logits_cast", "forward", logits, "fp32"))
        ops.append(elementwise("cross_entropy", "cross_entropy", "forward", logits, "fp32",
                               host_ops=HOST_OPS["loss"]))
        return ops
    ops = [elementwise("cross_entropy.bwd", "cross_entropy", "backward", logits, "fp32")]
    if ctx.autocast:
        ops.append(cast("logits_grad_cast", "backward", logits, ctx.mm))
    ops += _linear_backward(ctx, "lm_head", c.d_model, v, False, out_cast=False, in_cast=True)
    ops.append(_norm(ctx, "ln_f.bwd", "backward"))
    return ops


def _param_tensors(ctx: GraphContext, layers: int, first: bool, last: bool) -> list[tuple[str, int]]:
    """(name, elements) of every parameter tensor on this GPU: what a per-tensor optimizer visits."""
    c = ctx.cfg
    out: list[tuple[str, int]] = []
    norm = [("weight", c.d_model)] + ([("bias", c.d_model)] if c.norm_bias else [])
    if first:
        out.append(("wte", ceil_div(c.vocab_size, ctx.tp) * c.d_model))
        if c.position == "learned":
            out.append(("wpe", c.context_length * c.d_model))
    linears = _linears(ctx)
    experts = ceil_div(c.n_experts, max(ctx.setup.ep, 1)) if c.is_moe else 1
    for layer in range(layers):
        for suffix, n in norm:
            out += [(f"block{layer}.ln_1.{suffix}", n), (f"block{layer}.ln_2.{suffix}", n)]
        for name, d_in, d_out, bias in linears:
            if c.is_moe and name.startswith("mlp") and name != "mlp.router":
                if not name.startswith("mlp0"):
                    continue  # top_k slots share the expert tensors: one set per expert
                copies = experts
            else:
                copies = 1
            for e in range(copies):
                out.append((f"block{layer}.{name}.{e}.weight", d_in * d_out))
                if bias:
                    out.append((f"block{layer}.{name}.{e}.bias", d_out))
    if last:
        out += [(f"ln_f.{suffix}", n) for suffix, n in norm]
        if not (c.tied_embeddings and first):
            out.append(("lm_head", ceil_div(c.vocab_size, ctx.tp) * c.d_model))
    return out


def _optimizer(ctx: GraphContext, tensors: list[tuple[str, int]]) -> list[Op]:
    """One op per parameter tensor (the foreach/for-loop AdamW visits each), plus the step's own launch."""
    p = get_precision(ctx.setup.precision)
    kind = ctx.setup.optimizer
    ops = [Op(f"{kind}.step.group{g}", "launch", "optimizer", "optimizer", (len(tensors),), "fp32")
           for g in range(OPTIMIZER_GROUPS)]
    for name, n in tensors:
        per = 2 * p.weight_bytes + p.grad_bytes + 2 * (p.optimizer_bytes if kind == "adamw" else 0)
        ops.append(Op(f"{kind}.{name}", kind, "optimizer", "optimizer", (n,), "fp32" if p.weight_bytes == 4 else
                      ctx.mm, 0, n * per, HOST_OPS["accumulate_grad"]))
    return ops


def framework_variant(cfg: ModelConfig, flash_attention: bool, precision: str) -> str:
    """The key of a device profile's framework cost for this block design, attention kernel and precision:
    "gpt" (LayerNorm, GELU MLP) or "llama" (RMSNorm, SwiGLU, RoPE, GQA), "sdpa" or "explicit", and whether
    autocast adds its casts ("autocast") or not ("plain")."""
    family = "llama" if cfg.mlp == "swiglu" else "gpt"
    attention = "sdpa" if flash_attention else "explicit"
    return f"{family}.{attention}.{'autocast' if is_autocast(get_precision(precision)) else 'plain'}"


def _framework(ctx: GraphContext, layers: int) -> Op:
    """The host work of a micro-batch beyond its kernels — Python, nn.Module calls, autograd's records and
    engine, views — as one op of ``layers`` blocks (the measured cost model times it per block and per
    micro-batch; kernel-less ops are also counted per kernel in ``host_ops`` for the datasheet's launches)."""
    return Op(f"framework.{framework_variant(ctx.cfg, ctx.setup.flash_attention, ctx.setup.precision)}",
              "framework", "host", "forward", (layers,), ctx.res)


def _communication(ctx: GraphContext, layers: int, params: int, first: bool, last: bool) -> list[Op]:
    """Messages per micro-batch (TP, PP) and per step (DP): sized here, timed by the cost model."""
    c, st, p = ctx.cfg, ctx.setup, get_precision(ctx.setup.precision)
    act = ctx.t * c.d_model * p.activation_bytes
    ops = []
    if st.tp > 1:
        n = 4 + (2 if st.recompute == "full" else 0)
        ops += [Op(f"tp.all_reduce.{i}", "all_reduce", "communication", "step", (act, st.tp), ctx.mm, 0, act)
                for i in range(layers * n)]
    if st.pp > 1:
        msg = act // (st.tp if st.sp else 1)
        ops += [Op(f"pp.send.{d}", "p2p", "communication", "step", (msg, 2), ctx.mm, 0, msg) for d in ("fwd", "bwd")]
    return ops


def dp_all_reduce(ctx_params: int, setup: TrainSetup) -> Op | None:
    """The gradient all-reduce of one step (ZeRO-3: x1.5 volume), or None for one replica."""
    if setup.dp <= 1:
        return None
    p = get_precision(setup.precision)
    msg = int(ctx_params * p.grad_bytes * (1.5 if setup.zero == 3 else 1))
    return Op("dp.all_reduce", "all_reduce", "communication", "step", (msg, setup.dp), "fp32", 0, msg)


@dataclass(frozen=True)
class StepGraph:
    """The ops of one micro-batch (repeated ``grad_accum`` times), then the per-step ops."""

    micro_batch: tuple[Op, ...]
    per_step: tuple[Op, ...]
    grad_accum: int
    stage: str  # "only" | "first" | "last"
    device_params: int

    def ops(self) -> list[Op]:
        return list(self.micro_batch) * self.grad_accum + list(self.per_step)

    def flops(self, include_recompute: bool = False) -> int:
        per_micro = sum(op.flops for op in self.micro_batch if include_recompute or op.phase != "recompute")
        return per_micro * self.grad_accum + sum(op.flops for op in self.per_step)

    def totals(self) -> dict[str, dict[str, float]]:
        """Per category: op count, FLOPs and bytes of the whole step."""
        out = {c: {"ops": 0, "flops": 0, "bytes": 0} for c in CATEGORIES}
        for ops, times in ((self.micro_batch, self.grad_accum), (self.per_step, 1)):
            for op in ops:
                row = out[op.category]
                row["ops"] += times
                row["flops"] += times * op.flops
                row["bytes"] += times * op.bytes
        return out


def step_graph(cfg: ModelConfig, setup: TrainSetup, batch_size: int | None = None, seq_len: int | None = None,
               stage: str = "only") -> StepGraph:
    """The ops of one training step on one GPU of ``stage`` ("only" when pp = 1, else "first"/"last")."""
    ctx = _context(cfg, setup, batch_size, seq_len)
    stages = stage_params(cfg, setup.tp, setup.pp, setup.ep)
    params = stages["last" if stage == "last" else "first"]
    first, last = stage in ("only", "first"), stage in ("only", "last")
    layers = params.layers
    micro: list[Op] = []
    if first:
        micro += _embedding(ctx, backward=False)
    for layer in range(layers):
        micro += block_forward(ctx, layer)
    if last:
        micro += _head(ctx, backward=False)
        micro += _head(ctx, backward=True)
    for layer in reversed(range(layers)):
        if setup.recompute == "full":
            micro += block_forward(ctx, layer, "recompute")
        elif setup.recompute == "selective":
            micro += [_prefix(op, f"block{layer}") for op in _attention_forward(ctx, "recompute")
                      if op.category == "attention"]
        micro += block_backward(ctx, layer)
    if first:
        micro += _embedding(ctx, backward=True)
        if cfg.tied_embeddings and last:
            micro.append(elementwise("wte.tied_grad_add", "binary", "backward",
                                     ceil_div(cfg.vocab_size, ctx.tp) * cfg.d_model, ctx.res))
    micro.append(_framework(ctx, layers))
    micro += _communication(ctx, layers, params.total, first, last)
    per_step = _optimizer(ctx, _param_tensors(ctx, layers, first, last))
    dp = dp_all_reduce(params.total, setup)
    if dp is not None:
        per_step.append(dp)
    return StepGraph(tuple(micro), tuple(per_step), setup.grad_accum, stage, params.total)


def stages(setup: TrainSetup) -> tuple[str, ...]:
    """The pipeline stages whose graphs differ: one when pp = 1."""
    return ("only",) if setup.pp == 1 else ("first", "last")
