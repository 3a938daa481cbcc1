"""What every op of a step is sized from: the model's shapes on one GPU under a setup.

``GraphContext`` holds the tokens a GPU processes (b·s/cp), the tensor-parallel split, and the dtypes that
run (the matmul dtype, the activations', the residual stream's); ``linears`` lists one block's Linear
layers on this GPU (MLA's projections, routed and shared experts, DeepSeek's dense MLP); ``block_runs``
groups a stage's blocks into runs of one kind, which the op graph builds once each.
"""

from __future__ import annotations

from dataclasses import dataclass

from estimator.errors import ConfigError
from estimator.memory_terms import ceil_div, is_autocast
from estimator.model_config import ModelConfig
from estimator.params import attention_linears
from estimator.precision import get_precision
from estimator.setup import TrainSetup


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
    cp: int = 1  # context parallel: this GPU holds s / cp tokens of each sequence
    fp8: bool = False  # GEMMs in fp8 (per-tensor scaling), activations in ``act``
    act: str = ""  # 16-bit activation dtype ("" = mm)

    @property
    def t(self) -> int:
        """Tokens on this GPU: b·s/cp (tensor-parallel shapes divide widths, not tokens)."""
        return self.b * self.s // self.cp

    @property
    def a(self) -> str:
        """The dtype activations are kept in (mm, except under fp8 where GEMM operands are 1-byte casts)."""
        return self.act or self.mm


def graph_context(cfg: ModelConfig, setup: TrainSetup, batch_size: int | None, seq_len: int | None) -> GraphContext:
    p = get_precision(setup.precision)
    fp8 = p.matmul_dtype == "fp8"
    act = "fp32" if p.activation_bytes == 4 else ("fp16" if p.matmul_dtype == "fp16" else "bf16")
    mm = "fp8" if fp8 else act
    res = "fp32" if p.weight_bytes == 4 else act
    b = setup.batch_size if batch_size is None else batch_size
    s = seq_len or setup.seq_len or cfg.context_length
    cp = setup.cp
    if s % cp:
        raise ConfigError(f"context parallel cp={cp} must divide the sequence ({s} tokens)")
    return GraphContext(cfg, setup, b, s, setup.tp, mm, res, is_autocast(p), cp, fp8, act)


Linear = tuple[str, int, int, bool]  # (name, in, out, bias) on this GPU
REPLICATED = ("attn.q_down", "attn.kv_down")  # MLA down-projections: whole on every TP rank (as Megatron's MLA)


def attn_linears_on_gpu(ctx: GraphContext) -> list[Linear]:
    """The attention matrices of a block on this GPU (``estimator.params.attention_linears``, the one home of
    their shapes): column-parallel outputs split by tp, the output projection's input row-parallel."""
    out = []
    for name, d_in, d_out, bias in attention_linears(ctx.cfg):
        if name == "attn.proj":
            out.append((name, ceil_div(d_in, ctx.tp), d_out, bias))
        elif name in REPLICATED:
            out.append((name, d_in, d_out, bias))
        else:
            out.append((name, d_in, ceil_div(d_out, ctx.tp), bias))
    return out


def _mlp_group(c: ModelConfig, tag: str, width: int, tp: int) -> list[Linear]:
    """One MLP's matrices (gate, up, down) of ``width`` on this GPU."""
    f = ceil_div(width, tp)
    ups = [(f"{tag}.gate", c.d_model, f, c.mlp_bias)] if c.gated else []
    return ups + [(f"{tag}.fc", c.d_model, f, c.mlp_bias), (f"{tag}.proj", f, c.d_model, c.mlp_bias)]


def mlp_layout(ctx: GraphContext, dense: bool) -> tuple[list[Linear], list[list[Linear]]]:
    """(router-like linears, MLP groups) of one block: a dense layer has one MLP; an MoE layer the router,
    the top_k routed experts a token visits, the shared expert and its gate."""
    c = ctx.cfg
    if dense or not c.is_moe:
        return [], [_mlp_group(c, "mlp", c.dense_ffn if c.is_moe else c.ffn, ctx.tp)]
    routers = [("mlp.router", c.d_model, c.n_experts, False)]
    groups = [_mlp_group(c, f"mlp{e}", c.ffn, ctx.tp) for e in range(c.top_k)]
    if c.shared_expert_d_ff:
        groups.append(_mlp_group(c, "mlp_shared", c.shared_expert_d_ff, ctx.tp))
        if c.shared_expert_gate:
            routers.append(("mlp_shared.gate_score", c.d_model, 1, False))
    return routers, groups


def linears(ctx: GraphContext, dense: bool = False) -> list[Linear]:
    """Every Linear of one block on this GPU, in forward order."""
    routers, groups = mlp_layout(ctx, dense)
    return attn_linears_on_gpu(ctx) + routers + [x for g in groups for x in g]


def is_dense(cfg: ModelConfig, layer: int) -> bool:
    """DeepSeek's first ``dense_layers`` layers have a dense MLP (``layer`` is the model's layer index)."""
    return cfg.is_moe and layer < cfg.dense_layers


def block_runs(cfg: ModelConfig, blocks: range) -> list[tuple[int, ...]]:
    """Consecutive blocks of one kind (DeepSeek's dense first layers, then MoE ones), in order."""
    split = min(max(cfg.dense_layers if cfg.is_moe else 0, blocks.start), blocks.stop)  # first MoE block
    return [tuple(r) for r in (range(blocks.start, split), range(split, blocks.stop)) if len(r)]
