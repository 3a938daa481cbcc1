"""Measurement events: the one stream the app, ``--jsonl`` and recorded runs share.

Events are small frozen dataclasses. ``to_dict()`` adds an ``"event"`` tag so a
JSONL line can be turned back into the same object (``event_from_dict``);
that round trip is what ``mfutop replay`` and ``mfutop remote`` rely on.
This module imports no torch: the app and replay read events without it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import IO, TYPE_CHECKING, Any, Iterable, Iterator

if TYPE_CHECKING:
    from profiler.event_validation import SkipCounter


@dataclass(frozen=True)
class Event:
    """Base class; ``kind`` is the tag written to JSON."""

    kind = "event"

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.kind, **asdict(self)}


@dataclass(frozen=True)
class DeviceDetected(Event):
    kind = "device_detected"
    device: str  # "cuda" | "cpu"
    name: str
    spec_key: str | None  # estimator HardwareSpec.key, None if unknown
    memory_total_bytes: int | None
    peak_flops: float | None  # dense FLOP/s of the dtype the matmuls run in; None = unknown
    peak_dtype: str
    peak_source: str  # datasheet citation, "derived: ...", or "measured: matmul benchmark"
    details: dict[str, Any] = field(default_factory=dict)  # NVML / CPU fields, "N/A" where unsupported
    reason: str = ""  # why CPU only (no NVML, no driver, ...)


@dataclass(frozen=True)
class PredictionReady(Event):
    kind = "prediction_ready"
    prediction: dict[str, Any]  # the `mfutop estimate --json` object for this setup


@dataclass(frozen=True)
class FlopsCounted(Event):
    kind = "flops_counted"
    batch_size: int
    seq_len: int
    analytic: int  # forward+backward, nanoGPT convention
    thop: int | None  # 3 x thop forward (MACs x 2); misses functional ops
    counter: int | None  # torch.utils.flop_counter.FlopCounterMode, forward+backward
    note: str = ""


@dataclass(frozen=True)
class ProbeResult(Event):
    kind = "probe_result"
    batch_size: int
    fits: bool
    peak_memory_bytes: int | None
    seconds: float
    outcome: str  # "ok" | "oom" | "gated" (predicted over the limit, not run) | "cancelled"
    low: int  # largest batch known to fit after this probe (0: none yet)
    high: int | None  # smallest batch known not to fit (None: none yet)


@dataclass(frozen=True)
class StepSample(Event):
    kind = "step_sample"
    step: int
    batch_size: int
    step_time_s: float
    tokens_per_s: float
    loss: float
    memory_allocated_bytes: int
    memory_reserved_bytes: int
    memory_peak_bytes: int
    nvml_used_bytes: int | None
    mfu: float | None
    warmup: bool = False


@dataclass(frozen=True)
class RunFinished(Event):
    kind = "run_finished"
    summary: dict[str, Any]  # the `mfutop profile --json` object
    cancelled: bool = False


@dataclass(frozen=True)
class RunFailed(Event):
    kind = "run_failed"
    message: str
    error_type: str = ""


@dataclass(frozen=True)
class LogMessage(Event):
    kind = "log"
    level: str  # "info" | "warning" | "error"
    text: str


@dataclass(frozen=True)
class LadderRung(Event):
    """One rung of `mfutop ladder` (``rung`` is its JSON row); ``index`` counts from 1 of ``total``."""

    kind = "ladder_rung"
    index: int
    total: int
    rung: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StepBreakdown(Event):
    """Where one profiled step's time went, by op-graph category (``estimator.ops.CATEGORIES``).

    ``measured_s`` comes from a separate step under ``torch.profiler`` (its overhead is
    kept out of the timed steps); ``predicted_s`` from the cost model, empty when none.
    """

    kind = "step_breakdown"
    measured_s: dict[str, float] = field(default_factory=dict)
    predicted_s: dict[str, float] = field(default_factory=dict)
    step_time_s: float | None = None  # the profiled step's wall time (profiler overhead included)
    source: str = "torch.profiler"


EVENT_TYPES: dict[str, type[Event]] = {
    cls.kind: cls
    for cls in (
        DeviceDetected, PredictionReady, FlopsCounted, ProbeResult, StepSample,
        RunFinished, RunFailed, LogMessage, LadderRung, StepBreakdown,
    )
}


def event_from_dict(data: dict[str, Any]) -> Event:
    """Rebuild an event from its ``to_dict()``; unknown keys are ignored (newer writers)."""
    tag = data.get("event")
    cls = EVENT_TYPES.get(tag)  # type: ignore[arg-type]
    if cls is None:
        raise ValueError(f"unknown event type {tag!r}")
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


class JsonlWriter:
    """Writes one event per line and flushes each, so a reader can follow a live file."""

    def __init__(self, stream: IO[str]):
        self._stream = stream

    def write(self, event: Event) -> None:
        self._stream.write(json.dumps(event.to_dict(), default=_json_default) + "\n")
        self._stream.flush()


def _json_default(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


def read_events(lines: Iterable[str], skipped: SkipCounter | None = None, first_line_no: int = 1) -> Iterator[Event]:
    """Validated events of JSONL lines (``profiler.event_validation``: schema, finite numbers, clean strings).

    Blank lines and non-JSON noise (a shell banner) pass silently; a line that looks like JSON but is
    not a valid event is skipped and, when ``skipped`` is given, counted there with its line number.
    """
    from profiler.event_validation import validated_events  # it imports this module

    return validated_events(lines, skipped, first_line_no)
