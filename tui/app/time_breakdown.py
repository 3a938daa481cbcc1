"""`TimeBreakdown`: where one step's time goes, by op-graph category, predicted beside measured.

The measured split comes from one extra step with its ops timed (the run's
``StepBreakdown`` event: ``profiler.step_breakdown.measure_breakdown``); the predicted one from the cost model that made the
step-time prediction. A category that is far off names the cause of a miss.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from estimator.ops import CATEGORIES
from tui.app.run_state import RunState
from tui.app.view import StateView

COLUMNS = (("category", "Category"), ("predicted", "Pred."), ("measured", "Meas."), ("share", "%"))


def _ms(seconds: float) -> str:
    """Milliseconds with one decimal: the sidebar is 40 columns wide."""
    return f"{seconds * 1e3:.1f} ms"


def breakdown_rows(state: RunState) -> list[tuple[str, str, str, str]]:
    """(category, predicted, measured, share of the measured step) for every category that took time."""
    event = state.breakdown
    if event is None:
        return []
    measured = {k: v for k, v in event.measured_s.items() if isinstance(v, (int, float))}
    predicted = {k: v for k, v in event.predicted_s.items() if isinstance(v, (int, float))}
    total = sum(measured.values()) or 1.0
    rows = []
    for category in CATEGORIES:
        m, p = measured.get(category, 0.0), predicted.get(category)
        if m <= 0 and not p:
            continue
        rows.append((category, _ms(p) if p is not None else "n/a", _ms(m), f"{m / total:.0%}"))
    return rows


class TimeBreakdown(DataTable, StateView):
    """One row per category: predicted and measured seconds and the measured share."""

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="none", zebra_stripes=True, **kwargs)
        self.border_title = "Where the time goes"

    def on_mount(self) -> None:
        for key, label in COLUMNS:
            self.add_column(label, key=key)
        self.show(self.app.state)  # type: ignore[attr-defined]

    def show(self, state: RunState) -> None:
        if not self.columns:
            return
        rows = breakdown_rows(state)
        if rows == getattr(self, "_shown_rows", None) and self.row_count == len(rows):
            return  # unchanged: clear() and add_row() would lay the screen out again
        self._shown_rows = rows
        self.clear()
        for row in rows:
            self.add_row(*(Text(cell, justify="left" if i == 0 else "right") for i, cell in enumerate(row)))
        self.border_subtitle = "one profiled step" if rows else "after the timed steps"
