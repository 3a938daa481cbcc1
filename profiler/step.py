"""One training step of the profiled GPT, with every training-speed-ladder rung as a switch.

``TrainingStep(cfg, device, StepOptions(...))`` builds the model and AdamW and
exposes ``step(x, y)``: forward (under autocast for bf16-mixed), cross-entropy,
backward, ``optimizer.step()``, ``zero_grad(set_to_none=True)``. Switches:

- precision: ``fp32`` (TF32 off), ``tf32`` (``set_float32_matmul_precision('high')``,
  ``allow_tf32``; a CUDA tensor-core mode, fp32 on the CPU), ``bf16-mixed``
  (``torch.autocast(bfloat16)``, fp32 weights/grads/AdamW), ``bf16`` (the model
  in bfloat16: weights, grads and AdamW moments);
- ``flash_attention``: ``F.scaled_dot_product_attention`` vs explicit matmuls;
- ``compile``: ``torch.compile(model)`` (each new batch shape recompiles);
- ``fused_adamw``: fused kernel (the default where torch has it: CUDA, the CPU from
  torch 2.4, ``profiler.adamw.fused_by_default``), else ``foreach`` (or, with
  ``adamw_foreach=False``, the single-tensor for-loop: the seed's baseline);
- ``pin_memory``: synthetic batches in pinned host memory, copied with
  ``non_blocking=True`` (GPU only);
- ``vocab_pad_multiple``: the vocabulary rounded up (50257 -> 50304 for 64); the
  padded model is what runs and what predictions must use.

Float32 matmul flags are process-global in torch; ``step`` sets them for its
own duration and restores them, so rungs built side by side do not leak into
each other. The ladder / DDP code can pass ``wrap`` (e.g. a DDP constructor)
to wrap the model before compile and the optimizer.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from typing import Callable, Iterator

import torch

from estimator.errors import ConfigError
from estimator.model_config import ModelConfig
from profiler.adamw import AdamW, fused_by_default
from profiler.host_allocator import retain_freed_memory
from profiler.model import GPT, build_model

PRECISIONS = ("fp32", "tf32", "bf16-mixed", "bf16")
ADAM_BETAS = (0.9, 0.95)


@dataclass(frozen=True)
class StepOptions:
    precision: str = "bf16-mixed"
    flash_attention: bool = True
    compile: bool = False
    fused_adamw: bool | None = None  # None: fused where torch has the kernel (adamw.fused_by_default)
    adamw_foreach: bool | None = None  # False (and not fused): the single-tensor for-loop AdamW
    pin_memory: bool = True
    vocab_pad_multiple: int = 1
    lr: float = 3e-4
    weight_decay: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(f"the profiler runs {', '.join(PRECISIONS)}; {self.precision!r} is estimate-only")

    @classmethod
    def from_run_config(cls, config, precision: str | None = None) -> "StepOptions":
        """From a ``profiler.run_config.RunConfig`` (``precision`` overrides the effective one)."""
        return cls(
            precision=precision or config.precision, flash_attention=config.flash_attention,
            compile=config.compile, fused_adamw=config.fused_adamw,
            adamw_foreach=getattr(config, "adamw_foreach", None), pin_memory=config.pin_memory,
            vocab_pad_multiple=config.vocab_pad_multiple, seed=config.seed,
        )

    def with_(self, **changes) -> "StepOptions":
        return replace(self, **changes)


def cpu_autocast_bf16_works() -> tuple[bool, str]:
    """Whether ``torch.autocast('cpu', bfloat16)`` runs a matmul forward+backward here."""
    try:
        layer = torch.nn.Linear(8, 8)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = layer(torch.randn(2, 8))
        out.float().sum().backward()
        if out.dtype != torch.bfloat16:
            return False, f"autocast produced {out.dtype}, not bfloat16"
        return True, ""
    except (RuntimeError, TypeError) as exc:
        return False, str(exc).splitlines()[0] if str(exc) else type(exc).__name__


@contextlib.contextmanager
def float32_matmul_mode(precision: str, device_type: str) -> Iterator[None]:
    """TF32 on for ``tf32`` on CUDA, off otherwise; the previous settings restored after."""
    if device_type != "cuda":
        yield
        return
    saved = (torch.get_float32_matmul_precision(), torch.backends.cuda.matmul.allow_tf32,
             torch.backends.cudnn.allow_tf32)
    tf32 = precision == "tf32"
    torch.set_float32_matmul_precision("high" if tf32 else "highest")
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(saved[0])
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[1], saved[2]


def make_adamw(model: torch.nn.Module, device: torch.device, options: StepOptions) -> AdamW:
    """AdamW with nanoGPT's groups (decay on matrices only): fused, foreach, or the for-loop.

    ``profiler.adamw.AdamW``, not ``torch.optim.AdamW``: the same state and kernel, without the ~1 s
    ``torch._dynamo`` import that ``torch.optim.Optimizer`` costs before the first step.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": options.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    fused = options.fused_adamw if options.fused_adamw is not None else fused_by_default(device.type)
    kind = {"fused": True} if fused else {"foreach": options.adamw_foreach is not False}
    return AdamW(groups, lr=options.lr, betas=ADAM_BETAS, **kind)


class TrainingStep:
    """A GPT, its AdamW and a full training step on ``device``.

    ``cfg`` is the model as named; ``self.cfg`` is the padded one that runs.
    ``raw_model`` is the unwrapped GPT (for parameter counts and state);
    ``model`` what is called (wrapped and/or compiled).
    """

    def __init__(self, cfg: ModelConfig, device: str | torch.device = "cpu", options: StepOptions | None = None,
                 wrap: Callable[[torch.nn.Module], torch.nn.Module] | None = None):
        self.options = options or StepOptions()
        self.device = torch.device(device)
        if self.device.type == "cpu":
            retain_freed_memory()  # steady steps: activations reuse freed memory (profiler.host_allocator)
        if self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.real_vocab = cfg.vocab_size
        self.cfg = cfg.with_vocab_padded(self.options.vocab_pad_multiple)
        torch.manual_seed(self.options.seed)
        attention = "sdpa" if self.options.flash_attention else "explicit"
        dtype = torch.bfloat16 if self.options.precision == "bf16" else None
        self.raw_model: GPT = build_model(self.cfg, self.device, attention=attention, dtype=dtype)
        self.raw_model.train()
        model: torch.nn.Module = wrap(self.raw_model) if wrap is not None else self.raw_model
        self.model = torch.compile(model) if self.options.compile else model
        self.optimizer = make_adamw(self.raw_model, self.device, self.options)
        self._generator = torch.Generator().manual_seed(self.options.seed)
        self._autocast = self.options.precision == "bf16-mixed"

    @property
    def pinned(self) -> bool:
        return self.options.pin_memory and self.device.type == "cuda"

    def make_batch(self, batch_size: int, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Synthetic token ids (inputs, next-token targets) from the real vocabulary, on the device."""
        if seq_len > self.cfg.context_length:
            raise ConfigError(f"seq-len {seq_len} is longer than {self.cfg.name}'s context ({self.cfg.context_length})")
        host = torch.randint(0, self.real_vocab, (batch_size, seq_len + 1), generator=self._generator)
        if self.pinned:
            host = host.pin_memory()
        if self.device.type != "cpu":
            host = host.to(self.device, non_blocking=self.pinned)
        return host[:, :-1], host[:, 1:]

    def batches(self, batch_size: int, seq_len: int, pool: int = 2) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Endless batches cycling over a small pre-generated pool (a data loader's steady state)."""
        host = [torch.randint(0, self.real_vocab, (batch_size, seq_len + 1), generator=self._generator)
                for _ in range(pool)]
        if self.pinned:
            host = [h.pin_memory() for h in host]
        i = 0
        while True:
            h = host[i % pool]
            if self.device.type != "cpu":
                h = h.to(self.device, non_blocking=self.pinned)
            yield h[:, :-1], h[:, 1:]
            i += 1

    def step(self, x: torch.Tensor, y: torch.Tensor, fault: Callable[[], None] | None = None) -> torch.Tensor:
        """One full step; returns the (detached) loss without synchronising.

        ``fault`` is called between forward and backward — the fault-injection
        seam for OOM tests (activations are allocated at that point).
        """
        with float32_matmul_mode(self.options.precision, self.device.type):
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self._autocast):
                loss = self.model(x, y)
            if fault is not None:
                fault()
            loss.backward()
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    def param_count(self) -> int:
        return sum(p.numel() for p in self.raw_model.parameters())

    def close(self) -> None:
        """Drop the model and optimizer state (the caller then collects / empties the cache)."""
        self.optimizer.state.clear()
        self.optimizer.zero_grad(set_to_none=True)
        del self.model, self.raw_model, self.optimizer


def effective_precision(requested: str, device_type: str) -> tuple[str, str | None]:
    """The precision that really runs on ``device_type`` and a warning when it differs.

    tf32 is a tensor-core mode of NVIDIA GPUs: on the CPU the matmuls are fp32.
    bf16-mixed on the CPU needs autocast(cpu, bfloat16); without it, fp32. A GPU
    without bfloat16 (pre-Ampere) runs fp32 rather than a silently emulated bf16.
    """
    if device_type == "cuda":
        if requested in ("bf16-mixed", "bf16") and not _cuda_native_bf16():
            return "fp32", f"this GPU has no bfloat16 support; {requested} runs as fp32"
        return requested, None
    if requested == "tf32":
        return "fp32", "tf32 is a CUDA tensor-core mode; on the CPU the matmuls run in fp32"
    if requested == "bf16-mixed":
        ok, why = cpu_autocast_bf16_works()
        if not ok:
            return "fp32", f"autocast(cpu, bfloat16) does not work here ({why}); running fp32"
    return requested, None


def _cuda_native_bf16() -> bool:
    """bfloat16 in hardware (Ampere+), not the emulation torch also reports as 'supported'."""
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # torch < 2.4 has no emulation flag
        return torch.cuda.is_bf16_supported()
