"""The ops of a training step beyond its blocks' kernels: the optimizer per parameter tensor, the host
framework op, and the communication each parallelism adds (TP, PP, CP, EP per micro-batch; DP per step;
ZeRO-3's parameter gathers). Sized here, timed by ``estimator.cost_model`` / ``estimator.communication``.
"""

from __future__ import annotations

from estimator.graph_context import GraphContext, block_runs, is_dense, linears
from estimator.memory_terms import ceil_div, is_autocast
from estimator.model_config import ModelConfig
from estimator.ops import Op, Segment, HOST_OPS
from estimator.precision import get_precision

OPTIMIZER_GROUPS = 2  # the profiled AdamW's decay / no-decay groups (profiler.step.make_adamw)


def param_segments(ctx: GraphContext, layers: int, first: bool, last: bool, first_layer: int = 0
                    ) -> list[tuple[list[tuple[str, int]], tuple[int, ...]]]:
    """(name, elements) of every parameter tensor on this GPU — what a per-tensor optimizer visits — as
    runs: the embedding's, one block's (named ``block<i>``) for each run of blocks of one kind, the head's.
    ``first_layer``: the model index of this stage's first block (its dense or MoE kind)."""
    c = ctx.cfg
    out: list[tuple[list[tuple[str, int]], tuple[int, ...]]] = []

    def norm(prefix: str, width: int | None = None) -> list[tuple[str, int]]:
        w = width or c.d_model
        return [(f"{prefix}.weight", w)] + ([(f"{prefix}.bias", w)] if c.norm_bias else [])

    head: list[tuple[str, int]] = []
    if first:
        head.append(("wte", ceil_div(c.vocab_size, ctx.tp) * c.embed_width))
        if c.position == "learned":
            head.append(("wpe", (c.context_length + c.position_offset) * c.d_model))
        if c.embed_width != c.d_model:
            head.append(("project_in", c.embed_width * c.d_model))
    if head:
        out.append((head, ()))
    experts = ceil_div(c.n_experts, max(ctx.setup.ep, 1)) if c.is_moe else 1
    block_norms = ["ln_1"] + ([] if c.shared_block_norm else ["ln_2"]) + (["post_ln_1", "post_ln_2"]
                                                                          if c.post_norms else [])
    latent = ([("q_norm", c.q_lora_rank)] if c.q_lora_rank else []) + ([("kv_norm", c.kv_lora_rank)]
                                                                      if c.is_mla else [])
    for run in block_runs(c, range(first_layer, first_layer + layers)):
        local = run[0] - first_layer  # tensors are named by their index on this stage
        dense = is_dense(c, run[0])
        block: list[tuple[str, int]] = []
        for name in block_norms:
            block += norm(f"block{local}.{name}")
        for name, width in latent:
            block += norm(f"block{local}.attn.{name}", width)
        if c.is_moe and not dense and c.router_bias:
            block.append((f"block{local}.mlp.router.score_bias", c.n_experts))
        for name, d_in, d_out, bias in linears(ctx, dense):
            routed = c.is_moe and not dense and name.startswith("mlp") and name[3:4].isdigit()
            if routed and not name.startswith("mlp0."):
                continue  # top_k slots share the expert tensors: one set per expert
            for e in range(experts if routed else 1):
                block.append((f"block{local}.{name}.{e}.weight", d_in * d_out))
                if bias:
                    block.append((f"block{local}.{name}.{e}.bias", d_out))
        out.append((block, tuple(layer - first_layer for layer in run)))
    tail: list[tuple[str, int]] = []
    if last:
        if c.final_norm:
            tail += norm("ln_f")
        if c.embed_width != c.d_model:
            tail.append(("project_out", c.d_model * c.embed_width))
        if not (c.tied_embeddings and first):
            tail.append(("lm_head", ceil_div(c.vocab_size, ctx.tp) * c.embed_width))
    if tail:
        out.append((tail, ()))
    return out


def optimizer_ops(ctx: GraphContext, segments: list[tuple[list[tuple[str, int]], tuple[int, ...]]]) -> list[Segment]:
    """One op per parameter tensor (the foreach/for-loop AdamW visits each), plus the step's own launch.
    Under ZeRO (stage >= 1) each data-parallel rank updates its 1/dp shard of every tensor (experts:
    of the dp/ep replicas that hold them), as FSDP shards each parameter."""
    p, st = get_precision(ctx.setup.precision), ctx.setup
    kind = st.optimizer
    count = sum(len(group) * max(1, len(run)) for group, run in segments)
    elements = sum(ceil_div(n, _optimizer_shards(ctx, name)) * max(1, len(run))
                   for group, run in segments for name, n in group)
    out = [Segment(tuple(Op(f"{kind}.step.group{g}", "launch", "optimizer", "optimizer", (count,), "fp32")
                         for g in range(OPTIMIZER_GROUPS)))]
    per = 2 * p.weight_bytes + p.grad_bytes + 2 * (p.optimizer_bytes if kind == "adamw" else 0)
    dtype = "fp32" if p.weight_bytes == 4 else ctx.a
    for group, run in segments:
        ops = []
        for name, n in group:
            n = ceil_div(n, _optimizer_shards(ctx, name))
            ops.append(Op(f"{kind}.{name}", kind, "optimizer", "optimizer", (n, elements), dtype, 0, n * per,
                          HOST_OPS["accumulate_grad"]))
        out.append(Segment(tuple(ops), run))
    return out


def _optimizer_shards(ctx: GraphContext, name: str) -> int:
    """The data-parallel ranks a tensor's optimizer state is split over: 1 without ZeRO; under ZeRO (stage
    >= 1) all of them (experts: the dp/ep replicas that hold them)."""
    st = ctx.setup
    if st.zero < 1:
        return 1
    expert = ctx.cfg.is_moe and ".mlp" in name and name.split(".mlp")[1][:1].isdigit()
    return max(st.dp // st.ep, 1) if expert else st.dp


def framework_variant(cfg: ModelConfig, flash_attention: bool, precision: str) -> str:
    """The key of a device profile's framework cost for this block design, attention kernel and precision:
    "gpt" (LayerNorm, GELU MLP) or "llama" (RMSNorm, SwiGLU, RoPE, GQA), "sdpa" or "explicit", and whether
    autocast adds its casts ("autocast") or not ("plain")."""
    family = "llama" if cfg.gated else "gpt"
    attention = "sdpa" if flash_attention else "explicit"
    return f"{family}.{attention}.{'autocast' if is_autocast(get_precision(precision)) else 'plain'}"


def framework_op(ctx: GraphContext, layers: int) -> Op:
    """The host work of a micro-batch beyond its kernels — Python, nn.Module calls, autograd's records and
    engine, views — as one op of ``layers`` blocks (the measured cost model times it per block and per
    micro-batch; kernel-less ops are also counted per kernel in ``host_ops`` for the datasheet's launches)."""
    return Op(f"framework.{framework_variant(ctx.cfg, ctx.setup.flash_attention, ctx.setup.precision)}",
              "framework", "host", "forward", (layers,), ctx.res)


def communication_ops(ctx: GraphContext, blocks: tuple[int, ...], first: bool, last: bool) -> list[Segment]:
    """Messages per micro-batch (TP, PP, CP, EP): sized here, timed by the cost model
    (``estimator.communication`` dispatches on ``kernel`` and the name prefix); per-block messages as one
    segment over ``blocks`` (the model indices of this stage's blocks).

    - ``tp.all_reduce.<i>`` (all_reduce): 2 per layer forward, 2 backward (Megatron's f/g), +2 under full
      recompute; ``pp.send.*`` (p2p): the activation to the next stage and its grad back.
    - ``cp.all_gather`` / ``cp.reduce_scatter`` (context parallel): per layer, forward gathers K and V of
      the whole sequence, backward reduce-scatters dK and dV. ``shape`` = (bytes this rank contributes:
      its s/cp tokens' K and V for its TP heads, cp).
    - ``ep.dispatch|combine[.bwd]`` (all_to_all, expert parallel): per MoE layer, the tokens' hidden
      states to their top_k experts and back, forward and backward. ``shape`` = (bytes this rank sends:
      t·top_k·d_model activations, ep).
    """
    c, st, p = ctx.cfg, ctx.setup, get_precision(ctx.setup.precision)
    act = ctx.t * c.d_model * p.activation_bytes
    per_block: list[Op] = []
    once: list[Op] = []
    if st.tp > 1:
        n = 4 + (2 if st.recompute == "full" else 0)
        per_block += [Op(f"tp.all_reduce.{i}", "all_reduce", "communication", "step", (act, st.tp), ctx.a, 0, act)
                      for i in range(n)]
    if st.pp > 1:
        msg = act // (st.tp if st.sp else 1)
        once += [Op(f"pp.send.{d}", "p2p", "communication", "step", (msg, 2), ctx.a, 0, msg) for d in ("fwd", "bwd")]
    if st.cp > 1:
        msg = ctx.t * ceil_div(c.kv_heads, ctx.tp) * (c.dh + c.vdh) * p.activation_bytes
        per_block += [Op(f"cp.{kind}", kind, "communication", "step", (msg, st.cp), ctx.a, 0, msg)
                      for kind in ("all_gather", "reduce_scatter")]
    segs = [Segment(tuple(per_block), blocks)] if per_block and blocks else []
    if st.ep > 1 and c.is_moe:
        msg = ctx.t * c.top_k * c.d_model * p.activation_bytes
        moe = tuple(layer for layer in blocks if not is_dense(c, layer))
        ops = tuple(Op(f"ep.{name}", "all_to_all", "communication", "step", (msg, st.ep), ctx.a, 0, msg)
                    for name in ("dispatch", "combine", "dispatch.bwd", "combine.bwd"))
        if moe:
            segs.append(Segment(ops, moe))
    if once:
        segs.append(Segment(tuple(once)))
    return segs


def dp_step_reduction(ctx: GraphContext, params: int) -> Op | None:
    """The data-parallel traffic of one step, after its micro-batches, or None (one replica, or ZeRO-3, whose
    traffic is all per micro-batch: ``zero_micro_batch_ops``). ZeRO 0/1 all-reduce the whole gradient buffer
    of this GPU (ZeRO-1 as reduce-scatter + all-gather: the same volume); ZeRO-2 reduced its gradients during
    each backward and all-gathers the updated parameters (in the compute dtype) once."""
    st = ctx.setup
    if st.dp <= 1 or st.zero == 3:
        return None
    p = get_precision(st.precision)
    if st.zero == 2:
        msg = params * p.activation_bytes
        return Op("dp.all_gather.params", "all_gather", "communication", "step", (msg, st.dp), ctx.a, 0, msg)
    msg = params * p.grad_bytes
    return Op("dp.all_reduce", "all_reduce", "communication", "step", (msg, st.dp), "fp32", 0, msg)


def zero_micro_batch_ops(ctx: GraphContext, params: int) -> list[Op]:
    """ZeRO-2/3's traffic in every micro-batch. A rank keeps only its shard of the gradients, so it
    reduce-scatters them after every backward, not once per step (DeepSpeed: "for zero stage 2 (and 3),
    gradient reduction is required after every backward because of gradient partitioning",
    deepspeedai/DeepSpeed#2252; FSDP outside ``no_sync``). ZeRO-3 / FSDP also re-gathers the sharded
    parameters (compute dtype) before each forward and again for the backward (full-shard: resharded after
    the forward). The name's last part is the phase whose kernels the cost model hides each one behind."""
    st = ctx.setup
    if st.zero < 2 or st.dp <= 1:
        return []
    p = get_precision(st.precision)
    ops = []
    if st.zero == 3:
        msg = params * p.activation_bytes
        ops += [Op(f"dp.all_gather.{phase}", "all_gather", "communication", "step", (msg, st.dp), ctx.a, 0, msg)
                for phase in ("forward", "backward")]
    grads = params * p.grad_bytes
    ops.append(Op("dp.reduce_scatter.backward", "reduce_scatter", "communication", "step", (grads, st.dp), "fp32",
                  0, grads))
    return ops
