"""Prediction beside measurement, as the app's comparison table draws it.

The rows themselves (which quantities, the lookup, the error, the batch they
are compared at) come from ``profiler.compare``: once a run has finished, the
table shows its summary's own ``compare`` rows; while it runs, the same
function builds them from the events so far. This module only formats them.
Pure Python: the widget only draws these rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from estimator.units import fmt_bytes, fmt_flops, fmt_pct, fmt_seconds, fmt_si
from profiler.compare import ROW_BY_KEY, ROWS, Row, compare_rows
from tui.app.run_state import RunState

GOOD_ERROR = 0.10  # |error| below this: green
FAIR_ERROR = 0.25  # below this: yellow; above: red


def fmt_count(value: float | None) -> str:
    return "n/a" if value is None else f"{int(value):,}"


def fmt_tokens(value: float | None) -> str:
    return fmt_si(value, " tok/s").replace("  ", " ")


def fmt_batch(value: float | None) -> str:
    return "n/a" if value is None else str(int(value))


FORMATS: dict[str, Callable[[Any], str]] = {
    "count": fmt_count, "flops": fmt_flops, "bytes": fmt_bytes, "batch": fmt_batch, "seconds": fmt_seconds,
    "tokens_per_s": fmt_tokens, "fraction": fmt_pct,
}


def format_value(value: Any, unit: str) -> str:
    """'…' until known; 'n/a' for a non-number (e.g. the estimator's "MFU n/a (unknown peak)")."""
    if value is None:
        return "…"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "n/a"
    return FORMATS[unit](value)


@dataclass(frozen=True)
class ComparisonRow:
    spec: Row
    predicted: Any
    measured: Any
    error: float | None
    measured_note: str = ""  # replaces the measured cell, e.g. "≥ 32 (token cap)"

    @property
    def predicted_text(self) -> str:
        return format_value(self.predicted, self.spec.unit)

    @property
    def measured_text(self) -> str:
        return self.measured_note or format_value(self.measured, self.spec.unit)

    @property
    def error_text(self) -> str:
        """A small miss as a signed percentage; a large one as the ratio predicted / measured, which reads
        the same both ways ("0.23×" for step time is "4.35×" for tokens/s, not "-77 %" beside "+335 %")."""
        text = change_text(self.error)
        return f"{text} conv." if text and self.spec.kind == "convention" else text

    @property
    def grade(self) -> str:
        """'good' | 'fair' | 'poor' | '' — drives the colour, and a marker that survives NO_COLOR.
        A counting convention (thop, FlopCounterMode) is information, not a prediction: never graded."""
        return "" if self.spec.kind == "convention" else error_grade(self.error)


def change_text(change: float | None) -> str:
    """(a - b) / b as a signed percentage while small, beyond ±25 % as the ratio a / b ('' when unknown)."""
    if change is None:
        return ""
    return f"{change * 100:+.1f} %" if abs(change) < FAIR_ERROR else f"{1 + change:.2f}×"


def error_grade(error: float | None) -> str:
    if error is None:
        return ""
    size = abs(error)
    if size < GOOD_ERROR:
        return "good"
    if size < FAIR_ERROR:
        return "fair"
    return "poor"


def comparison_rows(state: RunState) -> list[ComparisonRow]:
    """The table's rows: the finished summary's own rows, else built from the events so far."""
    measured = state.measured()
    rows = (state.summary or {}).get("compare")
    if not isinstance(rows, list) or len(rows) != len(ROWS):
        rows = compare_rows(state.prediction, measured)
    out = []
    for row in rows:
        spec = ROW_BY_KEY.get(row.get("key")) if isinstance(row, dict) else None
        if spec is None:
            continue
        value = row.get("measured")
        note = ""
        if spec.key == "max_batch" and value is None and measured.get("max_batch_floor"):
            # a lower bound is no measurement of the memory limit: no error for it (the search panel says why)
            note = f"≥ {measured['max_batch_floor']}"
        elif value is None and state.done:  # the run is over and did not measure this
            note = "not searched" if spec.key == "max_batch" and not state.probes else "—"
        out.append(ComparisonRow(spec, row.get("predicted"), value, row.get("error"), note))
    return out

