"""`RunState`: everything one run has told the app so far, folded from its events.

Widgets are views of this object: they render from it on mount and on every
refresh, so a layout switch (wide <-> compact) can rebuild them without losing
anything. Pure Python, no Textual, no torch: unit tests feed it events directly.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass, field
from typing import Any

from profiler.compare import lookup, prediction_batch, timed_figures
from profiler.events import (
    DeviceDetected,
    Event,
    FlopsCounted,
    LogMessage,
    PredictionReady,
    ProbeResult,
    RunFailed,
    RunFinished,
    StepBreakdown,
    StepSample,
)

# idle: nothing started; running; cancelling: cancel asked, waiting for the source to stop;
# finished / cancelled / failed: the source said so; ended: the source stopped without a verdict
# (a replay file cut short, a cancelled follow).
STATUSES = ("idle", "running", "cancelling", "finished", "cancelled", "failed", "ended")
DONE_STATUSES = ("finished", "cancelled", "failed", "ended")


@dataclass
class RunState:
    status: str = "idle"
    device: DeviceDetected | None = None
    prediction: dict[str, Any] | None = None
    flops: FlopsCounted | None = None
    probes: list[ProbeResult] = field(default_factory=list)
    samples: list[StepSample] = field(default_factory=list)
    summary: dict[str, Any] | None = None
    failure: RunFailed | None = None
    logs: list[tuple[str, str]] = field(default_factory=list)  # (level, text), app notes included
    events: list[Event] = field(default_factory=list)  # the recorded stream, for saving
    gpus: list[dict[str, Any]] = field(default_factory=list)  # latest NVML sample per GPU (live runs only)
    expected_steps: int | None = None  # timed steps the config asks for, for "step 7/20"
    breakdown: StepBreakdown | None = None  # where one profiled step's time went

    def apply(self, event: Event) -> None:
        """Fold one event in. Later PredictionReady / FlopsCounted events replace earlier ones."""
        self.events.append(event)
        if isinstance(event, DeviceDetected):
            self.device = event
            if event.reason:
                self.logs.append(("info", f"device: {event.reason}"))
            if event.peak_flops is None:
                self.logs.append(("warning", f"{event.name}: unknown {event.peak_dtype} peak, MFU n/a (--peak-tflops sets one)"))
            elif str(event.peak_source).startswith("derived"):
                self.logs.append(("warning", f"{event.name}: peak {event.peak_source}"))
        elif isinstance(event, PredictionReady):
            self.prediction = event.prediction
            for warning in lookup(event.prediction, "warnings") or []:
                if ("warning", f"prediction: {warning}") not in self.logs:
                    self.logs.append(("warning", f"prediction: {warning}"))
        elif isinstance(event, FlopsCounted):
            if event.note and (self.flops is None or _shape(self.flops.note) != _shape(event.note)):
                self.logs.append(("info", f"FLOPs: {event.note}"))  # a recount at another batch: same text
            self.flops = event
        elif isinstance(event, ProbeResult):
            self.probes.append(event)
        elif isinstance(event, StepSample):
            self.samples.append(event)
        elif isinstance(event, RunFinished):
            self.summary = event.summary
            self.status = "cancelled" if event.cancelled else "finished"
        elif isinstance(event, RunFailed):
            self.failure = event
            self.status = "failed"
            self.logs.append(("error", f"run failed: {event.error_type + ': ' if event.error_type else ''}{event.message}"))
        elif isinstance(event, StepBreakdown):
            self.breakdown = event
        elif isinstance(event, LogMessage):
            self.logs.append((event.level, event.text))

    def note(self, level: str, text: str) -> None:
        """A line from the app itself (saved to …, cancelled …) for the log panel."""
        self.logs.append((level, text))

    @property
    def done(self) -> bool:
        return self.status in DONE_STATUSES

    @property
    def busy_machine(self) -> bool:
        """Whether the run warned that the machine was busy (CPU timings read low)."""
        return any(level == "warning" and "machine is busy" in text for level, text in self.logs)

    @property
    def timed_samples(self) -> list[StepSample]:
        return [s for s in self.samples if not s.warmup]

    @property
    def bracket(self) -> tuple[int, int | None] | None:
        """The search bracket [low, high) after the latest probe, or None before any probe."""
        if not self.probes:
            return None
        last = self.probes[-1]
        return last.low, last.high

    @property
    def search_done(self) -> bool:
        """True once the search has stopped: steps started, the run ended, or the bracket closed."""
        if not self.probes:
            return False
        low, high = self.bracket  # type: ignore[misc]
        return bool(self.samples) or self.done or (high is not None and high <= low + 1)

    def measured(self) -> dict[str, Any]:
        """Measured figures under the summary's ``measured`` key names.

        The final summary wins where it has a value; until then the figures are
        derived from the events so far (medians of timed steps, max of peaks).
        ``max_batch_size`` is set only when the search found the memory bound
        (a fit at b and a failure at b+1); a search stopped by a cap (CPU token or
        time budget) gives ``max_batch_floor`` and ``max_batch_limited_by`` instead.
        """
        timed = self.timed_samples
        floor, exact, limited_by = self._search_outcome()
        batch = timed[-1].batch_size if timed else (self.flops.batch_size if self.flops else None)
        seq_len = self.flops.seq_len if self.flops else None
        peak = self.device.peak_flops if self.device else None
        flops = self.flops.analytic if self.flops and self.flops.batch_size == batch else None
        derived: dict[str, Any] = {
            "params": None,
            "flops_analytic": self.flops.analytic if self.flops else None,
            "flops_thop": self.flops.thop if self.flops else None,
            "flops_counter": self.flops.counter if self.flops else None,
            "batch_size": batch,
            **timed_figures([s.step_time_s for s in timed], batch * seq_len if batch and seq_len else None,
                            flops, peak),
            "peak_memory_bytes": max((s.memory_peak_bytes for s in timed), default=None),
        }
        for key in ("tokens_per_s", "mfu"):  # no FLOPs count at this batch (a DDP run): the samples' own figures
            known = [getattr(s, key) for s in timed if getattr(s, key) is not None]
            if derived[key] is None and known:
                derived[key] = statistics.median(known)
        if self.summary:
            for key, value in (self.summary.get("measured") or {}).items():
                if value is not None:
                    derived[key] = value
        derived["max_batch_size"] = floor if exact else None
        derived["max_batch_floor"] = None if exact else floor
        derived["max_batch_limited_by"] = None if exact else limited_by
        return derived

    def _search_outcome(self) -> tuple[int | None, bool, str]:
        """(largest batch known to fit, whether it is the memory bound, what stopped the search)."""
        search = (self.summary or {}).get("search") or {}
        if search.get("max_batch_size") is not None:
            limited_by = str(search.get("limited_by") or "memory")
            return search["max_batch_size"], limited_by == "memory", limited_by.replace("_", " ")
        if not self.search_done or not self.bracket or not self.bracket[0]:
            return None, False, ""
        low, high = self.bracket
        if high is not None and high <= low + 1:
            return low, True, "memory"
        return low, False, ""  # the runner's summary will say what stopped it

    @property
    def predicted_batch(self) -> int | None:
        """The micro-batch the prediction's step figures are for."""
        return prediction_batch(self.prediction)

    @property
    def model_name(self) -> str | None:
        return lookup(self.prediction, "model.name") or (
            lookup(self.prediction, "model") if isinstance(lookup(self.prediction, "model"), str) else None)

    def series(self, name: str) -> list[float]:
        """One StepSample field over all steps (warm-up included), for the live charts."""
        out = []
        for sample in self.samples:
            value = getattr(sample, name)
            if value is not None:
                out.append(float(value))
        return out


def _shape(text: str) -> str:
    """The text with its numbers blanked: two notes that differ only in figures say the same thing."""
    return re.sub(r"[0-9][0-9,.]*", "#", text)


def steps_of(timed: int, expected: int | None) -> str:
    """'/20' while within the asked steps; ' (20 + 2 while the timings settled)' once the runner adds
    steps because the spread was still over 10 %."""
    if not expected:
        return ""
    return f"/{expected}" if timed <= expected else f" ({expected} + {timed - expected} while the timings settled)"