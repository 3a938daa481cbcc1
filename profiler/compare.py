"""Predicted beside measured: the one home of the comparison's rows, lookup, error and statistics.

Every place that shows "predicted, measured, error" — ``mfutop profile``'s
summary and table, the DDP summary, the app's comparison table, recorded runs —
builds its rows here, so they cannot disagree. Torch-free.

- ``ROWS``: which quantities are compared, the prediction's key path and the
  measured key of each, and whether the row is a prediction (graded by its
  error) or a counting convention shown for information (thop, FlopCounterMode).
- Relative error = (predicted - measured) / measured, signed: +0.25 means the
  prediction was 25 % high. None where either side is unknown or not a number.
- A comparison is made at one batch size and says which: figures that scale
  with the batch get no error when the prediction is for another batch.
- Steady state: median of the timed steps (warm-up excluded), the
  inter-quartile range as the spread.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any, Sequence

from estimator.mfu import mfu

FLOPS_CONVENTION = ("matmul FLOPs, full TxT attention (nanoGPT/PaLM), backward = 2 x forward; "
                    "mfu_causal halves attention for the causal mask (llm.c/Megatron)")


@dataclass(frozen=True)
class Row:
    key: str  # stable row id (the app's table row key)
    label: str
    predicted_key: str  # dotted path in the prediction (``mfutop estimate --json``)
    measured_key: str  # key in the summary's ``measured`` object
    unit: str  # count | flops | bytes | batch | seconds | tokens_per_s | fraction
    kind: str = "prediction"  # "prediction": graded by its error; "convention": information only
    per_batch: bool = True  # the figure depends on the batch size
    note: str = ""


ROWS: tuple[Row, ...] = (
    Row("params", "Parameters", "params.total", "params", "count", per_batch=False),
    Row("flops_analytic", "FLOPs/step analytic", "flops.total", "flops_analytic", "flops",
        note="profiler's analytic count at the measured batch"),
    Row("flops_thop", "FLOPs/step thop", "flops.total", "flops_thop", "flops", kind="convention",
        note="thop misses q@k, att@v, SDPA, embeddings, GELU"),
    Row("flops_counter", "FLOPs/step FlopCounter", "flops.total", "flops_counter", "flops", kind="convention",
        note="torch FlopCounterMode"),
    Row("peak_memory", "Peak memory", "memory.total", "peak_memory_bytes", "bytes"),
    Row("max_batch", "Max batch", "max_batch_size", "max_batch_size", "batch", per_batch=False),
    Row("step_time", "Step time", "step.time_s", "step_time_s", "seconds"),
    Row("tokens_per_s", "Tokens/s", "step.tokens_per_s", "tokens_per_s", "tokens_per_s"),
    Row("mfu", "MFU", "step.mfu", "mfu", "fraction"),
)
ROW_BY_KEY = {row.key: row for row in ROWS}


def lookup(mapping: Any, dotted: str) -> Any:
    """``lookup(pred, "step.mfu")``: nested keys first, then a flat dotted key; None if absent."""
    if not isinstance(mapping, dict):
        return None
    node: Any = mapping
    for part in dotted.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        else:
            node = None
            break
    if node is None and dotted in mapping:
        node = mapping[dotted]
    return node


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def relative_error(predicted: Any, measured: Any) -> float | None:
    """(predicted - measured) / measured; None unless both are finite numbers and measured is not 0."""
    p, m = _number(predicted), _number(measured)
    if p is None or m is None or m == 0:
        return None
    return (p - m) / m


# ----------------------------------------------------------------- steady state

@dataclass(frozen=True)
class SteadyState:
    n: int
    median: float
    q1: float
    q3: float
    minimum: float
    maximum: float

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1

    @property
    def relative_spread(self) -> float:
        return self.iqr / self.median if self.median > 0 else float("inf")

    def is_steady(self, tolerance: float = 0.10) -> bool:
        return self.n >= 3 and self.relative_spread <= tolerance

    def to_dict(self) -> dict:
        return {
            "n": self.n, "median": self.median, "q1": self.q1, "q3": self.q3, "iqr": self.iqr,
            "relative_spread": self.relative_spread, "min": self.minimum, "max": self.maximum,
        }


def steady_state(samples: Sequence[float]) -> SteadyState:
    """Median and quartiles (inclusive method: defined for n >= 1)."""
    if not samples:
        raise ValueError("no timed samples")
    ordered = sorted(samples)
    if len(ordered) == 1:
        q1 = q3 = ordered[0]
    else:
        q1, _, q3 = statistics.quantiles(ordered, n=4, method="inclusive")
    return SteadyState(n=len(ordered), median=statistics.median(ordered), q1=q1, q3=q3,
                       minimum=ordered[0], maximum=ordered[-1])


def timed_figures(step_times: Sequence[float], tokens_per_step: int | None, flops_per_step: float | None,
                  peak_flops: float | None, flops_causal: float | None = None) -> dict[str, Any]:
    """The measured step figures from the timed steps' times: one statistic for every caller.

    ``tokens_per_step`` and ``flops_per_step`` are for everything the step time
    covers (all ranks' tokens for a distributed job, one rank's FLOPs for MFU per GPU).
    """
    out: dict[str, Any] = {
        "step_time_s": None, "step_time_iqr_s": None, "step_time_relative_spread": None, "steady": None,
        "tokens_per_s": None, "achieved_flops_per_s": None, "mfu": None, "mfu_causal": None,
    }
    times = [t for t in step_times if _number(t) is not None and t > 0]
    if not times:
        return out
    ss = steady_state(times)
    out.update(
        step_time_s=ss.median, step_time_iqr_s=ss.iqr, step_time_relative_spread=ss.relative_spread,
        steady=ss.is_steady(),
        tokens_per_s=tokens_per_step / ss.median if tokens_per_step else None,
        achieved_flops_per_s=flops_per_step / ss.median if flops_per_step else None,
        mfu=mfu(flops_per_step, ss.median, peak_flops),
        mfu_causal=mfu(flops_causal, ss.median, peak_flops),
    )
    return out


# ----------------------------------------------------------------- rows

def prediction_batch(prediction: Any) -> int | None:
    """The micro-batch a prediction's step figures are for."""
    return lookup(prediction, "setup.batch_size") or lookup(prediction, "flops.batch_size")


def compare_rows(prediction: Any, measured: dict[str, Any], *,
                 max_batch_prediction: Any = None) -> list[dict[str, Any]]:
    """One dict per ``ROWS`` entry: predicted, measured, error, at the measured batch.

    ``max_batch_prediction`` is the prediction whose ``max_batch_size`` the
    search was seeded with (the first one of a run); default: ``prediction``.
    A per-batch figure predicted for another batch than the one measured gets no error.
    """
    batch = measured.get("batch_size")
    predicted_batch = prediction_batch(prediction)
    rows = []
    for row in ROWS:
        source = max_batch_prediction if row.key == "max_batch" and max_batch_prediction else prediction
        predicted = lookup(source, row.predicted_key)
        value = measured.get(row.measured_key)
        comparable = not (row.per_batch and batch and predicted_batch and batch != predicted_batch)
        rows.append({
            "key": row.key, "label": row.label, "predicted_key": row.predicted_key, "kind": row.kind,
            "unit": row.unit, "predicted": predicted, "measured": value,
            "error": relative_error(predicted, value) if comparable else None,
            "batch_size": batch, "predicted_batch_size": predicted_batch if row.per_batch else None,
        })
    return rows


def errors_by_key(rows: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    """The summary's ``errors``: each graded prediction's error under its prediction key path."""
    out: dict[str, float | None] = {}
    for row in rows:
        if row.get("kind") == "prediction" and row["predicted_key"] not in out:
            out[row["predicted_key"]] = row["error"]
    return out
