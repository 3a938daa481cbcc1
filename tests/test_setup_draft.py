"""The setup form's draft: a local config.json is profiled as that architecture, a bad one flagged inline."""

from __future__ import annotations

import json

from estimator.hf_config import load_hf_config
from estimator.params import count_params
from profiler.run_config import RunConfig
from tui.app.setup_draft import SetupDraft, check_draft

LLAMA = {"model_type": "llama", "vocab_size": 512, "max_position_embeddings": 256, "hidden_size": 64,
         "intermediate_size": 172, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2}


def test_a_config_json_in_the_form_is_the_model_that_runs(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(LLAMA))
    config, errors = check_draft(SetupDraft(hf_config=str(path)), RunConfig(device="cpu"))
    assert errors == {} and config.model == load_hf_config(path).cfg
    assert (config.model.n_layers, config.model.n_kv_heads, config.model.mlp) == (2, 2, "swiglu")
    # untied embeddings (2 x 512 x 64); per layer q,o 64x64, k,v 64x32, SwiGLU 3 x 64x172, two norms; final norm
    assert count_params(config.model).total == 2 * 512 * 64 + 2 * (2 * 64 * 64 + 2 * 64 * 32 + 3 * 64 * 172 + 2 * 64) + 64


def test_a_bad_config_json_is_flagged_on_its_own_field(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_type": "bert", "hidden_size": 64}))
    config, errors = check_draft(SetupDraft(hf_config=str(path)), RunConfig(device="cpu"))
    assert config is None and list(errors) == ["hf_config"]
    missing, errors = check_draft(SetupDraft(hf_config=str(tmp_path / "nope.json")), RunConfig(device="cpu"))
    assert missing is None and "hf_config" in errors
