"""Step timing: CUDA events on a GPU, ``perf_counter`` on the CPU.

A GPU launches work asynchronously, so a host clock around ``step()`` measures
launch time, not execution. A pair of CUDA events recorded on the stream,
then ``synchronize()``, gives the device time of the step. On the CPU the work
is synchronous and ``perf_counter`` is enough.

The statistics of the timed steps live in ``profiler.compare`` (torch-free).
"""

from __future__ import annotations

import time


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
