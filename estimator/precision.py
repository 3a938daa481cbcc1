"""Precision regimes: which peak MFU divides by, and bytes per parameter / activation.

The names are the ones the profiler's ``--precision`` switch accepts, plus
estimate-only regimes: the Megatron/DeepSpeed one that llm-analysis and the ZeRO
paper assume (``bf16-master``, 16 B/param), Megatron's default with fp32 main
gradients (``bf16-fp32-grads``, 18 B/param) and Transformer Engine's ``fp8``.
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
    gemm_input_bytes: int | None = None  # a GEMM input saved for backward (None: activation_bytes); fp8: 1
    weight_copy_bytes: int | None = None  # cached low-precision weight copies per parameter (None: autocast rule)

    @property
    def saved_gemm_input_bytes(self) -> int:
        return self.activation_bytes if self.gemm_input_bytes is None else self.gemm_input_bytes

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
        # Megatron-LM's default for bf16: fp32 main gradients. Its distributed-optimizer guide gives
        # "float16 param, fp32 grads: 18" bytes per parameter (6 + 12/d distributed):
        # docs.nvidia.com/megatron-core/developer-guide/latest/distrib_optimizer.html
        Precision("bf16-fp32-grads", "bf16", 2, 4, 12, 2,
                  "Megatron: bf16 weights, fp32 main grads, fp32 master + Adam moments (18 B/param)"),
        # Transformer Engine's delayed-scaling fp8 recipe under Megatron (per-tensor scales): bf16 weights,
        # fp32 main grads, fp32 master + moments; GEMMs in fp8 on fp8 copies of the weights (TE caches the
        # weight and, Hopper's fp8 GEMMs being TN-only, its transpose: 2 x 1 B/param); activations bf16
        # except the GEMM inputs TE saves for backward, kept in fp8. MFU divides by the fp8 peak.
        Precision("fp8", "fp8", 2, 4, 12, 2,
                  "Transformer Engine fp8 (per-tensor scaling): fp8 GEMMs, bf16 weights, fp32 main grads, fp32 "
                  "master + moments; MFU relative to the fp8 peak", gemm_input_bytes=1, weight_copy_bytes=2),
    )
}
FP8_ARCHITECTURES = "Hopper, Ada, Blackwell or MI300"


def get_precision(name: str) -> Precision:
    key = name.strip().lower()
    if key in PRECISIONS:
        return PRECISIONS[key]
    raise ConfigError(f"unknown precision {name!r}; choose one of: {', '.join(PRECISIONS)}")


def check_precision_on(precision: Precision | str, hardware) -> None:
    """ConfigError naming the GPU when its datasheet has no peak for the precision's matmul dtype that
    cannot fall back (fp8 GEMMs need fp8 tensor cores: Hopper, Ada, Blackwell, MI300)."""
    p = precision if isinstance(precision, Precision) else get_precision(precision)
    if p.matmul_dtype == "fp8" and hardware.peak("fp8") is None:
        raise ConfigError(f"--precision {p.name} needs fp8 tensor cores ({FP8_ARCHITECTURES}); "
                          f"{hardware.name} has no fp8 peak")
