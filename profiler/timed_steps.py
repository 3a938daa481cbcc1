"""The timed steps of a run: warm-up (on a CPU the last one a tracked memory step), then steps until steady.

``measure_steps`` is what ``profiler.run.run_profile`` does once the batch is
known. Each step yields a ``StepSample``; a CPU step under the live-tensor
tracker gives the peak memory; timed steps are added (up to ``max_extra``)
while the inter-quartile spread stays above ``SPREAD_TOLERANCE``, and the
machine's load is re-checked every ``LOAD_RECHECK_S`` seconds.
"""

from __future__ import annotations

import gc
import threading
import time
from dataclasses import replace
from typing import Callable, Iterator

from estimator.errors import ConfigError
from estimator.mfu import mfu
from estimator.units import fmt_bytes
from profiler.compare import steady_state
from profiler.events import Event, StepSample
from profiler.load_check import ContentionWatch
from profiler.memory_meter import (
    LiveStorageTracker,
    MemoryMeter,
    training_state_tensors,
    unique_storage_bytes,
)
from profiler.step import TrainingStep
from profiler.step_timer import StepTimer

SPREAD_TOLERANCE = 0.10  # IQR / median under which the timed steps count as steady
LOAD_RECHECK_S = 5.0  # how often others' CPU use is checked again during the timed steps


def warmup_steps(requested: int, cpu: bool, stepped_before: bool, probed_at_batch: bool = False) -> int:
    """The untimed steps before the timed ones: as asked (less one when the search's last probe already
    ran a full step at the run's batch). On a CPU the last of them runs under the live-tensor tracker
    (the run's peak memory), which needs AdamW's state from an earlier step: at least two there before
    any step ran, one after a search's probes."""
    requested = max(0, requested - probed_at_batch)
    if not cpu:
        return requested
    return max(requested, 1 if stepped_before else 2)


def measure_steps(state, trainer: TrainingStep, batch: int, cancel: threading.Event,
             max_extra: int) -> Iterator[Event]:
    """Warm-up steps (on a CPU the last one tracked for memory), then timed steps until steady."""
    config = state.config
    device = trainer.device
    timer, meter = StepTimer(device), MemoryMeter(device)
    flops = state.flops.analytic
    tokens = batch * state.seq_len
    batches = trainer.batches(batch, state.seq_len)
    nvml = _nvml_reader(state.device.torch_device) if device.type == "cuda" else (lambda: None)
    cpu = device.type == "cpu"
    probes = state.search.probes if state.search else []
    stepped = bool(probes)  # a search has already run full steps (AdamW's state exists)
    probed_here = any(p.batch_size == batch and p.fits for p in probes)  # one of them at this batch: a warm-up

    def one_step(step_no: int, warmup: bool, tracker: LiveStorageTracker | None = None) -> StepSample:
        x, y = next(batches)
        meter.reset_peak()
        timer.start()
        if tracker is not None:
            with tracker:
                loss = trainer.step(x, y)
        else:
            loss = trainer.step(x, y)
        seconds = timer.stop()
        mem = meter.sample()
        return StepSample(
            step=step_no, batch_size=batch, step_time_s=seconds, tokens_per_s=tokens / seconds,
            loss=float(loss.item()), memory_allocated_bytes=mem.allocated, memory_reserved_bytes=mem.reserved,
            memory_peak_bytes=mem.peak, nvml_used_bytes=nvml(),
            mfu=mfu(flops, seconds, state.peak_flops), warmup=warmup,
        )

    if cpu:  # until the tracked memory step: the state bytes, and the probe's peak at this batch
        probe_peaks = [p.peak_memory_bytes for p in probes if p.batch_size == batch and p.fits and p.peak_memory_bytes]
        meter.set_cpu_figures(unique_storage_bytes(training_state_tensors(trainer.raw_model, trainer.optimizer)),
                              max(probe_peaks, default=0))
    step_no = 0
    warmups = warmup_steps(config.warmup_steps, cpu, stepped, probed_here)
    for _ in range(warmups - 1 if cpu else warmups):
        if cancel.is_set():
            return
        step_no += 1
        yield _record(state, one_step(step_no, True))
    if cpu:
        if cancel.is_set():
            return
        tracker = LiveStorageTracker("cpu", limit_bytes=state.memory_limit)
        tracker.track(training_state_tensors(trainer.raw_model, trainer.optimizer))
        start_bytes = tracker.live_bytes
        step_no += 1
        try:
            sample = one_step(step_no, True, tracker)
        except MemoryError:
            failed = True
        else:
            failed = False
        if failed:  # outside the except block: the traceback no longer pins the activations
            trainer.optimizer.zero_grad(set_to_none=True)
            gc.collect()
            raise ConfigError(f"batch {batch} does not fit under the CPU memory cap {fmt_bytes(state.memory_limit)} "
                              f"({state.limit_source}): live tensors passed it during the step")
        meter.set_cpu_figures(allocated=tracker.live_bytes, peak=tracker.peak_bytes)
        state.cpu_memory_step = {"peak_bytes": tracker.peak_bytes, "state_bytes": start_bytes,
                                 "allocations": tracker.allocations}
        yield _record(state, _with_memory(sample, meter))
    watch = state.contention or ContentionWatch(state.device.kind)
    yield from _warn_if_busy(state, watch)  # since the run started: a neighbour already there
    timed_from = len(watch.shares)
    timed = 0
    limit = config.steps
    load_checked = time.monotonic()
    while timed < limit:
        if cancel.is_set():
            break
        step_no += 1
        timed += 1
        yield _record(state, one_step(step_no, False))
        if time.monotonic() - load_checked > LOAD_RECHECK_S:  # a neighbour that starts mid-run is noticed too
            load_checked = time.monotonic()
            yield from _warn_if_busy(state, watch)
        if timed == limit and limit < config.steps + max_extra:
            times = [s.step_time_s for s in state.samples if not s.warmup]
            if not steady_state(times).is_steady(SPREAD_TOLERANCE):
                limit += 1
    yield from _warn_if_busy(state, watch)  # the timed steps' last window
    state.others_cpu_share = max(watch.shares[timed_from:], default=None)


def _warn_if_busy(state, watch: ContentionWatch) -> Iterator[Event]:
    """Ends the watch's window: one warning per run when others used the CPU in it."""
    busy = watch.check()
    if busy and not any("machine is busy" in w for w in state.warnings):
        yield state.warn(busy)


def _with_memory(sample: StepSample, meter: MemoryMeter) -> StepSample:
    mem = meter.sample()
    return replace(sample, memory_allocated_bytes=mem.allocated, memory_peak_bytes=mem.peak)


def _record(state, sample: StepSample) -> StepSample:
    state.samples.append(sample)
    return sample


def _nvml_reader(torch_device: str) -> Callable[[], int | None]:
    try:
        from profiler.detect import nvml_process_memory
    except ImportError:
        return lambda: None

    def read() -> int | None:
        try:
            return nvml_process_memory(torch_device)
        except Exception:  # noqa: BLE001 - NVML may not support per-process queries: "N/A", never a crash
            return None

    return read
