"""`--hf-config` is outside input: every bad file is one ConfigError, never a hang or a traceback."""

from __future__ import annotations

import json
import os
import threading

import pytest

from estimator.errors import ConfigError
from estimator.model_config import LIMITS, MAX_CONFIG_BYTES, ModelConfig, from_hf_config

GPT2 = {"model_type": "gpt2", "vocab_size": 50257, "n_positions": 1024, "n_embd": 768, "n_layer": 12, "n_head": 12}


def write(tmp_path, content: bytes | str, name: str = "config.json"):
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def test_a_real_config_still_reads(tmp_path):
    cfg = from_hf_config(write(tmp_path, json.dumps(GPT2)))
    assert (cfg.vocab_size, cfg.d_model, cfg.n_layers, cfg.context_length) == (50257, 768, 12, 1024)
    assert from_hf_config(tmp_path).d_model == 768  # a directory means its config.json


@pytest.mark.parametrize("content, message", [
    (b'{"a": ' * 5000 + b"1" + b"}" * 5000, "nested too deeply"),
    (b'{"a": ' * 100 + b"1" + b"}" * 100, "nested deeper than 64 levels"),
    ('{"vocab_size": ' + "7" * 5000 + "}", "holds a 5,000-digit integer"),
    (b'{"model_type": "gpt2", "n_embd": 768, "x": "\xff\xfe"}', "is not UTF-8 text (byte 44 is 0xff)"),
    (b'{"n_embd": 768,', "is not valid JSON"),
    (b"[1, 2]", "does not hold a JSON object"),
    (json.dumps({**GPT2, "n_embd": {"a": 1}}), "has a field of the wrong type"),
    (json.dumps({**GPT2, "vocab_size": 10**400}), "vocab_size must be at most 16,777,216"),
    (json.dumps({**GPT2, "n_layer": 1e400}), "n_layers must be a positive integer, got inf"),
    (json.dumps({k: v for k, v in GPT2.items() if k != "n_head"}), "lacks the field 'n_head'"),
])
def test_bad_files_are_one_clear_config_error(tmp_path, content, message):
    with pytest.raises(ConfigError) as info:
        from_hf_config(write(tmp_path, content))
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_a_utf8_bom_is_accepted(tmp_path):
    assert from_hf_config(write(tmp_path, b"\xef\xbb\xbf" + json.dumps(GPT2).encode())).n_heads == 12


def test_an_oversized_file_is_refused_before_reading(tmp_path):
    path = tmp_path / "config.json"
    with open(path, "wb") as stream:
        stream.truncate(MAX_CONFIG_BYTES + 1)  # sparse: no disk used
    with pytest.raises(ConfigError, match="16,777,217 bytes; a config.json is under 16 MiB"):
        from_hf_config(path)


def test_dev_zero_is_refused_without_reading():
    with pytest.raises(ConfigError, match="not a regular file"):
        from_hf_config("/dev/zero")


def test_a_fifo_without_writer_is_refused_without_hanging(tmp_path):
    fifo = tmp_path / "config.json"
    os.mkfifo(fifo)
    outcome: list[BaseException | None] = []

    def read():
        try:
            from_hf_config(fifo)
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - the test wants whatever came out
            outcome.append(exc)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    thread.join(timeout=10)  # a guard against a hang, not a timing assertion
    if thread.is_alive():  # unblock it: open the write end once
        with open(fifo, "wb"):
            pass
        pytest.fail("reading a FIFO hung")
    assert isinstance(outcome[0], ConfigError) and "not a regular file" in str(outcome[0])


def test_missing_file_and_directory_without_config(tmp_path):
    with pytest.raises(ConfigError, match="no config.json at"):
        from_hf_config(tmp_path / "nope.json")
    with pytest.raises(ConfigError, match="no config.json at"):
        from_hf_config(tmp_path)


def test_hostile_model_name_is_stripped_of_escapes(tmp_path):
    name = "\x1b]52;c;cHduZWQ=\x07[@click=app.quit]evil[/]\x1b[2J" + "n" * 500
    cfg = from_hf_config(write(tmp_path, json.dumps({**GPT2, "_name_or_path": name})))
    assert "\x1b" not in cfg.name and "\x07" not in cfg.name
    assert cfg.name.startswith("[@click=app.quit]evil[/]nnn") and len(cfg.name) == 200


@pytest.mark.parametrize("field", sorted(set(LIMITS) - {"n_kv_heads", "top_k", "sliding_window", "head_dim"}))
def test_model_sizes_are_bounded(field):
    base = {"name": "m", "vocab_size": 100, "context_length": 64, "d_model": 64, "n_layers": 2, "n_heads": 4}
    with pytest.raises(ConfigError, match=f"{field} must be at most {LIMITS[field]:,}"):
        ModelConfig(**{**base, field: LIMITS[field] + 1})
    with pytest.raises(ConfigError, match="a 400-digit number"):
        ModelConfig(**{**base, field: 10**399})


def test_an_empty_model_name_is_refused():
    with pytest.raises(ConfigError, match="model name must be a non-empty string"):
        ModelConfig(name="  ", vocab_size=100, context_length=64, d_model=64, n_layers=2, n_heads=4)


@pytest.mark.parametrize("as_json", [False, True])
def test_estimate_shows_a_hostile_config_name_literally(tmp_path, as_json):
    """The repro of issue 13: a config.json's name in `estimate`'s tables is data, not markup."""
    from typer.testing import CliRunner

    from tui.cli import app

    name = "[/][@click=app.quit]x[/]\x1b[2J"
    path = write(tmp_path, json.dumps({**GPT2, "_name_or_path": name}))
    result = CliRunner().invoke(app, ["estimate", "--hf-config", str(path), *(["--json"] if as_json else [])])
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.stdout
    if as_json:
        assert json.loads(result.stdout)["model"]["name"] == "[/][@click=app.quit]x[/]"
    else:
        assert result.stdout.startswith("[/][@click=app.quit]x[/] on NVIDIA H100")
