"""Is the device as fast now as a moment ago? A fixed GEMM, read between the device profile's grids.

A shared host's neighbours slow every kernel for seconds at a time (on a 2-vCPU
cloud VM by up to 1.9x, with nothing in ``/proc`` to show it). A grid timed in such
a spell would predict every later run from it that much too slow, so
``profiler.calibrate`` times the grids a spell fell on again.
"""

from __future__ import annotations

import statistics
from typing import Callable

SLOW_SPELL_RATIO = 1.3  # a grid timed while the canary ran this much slower than its best is timed again
RETIMED_AT_MOST = 2  # grids timed again per calibration (each ~0.3-0.6 s on a CPU)
CANARY_SIZE, CANARY_CALLS = 256, 9  # the canary: the median of 9 fp32 256³ GEMMs on cache-warm operands


class SpeedCanary:
    """``timed`` grids, each followed by a reading; ``retime_slow`` then times again the grids read
    ``SLOW_SPELL_RATIO`` slower than the best reading (at most ``RETIMED_AT_MOST``, slowest first) and keeps
    the new timing when its reading was faster."""

    def __init__(self, device, timer: Callable[[Callable[[], object]], float]):
        import torch

        self._a, self._b = (torch.randn(CANARY_SIZE, CANARY_SIZE, device=device) for _ in range(2))
        torch.mm(self._a, self._b)  # warm-up: the first call pays the BLAS's start-up
        self._timer = timer
        self.readings: list[float] = []
        self.retimed: list[str] = []
        self._grids: list[tuple[str, Callable[[], object], Callable[[object], None], float]] = []

    def read(self) -> float:
        import torch

        calls = [self._timer(lambda: torch.mm(self._a, self._b)) for _ in range(CANARY_CALLS)]
        self.readings.append(statistics.median(calls))
        return self.readings[-1]

    def timed(self, name: str, measure: Callable[[], object], store: Callable[[object], None]) -> None:
        """``store(measure())``, then a reading that tells whether the machine was slow meanwhile."""
        store(measure())
        self._grids.append((name, measure, store, self.read()))

    def retime_slow(self) -> None:
        best = min(self.readings)
        slow = sorted((g for g in self._grids if g[3] > SLOW_SPELL_RATIO * best), key=lambda g: -g[3])
        for name, measure, store, reading in slow[:RETIMED_AT_MOST]:
            result = measure()
            if self.read() < reading:
                store(result)
                self.retimed.append(name)

    def note(self) -> str:
        best, worst = min(self.readings), max(self.readings)
        retimed = f"; timed again after a slow spell: {', '.join(self.retimed)}" if self.retimed else ""
        return (f"speed canary ({CANARY_SIZE}³ fp32 GEMM) {best * 1e6:.0f}-{worst * 1e6:.0f} µs over "
                f"{len(self.readings)} readings{retimed}")
