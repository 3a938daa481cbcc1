"""``Tracker``: MFU, tokens/s and memory of *your* training loop, as the same events ``mfutop profile`` writes.

    with Tracker(model, tokens_per_step=B * T, out="run.jsonl", config="config.json") as t:
        for batch in loader:
            loss = train_step(batch)
            t.step(loss=loss)

A step is the time between two ``step()`` calls (the first from ``__enter__``):
everything the loop does, data loading included, because that is what a
training run costs. CUDA events on a GPU, ``perf_counter`` on the CPU. The
first ``warmup`` steps (at least the first) are flagged and left out of the
statistics; the first step is also the *instrumented* one:

- FLOPs per step: from the estimator when a config is known
  (``estimator.flops.step_flops``: matmul FLOPs, full TxT attention); else
  counted once with ``FlopCounterMode`` around step 1. On the CPU, SDPA
  dispatches to a kernel the counter has no formula for (it would count 0);
  the nanoGPT-convention formula is registered for it
  (``profiler.flop_count.cpu_sdpa_formulas``), so the attention core is counted. On CUDA the counter's flash-attention backward includes the
  recompute (5 matmuls, not 4): that count is nearer HFU, and says so.
- Memory: CUDA allocator stats every step (host-side counters: cheap). On the
  CPU, live tensor bytes of step 1 (``LiveStorageTracker``, which costs tens of
  µs per op — hence only in a warm-up step); process RSS every step.

On a GPU the sample of step k is finished at step k+1 (its end event has
long completed by then), so the host is never made to wait for the device.
Under ``torch.distributed`` every rank measures, one ``all_reduce(MAX)`` per
step takes the slowest rank's time, tokens are summed over ranks once, and
only rank 0 writes. No thread is started. A write error warns once and the
measurement goes on (``Tracker.events`` keeps everything).
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from estimator.errors import ConfigError
from estimator.flops import step_flops
from estimator.mfu import mfu
from estimator.model_config import ModelConfig
from profiler.events import (
    DeviceDetected, Event, FlopsCounted, JsonlWriter, LogMessage, PredictionReady, RunFailed, RunFinished,
    StepSample,
)
from profiler.flop_count import cpu_sdpa_formulas
from profiler.memory_meter import LiveStorageTracker, process_rss, training_state_tensors
from profiler.model_facts import infer_precision, model_device, unique_parameters
from profiler.tracker_summary import tracker_summary


@dataclass
class TrackerState:
    """What the tracker knows so far; the summary is built from it at any moment."""

    model_name: str | None = None
    config_path: str | None = None
    cfg: ModelConfig | None = None
    torch_device: str = "cpu"
    precision: str = "fp32"
    precision_source: str = ""
    tokens_per_step: int | None = None  # one rank's
    tokens_all_ranks: int | None = None
    world_size: int = 1
    rank: int = 0
    warmup: int = 1
    seq_len: int | None = None
    batch_size: int | None = None
    params: int | None = None
    flops: int | None = None  # per step, one rank: what MFU divides
    flops_causal: int | None = None
    flops_estimator: int | None = None
    flops_counter: int | None = None
    flops_source: str = ""
    peak_flops: float | None = None
    peak_dtype: str | None = None
    device_event: DeviceDetected | None = None
    prediction: dict | None = None
    samples: list[StepSample] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    memory_method: str = ""
    time_method: str = ""


class Tracker:
    """Measure a training loop you own. See the module docstring for what is measured and how.

    ``tokens_per_step``: tokens one rank processes per ``step()`` call (B x T x
    gradient-accumulation micro-steps); None infers B x T from the model's first
    forward input times ``grad_accum``. ``config``: a Hugging Face config.json
    path (or its folder) or an estimator ``ModelConfig``; it gives the FLOPs and
    the prediction. ``precision``: an estimator precision name (``bf16-mixed``,
    ``tf32``, ...); by default inferred from the parameters' dtype and the TF32
    switch — pass it when the loop runs under autocast. ``optimizer``: its
    state is counted in CPU memory when it already exists before the ``with``.
    ``detect``: replaces ``profiler.detect.detect_device`` (tests).
    """

    def __init__(self, model: torch.nn.Module, tokens_per_step: int | None = None, out: str | Path | None = None,
                 config: str | Path | ModelConfig | None = None, *, seq_len: int | None = None,
                 precision: str | None = None, device: str | None = None, warmup: int = 1,
                 peak_tflops: float | None = None, optimizer: torch.optim.Optimizer | None = None,
                 grad_accum: int = 1, detect: Callable[..., Any] | None = None):
        if not isinstance(model, torch.nn.Module):
            raise ConfigError(f"Tracker needs the torch.nn.Module being trained, got {type(model).__name__}")
        for name, value, low in (("tokens_per_step", tokens_per_step, 1), ("seq_len", seq_len, 1),
                                 ("warmup", warmup, 0), ("grad_accum", grad_accum, 1)):
            if value is None and name in ("tokens_per_step", "seq_len"):
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"Tracker {name} must be an integer >= {low}, got {value!r}")
        self.model = model
        self.out = Path(out) if out is not None else None
        self.optimizer = optimizer
        self._detect = detect
        self._peak_tflops = peak_tflops
        self._grad_accum = grad_accum
        self._explicit_seq_len = seq_len
        self.state = s = TrackerState(tokens_per_step=tokens_per_step, warmup=max(1, warmup))
        self._notes: list[str] = []
        if isinstance(config, ModelConfig):
            s.cfg, s.model_name = config, config.name
        elif config is not None:
            from estimator.hf_config import load_hf_config

            hf = load_hf_config(config)  # ConfigError: unreadable, or a family the profiler cannot build
            s.cfg, s.config_path, s.model_name = hf.cfg, str(config), hf.cfg.name
            self._notes.extend(hf.notes)
        s.model_name = s.model_name or type(model).__name__
        s.torch_device = str(device) if device is not None else model_device(model)
        s.precision, s.precision_source = (precision, "given") if precision else infer_precision(model, s.torch_device)
        from estimator.precision import get_precision

        s.peak_dtype = get_precision(s.precision).matmul_dtype  # ConfigError for an unknown name
        self.events: list[Event] = []
        self._writer: JsonlWriter | None = None
        self._stream = None
        self._entered = False
        self._steps = 0
        self._modes: list[Any] = []
        self._counter = None
        self._live: LiveStorageTracker | None = None
        self._hook = None
        self._captured: tuple[int, int] | None = None
        self._cuda = torch.device(s.torch_device).type == "cuda"
        self._t_last = 0.0
        self._event_last = None
        self._pending: tuple | None = None  # CUDA: (step, start event, end event, loss, memory) awaiting its time
        self._cpu_allocated = 0
        self._cpu_peak = 0
        self._dist = None

    # ------------------------------------------------------------- context manager
    def __enter__(self) -> "Tracker":
        if self._entered:
            raise ConfigError("a Tracker is entered once; make a new one for another run")
        self._entered = True
        s = self.state
        self._dist = _distributed()
        if self._dist is not None:
            s.rank, s.world_size = self._dist.get_rank(), self._dist.get_world_size()
        if s.rank == 0 and self.out is not None:
            try:
                self._stream = open(self.out, "w", encoding="utf-8")
                self._writer = JsonlWriter(self._stream)
            except OSError as exc:
                self._write_failed(exc)
        detect = self._detect
        if detect is None:
            from profiler.detect import detect_device as detect
        try:
            det = detect(s.torch_device if self._cuda else "cpu", s.precision, self._peak_tflops)
        except ConfigError as exc:  # --peak-tflops out of range, a CUDA device that is not there
            self._emit(RunFailed(message=str(exc), error_type="ConfigError"))
            self._close()
            raise
        s.device_event = det.event
        s.peak_flops = det.event.peak_flops
        self._spec = det.spec
        self._emit(det.event)
        for text in [*det.warnings, *self._notes]:
            self._log(text, "warning" if text in det.warnings else "info")
        if s.precision_source != "given":
            self._log(f"precision {s.precision} {s.precision_source}; pass precision= when the loop runs "
                      "under autocast (the MFU peak is the matmul dtype's)", "info")
        s.params = sum(p.numel() for p in unique_parameters(self.model))
        self._hook = self.model.register_forward_pre_hook(self._capture_shape, with_kwargs=True)
        self._start_instruments()
        self._mark_start()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        self._stop_instruments()
        self._remove_hook()
        if exc_type is not None:
            self._dist = None  # a failing rank must not wait in a collective its peers may never join
        if self._pending is not None:
            self._finish_pending()
        s = self.state
        try:
            if self._steps == 0:
                message = ("Tracker: step() was never called, so no step was timed; call t.step() once per "
                           "optimizer step inside the with block")
                if exc_type is not None:
                    message = f"{exc_type.__name__}: {exc} (before the first Tracker step)"
                self._emit(RunFailed(message=message, error_type="ConfigError" if exc_type is None
                                     else exc_type.__name__))
                if exc_type is None:
                    raise ConfigError(message)
                return False
            if not any(not x.warmup for x in s.samples):
                self._log(f"only {self._steps} step(s), all warm-up: no timed step; lower warmup= or run longer",
                          "warning")
            cancelled = exc_type is not None
            if cancelled:
                self._log(f"the training loop stopped with {exc_type.__name__}: {exc}; summary of what was measured",
                          "warning")
            self._emit(RunFinished(summary=self.summary, cancelled=cancelled))
            return False
        finally:
            self._close()

    # ------------------------------------------------------------------ the step
    def step(self, loss: Any = None) -> None:
        """End of one optimizer step (and start of the next); ``loss`` (tensor or number) is recorded."""
        if not self._entered:
            raise ConfigError("Tracker.step() outside its with block")
        now = self._mark_end()
        self._steps += 1
        n = self._steps
        if n == 1:
            self._stop_instruments()
            self._resolve_first_step()
        memory = self._memory()
        warm = n <= self.state.warmup
        loss_value = loss.detach() if isinstance(loss, torch.Tensor) else loss
        if self._cuda:
            if self._pending is not None:
                self._finish_pending()
            self._pending = (n, self._event_last, now, loss_value, memory, warm)
            self._event_last = now
        else:
            seconds = now - self._t_last
            self._t_last = now
            self._record(n, seconds, loss_value, memory, warm)

    def observe(self, token_ids: Any) -> None:
        """Give (B, T) from a batch of token ids, for loops whose forward the tracker's hook does not see."""
        if self._captured is None and isinstance(token_ids, torch.Tensor) and token_ids.dim() == 2:
            self._captured = (int(token_ids.shape[0]), int(token_ids.shape[1]))

    def note(self, text: str) -> None:
        """Add an information line to the run's events (what an adapter knows about the run)."""
        self._log(text, "info")

    @property
    def summary(self) -> dict[str, Any]:
        """The ``mfutop profile --json``-shaped summary of what was measured so far."""
        return tracker_summary(self.state)

    # ------------------------------------------------------------- timing
    def _mark_start(self) -> None:
        if self._cuda:
            self._event_last = torch.cuda.Event(enable_timing=True)
            self._event_last.record()
            self.state.time_method = "CUDA events between step() calls (one step behind: no host stall)"
        else:
            self._t_last = time.perf_counter()
            self.state.time_method = "time.perf_counter between step() calls"

    def _mark_end(self):
        if self._cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def _finish_pending(self) -> None:
        n, start, end, loss, memory, warm = self._pending
        self._pending = None
        end.synchronize()
        self._record(n, start.elapsed_time(end) / 1e3, loss, memory, warm)

    def _record(self, n: int, seconds: float, loss: Any, memory: tuple[int, int, int], warm: bool) -> None:
        s = self.state
        if self._dist is not None:
            seconds = self._slowest(seconds)
        allocated, reserved, peak = memory
        tokens = s.tokens_all_ranks or 0
        sample = StepSample(
            step=n, batch_size=s.batch_size or 0, step_time_s=seconds,
            tokens_per_s=tokens / seconds if seconds > 0 else 0.0, loss=_loss_float(loss),
            memory_allocated_bytes=allocated, memory_reserved_bytes=reserved, memory_peak_bytes=peak,
            nvml_used_bytes=None, mfu=mfu(s.flops, seconds, s.peak_flops), warmup=warm,
        )
        s.samples.append(sample)
        self._emit(sample)

    def _slowest(self, seconds: float) -> float:
        t = torch.tensor([seconds], dtype=torch.float64, device=self._reduce_device())
        self._dist.all_reduce(t, op=self._dist.ReduceOp.MAX)
        return float(t.item())

    def _reduce_device(self) -> str:
        return self.state.torch_device if self._dist.get_backend() == "nccl" else "cpu"

    # ------------------------------------------------------------- first step
    def _capture_shape(self, module, args, kwargs):
        """Forward pre-hook: (B, T) of the first integer 2-D input (``input_ids``), then removed."""
        candidates = [kwargs.get("input_ids"), kwargs.get("idx"), *args, *kwargs.values()]
        for value in candidates:
            if isinstance(value, torch.Tensor) and value.dim() == 2 and not value.is_floating_point():
                self._captured = (int(value.shape[0]), int(value.shape[1]))
                break
        self._remove_hook()
        return None

    def _remove_hook(self) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def _start_instruments(self) -> None:
        """FlopCounterMode (no config) and, on the CPU, the live-storage tracker, around step 1 only."""
        s = self.state
        if s.cfg is None:
            from torch.utils.flop_counter import FlopCounterMode

            self._counter = FlopCounterMode(display=False, custom_mapping=cpu_sdpa_formulas())
            self._modes.append(self._counter)
        if not self._cuda:
            self._live = LiveStorageTracker("cpu")
            self._live.track(training_state_tensors(self.model, self.optimizer))
            self._modes.append(self._live)
        for mode in self._modes:
            mode.__enter__()

    def _stop_instruments(self) -> None:
        while self._modes:
            self._modes.pop().__exit__(None, None, None)
        if self._live is not None:
            self._cpu_allocated, self._cpu_peak = self._live.live_bytes, self._live.peak_bytes
            self._live = None

    def _resolve_first_step(self) -> None:
        """After step 1: tokens, sequence length, FLOPs per step, the prediction; their events."""
        s = self.state
        self._remove_hook()
        b_t = self._captured
        if s.tokens_per_step is None:
            if b_t is None:
                self._log("tokens_per_step not given and no integer (B, T) input seen in the first forward: "
                          "tokens/s unknown", "warning")
            else:
                s.tokens_per_step = b_t[0] * b_t[1] * self._grad_accum
        s.seq_len = self._explicit_seq_len or (b_t[1] if b_t else None) or (s.cfg.context_length if s.cfg else None)
        if s.seq_len and s.tokens_per_step:
            s.batch_size = max(1, s.tokens_per_step // s.seq_len)
        s.tokens_all_ranks = self._sum_over_ranks(s.tokens_per_step) if s.tokens_per_step else None
        if s.cfg is not None:
            self._estimator_flops()
        elif self._counter is not None:
            self._counted_flops()
        cpu = not self._cuda
        s.memory_method = (
            "live tensor bytes of step 1 (TorchDispatchMode storage tracker: params, grads, optimizer state, "
            "activations; not kernel scratch); reserved = process RSS" if cpu else
            "torch.cuda.max_memory_allocated per step (peak reset at each step()); reserved = "
            "torch.cuda.memory_reserved")

    def _estimator_flops(self) -> None:
        s = self.state
        if not (s.seq_len and s.tokens_per_step):
            self._log("sequence length unknown: no FLOPs, no MFU", "warning")
            return
        if s.seq_len > s.cfg.context_length:
            self._log(f"sequence of {s.seq_len} tokens is longer than {s.cfg.name}'s context "
                      f"({s.cfg.context_length}); FLOPs counted at {s.seq_len} all the same", "warning")
        if s.tokens_per_step % s.seq_len:
            self._log(f"tokens_per_step {s.tokens_per_step} is not a multiple of the sequence length {s.seq_len}: "
                      "FLOPs scaled from one sequence", "warning")
        one = step_flops(s.cfg, 1, s.seq_len)
        s.flops = one.total * s.tokens_per_step // s.seq_len
        s.flops_causal = one.causal_total * s.tokens_per_step // s.seq_len
        s.flops_estimator, s.flops_source = s.flops, "estimator"
        self._predict()
        self._emit(FlopsCounted(batch_size=s.batch_size or 0, seq_len=s.seq_len, analytic=s.flops, thop=None,
                                counter=None, note="estimator.flops.step_flops for the given config: matmul "
                                "FLOPs, full TxT attention, backward = 2 x forward"))

    def _counted_flops(self) -> None:
        s = self.state
        counted = int(self._counter.get_total_flops()) * self._grad_accum
        self._counter = None
        s.flops = s.flops_counter = counted
        s.flops_source = "FlopCounterMode (step 1)"
        note = ("no config: FlopCounterMode counted step 1 (aten mm/addmm/bmm/SDPA as run, forward + backward"
                + (f", x{self._grad_accum} micro-steps" if self._grad_accum > 1 else "") + ")")
        if self._cuda:
            note += "; a flash-attention backward is counted with its recompute, so this is nearer HFU than MFU"
        if counted == 0:
            self._log("FlopCounterMode saw no matmul in step 1 (was the forward run inside the with block?): "
                      "MFU n/a; give config= for the estimator's count", "warning")
            s.flops = s.flops_counter = None
        self._emit(FlopsCounted(batch_size=s.batch_size or 0, seq_len=s.seq_len or 0, analytic=counted, thop=None,
                                counter=counted, note=note))

    def _predict(self) -> None:
        s = self.state
        from estimator.predict import predict
        from estimator.setup import TrainSetup

        try:
            s.prediction = predict(s.cfg, self._spec, TrainSetup(batch_size=s.batch_size, seq_len=s.seq_len,
                                                                 precision=s.precision), check_fit=False)
        except ConfigError as exc:
            self._log(f"no prediction: {exc}", "warning")
            return
        self._emit(PredictionReady(prediction=s.prediction))

    def _sum_over_ranks(self, tokens: int) -> int:
        if self._dist is None:
            return tokens
        t = torch.tensor([tokens], dtype=torch.int64, device=self._reduce_device())
        self._dist.all_reduce(t)
        return int(t.item())

    # ------------------------------------------------------------- memory
    def _memory(self) -> tuple[int, int, int]:
        if self._cuda:
            dev = torch.device(self.state.torch_device)
            out = (int(torch.cuda.memory_allocated(dev)), int(torch.cuda.memory_reserved(dev)),
                   int(torch.cuda.max_memory_allocated(dev)))
            torch.cuda.reset_peak_memory_stats(dev)
            return out
        return self._cpu_allocated, process_rss(), self._cpu_peak

    # ------------------------------------------------------------- output
    def _emit(self, event: Event) -> None:
        self.events.append(event)
        if self._writer is None:
            return
        try:
            self._writer.write(event)
        except (OSError, ValueError) as exc:  # disk full, closed stream: the measurement goes on
            self._write_failed(exc)

    def _write_failed(self, exc: Exception) -> None:
        self._writer = None
        text = f"mfutop Tracker: cannot write {self.out}: {exc}; measuring goes on (Tracker.events, .summary)"
        self.state.warnings.append(text)
        warnings.warn(text, RuntimeWarning, stacklevel=3)

    def _log(self, text: str, level: str) -> None:
        if level == "warning":
            self.state.warnings.append(text)
        self._emit(LogMessage(level=level, text=text))

    def _close(self) -> None:
        if self._stream is not None:
            failed_before = self._writer is None  # already warned: closing the broken stream is not news
            try:
                self._stream.close()
            except OSError as exc:
                if not failed_before:
                    self._write_failed(exc)
            self._stream = None
            self._writer = None


# ----------------------------------------------------------------- helpers

def _loss_float(loss: Any) -> float:
    if loss is None:
        return math.nan
    try:
        return float(loss.item() if isinstance(loss, torch.Tensor) else loss)
    except (TypeError, ValueError, RuntimeError):
        return math.nan


def _distributed():
    """``torch.distributed`` when a process group is initialised, else None."""
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None
