"""The GPT that is profiled: built from an estimator ``ModelConfig``, every ladder rung a switch.

GPT-2 style (LayerNorm, GELU MLP, learned positions, fused qkv) and the dense
LLaMA style (RMSNorm, SwiGLU, grouped-query attention, RoPE, optional qkv bias:
Mistral, Qwen2, Gemma's shapes), GPT-NeoX's (LayerNorm, GELU, RoPE, biases) and
Mixtral-style mixture of experts (a router and top-k experts per token) come from
the same flags the estimator counts, so ``sum(p.numel())`` equals
``estimator.params.count_params(cfg).total`` exactly. No dropout: the profiler
measures speed, not generalisation.

Attention runs through ``F.scaled_dot_product_attention(is_causal=True)``
(flash / memory-efficient kernels where the device has them) or, with
``attention="explicit"``, through ``q @ kᵀ``, a causal mask, softmax and
``att @ v`` — the matmuls FLOP counters can see. Layers are plain
``nn.Linear`` / ``nn.LayerNorm`` so that thop's per-type hooks recognise them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from estimator.errors import ConfigError
from estimator.model_config import ModelConfig

ATTENTION_KINDS = ("sdpa", "explicit")
INIT_STD = 0.02  # GPT-2 / nanoGPT


def check_buildable(cfg: ModelConfig) -> None:
    """ConfigError for shapes the profiler cannot build (they stay estimate-only).

    Every shape a valid ``ModelConfig`` expresses is built today (``validate`` has
    already refused impossible ones); the features a Hugging Face config.json may
    carry beyond those fields are refused, by name, in ``estimator.hf_config``. Kept
    as the one gate ``run_profile`` and ``mfutop profile`` pass before allocating.
    """


class RMSNormWithBias(nn.Module):
    """RMSNorm plus a bias: only for the rare config that asks for norm_bias with rmsnorm."""

    def __init__(self, width: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))
        self.bias = nn.Parameter(torch.zeros(width))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps) + self.bias


def make_norm(cfg: ModelConfig) -> nn.Module:
    if cfg.norm == "layernorm":
        return nn.LayerNorm(cfg.d_model, bias=cfg.norm_bias)
    if cfg.norm_bias:
        return RMSNormWithBias(cfg.d_model)
    return nn.RMSNorm(cfg.d_model, eps=1e-5)


def _compiling() -> bool:
    check = getattr(getattr(torch, "compiler", None), "is_compiling", None)  # torch >= 2.3
    return bool(check and check())


def rope_tables(head_dim: int, length: int, base: float = 10000.0) -> torch.Tensor:
    """(cos, sin) of every position's angle for each rotated pair: a (length, head_dim/2, 2) fp32 table."""
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    angles = torch.outer(torch.arange(length, dtype=torch.float32), inv_freq)
    return torch.stack((angles.cos(), angles.sin()), dim=-1)


def apply_rope(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Rotate each pair (x[..., 2i], x[..., 2i+1]) by its position's angle: one complex multiply in fp32
    (Meta's LLaMA layout). HF's rotate-half layout pairs (x[..., i], x[..., i + d/2]) instead: the same
    rotation in a permuted basis, which randomly initialised weights cannot tell apart, but seven kernels
    on strided half-width views, 2.2-3.1x slower forward + backward on a CPU (338 vs 157 µs for
    4 x 4 heads x 256 x 32, 6.7 vs 2.2 ms for 8 x 8 x 256 x 128). Under torch.compile the same rotation in
    real arithmetic, which inductor fuses into one kernel (it generates no code for complex ops)."""
    if _compiling():
        cos, sin = table.float().unbind(-1)
        even, odd = x.float()[..., 0::2], x.float()[..., 1::2]
        return torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1).flatten(-2).type_as(x)
    pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    rotated = torch.view_as_real(pairs * torch.view_as_complex(table.float())).flatten(-2)
    return rotated.type_as(x)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig, attention: str):
        super().__init__()
        self.n_heads, self.kv_heads, self.head_dim = cfg.n_heads, cfg.kv_heads, cfg.dh
        self.q_width, self.kv_width = cfg.q_width, cfg.kv_width
        self.c_attn = nn.Linear(cfg.d_model, cfg.q_width + 2 * cfg.kv_width, bias=cfg.qkv_bias)
        self.c_proj = nn.Linear(cfg.q_width, cfg.d_model, bias=cfg.proj_bias)
        self.attention = attention
        self.rope = cfg.position == "rope"

    def forward(self, x: torch.Tensor, rope: torch.Tensor | None) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = self.c_attn(x).split((self.q_width, self.kv_width, self.kv_width), dim=-1)
        q = q.view(b, t, self.n_heads, self.head_dim).transpose(1, 2)
        k = k.view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        v = v.view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        if rope is not None:
            table = rope[:t]
            q, k = apply_rope(q, table), apply_rope(k, table)
        if self.kv_heads != self.n_heads:  # GQA: each kv head serves n_heads/kv_heads query heads
            repeat = self.n_heads // self.kv_heads
            k, v = k.repeat_interleave(repeat, dim=1), v.repeat_interleave(repeat, dim=1)
        if self.attention == "sdpa":
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            y = explicit_attention(q, k, v)
        y = y.transpose(1, 2).contiguous().view(b, t, self.q_width)
        return self.c_proj(y)


def explicit_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q kᵀ / sqrt(d) + causal mask) v with visible matmuls (full T x T, as FLOPs count it)."""
    t = q.shape[-2]
    scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))
    mask = torch.ones(t, t, dtype=torch.bool, device=q.device).triu(1)
    scores = scores.masked_fill(mask, float("-inf"))
    return F.softmax(scores, dim=-1).to(v.dtype) @ v


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.swiglu = cfg.mlp == "swiglu"
        self.c_fc = nn.Linear(cfg.d_model, cfg.ffn, bias=cfg.mlp_bias)
        self.c_gate = nn.Linear(cfg.d_model, cfg.ffn, bias=cfg.mlp_bias) if self.swiglu else None
        self.act = nn.GELU()  # exact (erf), as nanoGPT: 2-4x faster on CPUs than the tanh approximation
        self.c_proj = nn.Linear(cfg.ffn, cfg.d_model, bias=cfg.mlp_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.c_gate is not None:
            return self.c_proj(F.silu(self.c_gate(x)) * self.c_fc(x))
        return self.c_proj(self.act(self.c_fc(x)))


class MoE(nn.Module):
    """Mixtral-style sparse MLP: a bias-free router, softmax, the top-k experts per token, weights renormalised.

    Tokens are grouped by expert (``index_add_`` back into place), so each expert
    runs one dense matmul over its tokens: FLOPs are top-k experts' worth per
    token plus the router's, as ``estimator.flops`` counts them.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.top_k = cfg.top_k
        self.router = nn.Linear(cfg.d_model, cfg.n_experts, bias=False)
        self.experts = nn.ModuleList(MLP(cfg) for _ in range(cfg.n_experts))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        probs = F.softmax(self.router(flat), dim=-1, dtype=torch.float32)
        weights, chosen = probs.topk(self.top_k, dim=-1)  # (tokens, k)
        weights = (weights / weights.sum(dim=-1, keepdim=True)).to(x.dtype)
        if x.device.type == "meta":
            # Shapes only (FLOP counting): routing is data-dependent, so run k experts over every
            # token — the same k x tokens expert rows, hence the same FLOPs, as any real routing.
            return sum(self.experts[j](flat) * weights[:, j, None] for j in range(self.top_k)).view(shape)
        out = torch.zeros_like(flat)
        for e, expert in enumerate(self.experts):
            token, slot = (chosen == e).nonzero(as_tuple=True)
            if token.numel():
                out.index_add_(0, token, expert(flat[token]) * weights[token, slot, None])
        return out.view(shape)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, attention: str):
        super().__init__()
        self.ln_1 = make_norm(cfg)
        self.attn = CausalSelfAttention(cfg, attention)
        self.ln_2 = make_norm(cfg)
        self.mlp = MoE(cfg) if cfg.is_moe else MLP(cfg)

    def forward(self, x: torch.Tensor, rope) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), rope)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """Decoder-only transformer; ``forward(idx)`` gives logits, ``forward(idx, targets)`` the mean loss."""

    def __init__(self, cfg: ModelConfig, attention: str = "sdpa"):
        super().__init__()
        check_buildable(cfg)
        if attention not in ATTENTION_KINDS:
            raise ConfigError(f"attention must be one of {', '.join(ATTENTION_KINDS)}, got {attention!r}")
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.wpe = nn.Embedding(cfg.context_length, cfg.d_model) if cfg.position == "learned" else None
        self.blocks = nn.ModuleList(Block(cfg, attention) for _ in range(cfg.n_layers))
        self.ln_f = make_norm(cfg)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tied_embeddings:
            self.lm_head.weight = self.wte.weight
        if cfg.position == "rope":
            self.register_buffer("rope_table", rope_tables(cfg.dh, cfg.context_length), persistent=False)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2: residual projections scaled by depth
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=INIT_STD / math.sqrt(2 * cfg.n_layers))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=INIT_STD)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    @property
    def attention(self) -> str:
        return self.blocks[0].attn.attention if len(self.blocks) else "sdpa"

    def set_attention(self, attention: str) -> None:
        """Switch SDPA <-> explicit matmuls in place (same weights)."""
        if attention not in ATTENTION_KINDS:
            raise ConfigError(f"attention must be one of {', '.join(ATTENTION_KINDS)}, got {attention!r}")
        for block in self.blocks:
            block.attn.attention = attention

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        t = idx.shape[1]
        if t > self.cfg.context_length:
            raise ConfigError(f"sequence of {t} tokens is longer than the context ({self.cfg.context_length})")
        x = self.wte(idx)
        if self.wpe is not None:
            x = x + self.wpe(torch.arange(t, device=idx.device))
        rope = self.rope_table if self.wpe is None else None
        for block in self.blocks:
            x = block(x, rope)
        logits = self.lm_head(self.ln_f(x))
        if targets is None:
            return logits
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.reshape(-1))


def param_count(model: nn.Module) -> int:
    """Unique parameters (a tied head is counted once), as ``count_params`` reports."""
    return sum(p.numel() for p in model.parameters())


def build_model(cfg: ModelConfig, device: str | torch.device = "cpu", attention: str = "sdpa",
                dtype: torch.dtype | None = None) -> GPT:
    """A GPT on ``device`` (``"meta"`` builds the shapes without memory)."""
    with torch.device(device):
        model = GPT(cfg, attention=attention)
    if dtype is not None:
        model = model.to(dtype)
    return model
