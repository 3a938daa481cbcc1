"""The torch side of mfutop. ``from profiler import Tracker`` is the public API for your own training loop.

``Tracker`` is loaded on first use (PEP 562), so ``import profiler`` — and every
torch-free module under it — stays cheap.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Tracker"]


def __getattr__(name: str) -> Any:
    if name == "Tracker":
        from profiler.tracker import Tracker

        return Tracker
    raise AttributeError(f"module 'profiler' has no attribute {name!r}")
