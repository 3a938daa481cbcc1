"""The ``RunFinished`` summary of a tracked training loop: the ``mfutop profile --json`` keys, from the Tracker's state.

One small function so the comparison stays where it lives (``profiler.compare``):
``config``, ``device``, ``prediction``, ``measured``, ``errors``, ``compare``
(plus ``search``: None, and ``warnings``). Torch-free.
"""

from __future__ import annotations

import math
from typing import Any

from profiler.compare import FLOPS_CONVENTION, compare_rows, errors_by_key, timed_figures


def tracker_summary(state: Any) -> dict[str, Any]:
    """``state``: a ``profiler.tracker.TrackerState`` (or anything with its attributes)."""
    timed = [s for s in state.samples if not s.warmup]
    measured: dict[str, Any] = {
        "params": state.params,
        "flops_analytic": state.flops_estimator,
        "flops_thop": None,
        "flops_counter": state.flops_counter,
        "flops_per_step": state.flops,
        "flops_source": state.flops_source,
        "batch_size": state.batch_size,
        "seq_len": state.seq_len,
        "tokens_per_step": state.tokens_all_ranks,
        "world_size": state.world_size,
        "steps": len(timed),
        "warmup_steps": len(state.samples) - len(timed),
        **timed_figures([s.step_time_s for s in timed], state.tokens_all_ranks, state.flops, state.peak_flops,
                        state.flops_causal),
        "flops_convention": FLOPS_CONVENTION,
        "peak_flops": state.peak_flops,
        "peak_dtype": state.peak_dtype,
        "peak_memory_bytes": max((s.memory_peak_bytes for s in state.samples if s.memory_peak_bytes), default=None),
        "memory_allocated_bytes": timed[-1].memory_allocated_bytes if timed else None,
        "memory_reserved_bytes": max((s.memory_reserved_bytes for s in timed), default=None),
        "nvml_used_bytes": None,
        "memory_method": state.memory_method,
        "step_time_method": state.time_method,
        "loss_first": _finite(state.samples[0].loss) if state.samples else None,
        "loss_last": _finite(state.samples[-1].loss) if state.samples else None,
        "max_batch_size": None,  # a tracked loop runs the user's batch: no search
    }
    rows = compare_rows(state.prediction, measured)
    return {
        "config": {
            "source": "Tracker", "model": state.model_name, "config_path": state.config_path,
            "batch_size": state.batch_size, "seq_len": state.seq_len, "steps": len(timed),
            "warmup_steps": state.warmup, "precision": state.precision, "precision_effective": state.precision,
            "precision_source": state.precision_source, "torch_device": state.torch_device,
            "tokens_per_step": state.tokens_per_step, "world_size": state.world_size,
        },
        "device": state.device_event.to_dict() if state.device_event is not None else None,
        "prediction": state.prediction,
        "measured": measured,
        "search": None,
        "errors": errors_by_key(rows),
        "compare": rows,
        "warnings": list(state.warnings),
    }


def _finite(value: float) -> float | None:
    """A loss not given (NaN in its StepSample) is null in the summary: a summary holds finite numbers only."""
    return value if math.isfinite(value) else None
