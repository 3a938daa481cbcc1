"""Named model shapes. Public presets match their checkpoints' parameter counts exactly.

Sources: Hugging Face ``config.json`` of each checkpoint (gpt2*, meta-llama/*,
mistralai/*), nanoGPT ``model.py`` (bias=False), and LLMs-from-scratch's
``GPTModel`` (qkv bias off, untied head). Tiny presets exist so that a real
training step runs in milliseconds on a CPU.
"""

from __future__ import annotations

import difflib
from dataclasses import replace

from estimator.errors import ConfigError
from estimator.model_config import ModelConfig

_NO_BIAS = dict(norm_bias=False, qkv_bias=False, proj_bias=False, mlp_bias=False)
_LLAMA = dict(mlp="swiglu", norm="rmsnorm", tied_embeddings=False, position="rope", **_NO_BIAS)


def _gpt2(name: str, layers: int, width: int, heads: int, **kw) -> ModelConfig:
    fields = dict(vocab_size=50257, context_length=1024, d_model=width, n_layers=layers, n_heads=heads)
    fields.update(kw)
    return ModelConfig(name=name, **fields)


def _llama(name: str, layers: int, width: int, heads: int, kv: int, ffn: int, vocab: int, ctx: int, **kw) -> ModelConfig:
    return ModelConfig(
        name=name, vocab_size=vocab, context_length=ctx, d_model=width, n_layers=layers,
        n_heads=heads, n_kv_heads=kv, d_ff=ffn, **_LLAMA, **kw,
    )


PRESETS: dict[str, ModelConfig] = {
    m.name: m
    for m in (
        # Tiny GPT-2-style shapes: a training step in milliseconds on a CPU.
        _gpt2("gpt-tiny", 2, 64, 4, vocab_size=512, context_length=128),
        _gpt2("gpt-mini", 4, 128, 4, vocab_size=2048, context_length=256),
        _gpt2("gpt-small", 6, 256, 8, vocab_size=8192, context_length=256),
        # A LLaMA-style tiny shape (RMSNorm, SwiGLU, GQA 4:2, RoPE, untied): the LLaMA code path on a CPU.
        _llama("llama-tiny", 4, 128, 4, 2, 384, 2048, 256),
        # nanoGPT's GPT-2 124M: bias=False, tied (transformer_sizing.ipynb: 124,337,664).
        _gpt2("nanogpt-124m", 12, 768, 12, **_NO_BIAS),
        # LLMs-from-scratch GPTModel: qkv bias off, untied head (163,009,536).
        _gpt2("gpt2-from-scratch", 12, 768, 12, qkv_bias=False, tied_embeddings=False),
        # Hugging Face GPT2LMHeadModel: biases everywhere, tied, learned positions.
        _gpt2("gpt2", 12, 768, 12),
        _gpt2("gpt2-medium", 24, 1024, 16),
        _gpt2("gpt2-large", 36, 1280, 20),
        _gpt2("gpt2-xl", 48, 1600, 25),
        # LLaMA family: RMSNorm, SwiGLU, RoPE, no biases, untied head.
        _llama("llama-2-7b", 32, 4096, 32, 32, 11008, 32000, 4096),
        _llama("llama-2-13b", 40, 5120, 40, 40, 13824, 32000, 4096),
        _llama("llama-2-70b", 80, 8192, 64, 8, 28672, 32000, 4096),
        _llama("llama-3-8b", 32, 4096, 32, 8, 14336, 128256, 8192),
        _llama("llama-3-70b", 80, 8192, 64, 8, 28672, 128256, 8192),
        _llama("mistral-7b", 32, 4096, 32, 8, 14336, 32000, 32768, sliding_window=4096),
        _llama("mixtral-8x7b", 32, 4096, 32, 8, 14336, 32000, 32768, n_experts=8, top_k=2),
    )
}

TINY_PRESETS = ("gpt-tiny", "gpt-mini", "gpt-small", "llama-tiny")
DEFAULT_CPU_MODEL = "gpt-tiny"
DEFAULT_GPU_MODEL = "gpt2"


def preset_names() -> list[str]:
    return list(PRESETS)


def get_model(name: str) -> ModelConfig:
    """A preset by name, or a ConfigError that suggests the closest names."""
    key = name.strip().lower()
    if key in PRESETS:
        return PRESETS[key]
    close = difflib.get_close_matches(key, PRESETS, n=3, cutoff=0.4)
    hint = f"; did you mean: {', '.join(close)}?" if close else f"; known: {', '.join(PRESETS)}"
    raise ConfigError(f"unknown model {name!r}{hint}")


def customise(base: ModelConfig, **overrides) -> ModelConfig:
    """A preset with some fields replaced (CLI flags); None values are ignored."""
    changes = {k: v for k, v in overrides.items() if v is not None}
    if not changes:
        return base
    if "name" not in changes:
        changes["name"] = f"{base.name}-custom"
    return replace(base, **changes)
