"""`RunConfig`: what one profiling run measures. Pure data, no torch import.

The CLI (`profile`, `search`, `ladder`, `tui`, `remote`) and the app build one
with ``RunConfig.from_options`` from the values a person typed;
``profiler.run.run_profile(config, cancel)`` turns it into an event stream.
``to_argv()`` writes it back as ``mfutop profile`` options — how a child
process or a remote host is told what to run — and ``CLI_FLAGS`` names those
options for the one place that declares them (``tui/run_options.py``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Mapping

from estimator.errors import ConfigError
from estimator.model_config import ModelConfig
from estimator.precision import get_precision
from estimator.units import parse_bytes

DEVICES = ("auto", "cuda", "cpu")
RUN_PRECISIONS = ("fp32", "tf32", "bf16-mixed", "bf16")


@dataclass(frozen=True)
class RunConfig:
    model: ModelConfig | None = None  # None: default for the device (gpt2 on GPU, gpt-tiny on CPU)
    device: str = "auto"
    batch_size: int | None = None  # None: "auto" = the searched max batch
    seq_len: int | None = None  # None: the model's context length
    steps: int = 20  # timed steps (after warm-up)
    warmup: int | None = None  # None: 3, or 10 under torch.compile
    precision: str = "bf16-mixed"  # on CPU without bf16 support the runner says so
    compile: bool = False
    flash_attention: bool = True  # F.scaled_dot_product_attention vs explicit matmuls
    fused_adamw: bool | None = None  # None: fused where torch has the kernel (adamw.fused_by_default)
    adamw_foreach: bool | None = None  # False: the single-tensor for-loop AdamW (the ladder's baseline)
    pin_memory: bool = True
    vocab_pad_multiple: int = 1  # 64 pads GPT-2's 50257 to 50304
    memory_limit_bytes: int | None = None  # cap on usable memory (search + run)
    peak_tflops: float | None = None  # override the peak MFU divides by
    search: bool = True  # with batch_size None: run the batch search first
    seed: int = 0

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise ConfigError(f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        if self.precision not in RUN_PRECISIONS:
            get_precision(self.precision)  # unknown names get the estimator's message
            raise ConfigError(f"the profiler runs {', '.join(RUN_PRECISIONS)}; {self.precision!r} is estimate-only")
        for name in ("steps", "vocab_pad_multiple"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if self.batch_size is not None and (not isinstance(self.batch_size, int) or self.batch_size < 1):
            raise ConfigError(f"batch-size must be a positive integer or 'auto', got {self.batch_size!r}")
        if self.warmup is not None and self.warmup < 0:
            raise ConfigError(f"warmup must be 0 or more, got {self.warmup!r}")
        if self.memory_limit_bytes is not None and self.memory_limit_bytes <= 0:
            raise ConfigError("memory-limit must be positive")
        if self.peak_tflops is not None and self.peak_tflops <= 0:
            raise ConfigError("peak-tflops must be positive")
        if self.model is not None and self.seq_len is not None and self.seq_len > self.model.context_length:
            raise ConfigError(
                f"seq-len {self.seq_len} is longer than {self.model.name}'s context ({self.model.context_length})"
            )

    @property
    def warmup_steps(self) -> int:
        if self.warmup is not None:
            return self.warmup
        return 10 if self.compile else 3

    def with_(self, **changes) -> "RunConfig":
        return replace(self, **changes)

    @classmethod
    def from_options(cls, *, model: ModelConfig | None = None, device: str = "auto",
                     batch_size: str | int | None = None, memory_limit: str | None = None,
                     precision: str = "bf16-mixed", **values: Any) -> "RunConfig":
        """From CLI values as typed ('auto' batch, '40GiB' limit); other fields by their own names."""
        return cls(model=model, device=str(device).strip().lower(), batch_size=parse_batch(batch_size),
                   memory_limit_bytes=parse_memory(memory_limit), precision=str(precision).strip().lower(),
                   **values)

    def to_argv(self, explicit: tuple[str, ...] = ()) -> list[str]:
        """The ``mfutop profile`` options that rebuild this config (defaults left out, so the
        receiving side's device decides them, as it would for a person typing the same);
        ``explicit`` fields are written even at their default (another command's default differs)."""
        out: list[str] = []
        if self.model is not None:
            out += _model_argv(self.model)
        default = RunConfig()
        for name, flag in CLI_FLAGS.items():
            value = getattr(self, name)
            if value == getattr(default, name) and name not in explicit:
                continue
            if isinstance(value, bool) or (value is None and name in TOGGLES):
                positive, negative = flag
                out.append(positive if value else negative)
            elif name == "batch_size":
                out += [flag, "auto" if value is None else str(value)]
            elif name == "memory_limit_bytes" and value is not None:
                out += [flag, f"{value}B"]
            elif value is not None:
                out += [flag, repr(value) if isinstance(value, float) else str(value)]
        return out

    def to_dict(self) -> dict:
        out = asdict(self)
        out["model"] = self.model.name if self.model else None
        return out


# RunConfig field -> its ``mfutop profile`` option (a (--on, --off) pair for switches)
CLI_FLAGS: dict[str, Any] = {
    "device": "--device", "batch_size": "--batch-size", "seq_len": "--seq-len", "steps": "--steps",
    "warmup": "--warmup", "precision": "--precision", "compile": ("--compile", "--no-compile"),
    "flash_attention": ("--flash", "--no-flash"), "fused_adamw": ("--fused-adamw", "--no-fused-adamw"),
    "pin_memory": ("--pin-memory", "--no-pin-memory"), "vocab_pad_multiple": "--vocab-pad",
    "memory_limit_bytes": "--memory-limit", "peak_tflops": "--peak-tflops", "seed": "--seed",
}
TOGGLES = ("fused_adamw",)  # switches whose unset value (None) means "the device's default"
MODEL_JSON_FLAG = "--model-json"  # a model that is no unchanged preset travels as its exact fields


def _model_argv(model: ModelConfig) -> list[str]:
    from estimator.presets import PRESETS

    if PRESETS.get(model.name) == model:
        return ["--model", model.name]
    return [MODEL_JSON_FLAG, json.dumps(asdict(model), separators=(",", ":"))]


def model_from_json(text: str) -> ModelConfig:
    """The model of ``--model-json`` (written by ``to_argv``); ConfigError for anything else."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ConfigError(f"{MODEL_JSON_FLAG} is not JSON: {exc}") from None
    names = {f.name for f in fields(ModelConfig)}
    if not isinstance(data, Mapping) or not set(data) <= names:
        raise ConfigError(f"{MODEL_JSON_FLAG} must be an object of ModelConfig fields")
    try:
        return ModelConfig(**data)
    except TypeError as exc:
        raise ConfigError(f"{MODEL_JSON_FLAG}: {exc}") from None


def parse_batch(text: str | int | None) -> int | None:
    """'auto' (or None) -> None; otherwise a positive integer, else ConfigError."""
    if text is None or str(text).strip().lower() == "auto":
        return None
    try:
        value = int(str(text))
    except ValueError:
        raise ConfigError(f"batch-size must be a positive integer or 'auto', got {text!r}") from None
    if value < 1:
        raise ConfigError(f"batch-size must be a positive integer or 'auto', got {text!r}")
    return value


def parse_memory(text: str | int | None) -> int | None:
    """'40GiB' -> bytes; None stays None."""
    if text is None:
        return None
    return text if isinstance(text, int) and not isinstance(text, bool) else parse_bytes(str(text))


def config_to_json(config: RunConfig) -> dict[str, Any]:
    """A RunConfig another process can rebuild exactly (the model travels as its full field set)."""
    out = config.to_dict()
    out["model"] = None if config.model is None else asdict(config.model)  # fields as set, not derived
    return out


def config_from_json(data: dict[str, Any]) -> RunConfig:
    data = dict(data)
    model = data.pop("model", None)
    return RunConfig(model=ModelConfig(**model) if model else None, **data)
