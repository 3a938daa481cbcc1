"""Which row a short ``--gpu`` alias picked: a silent pick of one A100 of four would mislead.

One note for every command that takes ``--gpu``: a line on stderr in rich mode, a
``gpu_note`` field in ``--json``. Pure Python, no torch.
"""

from __future__ import annotations

import sys
from typing import TextIO

from estimator.hardware import get_gpu, gpu_alternatives
from estimator.safe_text import clean_text


def gpu_note(name: str) -> str | None:
    """'a100 -> NVIDIA A100 SXM4 80GB (also: a100-sxm-40gb, ...; pass one to choose)', or None when
    ``name`` means one row only. An unknown name raises ``get_gpu``'s ConfigError."""
    others = gpu_alternatives(name)
    if not others:
        return None
    typed = clean_text(str(name).strip(), 80)  # the user's text, echoed: no escapes reach the terminal
    return f"{typed} -> {get_gpu(name).name} (also: {', '.join(s.key for s in others)}; pass one to choose)"


def print_gpu_note(note: str | None, stream: TextIO | None = None) -> None:
    """The note on stderr (stdout stays the command's output), nothing when there is none."""
    if note:
        (stream or sys.stderr).write(f"mfutop: {note}\n")
