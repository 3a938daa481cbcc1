"""`ComparisonTable`: every prediction beside its measurement and the error, coloured by size."""

from __future__ import annotations

from rich.markup import escape
from rich.text import Text
from textual.widgets import DataTable

from profiler.compare import ROWS
from tui.app.comparison import ComparisonRow, comparison_rows
from tui.app.run_state import RunState
from tui.app.view import StateView
from tui.plain_text import plain_str

GRADE_STYLE = {"good": "green", "fair": "yellow", "poor": "bold red", "": ""}
GRADE_MARK = {"good": "", "fair": " !", "poor": " !!", "": ""}  # the size still reads under NO_COLOR

COLUMNS = (("quantity", "Quantity"), ("predicted", "Predicted"), ("measured", "Measured"), ("error", "Error"))


ERROR_RULE = "error (pred - meas) / meas; beyond ±25 %: pred / meas"


def batches_note(state: RunState) -> str:
    """Which batch each column is at (step figures compare only at the same batch), and whether the
    machine was too busy for the timings to mean much: said beside the red figures, not only in the log."""
    predicted, measured = state.predicted_batch, state.measured().get("batch_size")
    busy = "busy machine: timings read low · " if state.busy_machine else ""
    if predicted and measured and predicted != measured:
        return f"{busy}pred. at batch {predicted}, meas. at batch {measured} · {ERROR_RULE}"
    if measured or predicted:
        return f"{busy}batch {measured or predicted} · {ERROR_RULE}"
    return busy + ERROR_RULE


class ComparisonTable(DataTable, StateView):
    """Rows: parameters, FLOPs (analytic / thop / FlopCounterMode), memory, max batch, step time, tokens/s, MFU."""

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.border_title = "Predicted vs measured"

    def on_mount(self) -> None:
        for key, label in COLUMNS:
            self.add_column(label, key=key)
        for spec in ROWS:
            self.add_row(spec.label, "…", "…", "", key=spec.key)
        self.show(self.app.state)  # type: ignore[attr-defined]

    def show(self, state: RunState) -> None:
        if not self.columns:
            return
        for row in comparison_rows(state):
            self._set_row(row)
        self.border_subtitle = escape(plain_str(batches_note(state)))  # batch sizes come from the recording

    def _set_row(self, row: ComparisonRow) -> None:
        key = row.spec.key
        style = GRADE_STYLE[row.grade]
        cells = (("predicted", Text(row.predicted_text, justify="right")),
                 ("measured", Text(row.measured_text, justify="right")),
                 ("error", Text(row.error_text + GRADE_MARK[row.grade], style=style, justify="right")))
        for column, text in cells:
            shown = self.get_cell(key, column)
            if not (isinstance(shown, Text) and shown.plain == text.plain and shown.style == text.style):
                self.update_cell(key, column, text, update_width=True)  # unchanged cells: no re-layout

    def cell_text(self, row_key: str, column: str) -> str:
        """The plain text of one cell (tests and the tmux check read the table through this)."""
        return str(self.get_cell(row_key, column))
