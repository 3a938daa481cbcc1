"""What really runs on this device: one frozen record, resolved once, used by every runner.

A run asks for a setup (``RunConfig``); the device decides part of what runs:
bf16 autocast may not work on this CPU, TF32 is a CUDA mode, a pre-Ampere GPU
has no bfloat16. The single-process run, each DDP rank and every ladder rung
take the same ``ResolvedRun``, so the precision, the peak MFU divides by, the
padded vocabulary, the attention kernel and the AdamW they report are the ones
the step executes. The ``DeviceDetected`` event is built from it, so the
hardware panel shows the very peak MFU divides by.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

from estimator.errors import ConfigError
from estimator.model_config import ModelConfig
from estimator.precision import get_precision
from estimator.presets import DEFAULT_CPU_MODEL, DEFAULT_GPU_MODEL, get_model
from estimator.setup import TrainSetup
from estimator.step_overheads import adamw_impl
from profiler.events import DeviceDetected
from profiler.run_config import RunConfig


@dataclass(frozen=True)
class ResolvedRun:
    config: RunConfig
    device_kind: str  # "cuda" | "cpu"
    torch_device: str  # "cuda:0" | "cpu"
    model: ModelConfig  # as named (the real vocabulary: token ids are drawn from it)
    padded: ModelConfig  # what runs and what predictions use (vocabulary padded)
    seq_len: int
    precision: str  # effective
    precision_note: str | None  # why it differs from the requested one
    peak_dtype: str  # the dtype the matmuls run in
    peak_flops: float | None  # the dense peak MFU divides by; None = unknown
    peak_source: str
    attention: str  # "sdpa" | "explicit"
    optimizer_impl: str  # "fused" | "foreach" | "for-loop"
    threads: int | None  # torch intra-op threads on a CPU

    def setup(self, batch_size: int, **parallel: Any) -> TrainSetup:
        """The estimator's setup for this run at ``batch_size`` (``parallel``: dp, zero, ...)."""
        return TrainSetup(batch_size=batch_size, seq_len=self.seq_len, precision=self.precision,
                          flash_attention=self.attention == "sdpa", compile=self.config.compile, **parallel)

    def step_options(self, **changes: Any):
        """``profiler.step.StepOptions`` of this run (``changes``: e.g. a per-rank seed)."""
        from profiler.step import StepOptions

        return StepOptions.from_run_config(self.config, self.precision).with_(**changes)

    def config_fields(self) -> dict[str, Any]:
        """What the summary's ``config`` adds to the requested setup: what really ran."""
        return {"model": self.model.name, "seq_len": self.seq_len, "precision_effective": self.precision,
                "vocab_size_padded": self.padded.vocab_size, "torch_device": self.torch_device,
                "attention": self.attention, "optimizer_impl": self.optimizer_impl, "threads": self.threads,
                "peak_dtype": self.peak_dtype}

    def device_event(self, event: DeviceDetected) -> DeviceDetected:
        """The detection event carrying the peak this run's MFU divides by."""
        return dataclasses.replace(event, peak_flops=self.peak_flops, peak_dtype=self.peak_dtype,
                                   peak_source=self.peak_source)


def default_model(device_kind: str) -> ModelConfig:
    """No model given: GPT-2 124M on a GPU, a tiny GPT that trains in milliseconds on a CPU."""
    return get_model(DEFAULT_GPU_MODEL if device_kind == "cuda" else DEFAULT_CPU_MODEL)


def likely_device_kind(requested: str) -> str:
    """The kind ``detect_device`` will pick for ``requested`` (cheap: no detection)."""
    if requested == "cpu":
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_run(config: RunConfig, detect: Callable[..., Any] | None = None):
    """Detect the device with the precision that will really run; return (detected device, ResolvedRun).

    ``detect`` replaces ``profiler.detect.detect_device`` (tests).
    """
    from profiler.step import effective_precision

    if detect is None:
        from profiler.detect import detect_device as detect
    precision, note = effective_precision(config.precision, likely_device_kind(config.device))
    detected = detect(config.device, precision, config.peak_tflops)
    if detected.kind != likely_device_kind(config.device):  # a detector that found another device (tests)
        precision, note = effective_precision(config.precision, detected.kind)
    return detected, resolve_on(config, detected.kind, detected.torch_device, precision, note, detected)


def resolve_on(config: RunConfig, device_kind: str, torch_device: str, precision: str, note: str | None = None,
               detected=None) -> ResolvedRun:
    """The record for ``config`` running ``precision`` on a device; the peak comes from ``detected``
    (a DDP rank other than 0 does not detect, and reports no peak)."""
    model = config.model or default_model(device_kind)
    seq_len = config.seq_len or model.context_length
    if seq_len > model.context_length:
        raise ConfigError(f"seq-len {seq_len} is longer than {model.name}'s context ({model.context_length})")
    from profiler.model import check_buildable

    check_buildable(model)
    dtype = get_precision(precision).matmul_dtype
    event = detected.event if detected is not None else None
    if config.peak_tflops:
        peak, source = config.peak_tflops * 1e12, "--peak-tflops"
    elif event is None:
        peak, source = None, "not detected in this process"
    elif dtype == event.peak_dtype:
        peak, source = event.peak_flops, event.peak_source
    else:
        from profiler.detect import peak_source

        peak = detected.spec.peak(dtype)
        source = peak_source(detected.spec, dtype, (event.details or {}).get("measured_peaks"))
    from profiler.adamw import fused_by_default  # torch: the run imports it by now

    threads = None
    if device_kind == "cpu":
        import torch

        threads = torch.get_num_threads()
    return ResolvedRun(
        config=config, device_kind=device_kind, torch_device=torch_device, model=model,
        padded=model.with_vocab_padded(config.vocab_pad_multiple), seq_len=seq_len, precision=precision,
        precision_note=note, peak_dtype=dtype, peak_flops=peak, peak_source=source,
        attention="sdpa" if config.flash_attention else "explicit",
        optimizer_impl=adamw_impl(config.fused_adamw, config.adamw_foreach, fused_by_default(device_kind)),
        threads=threads,
    )
