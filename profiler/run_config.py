"""`RunConfig`: what one profiling run measures. Pure data, no torch import.

The CLI (`profile`, `search`, `tui`, `remote`) and the app build one of these;
``profiler.run.run_profile(config, cancel)`` turns it into an event stream.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from estimator.errors import ConfigError
from estimator.model_config import ModelConfig
from estimator.precision import get_precision

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
    fused_adamw: bool | None = None  # None: fused on CUDA, foreach elsewhere
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

    def to_dict(self) -> dict:
        out = asdict(self)
        out["model"] = self.model.name if self.model else None
        return out


def config_to_json(config: RunConfig) -> dict[str, Any]:
    """A RunConfig another process can rebuild exactly (the model travels as its full field set)."""
    out = config.to_dict()
    out["model"] = None if config.model is None else asdict(config.model)  # fields as set, not derived
    return out


def config_from_json(data: dict[str, Any]) -> RunConfig:
    data = dict(data)
    model = data.pop("model", None)
    return RunConfig(model=ModelConfig(**model) if model else None, **data)
