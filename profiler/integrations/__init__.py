"""Trainer adapters over ``profiler.Tracker``; each imports its trainer only when you import it.

- ``profiler.integrations.hf_trainer.MfutopCallback``: a Hugging Face ``TrainerCallback``.
- ``profiler.integrations.lightning.MfutopCallback``: a Lightning ``Callback``.

Both write the ``mfutop profile`` event stream to ``out`` (watch it live with
``mfutop replay --follow run.jsonl``) and keep the Tracker as ``.tracker``.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from estimator.errors import ConfigError


def model_config_of(model: Any):
    """(ModelConfig, notes) from a Hugging Face model's own ``.config``, or (None, [why not])."""
    hf_config = getattr(model, "config", None)
    to_dict = getattr(hf_config, "to_dict", None)
    if to_dict is None:
        return None, ["the model has no Hugging Face config: FLOPs counted with FlopCounterMode"]
    from estimator.hf_config import load_hf_config

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "config.json"
        path.write_text(json.dumps(to_dict(), default=str))
        try:
            hf = load_hf_config(path)
        except ConfigError as exc:
            return None, [f"no prediction for the model's config ({exc}): FLOPs counted with FlopCounterMode"]
    return hf.cfg, list(hf.notes)
