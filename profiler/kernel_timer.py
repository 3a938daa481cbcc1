"""Time a kernel as the device profile does: one call, or the median call of a short window after a warm-up.

``perf_counter`` on the CPU, CUDA events (then a sync) on a GPU, so
``profiler.calibrate`` and ``profiler.calibrate_step`` measure the same way on
either. Also the backward call they time: straight to autograd's engine,
without the public entry's sympy import.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable

CPU_POINT_SECONDS = 0.0015  # time a point for this long (at least MIN_REPEATS calls, at most MAX_CALLS)
MIN_REPEATS, MAX_CALLS = 3, 20000


class KernelTimer:
    """Seconds of one call, or per call over a window; ``point_seconds``: a grid point's window."""

    def __init__(self, device, point_seconds: float | None = None):
        import torch

        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.point_seconds = CPU_POINT_SECONDS if point_seconds is None else point_seconds
        if self.cuda:
            self._a, self._b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

    def window(self, fn: Callable[[], object], seconds: float, min_calls: int) -> float:
        """Seconds per call of ``fn``, called ``min_calls`` times and then while another call fits in
        ``seconds``: the median call on the CPU (a call in a step is a typical call, not the luckiest: 2-9 %
        slower than the fastest for mid-sized GEMMs; at least three calls, so one preempted call cannot
        stand for the point), the mean over the window with CUDA events."""
        import torch

        if self.cuda:
            torch.cuda.synchronize(self.device)
            calls = 0
            start = time.perf_counter()
            self._a.record()
            while calls < min_calls or (calls < MAX_CALLS and time.perf_counter() - start < seconds):
                fn()
                calls += 1
            self._b.record()
            self._b.synchronize()
            return self._a.elapsed_time(self._b) / 1e3 / calls
        times: list[float] = []
        clock = time.perf_counter
        start = clock()
        while len(times) < min_calls or (len(times) < MAX_CALLS and clock() - start + times[-1] <= seconds):
            t0 = clock()
            fn()
            times.append(clock() - t0)
        return statistics.median(times)

    def __call__(self, fn: Callable[[], object]) -> float:
        if self.cuda:
            self._a.record()
            fn()
            self._b.record()
            self._b.synchronize()
            return self._a.elapsed_time(self._b) / 1e3
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start


def best_time(timer: KernelTimer, fn: Callable[[], object], point_seconds: float | None = None) -> float:
    """Seconds per call over a window of ``point_seconds`` (the timer's by default; at least ``MIN_REPEATS``
    calls), after one warm-up call (``KernelTimer.window``)."""
    fn()  # warm-up: allocator, caches, lazy init
    window = timer.point_seconds if point_seconds is None else point_seconds
    return max(timer.window(fn, window, MIN_REPEATS), 1e-9)


def forward_backward(forward, inputs, grad=None):
    """Forward + backward through autograd (the kernels with no public backward op)."""
    import torch

    with torch.enable_grad():
        return run_backward(forward(), inputs, grad)


def run_backward(output, inputs, grad=None, retain_graph: bool = False):
    """``torch.autograd.grad(output, inputs, grad)``, straight to the engine where torch has the entry:
    the public call's check of a given gradient's shape imports sympy, 0.3 s once per process, which a
    training step (``loss.backward()``, no gradient given) never pays."""
    import torch

    try:
        from torch.autograd.graph import _engine_run_backward

        grads = (torch.ones_like(output) if grad is None else grad,)
        return _engine_run_backward((output,), grads, retain_graph, False, tuple(inputs), False,
                                    accumulate_grad=False)
    except (ImportError, TypeError):  # another torch's private entry: the public call
        return torch.autograd.grad(output, inputs, grad, retain_graph=retain_graph)
