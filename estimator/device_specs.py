"""Specs for a device the table lacks, and a peak replaced: the fallbacks of ``estimator.hardware``.

An unknown GPU's peak derived from NVML's fields (SM count x clock x the
per-architecture FLOPs/clock/SM of ``estimator.hardware_data``), a CPU's
theoretical peak from its ISA flags, and a copy of any spec with one peak
replaced (``--peak-tflops``, a measured CPU matmul peak). Stdlib only.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Iterable

from estimator import hardware_data as _data
from estimator.errors import ConfigError
from estimator.hardware import HardwareSpec, normalize_dtype


def normalize_compute_capability(cc: str | tuple[int, int]) -> str:
    """'9.0', '90', 'sm_90', (9, 0) -> '9.0'; 'gfx90a:sramecc+:xnack-' -> 'gfx90a'."""
    if isinstance(cc, tuple):
        return f"{int(cc[0])}.{int(cc[1])}"
    text = str(cc).strip().lower()
    if text.startswith("gfx"):
        return text.split(":")[0]
    text = re.sub(r"^(sm_?|compute_?)", "", text)
    if m := re.fullmatch(r"(\d+)\.(\d+)", text):
        return f"{int(m.group(1))}.{int(m.group(2))}"
    if re.fullmatch(r"\d{2,3}", text):
        return f"{int(text[:-1])}.{text[-1]}"
    if re.fullmatch(r"\d+", text):
        return f"{int(text)}.0"
    return text


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown-gpu"


def derived_gpu_spec(device_name: str, compute_capability: str, sm_count: int, clock_hz: float,
                     memory_bytes: int, memory_bandwidth: float | None = None) -> HardwareSpec:
    """The unknown-GPU fallback: SM count x dense FLOPs/clk/SM (by CC) x clock.

    An upper bound: a sustained clock under power limits is lower, and NVML's
    max clock exceeds the tensor clock NVIDIA's figures use (H100 SXM: 1,980
    vs 1,830 MHz, +8 %).  ``memory_bandwidth`` None is recorded as 0.0 =
    unknown.  An unknown architecture gets no peak at all.
    """
    if int(sm_count) <= 0 or not clock_hz or clock_hz <= 0:
        raise ConfigError(f"cannot derive a peak for {device_name!r}: SM count {sm_count!r} "
                          f"and clock {clock_hz!r} Hz must be positive")
    cc = normalize_compute_capability(compute_capability)
    arch = _data.ARCH_RATES.get(cc)
    geforce = "geforce" in device_name.lower()
    notes = ["peak derived from SM count x clock x FLOPs/clk/SM; an upper bound"]
    if arch is None:
        peaks: dict[str, float] = {}
        notes.append(f"unknown architecture {cc!r}: MFU n/a (unknown peak; --peak-tflops)")
        source = "derived: no per-SM rate for this architecture in the per-architecture FLOPs/clock/SM table"
    else:
        rates = arch.get("geforce", arch["rates"]) if geforce else arch["rates"]
        peaks = {d: int(sm_count) * r * float(clock_hz) for d, r in rates.items()}
        variant = " (GeForce: half-rate fp32-accumulate)" if geforce and "geforce" in arch else ""
        source = f"derived: per-architecture FLOPs/clock/SM table, {arch['arch']}{variant} ({arch['src']})"
        notes.append(f"{sm_count} SMs x {float(clock_hz) / 1e6:.0f} MHz; fp32 non-tensor uses the same clock")
        if cc == "7.5" and geforce:
            notes.append("GeForce Turing may run fp32-accumulate at half rate [unverified]")
    if memory_bandwidth is None:
        notes.append("memory bandwidth unknown (0.0)")
    notes.append("intra-node 64 GB/s (PCIe4 x16) and inter-node 25 GB/s are assumptions")
    return HardwareSpec(
        key=_slug(device_name), name=device_name,
        vendor="amd" if cc.startswith("gfx") or "amd" in device_name.lower() else "nvidia",
        memory_bytes=int(memory_bytes), memory_bandwidth=float(memory_bandwidth or 0.0),
        peak_flops=peaks, intra_node_bandwidth=64e9, inter_node_bandwidth=25e9,
        sm_count=int(sm_count), compute_capability=cc, boost_clock_hz=float(clock_hz),
        tdp_watts=None, source=source, derived=True, notes="; ".join(notes),
        nvlink_domain=1, link_kind="pcie", pcie_bandwidth=64e9,
    )


# fp32 FLOPs per cycle per core, most capable ISA first, with the assumption made.
_CPU_FP32 = (
    (("avx512f",), 64, "avx512f, assuming 2 FMA units (2 x 16 lanes x 2)"),
    (("avx2", "fma"), 32, "avx2+fma (2 FMA units x 8 lanes x 2)"),
    (("avx",), 16, "avx (8-lane add + mul)"),
    (("sve",), 32, "sve, assuming 2 x 256-bit (or 4 x 128-bit) FMA pipes: vector length is not in the flags"),
    (("sve2",), 32, "sve2, assuming 2 x 256-bit (or 4 x 128-bit) FMA pipes"),
    (("asimd",), 16, "aarch64 asimd, assuming 2 x 128-bit FMA pipes"),
    (("neon",), 16, "neon, assuming 2 x 128-bit FMA pipes"),
    (("sse2",), 8, "sse (4-lane add + mul)"),
    (("sse",), 8, "sse (4-lane add + mul)"),
)
CPU_DEFAULT_BANDWIDTH = 20e9


def cpu_spec(model_name: str, cores: int, clock_hz: float, isa_flags: Iterable[str],
             memory_bytes: int, memory_bandwidth: float | None = None) -> HardwareSpec:
    """A theoretical CPU peak: cores x clock x FLOPs/cycle/core from ISA flags.

    Only an estimate (turbo, AVX-512 down-clocking and FMA-unit counts vary by
    part); the profiler replaces it with a measured matmul peak via
    ``with_peak_override``.
    """
    if int(cores) <= 0 or not clock_hz or clock_hz <= 0:
        raise ConfigError(f"CPU cores ({cores!r}) and clock ({clock_hz!r} Hz) must be positive")
    flags = {str(f).strip().lower() for f in isa_flags}
    per_cycle, isa = 2, "no SIMD flag recognised, assuming one scalar FMA per cycle"
    for needed, flops, why in _CPU_FP32:
        if all(f in flags for f in needed):
            per_cycle, isa = flops, why
            break
    scale = int(cores) * float(clock_hz)
    peaks = {"fp32": scale * per_cycle}
    notes = ["theoretical estimate (cores x clock x FLOPs/cycle/core); the profiler measures "
             "the real peak with a matmul benchmark", f"fp32 {per_cycle} FLOPs/cycle/core: {isa}"]
    if "amx_bf16" in flags:
        peaks["bf16"] = scale * 1024
        notes.append("bf16 1,024 FLOPs/cycle/core: amx_bf16, assuming one AMX unit "
                     "(16x16x32 tile FMA per 16 cycles)")
    elif "avx512_bf16" in flags:
        peaks["bf16"] = scale * per_cycle * 2
        notes.append("bf16 = 2 x fp32: avx512_bf16 dot-products, assuming 2 FMA units")
    if memory_bandwidth is None:
        memory_bandwidth = CPU_DEFAULT_BANDWIDTH
        notes.append(f"memory bandwidth {CPU_DEFAULT_BANDWIDTH / 1e9:.0f} GB/s is an assumed default")
    notes.append("intra-node = memory bandwidth (shared memory, up to one rank per core) and "
                 "inter-node 1.25 GB/s (10 GbE) are assumptions")
    return HardwareSpec(
        key="cpu", name=str(model_name).strip() or "CPU", vendor="cpu",
        memory_bytes=int(memory_bytes), memory_bandwidth=float(memory_bandwidth),
        peak_flops=peaks, intra_node_bandwidth=float(memory_bandwidth), inter_node_bandwidth=1.25e9,
        sm_count=None, compute_capability=None, boost_clock_hz=float(clock_hz), tdp_watts=None,
        source=f"theoretical: {int(cores)} cores x {float(clock_hz) / 1e9:.2f} GHz x FLOPs/cycle/core "
               "from ISA flags",
        derived=True, notes="; ".join(notes),
        nvlink_domain=int(cores), link_kind="shared-memory", pcie_bandwidth=float(memory_bandwidth),
    )


def with_peak_override(spec: HardwareSpec, dtype: str, flops: float, *,
                       label: str = "override") -> HardwareSpec:
    """A copy with one dense peak replaced (``--peak-tflops``, a measured CPU peak).

    ``flops`` is FLOP/s, not TFLOP/s; ``label`` says where it came from and
    lands in ``source`` so a printed MFU can be traced to its denominator.
    """
    key = normalize_dtype(dtype)
    if not (isinstance(flops, (int, float)) and math.isfinite(flops) and flops > 0):
        raise ConfigError(f"peak for {key} must be a positive FLOP/s figure, got {flops!r}")
    peaks = dict(spec.peak_flops)
    old = peaks.get(key)
    peaks[key] = float(flops)
    was = f" (was {old / 1e12:.4g})" if old else ""
    note = f"{key} peak {flops / 1e12:.4g} TFLOP/s from {label}{was}"
    return dataclasses.replace(
        spec, peak_flops=peaks, source=f"{spec.source}; {note}",
        notes=f"{spec.notes}; {note}" if spec.notes else note,
    )
