"""The ``mfutop profile --json`` object: prediction, measurement, search, and their relative errors.

``errors`` and ``compare`` are keyed by the prediction's own key paths
(``params.total``, ``memory.total``, ``max_batch_size``, ``step.time_s``,
``step.tokens_per_s``, ``step.mfu``) so the app can put predicted, measured
and error on one row. Relative error = (predicted - measured) / measured:
+0.25 means the prediction was 25 % high. None where either side is unknown.

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

from profiler.step_timer import steady_state

COMPARED = (
    # (prediction key path, measured key, label)
    ("params.total", "params", "parameters"),
    ("memory.total", "peak_memory_bytes", "peak memory"),
    ("max_batch_size", "max_batch_size", "max batch"),
    ("step.time_s", "step_time_s", "step time"),
    ("step.tokens_per_s", "tokens_per_s", "tokens/s"),
    ("step.mfu", "mfu", "MFU"),
)


def relative_error(predicted: float | None, measured: float | None) -> float | None:
    if predicted is None or measured is None or measured == 0:
        return None
    return (predicted - measured) / measured


def lookup(obj: dict | None, path: str) -> Any:
    """``lookup(d, "step.time_s")`` -> d["step"]["time_s"], None if any level is missing."""
    for key in path.split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _measured(state) -> dict[str, Any]:
    timed = [s for s in state.samples if not s.warmup]
    flops = state.flops
    out: dict[str, Any] = {
        "params": state.params,
        "flops_analytic": flops.analytic if flops else None,
        "flops_thop": flops.thop if flops else None,
        "flops_counter": flops.counter if flops else None,
        "batch_size": state.batch_size,
        "seq_len": state.seq_len,
        "tokens_per_step": state.batch_size * state.seq_len if state.batch_size else None,
        "steps": len(timed),
        "warmup_steps": len(state.samples) - len(timed),
        "step_time_s": None, "step_time_iqr_s": None, "step_time_relative_spread": None, "steady": None,
        "tokens_per_s": None, "achieved_flops_per_s": None, "mfu": None, "mfu_causal": None,
        "flops_convention": "matmul FLOPs, full TxT attention (nanoGPT/PaLM), backward = 2 x forward; "
                            "mfu_causal halves attention for the causal mask (llm.c/Megatron)",
        "peak_flops": state.peak_flops, "peak_dtype": state.peak_dtype,
        "peak_memory_bytes": None, "memory_allocated_bytes": None, "memory_reserved_bytes": None,
        "nvml_used_bytes": None,
        "memory_method": _memory_method(state),
        "loss_first": state.samples[0].loss if state.samples else None,
        "loss_last": state.samples[-1].loss if state.samples else None,
    }
    if timed:
        ss = steady_state([s.step_time_s for s in timed])
        tokens = out["tokens_per_step"]
        out.update(
            step_time_s=ss.median, step_time_iqr_s=ss.iqr, step_time_relative_spread=ss.relative_spread,
            steady=ss.is_steady(), tokens_per_s=tokens / ss.median,
            achieved_flops_per_s=flops.analytic / ss.median if flops else None,
            mfu=flops.analytic / ss.median / state.peak_flops if flops and state.peak_flops else None,
            mfu_causal=flops.analytic_causal / ss.median / state.peak_flops if flops and state.peak_flops else None,
            memory_allocated_bytes=timed[-1].memory_allocated_bytes,
            memory_reserved_bytes=max(s.memory_reserved_bytes for s in timed),
            nvml_used_bytes=max((s.nvml_used_bytes for s in timed if s.nvml_used_bytes is not None), default=None),
        )
    peaks = [s.memory_peak_bytes for s in state.samples if s.memory_peak_bytes]
    if state.device is not None and state.device.kind == "cpu":
        out["peak_memory_bytes"] = (state.cpu_memory_step or {}).get("peak_bytes") or max(peaks, default=None)
    else:
        timed_peaks = [s.memory_peak_bytes for s in timed if s.memory_peak_bytes]
        out["peak_memory_bytes"] = max(timed_peaks or peaks, default=None)
    return out


def _memory_method(state) -> str:
    if state.device is None:
        return ""
    if state.device.kind == "cuda":
        return ("torch.cuda.max_memory_allocated per step (peak reset before each); "
                "reserved = torch.cuda.memory_reserved")
    text = ("live tensor bytes of one tracked step (TorchDispatchMode storage tracker: params, grads, AdamW "
            "state, activations; not kernel scratch); reserved = process RSS")
    if state.config.compile:
        text += "; under the tracker torch.compile runs the step eagerly, so the peak is the eager step's"
    return text


def _search(state) -> dict[str, Any] | None:
    result = state.search
    if result is None:
        return None
    return {
        "max_batch_size": result.max_batch_size,
        "predicted_max_batch_size": (state.first_prediction or {}).get("max_batch_size"),
        "limited_by": state.search_limited_by,
        "memory_limit_bytes": state.memory_limit,
        "memory_limit_source": state.limit_source,
        "cancelled": result.cancelled,
        "priming_step": state.priming,
        "probes": [
            {"batch_size": p.batch_size, "fits": p.fits, "peak_memory_bytes": p.peak_memory_bytes,
             "seconds": p.seconds, "outcome": p.outcome, "detail": p.detail}
            for p in result.probes
        ],
    }


def build_summary(state) -> dict[str, Any]:
    measured = _measured(state)
    search = _search(state)
    if search is not None:
        bounded = search["limited_by"] == "memory" and not search["cancelled"]
        measured["max_batch_size"] = search["max_batch_size"] if bounded else None  # else not the memory bound
    else:
        measured["max_batch_size"] = None
    prediction = state.prediction
    compare, errors = [], {}
    for key, mkey, label in COMPARED:
        predicted, value = lookup(prediction, key), measured.get(mkey)
        if key == "max_batch_size":
            predicted = lookup(state.first_prediction, key)
        err = relative_error(predicted, value)
        errors[key] = err
        compare.append({"key": key, "label": label, "predicted": predicted, "measured": value, "error": err})
    config = state.config.to_dict()
    config.update(model=state.model_name, seq_len=state.seq_len, precision_effective=state.precision,
                  vocab_size_padded=state.padded_cfg.vocab_size if state.padded_cfg else None,
                  torch_device=state.device.torch_device if state.device else None)
    return {
        "config": config,
        "device": state.device.event.to_dict() if state.device else None,
        "prediction": prediction,
        "measured": measured,
        "search": search,
        "errors": errors,
        "compare": compare,
        "warnings": list(state.warnings),
    }
