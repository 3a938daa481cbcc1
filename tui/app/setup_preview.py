"""`SetupPreview`: what the setup on the form is predicted to do before `r` starts it.

Fits or not, memory, step time and the run's duration (its steps, plus the
batch-size search under batch "auto"), so that a 20-minute CPU run or a model
that cannot fit is never a surprise. ``preview_run`` makes the run's own
prediction (``profiler.run``'s memory cap, cached device profile and
``predict``) on the device the run would use, without measuring anything:
on a CPU only a cached matmul peak is used, and without one the step time is
unknown until the run measures it. The app computes it in a thread worker and
posts ``PreviewReady``; this widget only draws it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.message import Message
from textual.widgets import Static

from estimator.errors import ConfigError
from estimator.units import fmt_bytes, fmt_seconds
from profiler.run_config import RunConfig
from tui.plain_text import plain

LONG_RUN_S = 120.0  # a run predicted to take longer than this asks first


@dataclass(frozen=True)
class RunPreview:
    """The prediction of one setup as the form shows it (``fits`` False: the run is refused)."""

    config: RunConfig
    model: str
    device_kind: str  # "cpu" | "cuda"
    device_name: str
    fits: bool
    memory_bytes: int  # at the batch that runs (batch 1 when nothing fits)
    limit_bytes: int
    limit_source: str
    batch: int  # the batch that runs: the predicted search answer under "auto"
    auto_batch: bool
    max_batch: int  # the largest batch predicted to fit (0: none)
    fit_change: str = ""  # the cheapest change that fits (estimator.plan_fit), when memory is the problem
    step_s: float | None = None  # None: unknown until the run measures this device
    step_source: str = ""  # where the step time comes from, or why it is unknown
    run_steps: int = 0  # warm-up, memory, timed and breakdown steps
    search_s: float = 0.0
    search_probes: int = 0

    @property
    def duration_s(self) -> float | None:
        """Steps x step time plus the search; None when the step time is unknown."""
        return None if self.step_s is None else self.run_steps * self.step_s + self.search_s

    @property
    def long(self) -> bool:
        return self.duration_s is not None and self.duration_s > LONG_RUN_S

    @property
    def where(self) -> str:
        return "this CPU" if self.device_kind == "cpu" else "this GPU"

    def question(self) -> str:
        """The long-run confirmation: '≈ 20.0 min on this CPU — run anyway?'."""
        return f"≈ {fmt_seconds(self.duration_s)} on {self.where} — run anyway?"

    def refusal(self, figures: bool = False) -> str:
        """One short line for beside the form when the run is refused; with ``figures`` (a notification)
        the model and its memory against the limit."""
        if not figures:
            return "not started: does not fit in memory"
        return (f"Not started: {self.model} does not fit ({fmt_bytes(self.memory_bytes)} > "
                f"{fmt_bytes(self.limit_bytes)} limit); the preview says what would.")


class PreviewReady(Message):
    """A preview computed in the worker (``preview`` None: it failed, ``error`` says why)."""

    def __init__(self, seq: int, config: RunConfig, preview: RunPreview | None, error: str = "") -> None:
        super().__init__()
        self.seq, self.config, self.preview, self.error = seq, config, preview, error


# ---------------------------------------------------------------- computing it

def cached_cpu_peak(dtype: str) -> dict[str, Any]:
    """The cached CPU matmul peak of ``dtype`` (as ``cpu_probe.measured_peak`` returns it), never a
    measurement: the UI must not benchmark. Not cached: ``flops`` None and a note saying so."""
    from profiler import cpu_probe

    return cpu_probe.cached_peak(dtype) or {"dtype": dtype, "flops": None, "cached": False,
            "note": f"the {dtype} matmul peak of this CPU is not measured yet (the run measures it)"}


def cached_detect(requested: str, precision: str, peak_tflops: float | None):
    """``profiler.detect.detect_device`` with the CPU peak read from the cache only."""
    from profiler.detect import detect_device

    return detect_device(requested, precision, peak_tflops, cpu_benchmark=cached_cpu_peak)


def run_steps(config: RunConfig, cpu: bool, searched: bool) -> int:
    """The full steps a run takes after the search (``profiler.timed_steps.measure_steps``): warm-up
    (one fewer after a search, whose last probe ran at the batch; on a CPU at least two without a
    search, the last one tracked for memory), the timed steps, and
    the breakdown (``step_breakdown.measure_breakdown``): one profiled step, or on an eager CPU one
    recorded step and its replays (a long step: an untimed and a timed one, ``op_timer.REPLAY_ROUNDS``)."""
    from profiler.timed_steps import warmup_steps

    breakdown = 3 if cpu and not config.compile else 1
    return warmup_steps(config.warmup_steps, cpu, searched, probed_at_batch=searched) + config.steps + breakdown


def preview_run(config: RunConfig, detect: Callable[..., Any] | None = None) -> RunPreview:
    """The prediction the run of ``config`` would make, on the device it would use (torch imported here).

    ``detect`` replaces ``cached_detect`` (tests). Not fitting in memory is a preview with
    ``fits`` False; any other ConfigError (no CUDA, a shape the estimator refuses) is raised: there is
    no prediction, and the run, if started, reports it as its own failure.
    """
    from profiler.resolve import resolve_run
    from profiler.run import ProfileProgress, load_device_profile, memory_cap, predicted_bytes, seed_batch

    det, resolved = resolve_run(config, detect or cached_detect)
    state = ProfileProgress(config=config, device=det, resolved=resolved)
    for _ in memory_cap(state):
        pass
    for _ in load_device_profile(state):
        pass
    base = {"config": config, "model": resolved.model.name, "device_kind": det.kind, "device_name": det.spec.name,
            "auto_batch": config.batch_size is None, "limit_source": state.limit_source}
    predictor = _Predictor(state)
    try:
        first = predictor.at(config.batch_size or 1, first=True)
    except ConfigError:  # nothing fits at batch 1 (predict's check), or another refusal: raised
        needed = predicted_bytes(state)(1)
        limit = state.memory_limit or det.spec.memory_bytes
        if needed <= limit:
            raise
        return RunPreview(**base, fits=False, memory_bytes=needed, limit_bytes=limit, batch=1, max_batch=0,
                          fit_change=_fit_change(state, 1, limit))
    limit = first["memory"]["limit"]
    searching = config.batch_size is None and config.search
    batch = config.batch_size or seed_batch(state)
    search_s, probes = 0.0, 0
    if searching:
        batch, search_s, probes = predictor.search(batch, limit)
    prediction = predictor.at(batch)
    memory = prediction["memory"]
    fits = bool(memory["fits"])
    step_s, step_source = _step_time(prediction, state)
    return RunPreview(
        **base, fits=fits, fit_change="" if fits else _fit_change(state, batch, limit),
        memory_bytes=int(memory["total"]), limit_bytes=int(limit), batch=batch,
        max_batch=int(first.get("max_batch_size") or 0), step_s=step_s, step_source=step_source,
        run_steps=run_steps(config, det.kind == "cpu", searching), search_s=search_s, search_probes=probes)


class _Predictor:
    """``profiler.run.predict_at`` at a batch, each batch predicted once."""

    def __init__(self, state) -> None:
        self.state = state
        self.by_batch: dict[int, dict] = {}

    def at(self, batch: int, first: bool = False) -> dict:
        from profiler.run import predict_at

        if batch not in self.by_batch:
            for _ in predict_at(self.state, batch, first):
                pass
            self.by_batch[batch] = self.state.prediction
        return self.by_batch[batch]

    def step_s(self, batch: int) -> float:
        step = self.at(batch)["step"]
        return float(step["time_s"]) if step else 0.0

    def search(self, seed: int, limit: int) -> tuple[int, float, int]:
        """The run's bracket search, each probe answered by the prediction: (batch found, seconds, probes).

        The priming step at batch 1 and every probe that fits cost a step; one that does not is
        gated or fails early, counted as free."""
        from profiler.bracket_search import MAX_BATCH, find_max_batch
        from profiler.run import CPU_SEARCH_TOKENS, predicted_bytes

        state = self.state
        max_batch = MAX_BATCH
        if state.device.kind == "cpu" and state.config.memory_limit_bytes is None:
            max_batch = max(1, CPU_SEARCH_TOKENS // state.seq_len)
        needed = predicted_bytes(state)
        result = find_max_batch(lambda b: needed(b) <= limit, min(seed, max_batch), max_batch=max_batch)
        found = max(1, result.max_batch_size)
        seconds = self.step_s(1) + sum(self.step_s(p.batch_size) for p in result.probes if p.fits)
        return found, seconds, len(result.probes)


def _step_time(prediction: dict, state) -> tuple[float | None, str]:
    """The predicted step time and its source; on a CPU without a device profile or a cached peak,
    None: the theoretical peak is a guess the run replaces with a measurement."""
    step = prediction.get("step")
    if not step:
        return None, "unknown: no peak for this precision (--peak-tflops)"
    if step.get("source") == "measured":
        return float(step["time_s"]), "device profile"
    if state.config.peak_tflops:
        return float(step["time_s"]), "--peak-tflops"
    if state.device.kind != "cpu":
        return float(step["time_s"]), "datasheet"
    dtype = "fp32" if state.resolved.peak_dtype == "tf32" else state.resolved.peak_dtype
    measured = (state.device.event.details or {}).get("measured_peaks", {}).get(dtype) or {}
    if measured.get("flops"):
        return float(step["time_s"]), "this CPU's cached peak"
    return None, "unknown until the run measures this CPU's peak"


def _fit_change(state, batch: int, limit: int) -> str:
    """``estimator.plan_fit.cheapest_fitting_change`` in words; on a CPU, one device, said so."""
    from estimator.plan_fit import cheapest_fitting_change

    try:
        change = cheapest_fitting_change(state.resolved.padded, state.device.spec, state.resolved.setup(batch),
                                         memory_limit_bytes=limit)
    except ConfigError:
        return ""
    if change.setup is not None or state.device.kind != "cpu":
        return change.summary
    more = " or a higher mem limit" if state.limit_source == "--memory-limit" else ""
    return f"none on this CPU; a smaller model{more}"


# ---------------------------------------------------------------- drawing it

def preview_lines(preview: RunPreview) -> list[str]:
    """The preview in a few short lines (a 36-column sidebar): verdict and memory, batch and step,
    duration; or, not fitting, what would. The details are in ``preview_details``."""
    if not preview.fits:
        at = f" at batch {preview.batch}" if preview.batch > 1 else ""
        lines = [f"fits: no · {fmt_bytes(preview.memory_bytes)}{at} > {fmt_bytes(preview.limit_bytes)}"]
        if preview.max_batch:
            lines.append(f"largest batch that fits: {preview.max_batch}")
        if preview.fit_change:
            lines.append(f"cheapest change: {preview.fit_change}")
        return lines
    batch = f"auto → {preview.batch}" if preview.auto_batch else str(preview.batch)
    lines = [f"fits: yes · {fmt_bytes(preview.memory_bytes)} of {fmt_bytes(preview.limit_bytes)}"]
    if preview.step_s is None:
        return lines + [f"batch {batch} · step time {preview.step_source}"]
    search = " + search" if preview.auto_batch else ""
    return lines + [f"batch {batch} · step ≈ {fmt_seconds(preview.step_s)}",
                    f"run ≈ {fmt_seconds(preview.duration_s)}: {preview.run_steps} steps{search}"]


def preview_details(preview: RunPreview) -> list[str]:
    """Where the figures come from (the widget's tooltip, the long-run question's detail)."""
    out = [f"{preview.model} on {preview.device_name or preview.device_kind}",
           f"memory limit {fmt_bytes(preview.limit_bytes)} ({preview.limit_source or 'device memory'})"]
    if preview.max_batch:
        out.append(f"largest batch predicted to fit: {preview.max_batch}")
    if preview.fits and preview.step_s is not None:
        out.append(f"{preview.run_steps} steps x {fmt_seconds(preview.step_s)} ({preview.step_source})")
        if preview.auto_batch:
            probes = f"{preview.search_probes} probe{'s' if preview.search_probes != 1 else ''}"
            out.append(f"batch search ≈ {fmt_seconds(preview.search_s)} ({probes})")
    return out


def _lines_text(lines: list[str]) -> Text:
    """Lines of outside words (model and device names) as one plain ``Text``."""
    text = Text()
    for i, line in enumerate(lines):
        if i:
            text.append("\n")
        text.append_text(plain(line, max_chars=400))
    return text


class SetupPreview(Static):
    """The prediction of the setup on the form, or what it is waiting for ("predicting…")."""

    def __init__(self, **kwargs) -> None:
        super().__init__("", **kwargs)

    def show_preview(self, preview: RunPreview | None, status: str = "") -> None:
        """``status`` (predicting, no prediction, fix the setup) replaces the figures while it applies."""
        self.set_class(not status and preview is not None and not preview.fits, "-refused")
        self.set_class(bool(status), "-pending")
        if status or preview is None:
            self.update(plain(status, max_chars=400))
            self.tooltip = None
            return
        self.update(_lines_text(preview_lines(preview)))
        self.tooltip = _lines_text(preview_details(preview))
