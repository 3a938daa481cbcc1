"""One reader per Hugging Face ``model_type``: a ``config.json`` -> the exact ``ModelConfig`` of that family.

Each reader follows the family's modeling code in transformers (which modules
exist, which carry biases, what a missing key defaults to), so that
``count_params`` equals the checkpoint's tensor count. A ``model_type`` not in
``READERS`` is refused with the list of families read — never read as LLaMA —
and a feature a reader cannot represent is refused by name (``unsupported``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from estimator.errors import ConfigError
from estimator.model_config import ModelConfig

Raw = dict[str, Any]
_NO_BIAS = dict(norm_bias=False, qkv_bias=False, proj_bias=False, mlp_bias=False)


def unsupported(kind: str, feature: str) -> ConfigError:
    """The one message for a config.json feature ModelConfig cannot represent."""
    return ConfigError(f"{kind}: {feature} is not represented by mfutop's ModelConfig; its parameters or "
                       "FLOPs would be wrong")


def _gated(kind: str, act: Any) -> str:
    """The gated MLP kind of a SiLU / GELU activation name (transformers' ACT2FN keys)."""
    name = str(act or "silu").lower()
    if name in ("silu", "swish"):
        return "swiglu"
    if name.startswith("gelu"):
        return "geglu"
    raise unsupported(kind, f"a gated MLP with activation {name!r}")


def _plain(kind: str, act: Any) -> str:
    name = str(act or "gelu").lower()
    if name.startswith("gelu"):
        return "gelu"
    if name == "relu":
        return "relu"
    raise unsupported(kind, f"an MLP with activation {name!r}")


def _rotary_dim(head_dim: int, fraction: Any) -> int | None:
    """Rotated elements per head from a fraction (GPT-NeoX rotary_pct, Phi partial_rotary_factor)."""
    frac = float(fraction if fraction is not None else 1.0)
    return None if frac >= 1.0 else int(head_dim * frac)


def gpt2(name: str, raw: Raw) -> ModelConfig:
    """GPT2LMHeadModel: learned positions, biased LayerNorm and Linears, tied head."""
    d_model = raw["n_embd"]
    return ModelConfig(
        name=name, vocab_size=raw["vocab_size"], context_length=raw.get("n_positions", raw.get("n_ctx", 1024)),
        d_model=d_model, n_layers=raw["n_layer"], n_heads=raw["n_head"], d_ff=raw.get("n_inner") or 4 * d_model,
        mlp=_plain("gpt2", raw.get("activation_function")),
        tied_embeddings=bool(raw.get("tie_word_embeddings", True)))


def _decoder(name: str, raw: Raw, kind: str, **kw: Any) -> ModelConfig:
    """The LLaMA-style fields every RMSNorm/RoPE/gated family shares (LLaMA, Mistral, Qwen2, Gemma, Phi-3, MoE)."""
    fields: dict[str, Any] = dict(
        name=name, vocab_size=raw["vocab_size"], context_length=raw.get("max_position_embeddings", 2048),
        d_model=raw["hidden_size"], n_layers=raw["num_hidden_layers"], n_heads=raw["num_attention_heads"],
        n_kv_heads=raw.get("num_key_value_heads") or raw["num_attention_heads"], d_ff=raw["intermediate_size"],
        head_dim=raw.get("head_dim"), mlp=_gated(kind, raw.get("hidden_activation") or raw.get("hidden_act")),
        norm="rmsnorm", position="rope", tied_embeddings=bool(raw.get("tie_word_embeddings", False)),
        sliding_window=raw.get("sliding_window") if raw.get("use_sliding_window", True) else None, **_NO_BIAS)
    fields.update(kw)
    return ModelConfig(**fields)


def llama(name: str, raw: Raw) -> ModelConfig:
    """LlamaForCausalLM / Mistral: ``attention_bias`` on q, k, v and o; ``mlp_bias`` on the three MLP matrices."""
    bias = bool(raw.get("attention_bias", False))
    return _decoder(name, raw, str(raw.get("model_type")), qkv_bias=bias, proj_bias=bias,
                    mlp_bias=bool(raw.get("mlp_bias", False)))


def qwen2(name: str, raw: Raw) -> ModelConfig:
    """Qwen2: biases on q, k, v only (Qwen2Attention), no config key for them."""
    return _decoder(name, raw, "qwen2", qkv_bias=True)


def gemma(name: str, raw: Raw) -> ModelConfig:
    """Gemma: GeGLU, head_dim apart from d/heads, tied head by default (GemmaConfig)."""
    bias = bool(raw.get("attention_bias", False))
    return _decoder(name, raw, "gemma", qkv_bias=bias, proj_bias=bias,
                    tied_embeddings=bool(raw.get("tie_word_embeddings", True)))


def gemma2(name: str, raw: Raw) -> ModelConfig:
    """Gemma-2: Gemma plus a norm after attention and after the MLP (4 per block). Logit soft-capping
    and the alternating sliding window are elementwise / masking: no parameters, and the FLOP
    convention counts full attention anyway."""
    return replace(gemma(name, raw), post_norms=True)


def phi3(name: str, raw: Raw) -> ModelConfig:
    """Phi-3: fused qkv_proj and gate_up_proj (the same counts as separate matrices), untied, no biases."""
    dh = raw.get("head_dim") or raw["hidden_size"] // raw["num_attention_heads"]
    return _decoder(name, raw, "phi3", rotary_dim=_rotary_dim(dh, raw.get("partial_rotary_factor")))


def mixtral(name: str, raw: Raw) -> ModelConfig:
    """Mixtral: every layer routes to num_experts_per_tok of num_local_experts SwiGLU experts; router unbiased."""
    return _decoder(name, raw, "mixtral", n_experts=raw["num_local_experts"], top_k=raw["num_experts_per_tok"])


def qwen2_moe(name: str, raw: Raw) -> ModelConfig:
    """Qwen2-MoE: routed experts of moe_intermediate_size, a shared expert with its own width and sigmoid gate."""
    if raw.get("decoder_sparse_step", 1) != 1 or raw.get("mlp_only_layers"):
        raise unsupported("qwen2_moe", "dense layers between MoE ones (decoder_sparse_step / mlp_only_layers)")
    shared = raw.get("shared_expert_intermediate_size") or None
    return _decoder(name, raw, "qwen2_moe", qkv_bias=True, d_ff=raw["moe_intermediate_size"],
                    n_experts=raw["num_experts"], top_k=raw["num_experts_per_tok"], shared_expert_d_ff=shared,
                    shared_expert_gate=shared is not None)


def deepseek(name: str, raw: Raw) -> ModelConfig:
    """DeepSeek-V2 / V3: MLA attention, first_k_dense_replace dense layers, shared + routed experts.

    V3's router keeps a per-expert bias (topk_method "noaux_tc": e_score_correction_bias, in the
    checkpoint). V3's multi-token-prediction module (num_nextn_predict_layers) is not counted: it is
    not part of the model transformers builds, and DeepSeek's published 671B total excludes it (the
    685B of the Hugging Face checkpoint includes its 14B).
    """
    kind = str(raw.get("model_type"))
    if raw.get("attention_bias"):
        raise unsupported(kind, "biased MLA projections (attention_bias)")
    if raw.get("moe_layer_freq", 1) != 1:
        raise unsupported(kind, f"MoE on every {raw['moe_layer_freq']}th layer only (moe_layer_freq)")
    experts = raw.get("n_routed_experts") or 1
    moe: dict[str, Any] = {"d_ff": raw["intermediate_size"]}
    if experts > 1:
        width = raw["moe_intermediate_size"]
        shared = raw.get("n_shared_experts") or 0
        moe = dict(n_experts=experts, top_k=raw["num_experts_per_tok"], d_ff=width,
                   shared_expert_d_ff=shared * width or None, dense_layers=raw.get("first_k_dense_replace", 0),
                   router_bias=raw.get("topk_method") == "noaux_tc")
        if moe["dense_layers"]:
            moe["dense_d_ff"] = raw["intermediate_size"]
    nope, rope = raw["qk_nope_head_dim"], raw["qk_rope_head_dim"]
    return ModelConfig(
        name=name, vocab_size=raw["vocab_size"], context_length=raw.get("max_position_embeddings", 4096),
        d_model=raw["hidden_size"], n_layers=raw["num_hidden_layers"], n_heads=raw["num_attention_heads"],
        head_dim=nope + rope, v_head_dim=raw["v_head_dim"],
        q_lora_rank=raw.get("q_lora_rank"), kv_lora_rank=raw["kv_lora_rank"], rope_head_dim=rope,
        mlp=_gated(kind, raw.get("hidden_act")), norm="rmsnorm", position="rope",
        tied_embeddings=bool(raw.get("tie_word_embeddings", False)), **_NO_BIAS, **moe)


def gpt_neox(name: str, raw: Raw) -> ModelConfig:
    """GPT-NeoX / Pythia: biased LayerNorms and Linears, partial rotary, parallel residual (2 norms), untied."""
    bias = bool(raw.get("attention_bias", True))
    h, heads = raw["hidden_size"], raw["num_attention_heads"]
    return ModelConfig(
        name=name, vocab_size=raw["vocab_size"], context_length=raw.get("max_position_embeddings", 2048),
        d_model=h, n_layers=raw["num_hidden_layers"], n_heads=heads, d_ff=raw.get("intermediate_size") or 4 * h,
        mlp=_plain("gpt_neox", raw.get("hidden_act")), norm="layernorm", qkv_bias=bias, proj_bias=bias,
        tied_embeddings=bool(raw.get("tie_word_embeddings", False)), position="rope",
        rotary_dim=_rotary_dim(h // heads, raw.get("rotary_pct", 1.0)),
        parallel_residual=bool(raw.get("use_parallel_residual", True)))


def falcon(name: str, raw: Raw) -> ModelConfig:
    """Falcon (transformers' FalconDecoderLayer): multi-query (7B) or grouped KV (new_decoder_architecture:
    40B/180B), parallel attention with one shared LayerNorm or ln_attn + ln_mlp, ``bias`` on every Linear."""
    if raw.get("alibi"):
        raise unsupported("falcon", "ALiBi position biases (alibi)")
    h = raw["hidden_size"]
    layers = raw.get("num_hidden_layers", raw.get("n_layer"))
    heads = raw.get("num_attention_heads", raw.get("n_head"))
    if layers is None or heads is None:
        raise KeyError("num_hidden_layers" if layers is None else "num_attention_heads")
    new_arch = bool(raw.get("new_decoder_architecture", False))
    if new_arch:
        kv = raw.get("num_kv_heads", raw.get("n_head_kv")) or heads
    else:
        kv = 1 if raw.get("multi_query", True) else heads
    parallel = new_arch or bool(raw.get("parallel_attn", True))
    lns = raw.get("num_ln_in_parallel_attn") or (2 if new_arch else 1)
    bias = bool(raw.get("bias", False))
    return ModelConfig(
        name=name, vocab_size=raw["vocab_size"], context_length=raw.get("max_position_embeddings", 2048),
        d_model=h, n_layers=layers, n_heads=heads, n_kv_heads=kv, d_ff=raw.get("ffn_hidden_size") or 4 * h,
        head_dim=raw.get("head_dim"), mlp=_plain("falcon", raw.get("activation")), norm="layernorm",
        qkv_bias=bias, proj_bias=bias, mlp_bias=bias, position="rope",
        tied_embeddings=bool(raw.get("tie_word_embeddings", True)), parallel_residual=parallel,
        shared_block_norm=parallel and lns == 1)


def opt(name: str, raw: Raw) -> ModelConfig:
    """OPT: learned positions with 2 offset rows, biased LayerNorms and Linears, ReLU, tied head;
    ``word_embed_proj_dim`` adds project_in/out (opt-350m), post-LN (``do_layer_norm_before`` false) has no
    final norm."""
    if raw.get("layer_norm_elementwise_affine", True) is False:
        raise unsupported("opt", "LayerNorms without weights (layer_norm_elementwise_affine)")
    h = raw["hidden_size"]
    embed = raw.get("word_embed_proj_dim") or h
    bias = bool(raw.get("enable_bias", True))
    pre_ln = bool(raw.get("do_layer_norm_before", True))
    return ModelConfig(
        name=name, vocab_size=raw["vocab_size"], context_length=raw.get("max_position_embeddings", 2048),
        d_model=h, n_layers=raw["num_hidden_layers"], n_heads=raw["num_attention_heads"], d_ff=raw["ffn_dim"],
        mlp=_plain("opt", raw.get("activation_function", "relu")), norm="layernorm", qkv_bias=bias,
        proj_bias=bias, mlp_bias=bias, tied_embeddings=bool(raw.get("tie_word_embeddings", True)),
        position="learned", position_offset=2, embed_dim=embed if embed != h else None,
        final_norm=pre_ln and not raw.get("_remove_final_layer_norm", False))


READERS: dict[str, Callable[[str, Raw], ModelConfig]] = {
    "gpt2": gpt2, "llama": llama, "mistral": llama, "qwen2": qwen2, "gemma": gemma, "gemma2": gemma2,
    "phi3": phi3, "mixtral": mixtral, "qwen2_moe": qwen2_moe, "deepseek_v2": deepseek, "deepseek_v3": deepseek,
    "gpt_neox": gpt_neox, "falcon": falcon, "RefinedWebModel": falcon, "RefinedWeb": falcon, "opt": opt,
}


def read_family(kind: str, name: str, raw: Raw) -> ModelConfig:
    """The reader of ``kind``, or a ConfigError naming it and every family read."""
    reader = READERS.get(kind)
    if reader is None:
        shown = repr(kind) if kind else "no model_type"
        raise ConfigError(f"model_type {shown} is not a family mfutop reads; it reads {', '.join(READERS)} "
                          "(give --layers/--d-model/... on a preset to estimate a model of that size)")
    return reader(name, raw)
