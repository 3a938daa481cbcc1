"""Exact parameter counts against published checkpoints and the seed notebooks."""

import json

import pytest

from estimator.errors import ConfigError
from estimator.model_config import ModelConfig, from_hf_config
from estimator.params import count_params
from estimator.presets import PRESETS, TINY_PRESETS, customise, get_model

# Published counts: HF `model.num_parameters()` / model cards; nanoGPT transformer_sizing.ipynb.
PUBLISHED = {
    "nanogpt-124m": 124_337_664,
    "gpt2": 124_439_808,
    "gpt2-medium": 354_823_168,
    "gpt2-large": 774_030_080,
    "gpt2-xl": 1_557_611_200,
    "llama-2-7b": 6_738_415_616,
    "llama-2-13b": 13_015_864_320,
    "llama-2-70b": 68_976_648_192,
    "llama-3-8b": 8_030_261_248,
    "llama-3-70b": 70_553_706_496,
    "mistral-7b": 7_241_732_096,
    "mixtral-8x7b": 46_702_792_704,
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_public_preset_matches_checkpoint(name):
    assert count_params(get_model(name)).total == PUBLISHED[name]


def test_every_public_preset_is_pinned():
    public = {n for n in PRESETS if n not in (*TINY_PRESETS, "gpt2-from-scratch")}  # tiny ones: no checkpoint
    assert public == set(PUBLISHED)


def test_nanogpt_breakdown_matches_notebook_table():
    b = count_params(get_model("nanogpt-124m")).breakdown
    assert b["embedding/position"] == 786_432
    assert b["embedding/token"] == 38_597_376
    assert b["attention/kqv"] == 1_769_472
    assert b["attention/proj"] == 589_824
    assert b["mlp/ffw"] == 2_359_296
    assert b["block"] == 7_079_424
    assert b["transformer"] == 84_953_088
    assert b["dense"] == 0


def test_llms_from_scratch_gpt_untied_and_tied():
    untied = get_model("gpt2-from-scratch")
    assert count_params(untied).total == 163_009_536
    assert count_params(customise(untied, tied_embeddings=True)).total == 124_412_160


def test_mixtral_active_parameters():
    p = count_params(get_model("mixtral-8x7b"))
    assert p.active == 12_879_925_248
    assert p.breakdown["mlp/router"] == 4096 * 8


def test_padded_vocab_nanogpt():
    padded = get_model("gpt2").with_vocab_padded(64)
    assert padded.vocab_size == 50_304
    assert count_params(padded).total == 124_475_904
    # nanoGPT's get_num_params(non_embedding=True) subtracts wpe only: 123.69M.
    assert count_params(padded).total - count_params(padded).breakdown["embedding/position"] == 123_689_472


def test_embedding_splits_add_up():
    p = count_params(get_model("llama-2-7b"))
    assert p.embedding == 32000 * 4096
    assert p.non_embedding == p.total - 2 * 32000 * 4096
    assert p.matmul == p.total - 32000 * 4096


def test_heads_must_divide_width():
    with pytest.raises(ConfigError, match="must divide the width"):
        ModelConfig(name="bad", vocab_size=10, context_length=8, d_model=100, n_heads=7, n_layers=1)


def test_kv_heads_must_divide_heads():
    with pytest.raises(ConfigError, match="kv heads"):
        ModelConfig(name="bad", vocab_size=10, context_length=8, d_model=96, n_heads=8, n_kv_heads=3, n_layers=1)


def test_unknown_model_suggests_close_names():
    with pytest.raises(ConfigError, match="gpt2-medium"):
        get_model("gpt2-meduim")


def test_hf_config_json_llama(tmp_path):
    cfg = {
        "model_type": "llama", "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
        "num_attention_heads": 32, "num_key_value_heads": 32, "vocab_size": 32000,
        "max_position_embeddings": 4096, "tie_word_embeddings": False,
    }
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    assert count_params(from_hf_config(tmp_path)).total == 6_738_415_616


def test_hf_config_json_gpt2(tmp_path):
    cfg = {"model_type": "gpt2", "n_embd": 1600, "n_layer": 48, "n_head": 25, "n_positions": 1024, "vocab_size": 50257}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    assert count_params(from_hf_config(path)).total == 1_557_611_200


def test_hf_config_missing_file_is_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no config.json"):
        from_hf_config(tmp_path / "nope")


@pytest.mark.parametrize("changes,message", [
    (dict(mlp="reglu"), "mlp must be one of"),
    (dict(shared_block_norm=True), "needs a parallel residual"),
    (dict(position="rope", rotary_dim=15), "even width"),
    (dict(position="rope", rotary_dim=128), "within a rotary head of 16"),
    (dict(position_offset=-1), "non-negative integer"),
    (dict(position="rope", position_offset=2), "learned position table"),
    (dict(dense_layers=1), "describe a mixture of experts"),
    (dict(n_experts=4, top_k=2, dense_layers=2), "at least one MoE layer"),
    (dict(n_experts=4, top_k=2, shared_expert_gate=True), "needs a shared expert"),
    (dict(kv_lora_rank=32), "MLA needs head_dim"),
    (dict(q_lora_rank=32), "needs kv_lora_rank"),
    (dict(embed_dim=0), "embed_dim must be a positive integer"),
    (dict(post_norms="yes"), "post_norms must be true or false"),
])
def test_new_fields_refuse_a_shape_no_model_has_in_one_line(changes, message):
    base = dict(name="m", vocab_size=512, context_length=128, d_model=64, n_layers=2, n_heads=4)
    with pytest.raises(ConfigError, match=message) as info:
        ModelConfig(**{**base, **changes})
    assert "\n" not in str(info.value)


def test_new_fields_by_hand():
    """Each field's parameters, from a hand formula on a 2-layer d=64 model (vocab 512, ctx 128)."""
    base = dict(name="m", vocab_size=512, context_length=128, d_model=64, n_layers=2, n_heads=4)
    plain = count_params(ModelConfig(**base)).total
    assert count_params(ModelConfig(**base, post_norms=True)).total == plain + 2 * 2 * (2 * 64)
    assert count_params(ModelConfig(**base, parallel_residual=True, shared_block_norm=True)).total == plain - 2 * 128
    assert count_params(ModelConfig(**base, final_norm=False)).total == plain - 128
    assert count_params(ModelConfig(**base, position_offset=2)).total == plain + 2 * 64
    # a 32-wide token table: table and tied head shrink, project_in/out (no bias) appear
    assert count_params(ModelConfig(**base, embed_dim=32)).total == plain - 512 * 32 + 2 * 32 * 64
    relu = ModelConfig(**base, mlp="relu")
    assert count_params(relu).total == plain
    geglu = ModelConfig(**base, mlp="geglu")
    assert count_params(geglu).total == plain + 2 * (64 * 256 + 256)  # one more biased up-projection per layer
