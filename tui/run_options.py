"""CLI values -> a validated ``RunConfig``; shared by `profile`, `search`, `tui` and `remote`.

Everything here raises ConfigError for bad input, so each command fails with one
line before it starts work (or takes the terminal). No torch import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from estimator.errors import ConfigError
from tui.cli_support import parse_batch, parse_memory


def build_run_config(model: Optional[str] = None, device: str = "auto", batch_size: Optional[str] = None,
                     seq_len: Optional[int] = None, steps: int = 20, warmup: Optional[int] = None,
                     precision: str = "bf16-mixed", compile_: bool = False, flash: bool = True,
                     fused_adamw: Optional[bool] = None, pin_memory: bool = True, vocab_pad: int = 1,
                     memory_limit: Optional[str] = None, peak_tflops: Optional[float] = None, seed: int = 0):
    """A validated ``RunConfig`` from CLI values. No model: the device's default (gpt2 GPU, gpt-tiny CPU)."""
    from estimator.presets import get_model
    from profiler.run_config import RunConfig

    return RunConfig(
        model=get_model(model) if model else None, device=device.strip().lower(),
        batch_size=parse_batch(batch_size), seq_len=seq_len, steps=steps, warmup=warmup,
        precision=precision.strip().lower(), compile=compile_, flash_attention=flash, fused_adamw=fused_adamw,
        pin_memory=pin_memory, vocab_pad_multiple=vocab_pad, memory_limit_bytes=parse_memory(memory_limit),
        peak_tflops=peak_tflops, seed=seed,
    )


def check_out_path(out: Optional[Path]) -> Optional[Path]:
    """``--out FILE``: a writable file path in an existing directory, else ConfigError."""
    if out is None:
        return None
    out = Path(out)
    if out.is_dir():
        raise ConfigError(f"--out {out} is a directory; give a file name such as run.jsonl")
    if not out.absolute().parent.is_dir():
        raise ConfigError(f"--out {out}: directory {out.absolute().parent} does not exist")
    return out
