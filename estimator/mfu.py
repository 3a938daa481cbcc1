"""MFU and HFU: the one place that divides FLOPs per step by step time by the dense peak.

MFU counts the model's FLOPs (no recomputation); HFU counts what the hardware
executes (recomputed forwards included). Both divide by the dense peak of the
dtype the matmuls run in (DESIGN.md, "MFU"). An unknown or non-positive input
gives None, never 0 % or a division error: "MFU n/a" is an answer, a made-up
figure is not.
"""

from __future__ import annotations

import math


def flops_utilization(flops_per_step: float | None, step_time_s: float | None,
                      peak_flops: float | None) -> float | None:
    """Achieved FLOP/s over the peak: (flops / seconds) / peak, or None when any figure is unusable."""
    values = (flops_per_step, step_time_s, peak_flops)
    if any(v is None or isinstance(v, bool) for v in values):
        return None
    if not all(math.isfinite(float(v)) for v in values):
        return None
    if step_time_s <= 0 or peak_flops <= 0 or flops_per_step < 0:
        return None
    result = flops_per_step / step_time_s / peak_flops
    return result if math.isfinite(result) else None


def mfu(model_flops_per_step: float | None, step_time_s: float | None, peak_flops: float | None) -> float | None:
    """Model FLOPs utilization: the model's own FLOPs per step, recomputation not counted."""
    return flops_utilization(model_flops_per_step, step_time_s, peak_flops)


def hfu(hardware_flops_per_step: float | None, step_time_s: float | None, peak_flops: float | None) -> float | None:
    """Hardware FLOPs utilization: the FLOPs executed, recomputed forwards included."""
    return flops_utilization(hardware_flops_per_step, step_time_s, peak_flops)
