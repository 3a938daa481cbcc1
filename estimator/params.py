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


def _norm(cfg: ModelConfig) -> int:
    return cfg.d_model * (2 if cfg.norm_bias else 1)


def _expert_mlp(cfg: ModelConfig) -> tuple[int, int]:
    """(up-side, down-side) parameters of one expert's MLP."""
    h, f = cfg.d_model, cfg.ffn
    up_mats = 2 if cfg.mlp == "swiglu" else 1  # gate + up for SwiGLU
    up = up_mats * (h * f + (f if cfg.mlp_bias else 0))
    down = f * h + (h if cfg.mlp_bias else 0)
    return up, down


def count_params(cfg: ModelConfig) -> ParamCount:
    h = cfg.d_model
    out: dict[str, int] = {}
    out["embedding/position"] = cfg.context_length * h if cfg.position == "learned" else 0
    out["embedding/token"] = cfg.vocab_size * h
    out["embedding"] = out["embedding/position"] + out["embedding/token"]

    qkv_out = cfg.q_width + 2 * cfg.kv_width
    out["attention/ln"] = _norm(cfg)
    out["attention/kqv"] = h * qkv_out + (qkv_out if cfg.qkv_bias else 0)
    out["attention/proj"] = cfg.q_width * h + (h if cfg.proj_bias else 0)
    out["attention"] = out["attention/ln"] + out["attention/kqv"] + out["attention/proj"]

    up, down = _expert_mlp(cfg)
    out["mlp/ln"] = _norm(cfg)
    out["mlp/ffw"] = cfg.n_experts * up
    out["mlp/proj"] = cfg.n_experts * down
    out["mlp/router"] = h * cfg.n_experts if cfg.is_moe else 0
    out["mlp"] = out["mlp/ln"] + out["mlp/ffw"] + out["mlp/proj"] + out["mlp/router"]

    out["block"] = out["attention"] + out["mlp"]
    out["transformer"] = cfg.n_layers * out["block"]
    out["ln_f"] = _norm(cfg)
    out["dense"] = 0 if cfg.tied_embeddings else cfg.vocab_size * h
    out["total"] = out["embedding"] + out["transformer"] + out["ln_f"] + out["dense"]

    total = out["total"]
    inactive = cfg.n_layers * (cfg.n_experts - cfg.top_k) * (up + down)
    untied_lookup = 0 if cfg.tied_embeddings else out["embedding/token"]
    return ParamCount(
        total=total,
        embedding=out["embedding"],
        non_embedding=total - out["embedding"] - out["dense"],
        matmul=total - out["embedding/position"] - untied_lookup,
        active=total - inactive,
        breakdown=out,
    )
