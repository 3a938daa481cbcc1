"""The ``mfutop profile --json`` object: prediction, measurement, search, and their relative errors.

``compare`` holds one row per ``profiler.compare.ROWS`` entry (predicted,
measured, error, at the run's batch); ``errors`` keys the graded ones by the
prediction's own key paths (``params.total``, ``flops.total``, ``memory.total``,
``max_batch_size``, ``step.time_s``, ``step.tokens_per_s``, ``step.mfu``).

Memory figures, and what each one is:
- CUDA: ``peak_memory_bytes`` = max over timed steps of
  ``torch.cuda.max_memory_allocated`` (peak stats reset before each step);
  ``memory_reserved_bytes`` = the caching allocator's reserved segments.
- CPU: ``peak_memory_bytes`` = peak live tensor bytes of one tracked step
  (``LiveStorageTracker``: parameters, gradients, AdamW state, activations;
  not kernel scratch space); ``memory_reserved_bytes`` = process RSS.
"""

from __future__ import annotations

from typing import Any

from profiler.compare import FLOPS_CONVENTION, compare_rows, errors_by_key, timed_figures

CALIBRATION_MIN_SHARE = 0.10  # categories under this share of the step are not graded


def _measured(progress) -> dict[str, Any]:
    timed = [s for s in progress.samples if not s.warmup]
    flops = progress.flops
    tokens = progress.batch_size * progress.seq_len if progress.batch_size else None
    out: dict[str, Any] = {
        "params": progress.params,
        "flops_analytic": flops.analytic if flops else None,
        "flops_thop": flops.thop if flops else None,
        "flops_counter": flops.counter if flops else None,
        "batch_size": progress.batch_size,
        "seq_len": progress.seq_len,
        "tokens_per_step": tokens,
        "steps": len(timed),
        "warmup_steps": len(progress.samples) - len(timed),
        **timed_figures([s.step_time_s for s in timed], tokens, flops.analytic if flops else None,
                        progress.peak_flops, flops.analytic_causal if flops else None),
        "flops_convention": FLOPS_CONVENTION,
        "peak_flops": progress.peak_flops, "peak_dtype": progress.peak_dtype,
        "peak_memory_bytes": None, "memory_allocated_bytes": None, "memory_reserved_bytes": None,
        "nvml_used_bytes": None,
        "memory_method": _memory_method(progress),
        "others_cpu_share": getattr(progress, "others_cpu_share", None),
        "loss_first": progress.samples[0].loss if progress.samples else None,
        "loss_last": progress.samples[-1].loss if progress.samples else None,
    }
    if timed:
        out.update(
            memory_allocated_bytes=timed[-1].memory_allocated_bytes,
            memory_reserved_bytes=max(s.memory_reserved_bytes for s in timed),
            nvml_used_bytes=max((s.nvml_used_bytes for s in timed if s.nvml_used_bytes is not None), default=None),
        )
    peaks = [s.memory_peak_bytes for s in progress.samples if s.memory_peak_bytes]
    if progress.device is not None and progress.device.kind == "cpu":
        out["peak_memory_bytes"] = (progress.cpu_memory_step or {}).get("peak_bytes") or max(peaks, default=None)
    else:
        timed_peaks = [s.memory_peak_bytes for s in timed if s.memory_peak_bytes]
        out["peak_memory_bytes"] = max(timed_peaks or peaks, default=None)
    return out


def _memory_method(progress) -> str:
    if progress.device is None:
        return ""
    if progress.device.kind == "cuda":
        return ("torch.cuda.max_memory_allocated per step (peak reset before each); "
                "reserved = torch.cuda.memory_reserved")
    text = ("live tensor bytes of one tracked step (TorchDispatchMode storage tracker: params, grads, AdamW "
            "state, activations; not kernel scratch); reserved = process RSS")
    if progress.config.compile:
        text += "; under the tracker torch.compile runs the step eagerly, so the peak is the eager step's"
    return text


def _search(progress) -> dict[str, Any] | None:
    result = progress.search
    if result is None:
        return None
    return {
        "max_batch_size": result.max_batch_size,
        "predicted_max_batch_size": (progress.first_prediction or {}).get("max_batch_size"),
        "limited_by": progress.search_limited_by,
        "memory_limit_bytes": progress.memory_limit,
        "memory_limit_source": progress.limit_source,
        "cancelled": result.cancelled,
        "priming_step": progress.priming,
        "probes": [
            {"batch_size": p.batch_size, "fits": p.fits, "peak_memory_bytes": p.peak_memory_bytes,
             "seconds": p.seconds, "outcome": p.outcome, "detail": p.detail,
             "baseline_bytes": p.baseline_bytes, "after_bytes": p.after_bytes}  # memory before / after the probe
            for p in result.probes
        ],
    }


def profile_summary(progress) -> dict[str, Any]:
    """The summary of one single-process run (``profiler.run.ProfileProgress``), finished or cancelled."""
    measured = _measured(progress)
    search = _search(progress)
    bounded = search is not None and search["limited_by"] == "memory" and not search["cancelled"]
    measured["max_batch_size"] = search["max_batch_size"] if bounded else None  # else not the memory bound
    rows = compare_rows(progress.prediction, measured, max_batch_prediction=progress.first_prediction)
    breakdown = progress.breakdown
    measured["breakdown"] = breakdown["categories"] if breakdown else None
    resolved = progress.resolved
    config = progress.config.to_dict()
    if resolved is not None:
        config.update(resolved.config_fields())
    return {
        "config": config,
        "device": progress.device_event.to_dict() if progress.device_event else None,
        "prediction": progress.prediction,
        "measured": measured,
        "search": search,
        "errors": errors_by_key(rows),
        "compare": rows,
        "calibration": _calibration(progress.prediction, breakdown),
        "warnings": list(progress.warnings),
    }


def _calibration(prediction: dict | None, breakdown: dict | None) -> dict[str, Any] | None:
    """Per category (>= 10 % of the measured step): predicted vs measured seconds and the error, so a large
    miss points at its cause ("elementwise 2.3x slower than predicted")."""
    from profiler.step_breakdown import PROFILER_METHOD, category_errors

    step = (prediction or {}).get("step") or {}
    if not breakdown or not step.get("categories"):
        return None
    return {"source": step.get("source") or "datasheet", "min_share": CALIBRATION_MIN_SHARE,
            "category_errors": category_errors(step["categories"], breakdown["categories"], CALIBRATION_MIN_SHARE),
            "method": breakdown.get("method") or PROFILER_METHOD}
