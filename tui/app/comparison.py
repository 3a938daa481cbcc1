"""Prediction beside measurement: which rows the comparison table shows and how.

Each row pairs a key of the estimator's prediction (``mfutop estimate --json``)
with a key of the profiler's ``measured`` summary (``mfutop profile --json``);
the error is (predicted - measured) / measured, signed, so +10 % means the
estimator over-predicted. Pure Python: the widget only draws these rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from estimator.units import fmt_bytes, fmt_flops, fmt_pct, fmt_seconds, fmt_si
from tui.app.run_state import RunState, lookup

GOOD_ERROR = 0.10  # |error| below this: green
FAIR_ERROR = 0.25  # below this: yellow; above: red


def fmt_count(value: float | None) -> str:
    return "n/a" if value is None else f"{int(value):,}"


def fmt_tokens(value: float | None) -> str:
    return fmt_si(value, " tok/s").replace("  ", " ")


def fmt_batch(value: float | None) -> str:
    return "n/a" if value is None else str(int(value))


@dataclass(frozen=True)
class RowSpec:
    key: str
    label: str
    predicted_key: str  # in the prediction dict (dotted)
    measured_key: str  # in RunState.measured()
    fmt: Callable[[Any], str]
    note: str = ""  # what the measured column is, where it is not obvious


ROWS: tuple[RowSpec, ...] = (
    RowSpec("params", "Parameters", "params.total", "params", fmt_count),
    RowSpec("flops_analytic", "FLOPs/step analytic", "flops.total", "flops_analytic", fmt_flops,
            "profiler's analytic count at the measured batch"),
    RowSpec("flops_thop", "FLOPs/step thop", "flops.total", "flops_thop", fmt_flops,
            "thop misses q@k, att@v, SDPA, embeddings, GELU"),
    RowSpec("flops_counter", "FLOPs/step FlopCounter", "flops.total", "flops_counter", fmt_flops,
            "torch FlopCounterMode"),
    RowSpec("peak_memory", "Peak memory", "memory.total", "peak_memory_bytes", fmt_bytes),
    RowSpec("max_batch", "Max batch", "max_batch_size", "max_batch_size", fmt_batch),
    RowSpec("step_time", "Step time", "step.time_s", "step_time_s", fmt_seconds),
    RowSpec("tokens_per_s", "Tokens/s", "step.tokens_per_s", "tokens_per_s", fmt_tokens),
    RowSpec("mfu", "MFU", "step.mfu", "mfu", fmt_pct),
)


@dataclass(frozen=True)
class ComparisonRow:
    spec: RowSpec
    predicted: Any
    measured: Any
    error: float | None
    measured_note: str = ""  # replaces the measured cell, e.g. "≥ 32 (token cap)"

    @property
    def predicted_text(self) -> str:
        return _cell(self.predicted, self.spec)

    @property
    def measured_text(self) -> str:
        return self.measured_note or _cell(self.measured, self.spec)

    @property
    def error_text(self) -> str:
        return "" if self.error is None else f"{self.error * 100:+.1f} %"

    @property
    def grade(self) -> str:
        """'good' | 'fair' | 'poor' | '' — drives the colour, and a marker that survives NO_COLOR."""
        return error_grade(self.error)


def _cell(value: Any, spec: RowSpec) -> str:
    """'…' until known; 'n/a' for a non-number (e.g. the estimator's "MFU n/a (unknown peak)")."""
    if value is None:
        return "…"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "n/a"
    return spec.fmt(value)


def relative_error(predicted: Any, measured: Any) -> float | None:
    if not isinstance(predicted, (int, float)) or not isinstance(measured, (int, float)):
        return None
    if isinstance(predicted, bool) or isinstance(measured, bool) or measured == 0:
        return None
    return (float(predicted) - float(measured)) / float(measured)


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
    measured = state.measured()
    rows = []
    for spec in ROWS:
        predicted = lookup(state.prediction, spec.predicted_key)
        value = measured.get(spec.measured_key)
        note = ""
        if spec.key == "max_batch" and value is None and measured.get("max_batch_floor"):
            # a lower bound is no measurement of the memory limit: no error for it (the search panel says why)
            note = f"≥ {measured['max_batch_floor']}"
        elif value is None and state.done:  # the run is over and did not measure this
            note = "not searched" if spec.key == "max_batch" and not state.probes else "—"
        rows.append(ComparisonRow(spec, predicted, value, relative_error(predicted, value), note))
    return rows
