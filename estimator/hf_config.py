"""A Hugging Face ``config.json`` -> the ``ModelConfig`` to estimate or to profile, or one line naming what it lacks.

``estimator.model_config.from_hf_config`` reads the shape of every family
mfutop knows, exactly (the per-family readers: ``estimator.hf_families``).
Two entry points sit on it:

- ``read_hf_model``: what ``mfutop estimate`` needs — every family read, with
  notes on what costs nothing and is not modelled (sliding window, soft-capping,
  DeepSeek-V3's MTP module).
- ``load_hf_config``: the profiler's gate. The config must be of a family the
  profiled GPT (``profiler.model``) reproduces with the same parameters and
  matmul FLOPs. A feature it cannot build (Gemma-2's extra norms, Falcon's
  shared norm, OPT's projections, MLA, shared experts, dense first layers) is
  refused (``ConfigError``); one that changes neither count (GeGLU built as
  SwiGLU, partial rotary, parallel residual) is built the profiler's way and noted.

Torch-free: ``mfutop estimate``, the Tracker and the CLI share it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from estimator.errors import ConfigError
from estimator.hf_families import READERS
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
# Keys whose presence changes the shape beyond what the profiled GPT builds: (feature it lacks).
SHAPE_KEYS = {
    "shared_expert_intermediate_size": "shared experts (Qwen-MoE / DeepSeek-MoE)",
    "n_shared_experts": "shared experts (DeepSeek-MoE)",
    "moe_intermediate_size": "an expert width other than intermediate_size",
    "first_k_dense_replace": "dense layers before the MoE ones",
    "q_lora_rank": "low-rank (MLA) attention",
    "kv_lora_rank": "low-rank (MLA) attention",
    "cross_attention_hidden_size": "cross-attention",
}
# ModelConfig fields (beyond their defaults) profiler.model does not build: (field, feature).
UNBUILT_FIELDS = (
    ("post_norms", "post-branch norms (Gemma-2)"), ("shared_block_norm", "one norm shared by attention and MLP"),
    ("kv_lora_rank", "low-rank (MLA) attention"), ("shared_expert_d_ff", "shared experts"),
    ("dense_layers", "dense layers before the MoE ones"), ("router_bias", "a routing bias"),
    ("embed_dim", "an embedding width apart from d_model"), ("position_offset", "extra position rows"),
)


@dataclass(frozen=True)
class HFModel:
    cfg: ModelConfig
    family: str
    notes: tuple[str, ...] = ()  # what is not modelled and costs nothing (same parameters, same matmul FLOPs)


def _raw(path: str | Path) -> tuple[dict[str, Any], str, str]:
    p = Path(path)
    raw = read_config_file(p / "config.json" if p.is_dir() else p)
    if not isinstance(raw, dict):
        return raw, "", p.name
    kind = str(raw.get("model_type") or ("gpt2" if "n_embd" in raw else ""))
    return raw, kind, f"{p.name}: {kind or 'no model_type'}"


def read_hf_model(path: str | Path) -> HFModel:
    """Every family mfutop reads (``estimate``): the exact shape and the notes on what it leaves out."""
    cfg = from_hf_config(path)
    raw, kind, _ = _raw(path)
    return HFModel(cfg=cfg, family=kind, notes=tuple(_estimate_notes(kind, raw)))


def load_hf_config(path: str | Path) -> HFModel:
    """Read and gate a local config.json (or its folder) for the profiler; ConfigError names the first
    feature the profiled GPT cannot build."""
    raw, kind, where = _raw(path)  # the reading errors (missing file, bad JSON) are read_config_file's
    if not isinstance(raw, dict):
        from_hf_config(path)  # its one-line refusal of a non-object
    if kind not in FAMILIES:
        known = " (mfutop estimate reads it)" if kind in READERS else ""
        raise ConfigError(f"{where} is not a family the profiler builds{known}; it builds {', '.join(FAMILIES)} "
                          "(give --layers/--d-model/... to profile a GPT of that size)")
    cfg = from_hf_config(path)  # a missing or mistyped field is its own error
    if raw.get("is_encoder_decoder"):
        raise ConfigError(f"{where} is an encoder-decoder; the profiler builds decoder-only models")
    for key, feature in SHAPE_KEYS.items():
        if raw.get(key) and not (key == "moe_intermediate_size" and raw[key] == raw.get("intermediate_size")):
            raise ConfigError(f"{where} has {feature} ({key}={raw[key]!r}), which the profiled GPT does not "
                              "build; its parameters and FLOPs would be wrong")
    for field, feature in UNBUILT_FIELDS:
        if getattr(cfg, field):
            raise ConfigError(f"{where} has {feature}, which the profiled GPT does not build")
    built = replace(cfg, mlp="swiglu" if cfg.gated else cfg.mlp, parallel_residual=False, rotary_dim=None)
    _check_reading(where, kind, raw, built)
    return HFModel(cfg=built, family=kind, notes=tuple(_notes(kind, raw) + _estimate_notes(kind, raw)))


def _check_reading(where: str, kind: str, raw: dict[str, Any], cfg: ModelConfig) -> None:
    """The estimator's reading must be the family's shape: a misread family is refused, not mis-profiled."""
    mlp, norm, position = FAMILIES[kind]
    got = (cfg.mlp, cfg.norm, cfg.position)
    if got != (mlp, norm, position):
        raise ConfigError(f"{where}: the estimator reads it as {'/'.join(got)}, but the profiled GPT builds "
                          f"{mlp}/{norm}/{position} for it")
    if kind == "gpt_neox" and not (cfg.qkv_bias and cfg.proj_bias and cfg.mlp_bias and cfg.norm_bias):
        raise ConfigError(f"{where}: GPT-NeoX has biases in every Linear and LayerNorm; the estimator's reading "
                          "drops some (estimator.hf_families.gpt_neox)")
    tied = raw.get("tie_word_embeddings", TIED_BY_DEFAULT.get(kind, False))
    if bool(tied) != cfg.tied_embeddings:
        raise ConfigError(f"{where}: tie_word_embeddings is {bool(tied)} for this family, the estimator reads "
                          f"{cfg.tied_embeddings} (estimator.hf_families)")


def _notes(kind: str, raw: dict[str, Any]) -> list[str]:
    """How the profiled GPT builds what it approximates at the same parameters and matmul FLOPs."""
    notes = []
    act = str(raw.get("hidden_activation") or raw.get("hidden_act") or "").lower()
    if FAMILIES[kind][0] == "swiglu" and act and act not in ("silu", "swish"):
        notes.append(f"{act} gated MLP built as SwiGLU: same parameters and matmul FLOPs")
    if kind == "gemma":
        notes.append("Gemma's embedding scale and (1 + w) RMSNorm are elementwise: not built, not counted")
    if kind == "gpt_neox":
        if float(raw.get("rotary_pct", 1.0)) < 1.0:
            notes.append(f"rotary on {raw['rotary_pct']:.0%} of each head built as full rotary (elementwise only)")
        if raw.get("use_parallel_residual", True):
            notes.append("parallel residual built as sequential: same parameters and FLOPs")
    return notes


def _estimate_notes(kind: str, raw: dict[str, Any]) -> list[str]:
    """What the estimate does not model because it costs no parameters and no counted FLOPs."""
    notes = []
    if raw.get("sliding_window") and raw.get("use_sliding_window", True):
        notes.append(f"sliding window {raw['sliding_window']} not applied: attention over the full sequence, "
                     "as the FLOP count assumes")
    if raw.get("attn_logit_softcapping") or raw.get("final_logit_softcapping"):
        notes.append("logit soft-capping is elementwise: not counted")
    if raw.get("num_nextn_predict_layers"):
        notes.append(f"the multi-token-prediction module ({raw['num_nextn_predict_layers']} layer) is not counted "
                     "(DeepSeek's published total excludes it)")
    return notes
