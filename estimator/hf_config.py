"""A Hugging Face ``config.json`` -> the ``ModelConfig`` the profiler builds, or one line naming what it lacks.

``estimator.model_config.from_hf_config`` reads the shape (the one home of that
mapping). This module is the gate in front of it: the config must be of a
family the profiled GPT reproduces (same parameters, same matmul FLOPs), and a
feature outside ``ModelConfig``'s fields is either

- refused (``ConfigError``) when it changes parameters or FLOPs — an encoder,
  shared experts, Gemma-2's extra norms — because a profile of another shape
  would be a wrong answer, or
- noted when it does not (GeGLU built as SwiGLU, partial rotary, parallel
  residual, a sliding window): the profile is of the same cost, and says so.

Torch-free: ``mfutop estimate``, the Tracker and the CLI share it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from estimator.errors import ConfigError
from estimator.model_config import ModelConfig, from_hf_config, read_config_file

# model_type -> (mlp, norm, position) the profiled GPT must be built with for that family.
FAMILIES: dict[str, tuple[str, str, str]] = {
    "gpt2": ("gelu", "layernorm", "learned"),
    "llama": ("swiglu", "rmsnorm", "rope"),
    "mistral": ("swiglu", "rmsnorm", "rope"),
    "qwen2": ("swiglu", "rmsnorm", "rope"),
    "gemma": ("swiglu", "rmsnorm", "rope"),
    "gpt_neox": ("gelu", "layernorm", "rope"),
    "mixtral": ("swiglu", "rmsnorm", "rope"),
}
TIED_BY_DEFAULT = {"gpt2": True, "gemma": True}  # transformers' default when config.json omits the key
# Keys whose presence changes the shape beyond ModelConfig's fields: (feature, what the estimator lacks).
SHAPE_KEYS = {
    "shared_expert_intermediate_size": "shared experts (Qwen-MoE / DeepSeek-MoE)",
    "n_shared_experts": "shared experts (DeepSeek-MoE)",
    "moe_intermediate_size": "an expert width other than intermediate_size",
    "first_k_dense_replace": "dense layers before the MoE ones",
    "q_lora_rank": "low-rank (MLA) attention",
    "kv_lora_rank": "low-rank (MLA) attention",
    "cross_attention_hidden_size": "cross-attention",
}


@dataclass(frozen=True)
class HFModel:
    cfg: ModelConfig
    family: str
    notes: tuple[str, ...] = ()  # approximations that cost nothing (same parameters, same matmul FLOPs)


def load_hf_config(path: str | Path) -> HFModel:
    """Read and gate a local config.json (or its folder); ConfigError names the first unsupported feature."""
    cfg = from_hf_config(path)  # the reading errors (missing file, bad JSON, a missing field) are its own
    p = Path(path)
    raw: dict[str, Any] = read_config_file(p / "config.json" if p.is_dir() else p)
    kind = str(raw.get("model_type") or ("gpt2" if "n_embd" in raw else "")).lower()
    where = f"{p.name}: {kind or 'no model_type'}"
    if kind not in FAMILIES:
        raise ConfigError(f"{where} is not a family the profiler builds; it builds {', '.join(FAMILIES)} "
                          "(give --layers/--d-model/... to profile a GPT of that size instead)")
    if raw.get("is_encoder_decoder"):
        raise ConfigError(f"{where} is an encoder-decoder; the profiler builds decoder-only models")
    for key, feature in SHAPE_KEYS.items():
        if raw.get(key) and not (key == "moe_intermediate_size" and raw[key] == raw.get("intermediate_size")):
            raise ConfigError(f"{where} has {feature} ({key}={raw[key]!r}), which ModelConfig has no field for; "
                              "its parameters and FLOPs would be wrong")
    _check_reading(where, kind, raw, cfg)
    return HFModel(cfg=cfg, family=kind, notes=tuple(_notes(kind, raw)))


def _check_reading(where: str, kind: str, raw: dict[str, Any], cfg: ModelConfig) -> None:
    """The estimator's reading must be the family's shape: a misread family is refused, not mis-profiled."""
    mlp, norm, position = FAMILIES[kind]
    got = (cfg.mlp, cfg.norm, cfg.position)
    if got != (mlp, norm, position):
        raise ConfigError(f"{where}: the estimator reads it as {'/'.join(got)}, but the family is "
                          f"{mlp}/{norm}/{position} (estimator.model_config.from_hf_config has no {kind} branch)")
    if kind == "gpt_neox" and not (cfg.qkv_bias and cfg.proj_bias and cfg.mlp_bias and cfg.norm_bias):
        raise ConfigError(f"{where}: GPT-NeoX has biases in every Linear and LayerNorm; the estimator's reading "
                          "drops some (estimator.model_config.from_hf_config)")
    tied = raw.get("tie_word_embeddings", TIED_BY_DEFAULT.get(kind, False))
    if bool(tied) != cfg.tied_embeddings:
        raise ConfigError(f"{where}: tie_word_embeddings is {bool(tied)} for this family, the estimator reads "
                          f"{cfg.tied_embeddings} (estimator.model_config.from_hf_config default)")


def _notes(kind: str, raw: dict[str, Any]) -> list[str]:
    notes = []
    act = str(raw.get("hidden_activation") or raw.get("hidden_act") or "").lower()
    if FAMILIES[kind][0] == "swiglu" and act and act != "silu":
        notes.append(f"{act} gated MLP built as SwiGLU: same parameters and matmul FLOPs")
    if kind == "gemma":
        notes.append("Gemma's embedding scale and (1 + w) RMSNorm are elementwise: not built, not counted")
    if kind == "gpt_neox":
        if float(raw.get("rotary_pct", 1.0)) < 1.0:
            notes.append(f"rotary on {raw['rotary_pct']:.0%} of each head built as full rotary (elementwise only)")
        if raw.get("use_parallel_residual", True):
            notes.append("parallel residual built as sequential: same parameters and FLOPs")
    if raw.get("sliding_window") and kind in ("mistral", "qwen2", "mixtral") and raw.get("use_sliding_window", True):
        notes.append(f"sliding window {raw['sliding_window']} not applied: attention over the full sequence, "
                     "as the FLOP count assumes")
    return notes
