"""The real probe of the batch search: one full training step at batch b, and what it cost.

``StepProbe(b)`` runs forward, backward and ``optimizer.step()`` (AdamW state is
allocated lazily), recovers from an OOM (the exception and its traceback are
dropped before ``gc.collect()`` / ``empty_cache()``, memory checked back at its
pre-probe figure), caps CUDA memory (``cap_cuda_memory``) and, on a CPU, refuses
a probe whose predicted memory is far over the cap. The search that calls it is
``profiler.bracket_search`` (pure).
"""

from __future__ import annotations

import gc
import time
from typing import Callable

import torch

from profiler.bracket_search import ProbeOutcome
from profiler.memory_meter import LiveStorageTracker, training_state_tensors

GATE_MARGIN = 1.25  # CPU: a probe predicted above margin x cap is not run


def oom_error_types() -> tuple[type[BaseException], ...]:
    cuda_oom = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    return (cuda_oom, MemoryError)


def is_oom(exc: BaseException) -> bool:
    """CUDA OOM, MemoryError, or the CPU allocator's RuntimeError ("can't allocate memory")."""
    if isinstance(exc, oom_error_types()):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


class InjectedOOM(torch.cuda.OutOfMemoryError):
    """Raised by the fault-injection seam; an OOM in every way the recovery path can tell."""


class StepProbe:
    """``probe(batch) -> ProbeOutcome``: one full training step at ``batch`` on a ``TrainingStep``.

    ``limit_bytes`` caps usable memory: on CUDA through the per-process memory
    fraction (set by the caller, ``cap_cuda_memory``), on the CPU through a
    ``LiveStorageTracker`` that raises ``MemoryLimitExceeded`` once live tensor
    bytes pass it. ``predicted_bytes(batch)`` gates CPU probes: a probe
    predicted above ``GATE_MARGIN x limit`` is not run (``"gated"``), so no
    probe can exhaust the machine's RAM. ``inject_oom_above`` is the
    fault-injection seam: a batch above it raises ``InjectedOOM`` after the
    forward pass (activations allocated), exercising the real recovery.
    """

    def __init__(self, trainer, seq_len: int, limit_bytes: int | None = None,
                 predicted_bytes: Callable[[int], int] | None = None, inject_oom_above: int | None = None):
        self.trainer = trainer
        self.seq_len = seq_len
        self.limit_bytes = limit_bytes
        self.predicted_bytes = predicted_bytes
        self.inject_oom_above = inject_oom_above
        self.is_cuda = trainer.device.type == "cuda"

    def __call__(self, batch: int) -> ProbeOutcome:
        if not self.is_cuda and self.limit_bytes is not None and self.predicted_bytes is not None:
            predicted = self.predicted_bytes(batch)
            if predicted > GATE_MARGIN * self.limit_bytes:
                return ProbeOutcome(batch, False, "gated", None, 0.0,
                                    detail=f"predicted {predicted} B > {GATE_MARGIN} x limit {self.limit_bytes} B")
        return self._run(batch)

    def _run(self, batch: int) -> ProbeOutcome:
        trainer = self.trainer
        trainer.optimizer.zero_grad(set_to_none=True)
        tracker = None
        if self.is_cuda:
            torch.cuda.synchronize(trainer.device)
            torch.cuda.reset_peak_memory_stats(trainer.device)
            baseline = int(torch.cuda.memory_allocated(trainer.device))
            retries = _alloc_retries(trainer.device)
        else:
            tracker = LiveStorageTracker("cpu", limit_bytes=self.limit_bytes)
            tracker.track(training_state_tensors(trainer.raw_model, trainer.optimizer))
            baseline = tracker.live_bytes
        inject = self.inject_oom_above is not None and batch > self.inject_oom_above
        started = time.perf_counter()
        failure = ""
        fault = _raise_injected if inject else None
        try:
            if tracker is not None:
                with tracker:
                    trainer.step(*trainer.make_batch(batch, self.seq_len), fault=fault)
            else:
                trainer.step(*trainer.make_batch(batch, self.seq_len), fault=fault)
                torch.cuda.synchronize(trainer.device)
        except Exception as exc:  # noqa: BLE001 - only OOMs are swallowed, the rest re-raised below
            if not is_oom(exc):
                raise
            failure = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
        # Out of the except block: the exception and its traceback (which pins the
        # failed step's activations through its frames) are gone before we collect.
        seconds = time.perf_counter() - started
        peak = self._peak(tracker)
        after = self._recover(tracker, baseline, collect=bool(failure))
        fits = not failure
        if fits and self.is_cuda and _alloc_retries(trainer.device) > retries:
            # the allocator had to flush its cache and retry cudaMalloc: fits, but barely
            failure = f"barely fits: {_alloc_retries(trainer.device) - retries} allocator retries"
        return ProbeOutcome(batch, fits, "ok" if fits else "oom", peak, seconds, baseline, after, failure)

    def _peak(self, tracker: LiveStorageTracker | None) -> int:
        if tracker is not None:
            return tracker.peak_bytes
        return int(torch.cuda.max_memory_allocated(self.trainer.device))

    def _live(self, tracker: LiveStorageTracker | None) -> int:
        if tracker is not None:
            return tracker.live_bytes
        return int(torch.cuda.memory_allocated(self.trainer.device))

    def _recover(self, tracker: LiveStorageTracker | None, baseline: int, collect: bool) -> int:
        """Free gradients and garbage; return the live bytes (== baseline when nothing leaked).

        After a success reference counting has already freed the step's tensors; a
        full ``gc.collect()`` (~0.1-0.3 s with torch loaded) runs after a failure,
        where exception/frame cycles may hold them, or when memory is not back.
        """
        self.trainer.optimizer.zero_grad(set_to_none=True)
        if collect or self._live(tracker) != baseline:
            gc.collect()
        if self.is_cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.trainer.device)
        return self._live(tracker)


def _alloc_retries(device: torch.device) -> int:
    return int(torch.cuda.memory_stats(device).get("num_alloc_retries", 0))


def _raise_injected() -> None:
    raise InjectedOOM("injected OOM (fault-injection seam)")


def cap_cuda_memory(device: torch.device, limit_bytes: int | None) -> Callable[[], None]:
    """Cap this process's CUDA memory at ``limit_bytes``; returns the undo."""
    if limit_bytes is None or torch.device(device).type != "cuda":
        return lambda: None
    total = torch.cuda.get_device_properties(device).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, limit_bytes / total), device)
    return lambda: torch.cuda.set_per_process_memory_fraction(1.0, device)
