"""``run_profile(config, cancel)``: detect -> predict -> count -> search -> measure, as an event stream.

Yields ``DeviceDetected`` (after the setup is resolved: its peak is the one
MFU divides by), ``LogMessage``s, ``PredictionReady``, ``ProbeResult``* (batch
"auto"), a second ``PredictionReady`` for the searched batch, ``FlopsCounted``
(once, at the batch that runs), ``StepSample``* (warm-up ones flagged), then
``RunFinished`` (the ``mfutop profile --json`` summary) or ``RunFailed``. The
latest prediction applies. User errors (the model does
not fit at batch 1, seq-len over the context, ``--device cuda`` without CUDA)
end in ``RunFailed(error_type="ConfigError")``.

``cancel`` (a ``threading.Event``) is checked between probes and steps: a
cancelled run ends with ``RunFinished(cancelled=True)`` holding what was
measured. The generator can be consumed from any thread; closing it early
releases the model and the CUDA memory cap.
"""

from __future__ import annotations

import gc
import threading
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator

import torch

from estimator.errors import ConfigError
from estimator.memory import training_memory
from estimator.predict import predict
from estimator.step_overheads import default_overheads
from estimator.units import fmt_bytes
from profiler.bracket_search import MAX_BATCH, iter_search
from profiler.compare import lookup, steady_state
from profiler.events import (
    Event,
    FlopsCounted,
    LogMessage,
    PredictionReady,
    ProbeResult,
    RunFailed,
    RunFinished,
    StepSample,
)
from profiler.flop_count import count_flops
from profiler.load_check import ContentionWatch
from profiler.memory_meter import (
    available_ram,
)
from profiler.resolve import ResolvedRun, resolve_run
from profiler.run_config import RunConfig
from profiler.run_summary import profile_summary
from profiler.search import GATE_MARGIN, StepProbe, cap_cuda_memory
from profiler.step import TrainingStep
from profiler.timed_steps import measure_steps

CPU_RAM_SHARE = 0.5  # default CPU cap: this share of the RAM available at start
CPU_SEARCH_TOKENS = 4096  # CPU without --memory-limit: the search stops at this many tokens per step


@dataclass
class ProfileProgress:
    """What a single-process run has resolved and measured so far: its summary is built from it."""

    config: RunConfig
    device: Any = None  # DetectedDevice
    device_event: Any = None  # the DeviceDetected event as emitted (the peak MFU divides by)
    resolved: ResolvedRun | None = None
    memory_limit: int | None = None
    limit_source: str = ""
    prediction: dict | None = None
    first_prediction: dict | None = None
    flops: Any = None  # FlopCounts at the run's batch
    params: int | None = None
    batch_size: int | None = None
    search: Any = None  # SearchResult
    search_limited_by: str = "memory"
    samples: list[StepSample] = field(default_factory=list)
    cpu_memory_step: dict | None = None
    priming: dict | None = None
    device_profile: Any = None  # estimator.device_profile.DeviceProfile, when this device has a usable one
    breakdown: dict | None = None  # profiler.step_breakdown.measure_breakdown of one extra step
    contention: ContentionWatch | None = None  # others' CPU share while this run measures (a CPU run)
    others_cpu_share: float | None = None  # the largest share others used during the timed steps
    warnings: list[str] = field(default_factory=list)

    def warn(self, text: str) -> LogMessage:
        """A warning kept for the summary and sent as an event."""
        self.warnings.append(text)
        return LogMessage(level="warning", text=text)

    @property
    def seq_len(self) -> int | None:
        return self.resolved.seq_len if self.resolved else None

    @property
    def peak_flops(self) -> float | None:
        return self.resolved.peak_flops if self.resolved else None

    @property
    def peak_dtype(self) -> str | None:
        return self.resolved.peak_dtype if self.resolved else None


def run_profile(config: RunConfig, cancel: threading.Event | None = None, *, measure: bool = True,
                detect: Callable[..., Any] | None = None, inject_oom_above: int | None = None,
                max_extra_steps: int | None = None) -> Iterator[Event]:
    """The event stream of one run. ``measure=False`` stops after the search (``mfutop search``).

    ``detect`` replaces ``profiler.detect.detect_device`` (tests); ``inject_oom_above``
    makes probes above that batch raise an injected OOM (fault-injection seam);
    ``max_extra_steps`` (default: ``config.steps``) bounds the timed steps added
    while the spread stays above ``profiler.timed_steps.SPREAD_TOLERANCE``.
    """
    state = ProfileProgress(config=config)
    cancel = cancel or threading.Event()
    trainer: TrainingStep | None = None
    undo_cap: Callable[[], None] = lambda: None
    frozen = False
    try:
        det, resolved = resolve_run(config, detect)
        state.device, state.resolved = det, resolved
        state.device_event = resolved.device_event(det.event)
        state.contention = ContentionWatch(det.kind)  # others' CPU use, from now until the run ends
        yield state.device_event
        for text in filter(None, [resolved.precision_note, *det.warnings]):
            yield state.warn(text)
        yield from memory_cap(state)
        yield from load_device_profile(state)
        searching = config.batch_size is None and (config.search or not measure)
        yield from predict_at(state, config.batch_size or 1, first=True)
        batch = config.batch_size or seed_batch(state)
        if det.kind == "cpu" and not searching:
            _gate_fixed_batch(state, batch)  # before any memory is allocated

        frozen = _freeze_gc()
        trainer = TrainingStep(resolved.model, det.torch_device, resolved.step_options())
        state.params = trainer.param_count()
        undo_cap = cap_cuda_memory(trainer.device, state.memory_limit if det.kind == "cuda" else None)
        if searching:
            batch = yield from _search(state, trainer, cancel, inject_oom_above)
        state.batch_size = batch
        if batch != lookup(state.prediction, "setup.batch_size"):
            yield from predict_at(state, batch, first=False)
        # FLOPs are counted at the batch that runs: every comparison is at that batch. The analytic
        # count is instant; thop and FlopCounterMode (seconds: models built and traced) wait until
        # after the timed steps, so they never delay the first measured tokens/s.
        yield _count(state, batch, conventions=False)
        if cancel.is_set():
            yield RunFinished(summary=profile_summary(state), cancelled=True)
            return
        if measure:
            extra = config.steps if max_extra_steps is None else max_extra_steps
            yield from measure_steps(state, trainer, batch, cancel, extra)
            if not cancel.is_set():
                yield _count(state, batch, conventions=True)
            if not cancel.is_set():
                yield _breakdown(state, trainer, batch)
        yield RunFinished(summary=profile_summary(state), cancelled=cancel.is_set())
    except ConfigError as exc:
        yield RunFailed(message=str(exc), error_type="ConfigError")
    except Exception as exc:  # noqa: BLE001 - a run reports its failure as an event, never a traceback
        yield RunFailed(message=f"{type(exc).__name__}: {exc}", error_type=type(exc).__name__)
    finally:
        undo_cap()
        if trainer is not None:
            trainer.close()
        trainer = None
        if frozen:
            gc.unfreeze()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


# ----------------------------------------------------------------- setup

def _freeze_gc() -> bool:
    """Moves the objects alive now (~180k once torch is imported: modules, functions, classes; none of
    them the run's garbage) out of the collector's reach until the run ends, so the ``gc.collect()`` a
    probe's recovery runs scans only what the steps made: ~0.1 s -> microseconds on a small CPU, paid
    before the first measured step otherwise. False (nothing done) when the caller froze already."""
    if gc.get_freeze_count():
        return False
    gc.freeze()
    return True


def memory_cap(state: ProfileProgress) -> Iterator[Event]:
    """The memory the search and the run may use: --memory-limit, or on a CPU a share of free RAM."""
    config = state.config
    if state.device.kind == "cpu":
        safe = int(CPU_RAM_SHARE * available_ram())
        if config.memory_limit_bytes is None:
            state.memory_limit, state.limit_source = safe, f"{CPU_RAM_SHARE:.0%} of available RAM"
        elif config.memory_limit_bytes > safe:
            state.memory_limit, state.limit_source = safe, f"{CPU_RAM_SHARE:.0%} of available RAM"
            yield state.warn(f"--memory-limit {fmt_bytes(config.memory_limit_bytes)} is over "
                               f"{CPU_RAM_SHARE:.0%} of the available RAM; capped at {fmt_bytes(safe)}")
        else:
            state.memory_limit, state.limit_source = config.memory_limit_bytes, "--memory-limit"
    else:
        state.memory_limit = config.memory_limit_bytes
        state.limit_source = "--memory-limit" if config.memory_limit_bytes else "device memory"


def predict_at(state: ProfileProgress, batch: int, first: bool) -> Iterator[Event]:
    spec = state.device.spec
    overheads = default_overheads(spec)
    impl = state.resolved.optimizer_impl
    if impl != overheads.optimizer_impl:  # --(no-)fused-adamw or RunConfig.adamw_foreach overrode it
        overheads = replace(overheads, optimizer_impl=impl)
    prediction = predict(state.resolved.padded, spec, state.resolved.setup(batch),
                         memory_limit_bytes=state.memory_limit, overheads=overheads,
                         device_profile=state.device_profile)
    state.prediction = prediction
    if first:
        state.first_prediction = prediction
    yield PredictionReady(prediction=prediction)


def load_device_profile(state: ProfileProgress) -> Iterator[Event]:
    """This device's measured kernel profile (``mfutop calibrate``), when a reusable one is cached: the
    step-time prediction then comes from it, the datasheet one beside it. Never measured here unasked."""
    from profiler.profile_cache import cached_device_profile

    dtypes = ("fp32",) if state.resolved.peak_dtype in ("fp32", "tf32") else ("fp32", "bf16")
    profile, why = cached_device_profile(state.device.kind, dtypes)
    state.device_profile = profile
    yield LogMessage("info", f"step time predicted from {why}" if profile is not None else
                     f"step time predicted from the datasheet: {why}")


def _breakdown(state: ProfileProgress, trainer: TrainingStep, batch: int) -> Event:
    """Where the step time goes, measured: one more step, its ops timed (``step_breakdown.measure_breakdown``),
    kept out of the timed ones."""
    from profiler.step_breakdown import breakdown_event, measure_breakdown

    timed = [s.step_time_s for s in state.samples if not s.warmup]
    x, y = trainer.make_batch(batch, state.seq_len)
    state.breakdown = measure_breakdown(trainer, x, y, reference_s=steady_state(timed).median if timed else None)
    return breakdown_event(state.breakdown, lookup(state.prediction, "step.categories"))


def seed_batch(state: ProfileProgress) -> int:
    return max(1, int(state.first_prediction.get("max_batch_size") or 1))


def _count(state: ProfileProgress, batch: int, conventions: bool) -> FlopsCounted:
    """The FLOPs of one step at ``batch``: the analytic count, and with ``conventions`` thop's and
    FlopCounterMode's beside it."""
    counts = count_flops(state.resolved.padded, batch, state.seq_len, use_thop=conventions,
                         use_counter=conventions)
    state.flops = counts
    return FlopsCounted(batch_size=batch, seq_len=state.seq_len, analytic=counts.analytic, thop=counts.thop,
                        counter=counts.counter, note=counts.note if conventions else "")


def predicted_bytes(state: ProfileProgress) -> Callable[[int], int]:
    cfg, setup = state.resolved.padded, state.resolved.setup(1)
    kind, impl = "cpu" if state.device.kind == "cpu" else "gpu", state.resolved.optimizer_impl
    return lambda b: training_memory(cfg, setup, batch_size=b, device_kind=kind, optimizer_impl=impl).total


def _gate_fixed_batch(state: ProfileProgress, batch: int) -> None:
    """CPU: a fixed batch predicted far over the cap is refused before it can exhaust RAM."""
    predicted = predicted_bytes(state)(batch)
    if predicted > GATE_MARGIN * state.memory_limit:
        raise ConfigError(f"batch {batch} is predicted to need {fmt_bytes(predicted)}, over the CPU memory cap "
                          f"{fmt_bytes(state.memory_limit)} ({state.limit_source}); use a smaller --batch-size")


# ----------------------------------------------------------------- search

def _search(state: ProfileProgress, trainer: TrainingStep, cancel: threading.Event,
            inject_oom_above: int | None) -> Iterator[Event]:
    """Priming step at batch 1 (allocates AdamW state), then the seeded bracket search."""
    cpu = trainer.device.type == "cpu"
    probe = StepProbe(trainer, state.seq_len, state.memory_limit,
                      predicted_bytes(state) if cpu else None, inject_oom_above)
    priming = probe(1)
    if not priming.fits:
        raise ConfigError(f"{state.resolved.model.name} does not fit at batch 1 (seq-len {state.seq_len}, "
                          f"{state.resolved.precision}) under the memory limit {fmt_bytes(state.memory_limit)}: "
                          f"{priming.detail or priming.outcome}")
    state.priming = {"batch_size": 1, "seconds": priming.seconds, "peak_memory_bytes": priming.peak_memory_bytes}
    seed, max_batch = seed_batch(state), MAX_BATCH
    if cpu and state.config.memory_limit_bytes is None:
        max_batch = max(1, CPU_SEARCH_TOKENS // state.seq_len)
        yield LogMessage(level="info", text=(
            f"CPU search without --memory-limit: up to {CPU_SEARCH_TOKENS:,} tokens per step (batch {max_batch}) "
            f"so the run takes seconds, and under {fmt_bytes(state.memory_limit)} ({state.limit_source}); "
            "give --memory-limit to search the memory bound"))
    if state.config.compile:
        yield state.warn("torch.compile: every new probe batch size recompiles, so probe times include "
                           "compilation" + ("; on the CPU the tracked probes run eagerly" if cpu else ""))
    steps = iter_search(probe, min(seed, max_batch), max_batch=max_batch, should_stop=cancel.is_set)
    while True:
        try:
            out, low, high = next(steps)
        except StopIteration as stop:
            result = stop.value
            break
        if out.after_bytes is not None and out.baseline_bytes is not None and out.after_bytes > out.baseline_bytes:
            yield state.warn(f"probe at batch {out.batch_size} left "
                               f"{fmt_bytes(out.after_bytes - out.baseline_bytes)} allocated after recovery")
        yield ProbeResult(batch_size=out.batch_size, fits=out.fits, peak_memory_bytes=out.peak_memory_bytes,
                          seconds=out.seconds, outcome=out.outcome, low=low, high=high)
    state.search = result
    barely = [p for p in result.probes if p.fits and p.batch_size == result.max_batch_size and p.detail]
    if barely:
        yield state.warn(f"batch {result.max_batch_size} {barely[0].detail}: it may not survive a long run; "
                           f"batch {max(1, result.max_batch_size - 1)} leaves headroom")
    if max_batch < MAX_BATCH and result.max_batch_size >= max_batch:
        state.search_limited_by = "token_cap"
    if result.cancelled:
        return max(result.max_batch_size, 1)
    if result.max_batch_size == 0:
        raise ConfigError(f"{state.resolved.model.name} does not fit at batch 1 under the memory limit")
    return result.max_batch_size
