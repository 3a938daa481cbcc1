"""Precision regimes: which peak MFU divides by, and bytes per parameter / activation.

The names are the ones the profiler's ``--precision`` switch accepts, plus the
Megatron/DeepSpeed regime that llm-analysis and the ZeRO paper assume.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from estimator.errors import ConfigError


@dataclass(frozen=True)
class Precision:
    name: str
    matmul_dtype: str  # HardwareSpec.peak() key that MFU divides by
    weight_bytes: int  # per parameter, as stored in the model
    grad_bytes: int
    optimizer_bytes: int  # AdamW per parameter: moments (+ fp32 master copy where one exists)
    activation_bytes: int  # per saved activation element
    description: str

    def to_dict(self) -> dict:
        return asdict(self)


PRECISIONS: dict[str, Precision] = {
    p.name: p
    for p in (
        Precision("fp32", "fp32", 4, 4, 8, 4, "fp32 weights and math, TF32 off"),
        Precision("tf32", "tf32", 4, 4, 8, 4, "fp32 weights, matmuls on TF32 tensor cores"),
        Precision("bf16-mixed", "bf16", 4, 4, 8, 2, "torch autocast: fp32 weights/grads/AdamW, bf16 matmuls and activations"),
        Precision("fp16-mixed", "fp16", 4, 4, 8, 2, "torch autocast with fp16 and a grad scaler"),
        Precision("bf16", "bf16", 2, 2, 4, 2, "pure bf16: weights, grads and AdamW moments in bf16"),
        Precision("bf16-master", "bf16", 2, 2, 12, 2, "Megatron/DeepSpeed: bf16 weights+grads, fp32 master + moments (ZeRO's 16 B/param)"),
    )
}


def get_precision(name: str) -> Precision:
    key = name.strip().lower()
    if key in PRECISIONS:
        return PRECISIONS[key]
    raise ConfigError(f"unknown precision {name!r}; choose one of: {', '.join(PRECISIONS)}")
