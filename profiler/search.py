"""The largest batch whose full training step fits: a bracket search seeded by the prediction.

``find_max_batch`` is pure: it only calls ``probe(batch)`` and assumes that
fitting is monotone in the batch. Starting at the predicted max batch ``s`` it
gallops away from the seed in steps that start at ``ceil(s/16)`` and double
(s, s+d, s+3d, s+7d, ... up while probes fit; s-d, s-3d, ... down while they
fail), then bisects the last bracket. For any monotone probe the answer is the
one a plain binary search gives. Cost, by simulation over thresholds
N = 1..2000 (tests/test_search.py): never more than ceil(log2 N) + 2 probes
when the seed is within 20 % of N; median 2-4 probes for N <= 128 with the
seed within 5 %, ~9-10 for N up to 2000 with it within 20 %, against ~20 for a
blind doubling search from 1. No search can do much better: with the seed 20 %
off, N is one of ~0.4·s candidates and each probe answers one bit.

``StepProbe`` is the real probe (a full step: forward, backward,
``optimizer.step()``) with the OOM recovery, the memory cap and the CPU gate.
"""

from __future__ import annotations

import gc
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Generator

import torch

from profiler.memory_meter import LiveStorageTracker, training_state_tensors

FIRST_STEP_FRACTION = 1 / 16  # first gallop step as a fraction of the seed
MAX_BATCH = 1 << 20  # nothing real fits more sequences per device
GATE_MARGIN = 1.25  # CPU: a probe predicted above margin x cap is not run


@dataclass(frozen=True)
class ProbeOutcome:
    batch_size: int
    fits: bool
    outcome: str  # "ok" | "oom" | "gated" | "cancelled"
    peak_memory_bytes: int | None = None
    seconds: float = 0.0
    baseline_bytes: int | None = None  # live tensor bytes before the probe
    after_bytes: int | None = None  # ... after it and its cleanup (== baseline: nothing leaked)
    detail: str = ""


@dataclass
class SearchResult:
    max_batch_size: int  # 0: not even batch 1 fits
    probes: list[ProbeOutcome] = field(default_factory=list)
    cancelled: bool = False
    low: int = 0  # largest batch known to fit
    high: int | None = None  # smallest batch known not to fit


def _as_outcome(batch: int, result) -> ProbeOutcome:
    if isinstance(result, ProbeOutcome):
        return result
    return ProbeOutcome(batch_size=batch, fits=bool(result), outcome="ok" if result else "oom")


def bracket_search(seed: int | None = None, max_batch: int = MAX_BATCH) -> Generator[int, bool, tuple[int, int | None]]:
    """The search as a coroutine: yields the next batch to probe, is sent whether it fit,
    returns ``(low, high)`` — the largest batch known to fit (0: none) and the smallest
    known not to (None: nothing failed up to ``max_batch``)."""
    lo, hi = 0, None

    def record(batch: int, fits: bool) -> bool:
        nonlocal lo, hi
        if fits:
            lo = max(lo, batch)
        else:
            hi = batch if hi is None else min(hi, batch)
        return fits

    b = max(1, min(int(seed or 1), max_batch))
    step = max(1, math.ceil(b * FIRST_STEP_FRACTION))
    fits = record(b, (yield b))
    if fits:  # gallop up until the first misfit
        while fits and lo < max_batch:
            b = min(lo + step, max_batch)
            fits = record(b, (yield b))
            step *= 2
    else:  # gallop down until the first fit
        while not fits and hi > 1:
            b = max(hi - step, 1)
            fits = record(b, (yield b))
            step *= 2
    while hi is not None and hi - lo > 1:
        b = (lo + hi) // 2
        record(b, (yield b))
    return lo, hi


def iter_search(probe: Callable[[int], ProbeOutcome | bool], seed: int | None = None, *,
                max_batch: int = MAX_BATCH, should_stop: Callable[[], bool] | None = None,
                ) -> Generator[tuple[ProbeOutcome, int, int | None], None, SearchResult]:
    """Runs the search, yielding ``(outcome, low, high)`` after each probe; returns the result.

    ``probe`` returns a bool or a ``ProbeOutcome``; ``should_stop()`` is checked
    before each probe (a stopped search returns the bracket so far, cancelled).
    """
    result = SearchResult(max_batch_size=0)
    search = bracket_search(seed, max_batch)
    lo, hi = 0, None
    try:
        batch = next(search)
        while True:
            if should_stop is not None and should_stop():
                result.cancelled = True
                break
            out = _as_outcome(batch, probe(batch))
            result.probes.append(out)
            if out.fits:
                lo = max(lo, batch)
            else:
                hi = batch if hi is None else min(hi, batch)
            yield out, lo, hi
            batch = search.send(out.fits)
    except StopIteration as stop:
        lo, hi = stop.value
    result.max_batch_size, result.low, result.high = lo, lo, hi
    return result


def find_max_batch(probe: Callable[[int], ProbeOutcome | bool], seed: int | None = None, *,
                   max_batch: int = MAX_BATCH, should_stop: Callable[[], bool] | None = None,
                   on_probe: Callable[[ProbeOutcome, int, int | None], None] | None = None) -> SearchResult:
    """Largest b in [1, max_batch] with ``probe(b)`` fitting (0 if none); ``on_probe`` sees each step."""
    steps = iter_search(probe, seed, max_batch=max_batch, should_stop=should_stop)
    while True:
        try:
            out, lo, hi = next(steps)
        except StopIteration as stop:
            return stop.value
        if on_probe is not None:
            on_probe(out, lo, hi)


def binary_search_max_batch(probe: Callable[[int], bool], upper: int) -> int:
    """Plain bisection over [1, upper]: the reference the bracket search must agree with."""
    lo, hi = 0, upper + 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if probe(mid):
            lo = mid
        else:
            hi = mid
    return lo


# ----------------------------------------------------------------- the real probe

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
