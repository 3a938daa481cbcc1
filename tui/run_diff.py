"""Two recorded runs side by side: what differs in their setup, then every figure, predicted and measured.

Pure Python (no torch, no Textual): ``mfutop compare a.jsonl b.jsonl`` prints it, ``--json`` returns it.
Each run is folded from its events exactly as the app folds them (``tui.app.run_state.RunState``), so a
recording cut short still compares on the steps it holds. The rows are ``profiler.compare.ROWS``: the
same quantities, keys and units as every other comparison.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from profiler.compare import ROWS, lookup, relative_error
from tui.app.comparison import format_value
from tui.app.run_state import RunState

SETUP_KEYS = ("model", "torch_device", "precision_effective", "batch_size", "seq_len", "attention", "optimizer_impl",
              "compile", "fused_adamw", "vocab_size_padded", "threads", "peak_dtype", "memory_limit_bytes", "nproc",
              "strategy")


def fold(events) -> RunState:
    state = RunState()
    for event in events:
        state.apply(event)
    return state


def run_side(path: Path, state: RunState) -> dict[str, Any]:
    """One run's setup and figures, under the summary's key names."""
    summary = state.summary or {}
    config = dict(summary.get("config") or {})
    measured = state.measured()
    if config.get("batch_size") is None:  # searched ("auto"): the batch the run found and measured
        config["batch_size"] = measured.get("batch_size")
    return {
        "path": str(path),
        "status": state.status if state.done else ("incomplete" if state.samples else "empty"),
        "device": (state.device.name if state.device else None),
        "config": {key: config.get(key) for key in SETUP_KEYS if config.get(key) is not None},
        "prediction": state.prediction,
        "measured": measured,
    }


def diff_runs(a_path: Path, a: RunState, b_path: Path, b: RunState) -> dict[str, Any]:
    """The ``mfutop compare --json`` object: setup differences, then each row for both runs with the change."""
    left, right = run_side(a_path, a), run_side(b_path, b)
    keys = sorted(set(left["config"]) | set(right["config"]), key=lambda k: SETUP_KEYS.index(k))
    setup = {key: [left["config"].get(key), right["config"].get(key)] for key in keys
             if left["config"].get(key) != right["config"].get(key)}
    if left["device"] != right["device"]:
        setup["device"] = [left["device"], right["device"]]
    rows = []
    for row in ROWS:
        pa, pb = lookup(left["prediction"], row.predicted_key), lookup(right["prediction"], row.predicted_key)
        ma, mb = left["measured"].get(row.measured_key), right["measured"].get(row.measured_key)
        rows.append({
            "key": row.key, "label": row.label, "unit": row.unit, "kind": row.kind,
            "predicted": [pa, pb], "measured": [ma, mb],
            "predicted_change": relative_error(pb, pa),  # (b - a) / a
            "measured_change": relative_error(mb, ma),
        })
    return {"a": {k: left[k] for k in ("path", "status", "device")},
            "b": {k: right[k] for k in ("path", "status", "device")},
            "setup_differences": setup, "rows": rows}


def difference(a: Any, b: Any) -> float | None:
    """B - A of one figure; None unless both are numbers (unmeasured, or "MFU n/a (unknown peak)")."""
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in (a, b)):
        return None
    return b - a


def delta_text(delta: float | None, unit: str) -> str:
    """B - A in the figure's own unit, signed ('' when unknown); a fraction (MFU) in percentage points,
    so that it never reads like a relative change."""
    if delta is None:
        return ""
    if unit == "fraction":
        return f"{delta * 100:+.1f} pp"
    if delta == 0:
        return "0"
    return ("+" if delta > 0 else "-") + format_value(abs(delta), unit)
