"""`LiveCharts`: tokens/s, MFU and memory over steps as sparklines, with the current figures."""

from __future__ import annotations

import math

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Sparkline, Static

from estimator.units import fmt_bytes, fmt_pct, fmt_seconds, fmt_si
from tui.app.run_state import RunState, steps_of
from tui.app.view import StateView, update_if_changed
from tui.plain_text import plain

# (sample field, label, formatter of the latest value)
METRICS = (
    ("tokens_per_s", "tokens/s", lambda v: fmt_si(v, digits=1)),
    ("mfu", "MFU", fmt_pct),
    ("memory_allocated_bytes", "memory", fmt_bytes),
)


def _last(values: list[float]) -> float | None:
    return values[-1] if values else None


def finite(values: list[float]) -> list[float]:
    """The plottable values: a NaN or an infinity in a recording would break the Sparkline's scaling."""
    return [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]


class LiveCharts(Vertical, StateView):
    """One row per metric: name and latest value on the left, the series over steps on the right."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.border_title = "Live"

    def compose(self) -> ComposeResult:
        yield Static("", id="live-steps", classes="live-steps")
        for field, label, _ in METRICS:
            with Horizontal(classes="metric"):
                yield Static(label, id=f"label-{field}", classes="metric-label")
                yield Sparkline([], id=f"spark-{field}")

    def on_mount(self) -> None:
        self.show(self.app.state)  # type: ignore[attr-defined]

    def show(self, state: RunState) -> None:
        for field, label, fmt in METRICS:
            series = finite(state.series(field))
            latest = _last(series)
            if latest is not None:
                value = fmt(latest)
            elif field == "mfu" and state.samples:
                value = "n/a"  # unknown peak: never 0 %
            else:
                value = "…"
            text = f"{label:<9}{value:>11}"
            update_if_changed(self.query_one(f"#label-{field}", Static), plain(text), layout=False)  # fixed size
            self.query_one(f"#spark-{field}", Sparkline).data = series
        update_if_changed(self.query_one("#live-steps", Static), plain(self._steps_line(state)), layout=False)

    @staticmethod
    def _steps_line(state: RunState) -> str:
        if not state.samples:
            return "no steps yet"
        last = state.samples[-1]
        timed = len(state.timed_samples)
        phase = "warm-up" if last.warmup else f"step {timed}{steps_of(timed, state.expected_steps)}"
        peak = max(s.memory_peak_bytes for s in state.samples)
        return (f"{phase} · batch {last.batch_size} · {fmt_seconds(last.step_time_s)}"
                f" · loss {last.loss:.3f} · peak {fmt_bytes(peak)}")
