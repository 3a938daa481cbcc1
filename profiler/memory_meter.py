"""Memory measurement on CUDA (allocator stats) and on the CPU (a live-storage tracker).

CUDA: ``torch.cuda.memory_allocated`` (live tensor bytes), ``memory_reserved``
(the caching allocator's segments) and ``max_memory_allocated`` (peak since the
last ``reset_peak_memory_stats``) are exact and cheap.

CPU: torch keeps no allocator statistics. ``LiveStorageTracker`` is a
``TorchDispatchMode``: every op's output storage not seen before is counted
(``nbytes``) and a ``weakref.finalize`` on the untyped storage subtracts it
when the last tensor or view using it dies (torch preserves the storage's
Python object while C++ holds it, so the finalizer fires at the real free).
That gives live and peak *tensor* bytes comparable to
``torch.cuda.memory_allocated`` / ``max_memory_allocated``. It does not see
scratch buffers a kernel allocates and frees inside one op (oneDNN/BLAS
workspaces), nor the allocator's fragmentation; process RSS (psutil) is the
"reserved"-like figure, and it also holds the Python heap and libraries.
The tracker costs tens of microseconds per op, so it runs around probes and one
dedicated memory step, never inside the timed steps. A ``torch.compile``d model
runs eagerly while the mode is active (measured: same peak and allocation count
as eager), so on the CPU the peak is the eager step's. With ``limit_bytes`` it
behaves like a capped allocator: ``MemoryLimitExceeded`` (a ``MemoryError``) is
raised as soon as live bytes pass the cap, which is how ``--memory-limit`` is
enforced on the CPU.
"""

from __future__ import annotations

import os
import sys
import threading
import weakref
from dataclasses import dataclass

import psutil
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class MemoryLimitExceeded(MemoryError):
    """Live tensor bytes passed the tracker's cap: the CPU analogue of a CUDA OOM under a memory fraction."""


@dataclass(frozen=True)
class MemorySample:
    allocated: int  # live tensor bytes
    reserved: int  # CUDA: allocator segments; CPU: process RSS
    peak: int  # peak live tensor bytes since the last reset


class LiveStorageTracker(TorchDispatchMode):
    """Counts bytes of live tensor storages created while active (plus any registered with ``track``)."""

    def __init__(self, device_type: str = "cpu", limit_bytes: int | None = None):
        super().__init__()
        self.device_type = device_type
        self.limit_bytes = limit_bytes
        self._lock = threading.Lock()
        self._live: dict[int, int] = {}  # id(storage) -> nbytes
        self.live_bytes = 0
        self.peak_bytes = 0
        self.allocations = 0

    # Accounting ------------------------------------------------------------
    def track(self, tensors) -> None:
        """Count tensors that already exist (parameters, optimizer state) as live."""
        for t in tensors:
            if isinstance(t, torch.Tensor):
                self._add(t, check_limit=False)

    def reset_peak(self) -> None:
        self.peak_bytes = self.live_bytes

    def _add(self, tensor: torch.Tensor, check_limit: bool = True) -> None:
        if tensor.device.type != self.device_type or tensor.is_sparse:
            return
        try:
            storage = tensor.untyped_storage()
        except (RuntimeError, NotImplementedError):  # tensors without storage (nested, functional wrappers)
            return
        key, nbytes = id(storage), storage.nbytes()
        if nbytes == 0:
            return
        with self._lock:
            if key in self._live:
                return
            self._live[key] = nbytes
            self.live_bytes += nbytes
            self.allocations += 1
            self.peak_bytes = max(self.peak_bytes, self.live_bytes)
            over = self.limit_bytes is not None and self.live_bytes > self.limit_bytes
        weakref.finalize(storage, self._release, key)
        if check_limit and over:
            raise MemoryLimitExceeded(
                f"live tensors {self.live_bytes} B passed the {self.limit_bytes} B limit"
            )

    def _release(self, key: int) -> None:
        with self._lock:
            nbytes = self._live.pop(key, 0)
            self.live_bytes -= nbytes

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False  # __torch_dispatch__ skips dynamo itself, only once dynamo is loaded (see below)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        """TorchDispatchMode would wrap this in ``torch._disable_dynamo``, whose first call imports
        torch._dynamo (~1 s before a run's first probe); while it is not loaded nothing is compiling."""
        if "torch._dynamo" in sys.modules:
            return self._dispatch_without_dynamo(func, types, args, kwargs)
        return self._dispatch(func, types, args, kwargs)

    def _dispatch(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        outputs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
        if outputs:
            # An output aliasing an input (in-place op, view) allocated nothing new.
            inputs = {_storage_id(t) for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)}
            for t in outputs:
                if _storage_id(t) not in inputs:
                    self._add(t)
        return out

    _dispatch_without_dynamo = torch._disable_dynamo(_dispatch, recursive=True)


def _storage_id(t: torch.Tensor) -> int | None:
    try:
        return id(t.untyped_storage())
    except (RuntimeError, NotImplementedError):
        return None


def unique_storage_bytes(tensors) -> int:
    """Bytes of the distinct storages behind ``tensors`` (tied weights and views once)."""
    seen: dict[int, int] = {}
    for t in tensors:
        if isinstance(t, torch.Tensor) and t.device.type != "meta":
            s = t.untyped_storage()
            seen[s.data_ptr()] = s.nbytes()
    return sum(seen.values())


def training_state_tensors(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None):
    """Parameters, buffers, gradients and optimizer state: what lives between steps."""
    yield from model.parameters()
    yield from model.buffers()
    for p in model.parameters():
        if p.grad is not None:
            yield p.grad
    if optimizer is not None:
        for state in optimizer.state.values():
            for value in state.values():
                if isinstance(value, torch.Tensor):
                    yield value


_THIS_PROCESS: psutil.Process | None = None


def process_rss() -> int:
    """Resident set size of this process (one cached ``psutil.Process``: ~13 µs instead of ~40)."""
    global _THIS_PROCESS
    if _THIS_PROCESS is None or _THIS_PROCESS.pid != os.getpid():  # re-created after a fork
        _THIS_PROCESS = psutil.Process()
    return _THIS_PROCESS.memory_info().rss


def available_ram() -> int:
    return psutil.virtual_memory().available


class MemoryMeter:
    """Per-device memory figures: torch.cuda stats on a GPU, tracker + RSS on the CPU.

    On the CPU, ``allocated``/``peak`` come from the last tracked window
    (``cpu_window``) or, outside one, from ``set_cpu_figures`` (the dedicated
    memory step's result); ``reserved`` is the process RSS, read each time.
    """

    def __init__(self, device: torch.device | str):
        self.device = torch.device(device)
        self.is_cuda = self.device.type == "cuda"
        self._cpu_allocated = 0
        self._cpu_peak = 0

    def reset_peak(self) -> None:
        if self.is_cuda:
            torch.cuda.reset_peak_memory_stats(self.device)

    def sample(self) -> MemorySample:
        if self.is_cuda:
            return MemorySample(
                allocated=int(torch.cuda.memory_allocated(self.device)),
                reserved=int(torch.cuda.memory_reserved(self.device)),
                peak=int(torch.cuda.max_memory_allocated(self.device)),
            )
        return MemorySample(allocated=self._cpu_allocated, reserved=process_rss(), peak=self._cpu_peak)

    def set_cpu_figures(self, allocated: int, peak: int) -> None:
        self._cpu_allocated, self._cpu_peak = int(allocated), int(peak)
