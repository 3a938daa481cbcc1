"""`ModelConfig`: the shape of a GPT-style decoder, the vocabulary every module shares.

One dataclass describes GPT-2, nanoGPT, LLaMA, Mistral and Mixtral alike: the
differences are flags (bias placement, norm kind, MLP kind, tied head,
position embedding, experts). Validation lives here so that every entry
point (presets, CLI flags, a Hugging Face ``config.json``) fails the same way.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from estimator.errors import ConfigError

MLP_KINDS = ("gelu", "swiglu")
NORM_KINDS = ("layernorm", "rmsnorm")
POSITION_KINDS = ("learned", "rope")


@dataclass(frozen=True)
class ModelConfig:
    """A decoder-only transformer. Widths are element counts, not bytes."""

    name: str
    vocab_size: int
    context_length: int
    d_model: int
    n_layers: int
    n_heads: int
    n_kv_heads: int | None = None  # None: same as n_heads (MHA)
    d_ff: int | None = None  # None: 4 x d_model
    head_dim: int | None = None  # None: d_model // n_heads
    mlp: str = "gelu"
    norm: str = "layernorm"
    norm_bias: bool = True
    qkv_bias: bool = True
    proj_bias: bool = True  # attention output projection
    mlp_bias: bool = True
    tied_embeddings: bool = True
    position: str = "learned"
    n_experts: int = 1
    top_k: int = 1
    sliding_window: int | None = None  # informational (Mistral); FLOPs use full context

    def __post_init__(self) -> None:
        validate(self)

    # Derived sizes -------------------------------------------------------
    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def ffn(self) -> int:
        return self.d_ff or 4 * self.d_model

    @property
    def dh(self) -> int:
        return self.head_dim or self.d_model // self.n_heads

    @property
    def q_width(self) -> int:
        """Width of all query heads together (a x d_h)."""
        return self.n_heads * self.dh

    @property
    def kv_width(self) -> int:
        """Width of the key (or value) heads together (g x d_h)."""
        return self.kv_heads * self.dh

    @property
    def is_moe(self) -> bool:
        return self.n_experts > 1

    def with_vocab_padded(self, multiple: int) -> "ModelConfig":
        """The same model with its vocabulary rounded up (nanoGPT's 50257 -> 50304)."""
        if multiple <= 1:
            return self
        padded = -(-self.vocab_size // multiple) * multiple
        return replace(self, vocab_size=padded)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(n_kv_heads=self.kv_heads, d_ff=self.ffn, head_dim=self.dh)
        return out


def _positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")


def validate(cfg: ModelConfig) -> None:
    """Raise ConfigError for a shape no real model could have."""
    for field in ("vocab_size", "context_length", "d_model", "n_layers", "n_heads", "n_experts", "top_k"):
        _positive(field, getattr(cfg, field))
    for field in ("n_kv_heads", "d_ff", "head_dim", "sliding_window"):
        value = getattr(cfg, field)
        if value is not None:
            _positive(field, value)
    if cfg.head_dim is None and cfg.d_model % cfg.n_heads:
        raise ConfigError(
            f"heads ({cfg.n_heads}) must divide the width d_model ({cfg.d_model}); "
            f"try {', '.join(str(h) for h in _divisors_near(cfg.d_model, cfg.n_heads))} heads"
        )
    if cfg.n_heads % cfg.kv_heads:
        raise ConfigError(f"kv heads ({cfg.kv_heads}) must divide the query heads ({cfg.n_heads})")
    if cfg.top_k > cfg.n_experts:
        raise ConfigError(f"top-k ({cfg.top_k}) cannot exceed the number of experts ({cfg.n_experts})")
    if cfg.mlp not in MLP_KINDS:
        raise ConfigError(f"mlp must be one of {', '.join(MLP_KINDS)}, got {cfg.mlp!r}")
    if cfg.norm not in NORM_KINDS:
        raise ConfigError(f"norm must be one of {', '.join(NORM_KINDS)}, got {cfg.norm!r}")
    if cfg.position not in POSITION_KINDS:
        raise ConfigError(f"position must be one of {', '.join(POSITION_KINDS)}, got {cfg.position!r}")


def _divisors_near(width: int, heads: int) -> list[int]:
    divisors = [d for d in range(1, min(width, 256) + 1) if width % d == 0]
    return sorted(divisors, key=lambda d: (abs(d - heads), d))[:3]


# Hugging Face config.json -------------------------------------------------

def from_hf_config(path: str | Path) -> ModelConfig:
    """Read a local Hugging Face ``config.json`` (offline) into a ModelConfig."""
    p = Path(path)
    if p.is_dir():
        p = p / "config.json"
    try:
        raw = json.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"no config.json at {p}") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read {p}: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{p} does not hold a JSON object")
    kind = str(raw.get("model_type", "")).lower()
    name = raw.get("_name_or_path") or p.parent.name or kind or "hf-model"
    try:
        if kind == "gpt2" or "n_embd" in raw:
            return _gpt2_from_hf(name, raw)
        return _llama_from_hf(name, raw, kind)
    except KeyError as exc:
        raise ConfigError(f"{p} lacks the field {exc.args[0]!r} needed for a {kind or 'decoder'} model") from None


def _gpt2_from_hf(name: str, raw: dict[str, Any]) -> ModelConfig:
    d_model = raw["n_embd"]
    return ModelConfig(
        name=str(name),
        vocab_size=raw["vocab_size"],
        context_length=raw.get("n_positions", raw.get("n_ctx", 1024)),
        d_model=d_model,
        n_layers=raw["n_layer"],
        n_heads=raw["n_head"],
        d_ff=raw.get("n_inner") or 4 * d_model,
        tied_embeddings=raw.get("tie_word_embeddings", True),
    )


def _llama_from_hf(name: str, raw: dict[str, Any], kind: str) -> ModelConfig:
    attention_bias = bool(raw.get("attention_bias", kind in ("qwen2", "qwen2_moe")))
    return ModelConfig(
        name=str(name),
        vocab_size=raw["vocab_size"],
        context_length=raw.get("max_position_embeddings", 2048),
        d_model=raw["hidden_size"],
        n_layers=raw["num_hidden_layers"],
        n_heads=raw["num_attention_heads"],
        n_kv_heads=raw.get("num_key_value_heads") or raw["num_attention_heads"],
        d_ff=raw["intermediate_size"],
        head_dim=raw.get("head_dim"),
        mlp="swiglu",
        norm="rmsnorm",
        norm_bias=False,
        qkv_bias=attention_bias,
        proj_bias=bool(raw.get("attention_bias", False)) and kind not in ("qwen2", "qwen2_moe"),
        mlp_bias=bool(raw.get("mlp_bias", False)),
        tied_embeddings=bool(raw.get("tie_word_embeddings", False)),
        position="rope",
        n_experts=raw.get("num_local_experts") or raw.get("num_experts") or 1,
        top_k=raw.get("num_experts_per_tok") or 1,
        sliding_window=raw.get("sliding_window"),
    )
