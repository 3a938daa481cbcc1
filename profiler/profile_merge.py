"""Fold a new measurement of a device into its cached profile: a shared machine's typical speed, not one moment's.

On a shared cloud VM the same kernels run 10-30 % faster or slower from one
minute to the next (nothing in ``/proc`` shows it). One 5 s calibration lands
on one such moment, and every prediction drawn from it is off by as much.
Measured on this 2-vCPU EPYC VM, five trials of three calibrations each, 16
configs: one calibration's step-time predictions strayed from the trials'
median by 17 % (median over configs; up to 50 %), the fold of three by 8 %
(up to 16 %). Timing each point in passes spread over one calibration does
not help: the speed moves over the whole 5 s together. So a re-calibration
(``mfutop calibrate --remeasure``) folds into the cached profile of the same
device, torch and threads: every measured time becomes the weighted geometric
mean of the cached one (weight: the calibrations it averages, at most
``HISTORY - 1``) and the new one (weight 1). The newest thus counts at least
1/``HISTORY``, and an old machine state fades.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from estimator.device_profile import MAX_CALIBRATIONS, DeviceProfile, Grid

HISTORY = 4  # the newest calibration weighs at least 1/HISTORY of the merged profile


def _mean(old: float, new: float, weight: int) -> float:
    return math.exp((weight * math.log(old) + math.log(new)) / (weight + 1))


def _fold(old: Any, new: Any, weight: int) -> Any:
    """``new`` with each time the weighted geometric mean of it and ``old``'s where both measured the
    same thing (a grid of the same axes, a key present in both); the rest as ``new`` has it."""
    if isinstance(new, Grid):
        if not isinstance(old, Grid) or old.axes != new.axes or old.names != new.names:
            return new
        return replace(new, values=tuple(_mean(a, b, weight) for a, b in zip(old.values, new.values)))
    if isinstance(new, dict):
        if not isinstance(old, dict):
            return new
        return {k: _fold(old[k], v, weight) if k in old else v for k, v in new.items()}
    if isinstance(new, float) and isinstance(old, float) and old > 0 and new > 0:
        return _mean(old, new, weight)
    return new


def merge(cached: DeviceProfile, fresh: DeviceProfile) -> DeviceProfile:
    """``fresh`` folded into ``cached`` (same device, torch and threads: the caller's check). Everything
    but the measured times (date, load, contention, cost) is the fresh measurement's."""
    weight = min(cached.calibrations, HISTORY - 1)
    total = min(cached.calibrations + 1, MAX_CALIBRATIONS)
    note = (f"each time a geometric mean over {total} calibrations, this one weighted 1/{weight + 1}; "
            f"the one before at {cached.measured_at}")
    return replace(
        fresh,
        dispatch=_fold(cached.dispatch, fresh.dispatch, weight),
        gemm=_fold(cached.gemm, fresh.gemm, weight),
        attention=_fold(cached.attention, fresh.attention, weight),
        elementwise=_fold(cached.elementwise, fresh.elementwise, weight),
        optimizer=_fold(cached.optimizer, fresh.optimizer, weight),
        gemm_layout=_fold(cached.gemm_layout, fresh.gemm_layout, weight),
        framework=_fold(cached.framework, fresh.framework, weight),
        calibrations=total,
        notes=tuple(fresh.notes) + (note,),
    )
