"""Every family ``from_hf_config`` reads: a public checkpoint's config.json -> its published parameter total,
exactly, and an op graph whose FLOPs are ``estimator.flops``' count (tests/data/SOURCES.md cites both)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from estimator.errors import ConfigError
from estimator.flops import forward_breakdown, step_flops
from estimator.hf_config import load_hf_config, read_hf_model
from estimator.hf_families import READERS
from estimator.model_config import from_hf_config
from estimator.op_graph import step_graph
from estimator.params import count_params
from estimator.setup import TrainSetup

DATA = Path(__file__).parent / "data"

# Published totals (independent of mfutop's code; the source of each is in tests/data/SOURCES.md).
PUBLISHED = {
    "gpt2": 124_439_808,
    "llama-2-7b": 6_738_415_616,
    "mistral-7b": 7_241_732_096,
    "qwen2.5-0.5b": 494_032_768,
    "gemma-2b": 2_506_172_416,
    "gemma-2-9b": 9_241_705_984,
    "pythia-160m": 162_322_944,
    "gpt-neox-20b": 20_554_567_680,
    "phi-3-mini-4k": 3_821_079_552,
    "mixtral-8x7b": 46_702_792_704,
    "qwen1.5-moe-a2.7b": 14_315_784_192,
    "deepseek-v2-lite": 31_412_968_448 // 2,  # safetensors index total_size, bf16
    "deepseek-v3": 671_026_419_200,  # main model (MTP module excluded)
}
# Published only to the shown precision (model cards / papers); see SOURCES.md. (total, unit)
ROUNDED = {"falcon-7b": (7, 10**9), "falcon-40b": (41, 10**9), "opt-125m": (125, 10**6), "opt-350m": (331, 10**6)}


def _cfg(name: str):
    return from_hf_config(DATA / f"{name}.config.json")


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_parameter_count_is_the_published_total(name):
    assert count_params(_cfg(name)).total == PUBLISHED[name]


@pytest.mark.parametrize("name", list(ROUNDED))
def test_parameter_count_rounds_to_the_published_size(name):
    total, unit = ROUNDED[name]
    assert round(count_params(_cfg(name)).total / unit) == total


def test_hand_counts_of_the_families_without_an_exact_published_total():
    """Module shapes from transformers' modeling code, counted by hand."""
    h, v, layers = 4544, 65024, 32  # falcon-7b: fused qkv of 71 + 2 heads of 64, one LayerNorm, tied head
    block = 2 * h + h * (71 + 2) * 64 + h * h + 2 * h * 4 * h
    assert count_params(_cfg("falcon-7b")).total == v * h + layers * block + 2 * h
    h, f, e = 1024, 4096, 512  # opt-350m: 2050 position rows, project_in/out, post-LN (no final norm)
    block = 4 * (h * h + h) + 2 * 2 * h + (h * f + f) + (f * h + h)
    assert count_params(_cfg("opt-350m")).total == 50272 * e + 2050 * h + 2 * e * h + 24 * block


def test_families_read_as_their_own_shapes():
    gemma2, falcon, neox = _cfg("gemma-2-9b"), _cfg("falcon-7b"), _cfg("pythia-160m")
    assert gemma2.mlp == "geglu" and gemma2.post_norms and gemma2.tied_embeddings and gemma2.dh == 256
    assert falcon.kv_heads == 1 and falcon.shared_block_norm and falcon.parallel_residual
    assert not _cfg("falcon-40b").shared_block_norm and _cfg("falcon-40b").kv_heads == 8
    assert neox.rotary_dim == 16 and neox.parallel_residual and not neox.tied_embeddings
    opt = _cfg("opt-350m")
    assert opt.mlp == "relu" and opt.embed_width == 512 and not opt.final_norm and opt.position_offset == 2
    lite = _cfg("deepseek-v2-lite")
    assert lite.q_lora_rank is None and lite.dense_layers == 1 and lite.shared_expert_d_ff == 2 * 1408
    assert _cfg("deepseek-v3").router_bias and not lite.router_bias


def test_mla_caches_the_compressed_latent_on_every_tp_rank():
    v3 = _cfg("deepseek-v3")
    assert v3.kv_cache_width(1) == v3.kv_cache_width(8) == 512 + 64  # DeepSeek-V2 §2.1.2: (d_c + d_h^R) per layer
    mistral = _cfg("mistral-7b")
    assert mistral.kv_cache_width(1) == 2 * 8 * 128 and mistral.kv_cache_width(4) == 2 * 2 * 128


def test_mla_forward_flops_by_hand():
    """DeepSeek-V2-Lite, one token row of T: q (h -> 16·192), kv down (h -> 512+64), kv up (512 -> 16·256),
    scores 2T²·16·192, values 2T²·16·128, out (16·128 -> h)."""
    t, h = 64, 2048
    out = forward_breakdown(_cfg("deepseek-v2-lite"), t)
    assert out["attention/kqv"] == 2 * t * (h * 16 * 192 + h * 576 + 512 * 16 * 256)
    assert out["attention/scores"] == 2 * t * t * 16 * 192
    assert out["attention/reduce"] == 2 * t * t * 16 * 128
    assert out["attention/proj"] == 2 * t * 16 * 128 * h
    moe_mlp = 2 * t * h * (6 * 3 * 1408 + 3 * 2816 + 64)  # 6 routed + the shared expert (2 x 1408) + router
    assert out["mlp"] == moe_mlp
    assert out["dense_block"] - out["attention"] == 2 * t * h * 3 * 10944
    assert out["transformer"] == out["dense_block"] + 26 * out["block"]


@pytest.mark.parametrize("name", [*PUBLISHED, *ROUNDED])
@pytest.mark.parametrize("recompute", ["none", "full"])
def test_op_graph_flops_equal_the_analytic_count(name, recompute):
    cfg = _cfg(name)
    setup = TrainSetup(batch_size=2, seq_len=64, recompute=recompute, flash_attention=recompute == "none")
    graph = step_graph(cfg, setup)
    expected = step_flops(cfg, 2, 64, recompute)
    assert graph.flops() == expected.total
    assert graph.flops(include_recompute=True) == expected.hardware_total


@pytest.mark.parametrize("name", [*PUBLISHED, *ROUNDED])
def test_optimizer_visits_every_parameter(name):
    cfg = _cfg(name)
    graph = step_graph(cfg, TrainSetup(batch_size=1, seq_len=16))
    assert sum(op.shape[0] for op in graph.per_step if op.kernel == "adamw") == count_params(cfg).total


def test_dense_first_layers_have_their_own_gemms():
    cfg = _cfg("deepseek-v2-lite")
    graph = step_graph(cfg, TrainSetup(batch_size=1, seq_len=32))
    gemms = {op.name: op.shape for op in graph.micro_batch if op.kernel == "gemm" and op.phase == "forward"}
    assert gemms["block0.mlp.fc.fwd"] == (32, 10944, 2048)  # dense layer 0: intermediate_size
    assert "block0.mlp.router.fwd" not in gemms
    assert gemms["block1.mlp0.fc.fwd"] == (32, 1408, 2048) and gemms["block1.mlp_shared.fc.fwd"] == (32, 2816, 2048)
    assert gemms["block1.mlp.router.fwd"] == (32, 64, 2048)
    assert gemms["block1.attn.kv_down.fwd"] == (32, 576, 2048) and gemms["block1.attn.q.fwd"] == (32, 3072, 2048)


def test_norm_layouts_follow_the_family():
    def norms(name):
        graph = step_graph(_cfg(name), TrainSetup(batch_size=1, seq_len=16))
        return sum(1 for op in graph.micro_batch if op.phase == "forward" and op.name.startswith("block0.")
                   and op.kernel in ("layernorm", "rmsnorm"))
    assert (norms("falcon-7b"), norms("falcon-40b"), norms("llama-2-7b"), norms("gemma-2-9b")) == (1, 2, 2, 4)
    assert norms("deepseek-v3") == 2 + 2  # block norms + MLA's q and kv latent norms


@pytest.mark.parametrize("kind", ["bert", "t5", "mamba", ""])
def test_an_unknown_model_type_is_one_line_naming_it_and_the_families(tmp_path, kind):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_type": kind, "hidden_size": 768, "num_hidden_layers": 12,
                                "num_attention_heads": 12, "vocab_size": 30522, "intermediate_size": 3072}))
    with pytest.raises(ConfigError) as info:
        from_hf_config(path)
    message = str(info.value)
    assert (repr(kind) if kind else "no model_type") in message and "\n" not in message
    assert all(family in message for family in ("gpt2", "llama", "falcon", "opt", "deepseek_v3"))
    assert set(READERS) >= {"gpt2", "llama", "mistral", "qwen2", "gemma", "gemma2", "gpt_neox", "falcon", "opt",
                            "phi3", "mixtral", "qwen2_moe", "deepseek_v2", "deepseek_v3"}


@pytest.mark.parametrize("name,change,feature", [
    ("falcon-7b", {"alibi": True}, "ALiBi"),
    ("opt-125m", {"layer_norm_elementwise_affine": False}, "LayerNorms without weights"),
    ("qwen1.5-moe-a2.7b", {"decoder_sparse_step": 2}, "dense layers between MoE ones"),
    ("deepseek-v2-lite", {"moe_layer_freq": 2}, "moe_layer_freq"),
    ("llama-2-7b", {"hidden_act": "relu"}, "activation 'relu'"),
])
def test_a_feature_that_cannot_be_represented_is_named(tmp_path, name, change, feature):
    raw = {**json.loads((DATA / f"{name}.config.json").read_text()), **change}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match=feature) as info:
        from_hf_config(path)
    assert "\n" not in str(info.value)


def test_the_old_failures_are_read():
    """Issue 15: Falcon failed on a missing field, DeepSeek on "top-k (6) cannot exceed the experts (1)"."""
    assert count_params(_cfg("falcon-7b")).total > 0
    assert _cfg("deepseek-v2-lite").n_experts == 64 and _cfg("deepseek-v2-lite").top_k == 6


@pytest.mark.parametrize("name,feature", [
    ("falcon-7b", "is not a family the profiler builds (mfutop estimate reads it)"),
    ("gemma-2-9b", "is not a family the profiler builds"),
    ("deepseek-v3", "is not a family the profiler builds"),
])
def test_the_profiler_gate_refuses_what_it_cannot_build_and_estimate_reads_it(name, feature):
    path = DATA / f"{name}.config.json"
    with pytest.raises(ConfigError, match=re.escape(feature)):
        load_hf_config(path)
    assert read_hf_model(path).cfg == from_hf_config(path)


def test_the_gate_builds_gemma_as_swiglu_with_a_note():
    hf = load_hf_config(DATA / "gemma-2b.config.json")
    assert hf.cfg.mlp == "swiglu" and count_params(hf.cfg).total == PUBLISHED["gemma-2b"]
    assert any("gated MLP built as SwiGLU" in n for n in hf.notes)
    neox = load_hf_config(DATA / "pythia-160m.config.json")
    assert not neox.cfg.parallel_residual and neox.cfg.rotary_dim is None
    assert count_params(neox.cfg).total == PUBLISHED["pythia-160m"]


def test_estimate_notes_say_what_is_not_counted():
    notes = " ".join(read_hf_model(DATA / "deepseek-v3.config.json").notes)
    assert "multi-token-prediction" in notes
    assert "soft-capping" in " ".join(read_hf_model(DATA / "gemma-2-9b.config.json").notes)


def _estimate(*args: str):
    from typer.testing import CliRunner

    from tui.cli import app
    return CliRunner().invoke(app, ["estimate", *args, "--json"])


def test_estimate_of_an_unknown_model_type_is_one_line_and_exit_2(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_type": "bert", "hidden_size": 768, "num_hidden_layers": 12}))
    result = _estimate("--hf-config", str(path))
    assert result.exit_code == 2
    assert "bert" in result.stderr and len(result.stderr.strip().splitlines()) == 1 and not result.stdout.strip()


def test_estimate_of_a_family_only_the_estimator_reads(monkeypatch):
    """The estimate pipeline (memory, time, inference) takes the new fields: read as estimate will read it."""
    from estimator import model_choice
    monkeypatch.setattr(model_choice, "load_hf_config", read_hf_model)
    result = _estimate("--hf-config", str(DATA / "deepseek-v2-lite.config.json"), "--seq-len", "512")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["params"]["total"] == PUBLISHED["deepseek-v2-lite"]


def test_estimate_reads_a_falcon_config_json():
    result = _estimate("--hf-config", str(DATA / "falcon-7b.config.json"), "--seq-len", "512")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["params"]["total"] == count_params(_cfg("falcon-7b")).total
