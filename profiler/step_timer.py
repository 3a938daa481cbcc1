"""Step timing: CUDA events on a GPU, ``perf_counter`` on the CPU, and steady-state statistics.

A GPU launches work asynchronously, so a host clock around ``step()`` measures
launch time, not execution. A pair of CUDA events recorded on the stream,
then ``synchronize()``, gives the device time of the step. On the CPU the work
is synchronous and ``perf_counter`` is enough.

Steady state: the median of the timed steps (warm-up excluded), with the
inter-quartile range as the spread; ``relative_spread`` = IQR / median says
whether more steps are needed. torch is imported only by the timers, so the
statistics (and ``profiler.run_summary``) load without it.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass


class StepTimer:
    """``start()`` / ``stop() -> seconds`` around one step on ``device``."""

    def __init__(self, device):
        import torch

        self.device = torch.device(device)
        self.is_cuda = self.device.type == "cuda"
        self._t0 = 0.0
        if self.is_cuda:
            self._start = torch.cuda.Event(enable_timing=True)
            self._end = torch.cuda.Event(enable_timing=True)

    def start(self) -> None:
        if self.is_cuda:
            self._start.record()
        else:
            self._t0 = time.perf_counter()

    def stop(self) -> float:
        if self.is_cuda:
            self._end.record()
            self._end.synchronize()
            return self._start.elapsed_time(self._end) / 1e3  # ms -> s
        return time.perf_counter() - self._t0


def synchronize(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


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


def steady_state(samples: list[float]) -> SteadyState:
    """Median and quartiles (inclusive method: defined for n >= 1)."""
    if not samples:
        raise ValueError("no timed samples")
    ordered = sorted(samples)
    if len(ordered) == 1:
        q1 = q3 = ordered[0]
    else:
        q1, _, q3 = statistics.quantiles(ordered, n=4, method="inclusive")
    return SteadyState(
        n=len(ordered), median=statistics.median(ordered), q1=q1, q3=q3,
        minimum=ordered[0], maximum=ordered[-1],
    )
