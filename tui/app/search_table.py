"""`SearchTable`: the batch-size search, one row per probe, and the bracket narrowing."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from estimator.units import fmt_bytes, fmt_seconds
from profiler.events import ProbeResult
from tui.app.run_state import RunState
from tui.app.view import StateView
from tui.plain_text import plain

OUTCOME_STYLE = {"ok": "green", "oom": "red", "gated": "yellow", "cancelled": "dim"}
OUTCOME_TEXT = {"ok": "fits", "oom": "OOM", "gated": "gated", "cancelled": "cancelled"}


def bracket_text(low: int, high: int | None) -> str:
    return f"[{low}, {'∞' if high is None else high})"


class SearchTable(DataTable, StateView):
    """Probes as they arrive: batch, fits / OOM, peak memory, seconds, bracket [low, high)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.border_title = "Batch search"
        self._state: RunState | None = None

    def on_mount(self) -> None:
        for key, label in (("batch", "Batch"), ("result", "Result"), ("peak", "Peak mem"),
                           ("seconds", "Time"), ("bracket", "[low, high)")):
            self.add_column(label, key=key)
        self.show(self.app.state)  # type: ignore[attr-defined]

    def show(self, state: RunState) -> None:
        if not self.columns:
            return
        if state is not self._state:  # a new run: a new state
            self.clear()
            self._state = state
        for index in range(self.row_count, len(state.probes)):
            self.add_row(*self._cells(state.probes[index]), key=str(index))
        if self.row_count:
            self.move_cursor(row=self.row_count - 1, animate=False)
        self.border_subtitle = plain(self._subtitle(state))  # holds the summary's words: never markup

    @staticmethod
    def _cells(probe: ProbeResult) -> tuple:
        outcome = probe.outcome if probe.outcome in OUTCOME_TEXT else ("ok" if probe.fits else "oom")
        return (
            plain(probe.batch_size, justify="right"),
            Text(OUTCOME_TEXT[outcome], style=OUTCOME_STYLE[outcome]),
            Text(fmt_bytes(probe.peak_memory_bytes, 1) if probe.peak_memory_bytes else "—", justify="right"),
            Text(fmt_seconds(probe.seconds), justify="right"),
            plain(bracket_text(probe.low, probe.high)),
        )

    @staticmethod
    def _subtitle(state: RunState) -> str:
        if not state.probes:
            return "fixed batch, no search" if state.samples else "waiting"
        low, high = state.bracket  # type: ignore[misc]
        if not state.search_done:
            return f"bracket {bracket_text(low, high)}"
        measured = state.measured()
        if measured["max_batch_size"]:
            return f"max batch {measured['max_batch_size']} (memory bound)"
        if measured["max_batch_floor"]:
            why = measured["max_batch_limited_by"]
            return f"max batch ≥ {measured['max_batch_floor']}" + (f" (search capped: {why})" if why else
                                                                    " (no failing batch found)")
        return "nothing fits"
