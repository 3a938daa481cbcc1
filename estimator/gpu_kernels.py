"""How much of a GPU's dense peak one kernel reaches, by its shape: GEMMs and the fused attention kernel.

A GEMM is split into output tiles; each SM computes one tile at a time. Two
losses follow from the shape alone (NVIDIA, "Matrix Multiplication Background
User's Guide", dim-quantization: tile quantization and wave quantization):

- tile quantization: a dimension that is not a multiple of the tile wastes the
  padded part of its last tile: m·n / (⌈m/Tm⌉·Tm · ⌈n/Tn⌉·Tn);
- wave quantization: tiles run in waves of one per SM; the last wave leaves SMs
  idle: tiles / (⌈tiles/SMs⌉ · SMs).

cuBLAS picks the tile per shape; we take the better of the two tiles the
guide's examples use (256x128 and 128x128) at the same per-SM rate. What a
perfectly shaped GEMM reaches is the architecture's *ceiling*: the maximum
achievable matmul FLOP/s measured on large aligned shapes, divided by the
datasheet peak (``MATMUL_CEILING``, each figure with its source). The fused
attention kernel (SDPA's flash kernel) has its own published ceiling
(``ATTENTION_CEILING``) and quantizes over (batch·heads) x query blocks.

An architecture without a published measurement takes a sibling's figure and
says so (``ceiling(...).assumed``): no constant stands in silently.
"""

from __future__ import annotations

from dataclasses import dataclass

from estimator.hardware import HardwareSpec
from estimator.step_overheads import cpu_matmul_efficiency, default_overheads

GEMM_TILES = ((256, 128), (128, 128))  # (rows, cols) of the output tile; the guide's A100 examples
ATTENTION_BLOCK = 128  # query rows per thread block of the flash kernels (FlashAttention-2, d_h <= 128)

_MAMF = ("Maximum Achievable Matmul FLOPS (bf16, large aligned shapes) / datasheet bf16 peak: S. Bekman, "
         "ml-engineering, compute/accelerator/README.md, 'Maximum Achievable Matmul FLOPS comparison table'")
_MAMF_B200 = ("B200 SXM MAMF 1745.0 / 2250 bf16 TFLOPS: S. Bekman, ml-engineering, MAMF table "
              "(H100/H200 SXM 794.5, B200 SXM 1745.0)")
# Architecture (compute capability, or AMD gfx target) -> (ceiling, source).
MATMUL_CEILING: dict[str, tuple[float, str]] = {
    "8.0": (267.9 / 312, _MAMF + ": A100 SXM 267.9 of 312 (CUDA 12.1)"),
    "9.0": (792.1 / 989, _MAMF + ": H100 SXM 792.1 of 989 (CUDA 12.1)"),
    "10.0": (1745.0 / 2250, _MAMF_B200),
    "gfx90a": (147.0 / 191.5, _MAMF + ": MI250X 147.0 of 191.5 per GCD (ROCm 6.2)"),
    "gfx942": (781.9 / 1300, _MAMF + ": MI300X 781.9 of 1300 (ROCm 6.2)"),
}
# Rows measured on a different card of the same architecture.
MATMUL_CEILING_BY_GPU: dict[str, tuple[float, str]] = {
    "a100-pcie-40gb": (256.4 / 312, _MAMF + ": A100 PCIe 256.4 of 312 (CUDA 12.1)"),
    "a100-pcie-80gb": (256.4 / 312, _MAMF + ": A100 PCIe 256.4 of 312 (CUDA 12.1)"),
    "gh200-96gb": (821.0 / 989, _MAMF + ": GH200 821.0 of 989 (CUDA 12.5)"),
    "gh200-144gb": (821.0 / 989, _MAMF + ": GH200 821.0 of 989 (CUDA 12.5)"),
}
# No published measurement: the nearest architecture with one stands in (flagged as assumed).
# An architecture with no sibling either (a derived spec of an unknown chip): the lowest published ceiling.
UNKNOWN_ARCH_CEILING = round(781.9 / 1300, 3)
SIBLING_ARCH = {"7.0": "8.0", "7.5": "8.0", "8.6": "8.0", "8.7": "8.0", "8.9": "8.0", "10.3": "10.0",
                "12.0": "10.0", "gfx950": "gfx942"}
# The flash kernel PyTorch's SDPA runs (FlashAttention-2) as a fraction of the dense peak:
# Dao 2023, "FlashAttention-2" (arXiv:2307.08691), abstract: "reaching 50-73% of the theoretical maximum
# FLOPs/s on A100" (forward at the top of the range, backward at the bottom); on H100 FlashAttention-2
# reaches "only 35% utilization" (Shah et al. 2024, "FlashAttention-3", arXiv:2407.08608, §1).
ATTENTION_CEILING: dict[str, tuple[float, float, str]] = {
    "8.0": (0.73, 0.50, "FlashAttention-2 on A100: 50-73% of peak (Dao 2023, arXiv:2307.08691)"),
    "9.0": (0.35, 0.35, "FlashAttention-2 on H100: 35% of peak (Shah et al. 2024, arXiv:2407.08608)"),
}


@dataclass(frozen=True)
class Ceiling:
    fraction: float
    source: str
    assumed: bool  # taken from a sibling architecture, not measured on this one


def _arch(hardware: HardwareSpec) -> str:
    return (hardware.compute_capability or "").strip()


def _sibling(arch: str, table: dict) -> str | None:
    if arch in table:
        return arch
    if arch in SIBLING_ARCH and SIBLING_ARCH[arch] in table:
        return SIBLING_ARCH[arch]
    major = arch.split(".")[0]  # an unlisted minor revision: its major's figure
    return next((k for k in table if k.split(".")[0] == major), None) if major and arch[:1].isdigit() else None


def matmul_ceiling(hardware: HardwareSpec) -> Ceiling | None:
    """The fraction of the dense peak large aligned GEMMs reach on ``hardware``; None when unknown."""
    if hardware.key in MATMUL_CEILING_BY_GPU:
        fraction, source = MATMUL_CEILING_BY_GPU[hardware.key]
        return Ceiling(fraction, source, False)
    arch = _arch(hardware)
    key = _sibling(arch, MATMUL_CEILING)
    if key is None:
        return None
    fraction, source = MATMUL_CEILING[key]
    return Ceiling(fraction, source if key == arch else f"{source} [assumed for {arch or hardware.name}]",
                   key != arch)


def attention_ceiling(hardware: HardwareSpec, forward: bool) -> Ceiling | None:
    """The fraction of the dense peak the flash attention kernel reaches (forward or backward)."""
    arch = _arch(hardware)
    key = _sibling(arch, ATTENTION_CEILING)
    if key is None:
        return None
    fwd, bwd, source = ATTENTION_CEILING[key]
    return Ceiling(fwd if forward else bwd, source if key == arch else f"{source} [assumed for {arch}]",
                   key != arch)


def _waves(tiles: int, sms: int) -> float:
    return tiles / (-(-tiles // sms) * sms)


def gemm_quantization(m: int, n: int, sms: int) -> float:
    """Tile x wave quantization of an m x n output on ``sms`` SMs, the better of ``GEMM_TILES``."""
    best = 0.0
    for tm, tn in GEMM_TILES:
        for rows, cols in ((tm, tn), (tn, tm)):
            gm, gn = -(-m // rows), -(-n // cols)
            tile = m * n / (gm * rows * gn * cols)
            best = max(best, tile * _waves(gm * gn, sms))
    return best


def attention_quantization(bh: int, seq: int, sms: int) -> float:
    """Blocks of ``ATTENTION_BLOCK`` query rows per (batch·head), in waves over the SMs."""
    blocks = -(-seq // ATTENTION_BLOCK)
    return seq / (blocks * ATTENTION_BLOCK) * _waves(bh * blocks, sms)


def large_gemm_efficiency(hardware: HardwareSpec, override: float | None = None) -> float:
    """A flat fraction of the peak for work modelled without kernel shapes (inference's prefill): the
    user's ``--flops-efficiency``, else the architecture's ceiling (GPU) or the CPU figure."""
    if override is not None:
        return override
    if hardware.vendor == "cpu":
        return cpu_matmul_efficiency(default_overheads(hardware))
    ceiling = matmul_ceiling(hardware)
    return ceiling.fraction if ceiling else UNKNOWN_ARCH_CEILING
