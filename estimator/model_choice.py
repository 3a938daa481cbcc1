"""Which model a command means: a preset, or a local ``config.json``, with architecture overrides.

One rule for every command that takes a model (``estimate``, ``plan``, ``profile``,
``search``, ``ladder``, ``tui``, ``remote``): ``--model`` and ``--hf-config`` are
exclusive, the override flags (``--layers``, ``--d-model``, ...) replace fields of
whichever was given, and a customised model is renamed so it never passes for
the preset.
"""

from __future__ import annotations

from pathlib import Path

from estimator.errors import ConfigError
from estimator.hf_config import load_hf_config, read_hf_model
from estimator.model_config import ModelConfig
from estimator.presets import customise, get_model

# CLI override flag -> ModelConfig field
SHAPE_FIELDS = {"layers": "n_layers", "d_model": "d_model", "heads": "n_heads", "kv_heads": "n_kv_heads",
                "d_ff": "d_ff", "head_dim": "head_dim", "vocab": "vocab_size", "context": "context_length"}


def choose_model(name: str | None, hf_config: str | Path | None = None, default: str | None = None,
                 buildable: bool = True, **shape: int | None) -> ModelConfig | None:
    """The model asked for; None when nothing was asked and there is no ``default`` (the device decides).

    ``shape`` takes the override flags by their CLI names (``layers=2``, ``d_model=128``...).
    ``buildable=False`` (estimate, plan): a config.json of any family mfutop reads; True (profile and
    the commands that build the model): only the families the profiled GPT builds.
    """
    unknown = set(shape) - set(SHAPE_FIELDS)
    if unknown:
        raise ConfigError(f"unknown architecture override(s): {', '.join(sorted(unknown))}")
    if name is not None and not str(name).strip():
        raise ConfigError("--model is empty: give a preset name such as gpt2, or --hf-config")
    if hf_config is not None and name:
        raise ConfigError("give either --model or --hf-config, not both")
    overrides = {SHAPE_FIELDS[k]: v for k, v in shape.items() if v is not None}
    for flag, value in overrides.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"--{flag.replace('_', '-')} must be a positive integer, got {value!r}")
    if hf_config is not None:
        read = load_hf_config if buildable else read_hf_model  # an unknown family is refused, never read as LLaMA
        base = read(hf_config).cfg
    elif name or default:
        base = get_model(name or default)
    elif overrides:
        raise ConfigError("architecture overrides need a base: give --model or --hf-config")
    else:
        return None
    return customise(base, **overrides)
