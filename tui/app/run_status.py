"""`RunStatus`: one line that says what the run is doing (searching, step 7/20, finished, failed)."""

from __future__ import annotations

import math

from rich.text import Text
from textual.widgets import Static

from estimator.units import fmt_pct, fmt_si
from tui.app.run_state import RunState, steps_of
from tui.app.view import StateView, update_if_changed
from tui.plain_text import plain

STATUS_STYLE = {
    "idle": "dim", "running": "bold cyan", "cancelling": "bold yellow", "finished": "bold green",
    "cancelled": "bold yellow", "failed": "bold red", "ended": "bold yellow",
}


def status_line(state: RunState, source_label: str = "") -> Text:
    """Status word and what it is doing, e.g. '● running  search [32, 64) · probe 3'."""
    status = state.status
    if status == "idle":
        words = "○ ready — press r to start"
    elif status in ("running", "cancelling"):
        words = f"● {status}  " + _progress(state)
    elif status == "finished":
        words = f"✓ finished  {len(state.timed_samples)} steps" + _headline(state)
    elif status == "cancelled":
        words = f"■ cancelled  kept {len(state.timed_samples)} steps" + _headline(state)
    elif status == "failed":
        words = f"✗ failed  {state.failure.message if state.failure else ''}"
    else:
        words = "■ ended  the source stopped before the run finished"
    text = plain(words, style=STATUS_STYLE.get(status, ""))  # a failure's message is outside data
    if source_label:
        text.append_text(plain(f"   {source_label}", style="dim"))
    return text


def _headline(state: RunState) -> str:
    """' · batch 63 · 126.0 k tok/s · MFU 51.6 %' from the measured figures, where known."""
    measured = state.measured()
    parts = []
    if measured.get("batch_size"):
        parts.append(f"batch {measured['batch_size']}")
    if _number(measured.get("tokens_per_s")):  # a recorded summary may hold anything here
        parts.append(fmt_si(measured["tokens_per_s"], " tok/s", 1).replace("  ", " "))
    if _number(measured.get("mfu")):
        parts.append(f"MFU {fmt_pct(measured['mfu'])}")
    return "".join(f" · {p}" for p in parts)


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _progress(state: RunState) -> str:
    if state.samples:
        last = state.samples[-1]
        if last.warmup:
            return f"warm-up · batch {last.batch_size}"
        of = steps_of(len(state.timed_samples), state.expected_steps)
        return f"step {len(state.timed_samples)}{of} · batch {last.batch_size}"
    if state.probes:
        low, high = state.bracket  # type: ignore[misc]
        return f"batch search [{low}, {'∞' if high is None else high}) · probe {len(state.probes)}"
    if state.device is None:
        return "starting (loading torch, detecting the device)"
    return "building the model, counting FLOPs"


class RunStatus(Static, StateView):
    def __init__(self, source_label: str = "", **kwargs) -> None:
        super().__init__("", **kwargs)
        self._source_label = source_label

    def on_mount(self) -> None:
        self.show(self.app.state)  # type: ignore[attr-defined]

    def show(self, state: RunState) -> None:
        update_if_changed(self, status_line(state, self._source_label), layout=False)  # one line: #status
