"""The profiled GPT: exact parameter counts for every preset, switches, causality."""

from dataclasses import replace

import pytest
import torch

from estimator.errors import ConfigError
from estimator.params import count_params
from estimator.presets import PRESETS, get_model
from profiler.model import GPT, build_model, param_count

DENSE = [name for name, cfg in PRESETS.items() if not cfg.is_moe]


@pytest.mark.parametrize("name", DENSE)
def test_parameter_count_equals_the_estimator_for_every_dense_preset(name):
    cfg = PRESETS[name]
    model = build_model(cfg, "meta")  # shapes only: LLaMA-70B costs no RAM
    assert param_count(model) == count_params(cfg).total


@pytest.mark.parametrize("name", ["gpt2", "nanogpt-124m", "gpt2-from-scratch", "gpt-tiny"])
def test_padded_vocabulary_is_what_is_built_and_counted(name):
    padded = PRESETS[name].with_vocab_padded(64)
    model = build_model(padded, "meta")
    assert model.lm_head.out_features == padded.vocab_size
    assert param_count(model) == count_params(padded).total
    if name != "gpt-tiny":
        assert padded.vocab_size == 50304


def test_mixture_of_experts_is_built_with_the_estimators_count():
    cfg = get_model("mixtral-8x7b")
    assert param_count(build_model(cfg, "meta")) == count_params(cfg).total == 46_702_792_704

def test_tied_and_untied_heads():
    tied = build_model(get_model("gpt2"), "meta")
    untied = build_model(get_model("gpt2-from-scratch"), "meta")
    assert tied.lm_head.weight is tied.wte.weight
    assert untied.lm_head.weight is not untied.wte.weight


def test_bias_flags_are_honoured():
    nano = build_model(get_model("nanogpt-124m"), "meta")  # bias=False everywhere
    assert all(m.bias is None for m in nano.modules() if isinstance(m, (torch.nn.Linear, torch.nn.LayerNorm)))
    scratch = build_model(get_model("gpt2-from-scratch"), "meta")  # qkv bias off only
    block = scratch.blocks[0]
    assert block.attn.c_attn.bias is None
    assert block.attn.c_proj.bias is not None and block.mlp.c_fc.bias is not None and block.ln_1.bias is not None


def _tiny_llama():
    return replace(get_model("gpt-tiny"), name="tiny-llama", n_heads=4, n_kv_heads=2, d_ff=96, mlp="swiglu",
                   norm="rmsnorm", norm_bias=False, qkv_bias=False, proj_bias=False, mlp_bias=False,
                   tied_embeddings=False, position="rope")


@pytest.mark.parametrize("cfg", [get_model("gpt-tiny"), _tiny_llama()], ids=["gpt2-style", "llama-style"])
def test_sdpa_and_explicit_attention_agree(cfg):
    torch.manual_seed(0)
    model = GPT(cfg).eval()
    idx = torch.randint(0, cfg.vocab_size, (2, 32))
    with torch.no_grad():
        fast = model(idx)
        model.set_attention("explicit")
        slow = model(idx)
    assert fast.shape == (2, 32, cfg.vocab_size)
    torch.testing.assert_close(fast, slow, rtol=1e-4, atol=1e-5)
    assert param_count(model) == count_params(cfg).total


def test_attention_is_causal():
    torch.manual_seed(0)
    cfg = get_model("gpt-tiny")
    model = GPT(cfg, attention="explicit").eval()
    idx = torch.randint(0, cfg.vocab_size, (1, 16))
    changed = idx.clone()
    changed[0, 10] = (idx[0, 10] + 1) % cfg.vocab_size
    with torch.no_grad():
        a, b = model(idx), model(changed)
    torch.testing.assert_close(a[:, :10], b[:, :10])
    assert not torch.allclose(a[:, 10:], b[:, 10:])


def test_loss_with_targets_is_cross_entropy_near_log_vocab_at_init():
    torch.manual_seed(0)
    cfg = get_model("gpt-tiny")
    model = GPT(cfg)
    idx = torch.randint(0, cfg.vocab_size, (2, 64))
    targets = torch.randint(0, cfg.vocab_size, (2, 64))  # not idx: a tied head favours the input token
    loss = model(idx, targets)
    assert loss.ndim == 0
    assert abs(loss.item() - torch.log(torch.tensor(float(cfg.vocab_size))).item()) < 0.5


def test_sequence_longer_than_context_is_a_config_error():
    cfg = get_model("gpt-tiny")
    with pytest.raises(ConfigError, match="longer than the context"):
        GPT(cfg)(torch.zeros((1, cfg.context_length + 1), dtype=torch.long))


def test_rope_rotates_each_pair_by_its_angle_and_both_forms_agree(monkeypatch):
    """apply_rope's complex multiply (eager) and its real form (under torch.compile) are one rotation:
    position 0 unchanged, each pair's length kept, the angle t·θ_i."""
    import profiler.model as pm

    table = pm.rope_tables(8, 16)
    x = torch.randn(2, 3, 16, 8)
    eager = pm.apply_rope(x, table)
    monkeypatch.setattr(pm, "_compiling", lambda: True)
    real = pm.apply_rope(x, table)
    assert torch.allclose(eager, real, atol=1e-6)
    assert torch.allclose(eager[:, :, 0], x[:, :, 0], atol=1e-6)
    pairs_in, pairs_out = x.reshape(2, 3, 16, 4, 2), eager.reshape(2, 3, 16, 4, 2)
    assert torch.allclose(pairs_in.norm(dim=-1), pairs_out.norm(dim=-1), atol=1e-5)
    theta = 1.0 / 10000 ** (torch.arange(0, 8, 2).float() / 8)
    angle = torch.atan2(pairs_out[0, 0, 5, :, 1], pairs_out[0, 0, 5, :, 0]) - \
        torch.atan2(pairs_in[0, 0, 5, :, 1], pairs_in[0, 0, 5, :, 0])
    assert torch.allclose(torch.remainder(angle - 5 * theta + torch.pi, 2 * torch.pi) - torch.pi,
                          torch.zeros(4), atol=1e-4)
    assert pm.apply_rope(x.bfloat16(), table).dtype == torch.bfloat16
