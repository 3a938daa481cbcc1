"""Exact parameter counts, with the nanoGPT sizing notebook's per-component table.

Counts are of unique parameters (a tied head shares the token embedding), the
same number ``sum(p.numel() for p in model.parameters())`` prints.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from estimator.model_config import ModelConfig


@dataclass(frozen=True)
class ParamCount:
    total: int
    embedding: int  # token + position tables
    non_embedding: int  # Kaplan's N: total minus the embedding tables and an untied head
    matmul: int  # parameters that take part in matmuls (PaLM/nanoGPT N: tied head counts, position table not)
    active: int  # per token: top-k experts instead of all (= total for dense models)
    breakdown: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "total": self.total,
            "embedding": self.embedding,
            "non_embedding": self.non_embedding,
            "matmul": self.matmul,
            "active": self.active,
            "breakdown": dict(self.breakdown),
        }


def _norm(cfg: ModelConfig, width: int | None = None) -> int:
    return (width or cfg.d_model) * (2 if cfg.norm_bias else 1)


def _mlp(cfg: ModelConfig, f: int) -> tuple[int, int]:
    """(up-side, down-side) parameters of one MLP of width ``f``: gate + up for a gated MLP."""
    h = cfg.d_model
    up_mats = 2 if cfg.gated else 1
    up = up_mats * (h * f + (f if cfg.mlp_bias else 0))
    down = f * h + (h if cfg.mlp_bias else 0)
    return up, down


def _expert_mlp(cfg: ModelConfig) -> tuple[int, int]:
    """(up-side, down-side) parameters of one expert's (or the dense) MLP of width d_ff."""
    return _mlp(cfg, cfg.ffn)


def attention_linears(cfg: ModelConfig) -> list[tuple[str, int, int, bool]]:
    """(name, in, out, bias) of one block's attention matrices, in forward order.

    MHA/GQA/MQA: one fused qkv (the count of separate q, k, v) and the output projection.
    MLA (DeepSeek-V2 §2.1): the query down/up projections (one full-rank one without q_lora_rank),
    the joint kv down-projection with the shared rotary key, the kv up-projection to every head's
    no-rotary key and value, then the output projection from a x d_v.
    """
    h, a = cfg.d_model, cfg.n_heads
    if not cfg.is_mla:
        return [("attn.qkv", h, cfg.q_width + cfg.kv_width + cfg.v_width, cfg.qkv_bias),
                ("attn.proj", cfg.n_heads * cfg.vdh, h, cfg.proj_bias)]
    rope, nope = cfg.rope_head_dim, cfg.dh - cfg.rope_head_dim
    q = ([("attn.q_down", h, cfg.q_lora_rank, False), ("attn.q_up", cfg.q_lora_rank, a * cfg.dh, False)]
         if cfg.q_lora_rank else [("attn.q", h, a * cfg.dh, False)])
    return q + [("attn.kv_down", h, cfg.kv_lora_rank + rope, False),
                ("attn.kv_up", cfg.kv_lora_rank, a * (nope + cfg.vdh), False),
                ("attn.proj", a * cfg.vdh, h, cfg.proj_bias)]


def mla_norm_widths(cfg: ModelConfig) -> list[int]:
    """Widths of MLA's RMSNorms on the compressed query and kv latents (none outside MLA)."""
    if not cfg.is_mla:
        return []
    return ([cfg.q_lora_rank] if cfg.q_lora_rank else []) + [cfg.kv_lora_rank]


def _attention(cfg: ModelConfig) -> dict[str, int]:
    norms = 1 + (1 if cfg.post_norms else 0)  # pre-attention (the shared norm, with Falcon-7B) + post
    lin = attention_linears(cfg)
    out = {"attention/ln": norms * _norm(cfg) + sum(_norm(cfg, w) for w in mla_norm_widths(cfg)),
           "attention/kqv": sum(i * o + (o if b else 0) for _, i, o, b in lin[:-1]),
           "attention/proj": sum(i * o + (o if b else 0) for _, i, o, b in lin[-1:])}
    out["attention"] = sum(out.values())
    return out


def _mlp_norms(cfg: ModelConfig) -> int:
    return ((0 if cfg.shared_block_norm else 1) + (1 if cfg.post_norms else 0)) * _norm(cfg)


def count_params(cfg: ModelConfig) -> ParamCount:
    """Unique parameters; ``breakdown`` keys are the nanoGPT notebook's, "block" being a layer of the
    common kind (the MoE layers of an MoE model) and "dense_block" DeepSeek's dense first layers."""
    h, e = cfg.d_model, cfg.embed_width
    out: dict[str, int] = {}
    out["embedding/position"] = (cfg.context_length + cfg.position_offset) * h if cfg.position == "learned" else 0
    out["embedding/token"] = cfg.vocab_size * e
    out["embedding"] = out["embedding/position"] + out["embedding/token"]
    out["embedding/project"] = 2 * e * h if e != h else 0  # OPT-350m project_in + project_out, no bias

    out.update(_attention(cfg))

    up, down = _expert_mlp(cfg)
    out["mlp/ln"] = _mlp_norms(cfg)
    out["mlp/ffw"] = cfg.n_experts * up
    out["mlp/proj"] = cfg.n_experts * down
    out["mlp/router"] = (h + (1 if cfg.router_bias else 0)) * cfg.n_experts if cfg.is_moe else 0
    shared_up, shared_down = _mlp(cfg, cfg.shared_expert_d_ff) if cfg.shared_expert_d_ff else (0, 0)
    out["mlp/shared"] = shared_up + shared_down + (h if cfg.shared_expert_gate else 0)
    out["mlp"] = out["mlp/ln"] + out["mlp/ffw"] + out["mlp/proj"] + out["mlp/router"] + out["mlp/shared"]

    out["block"] = out["attention"] + out["mlp"]
    dense_up, dense_down = _mlp(cfg, cfg.dense_ffn)
    out["dense_block"] = out["attention"] + out["mlp/ln"] + dense_up + dense_down if cfg.dense_layers else 0
    out["transformer"] = (cfg.n_layers - cfg.dense_layers) * out["block"] + cfg.dense_layers * out["dense_block"]
    out["ln_f"] = _norm(cfg) if cfg.final_norm else 0
    out["dense"] = 0 if cfg.tied_embeddings else cfg.vocab_size * e
    out["total"] = out["embedding"] + out["embedding/project"] + out["transformer"] + out["ln_f"] + out["dense"]

    total = out["total"]
    inactive = cfg.moe_layers * (cfg.n_experts - cfg.top_k) * (up + down)
    untied_lookup = 0 if cfg.tied_embeddings else out["embedding/token"]
    return ParamCount(
        total=total,
        embedding=out["embedding"],
        non_embedding=total - out["embedding"] - out["dense"],
        matmul=total - out["embedding/position"] - untied_lookup,
        active=total - inactive,
        breakdown=out,
    )
