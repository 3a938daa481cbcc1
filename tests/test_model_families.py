"""Every family the estimator reads is built, and its parameter count is the estimator's (and Hugging Face's)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from estimator.errors import ConfigError
from estimator.flops import step_flops
from estimator.hf_config import load_hf_config
from estimator.model_config import ModelConfig
from estimator.params import count_params
from estimator.presets import get_model
from profiler.flop_count import counter_step_flops
from profiler.model import MoE, build_model, param_count

DATA = Path(__file__).parent / "data"
# Families the profiled GPT builds, as public config.json files (tests/data/SOURCES.md) -> published totals.
BUILT = {"gpt2": 124_439_808, "llama-2-7b": 6_738_415_616, "mistral-7b": 7_241_732_096,
         "qwen2.5-0.5b": 494_032_768, "gemma-2b": 2_506_172_416, "pythia-160m": 162_322_944,
         "gpt-neox-20b": 20_554_567_680, "mixtral-8x7b": 46_702_792_704}


def _transformers():
    """Hugging Face transformers, for the tests that compare with its modeling code (skipped without it)."""
    return pytest.importorskip("transformers")


@pytest.mark.parametrize("name", list(BUILT))
def test_each_public_config_json_is_built_with_its_published_parameter_count(name):
    hf = load_hf_config(DATA / f"{name}.config.json")
    assert param_count(build_model(hf.cfg, "meta")) == count_params(hf.cfg).total == BUILT[name]

# Real published shapes (config.json values), built on the meta device: no memory, no download.
HF_CONFIGS = {
    "gpt2": {"model_type": "gpt2", "vocab_size": 50257, "n_positions": 1024, "n_embd": 768, "n_layer": 12,
             "n_head": 12},
    "llama-2-7b": {"model_type": "llama", "vocab_size": 32000, "max_position_embeddings": 4096,
                   "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
                   "num_attention_heads": 32, "num_key_value_heads": 32, "hidden_act": "silu",
                   "tie_word_embeddings": False},
    "mistral-7b": {"model_type": "mistral", "vocab_size": 32000, "max_position_embeddings": 32768,
                   "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
                   "num_attention_heads": 32, "num_key_value_heads": 8, "sliding_window": 4096,
                   "hidden_act": "silu", "tie_word_embeddings": False},
    "qwen2-0.5b": {"model_type": "qwen2", "vocab_size": 151936, "max_position_embeddings": 32768,
                   "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
                   "num_attention_heads": 14, "num_key_value_heads": 2, "tie_word_embeddings": True,
                   "use_sliding_window": False, "sliding_window": 32768, "hidden_act": "silu"},
    "gemma-2b": {"model_type": "gemma", "vocab_size": 256000, "max_position_embeddings": 8192,
                 "hidden_size": 2048, "intermediate_size": 16384, "num_hidden_layers": 18,
                 "num_attention_heads": 8, "num_key_value_heads": 1, "head_dim": 256, "hidden_act": "gelu"},
    "mixtral-8x7b": {"model_type": "mixtral", "vocab_size": 32000, "max_position_embeddings": 32768,
                     "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
                     "num_attention_heads": 32, "num_key_value_heads": 8, "num_local_experts": 8,
                     "num_experts_per_tok": 2, "tie_word_embeddings": False, "hidden_act": "silu"},
}
HF_CONFIGS["gemma-2b-tied-explicitly"] = {**HF_CONFIGS["gemma-2b"], "tie_word_embeddings": True}
# Published totals (model cards / safetensors index "total_size" / 2 bytes), independent of both codes.
PUBLISHED = {"gpt2": 124_439_808, "llama-2-7b": 6_738_415_616, "mistral-7b": 7_241_732_096,
             "qwen2-0.5b": 494_032_768, "gemma-2b": 2_506_172_416, "mixtral-8x7b": 46_702_792_704,
             "gemma-2b-tied-explicitly": 2_506_172_416}


def write_config(tmp_path, raw, name="config.json"):
    path = tmp_path / name
    path.write_text(json.dumps(raw))
    return path


@pytest.mark.parametrize("name", list(HF_CONFIGS))
def test_each_family_is_built_with_the_estimators_and_the_published_parameter_count(tmp_path, name):
    hf = load_hf_config(write_config(tmp_path, HF_CONFIGS[name]))
    model = build_model(hf.cfg, "meta")
    assert param_count(model) == count_params(hf.cfg).total == PUBLISHED[name]


def test_qwen2_gets_its_qkv_bias_and_mistral_its_grouped_kv_heads(tmp_path):
    qwen = build_model(load_hf_config(write_config(tmp_path, HF_CONFIGS["qwen2-0.5b"])).cfg, "meta")
    assert qwen.blocks[0].attn.c_attn.bias is not None and qwen.blocks[0].attn.c_proj.bias is None
    mistral = load_hf_config(write_config(tmp_path, HF_CONFIGS["mistral-7b"])).cfg
    attn = build_model(mistral, "meta").blocks[0].attn
    assert attn.c_attn.out_features == 4096 + 2 * 8 * 128 and attn.kv_heads == 8


@pytest.mark.parametrize("name", ["gemma-2b", "gemma-2b-tied-explicitly"])
def test_gemma_is_tied_and_its_gelu_gate_is_noted(tmp_path, name):
    hf = load_hf_config(write_config(tmp_path, HF_CONFIGS[name]))
    model = build_model(hf.cfg, "meta")
    assert model.lm_head.weight is model.wte.weight
    assert any("gelu gated MLP built as SwiGLU" in note for note in hf.notes)


def _neox(**kw) -> ModelConfig:
    """GPT-NeoX in ModelConfig's fields: LayerNorm and GELU with biases everywhere, RoPE, untied head."""
    base = dict(name="pythia-160m", vocab_size=50304, context_length=2048, d_model=768, n_layers=12, n_heads=12,
                d_ff=3072, mlp="gelu", norm="layernorm", position="rope", tied_embeddings=False)
    return ModelConfig(**{**base, **kw})


def _hf_meta_count(model_cls, config) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in model_cls(config).parameters())


def test_gpt_neox_fields_match_hugging_face_gpt_neox():
    transformers = _transformers()
    cfg = _neox()
    hf = transformers.GPTNeoXConfig(vocab_size=50304, max_position_embeddings=2048, hidden_size=768,
                                    num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                                    tie_word_embeddings=False)
    expected = _hf_meta_count(transformers.GPTNeoXForCausalLM, hf)
    assert param_count(build_model(cfg, "meta")) == count_params(cfg).total == expected


def test_llama_with_grouped_kv_heads_matches_hugging_face_llama():
    transformers = _transformers()
    hf = transformers.LlamaConfig(vocab_size=1000, hidden_size=256, intermediate_size=688, num_hidden_layers=3,
                                  num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=512)
    cfg = ModelConfig(name="llama-gqa", vocab_size=1000, context_length=512, d_model=256, n_layers=3, n_heads=8,
                      n_kv_heads=2, d_ff=688, mlp="swiglu", norm="rmsnorm", norm_bias=False, qkv_bias=False,
                      proj_bias=False, mlp_bias=False, tied_embeddings=False, position="rope")
    assert param_count(build_model(cfg, "meta")) == _hf_meta_count(transformers.LlamaForCausalLM, hf)


def test_gpt_neox_config_json_is_read_as_gpt_neox(tmp_path):
    raw = {"model_type": "gpt_neox", "vocab_size": 50304, "max_position_embeddings": 2048, "hidden_size": 768,
           "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072, "rotary_pct": 0.25,
           "use_parallel_residual": True, "tie_word_embeddings": False}
    hf = load_hf_config(write_config(tmp_path, raw))
    assert count_params(hf.cfg).total == count_params(_neox()).total
    assert any("rotary" in n for n in hf.notes) and any("parallel residual" in n for n in hf.notes)


@pytest.mark.parametrize("raw,match", [
    ({"model_type": "bert", "vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12,
      "num_attention_heads": 12, "intermediate_size": 3072}, "'bert'|bert is not a family"),
    ({**HF_CONFIGS["mixtral-8x7b"], "model_type": "qwen2_moe"}, "qwen2_moe is not a family"),
    ({**HF_CONFIGS["mixtral-8x7b"], "shared_expert_intermediate_size": 5632}, "shared experts"),
    ({**HF_CONFIGS["gemma-2b"], "model_type": "gemma2"}, "gemma2 is not a family"),
])
def test_a_family_the_profiler_cannot_build_is_refused_in_one_line(tmp_path, raw, match):
    with pytest.raises(ConfigError, match=match) as info:
        load_hf_config(write_config(tmp_path, raw))
    assert "\n" not in str(info.value)


def _tiny_moe() -> ModelConfig:
    return replace(get_model("gpt-tiny"), name="tiny-moe", n_experts=4, top_k=2, mlp="swiglu", norm="rmsnorm",
                   norm_bias=False, qkv_bias=False, proj_bias=False, mlp_bias=False, position="rope",
                   tied_embeddings=False)


def test_moe_routes_each_token_to_top_k_experts_and_trains():
    torch.manual_seed(0)
    cfg = _tiny_moe()
    model = build_model(cfg, "cpu")
    idx = torch.randint(0, cfg.vocab_size, (2, 16))
    seen = []
    moe = model.blocks[0].mlp
    assert isinstance(moe, MoE)
    hooks = [e.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[0])) for e in moe.experts]
    loss = model(idx, idx)
    for h in hooks:
        h.remove()
    assert sum(seen) == cfg.top_k * idx.numel()  # every token reaches exactly k experts
    loss.backward()
    assert moe.router.weight.grad is not None and moe.router.weight.grad.abs().sum() > 0
    assert sum(e.c_fc.weight.grad is not None for e in moe.experts) >= cfg.top_k


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_moe_flop_counter_equals_the_estimator(device):
    cfg = _tiny_moe()
    model = build_model(cfg, device, attention="explicit")
    idx = torch.randint(0, cfg.vocab_size, (2, 16), device=device)
    assert counter_step_flops(model, idx)[0] == step_flops(cfg, 2, 16).total
