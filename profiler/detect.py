"""Which device a run uses, and the peak its MFU divides by.

``detect_device`` picks CUDA or the CPU, matches a GPU to the estimator's spec
table (by NVML/torch name), or derives an unknown GPU's peak from SM count x
clock and says so; on CPU it replaces the theoretical peak with a measured
matmul rate.  The result carries the ``DeviceDetected`` event every run emits
first.  ``describe_devices`` is the ``mfutop gpus --json`` object.

Seams for tests: ``nvml`` (a fake pynvml module), ``cuda`` (an object with
``count_and_reason()`` and ``properties(index)``, see ``TorchCuda``) and
``cpu_benchmark`` (a ``measured_peak``-like callable).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from estimator.errors import ConfigError
from estimator.hardware import DTYPES, HardwareSpec, match_device_name
from estimator.device_specs import cpu_spec, derived_gpu_spec, with_peak_override
from estimator.precision import get_precision
from profiler import cpu_probe, nvml_probe
from profiler.events import DeviceDetected

UNKNOWN_GPU_WARNING = "unknown GPU: peak derived from SM count x clock"
CPU_MEASURED_DTYPES = ("fp32", "bf16", "fp16")  # what `mfutop gpus` benchmarks on a CPU

Benchmark = Callable[[str], dict]


@dataclass
class DetectedDevice:
    torch_device: str  # "cuda:0" | "cpu"
    kind: str  # "cuda" | "cpu"
    spec: HardwareSpec
    event: DeviceDetected
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"torch_device": self.torch_device, "kind": self.kind, "spec": self.spec.to_dict(),
                "event": self.event.to_dict(), "warnings": list(self.warnings)}


# Where an NVIDIA driver shows itself without NVML: its control device (Linux) or WSL's GPU device.
_DRIVER_DEVICES = ("/dev/nvidiactl", "/dev/dxg")


def _no_nvidia_driver(nvml_reason: str) -> bool:
    """NVML's library is missing and so is every driver device: libcuda (same driver) is missing too."""
    return "library not found" in nvml_reason.lower() and not any(map(os.path.exists, _DRIVER_DEVICES))


class TorchCuda:
    """What PyTorch says about CUDA devices (the default ``cuda`` seam).

    ``nvml_reason`` is why NVML, asked first, listed no GPU. Where the answer is
    already known (a CPU-only build; a CUDA build with no NVIDIA driver) torch
    is not imported: that import is most of `mfutop gpus`'s time on a CPU box.
    """

    def __init__(self, nvml_reason: str = ""):
        self.nvml_reason = nvml_reason

    def count_and_reason(self) -> tuple[int, str]:
        build = cpu_probe.torch_build()
        if build["cuda"] is None and build["hip"] is None:
            return 0, f"this PyTorch build ({build['version']}) has no CUDA support"
        if build["hip"] is None and _no_nvidia_driver(self.nvml_reason):
            return 0, _no_device_reason()
        import torch

        try:
            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        except RuntimeError as exc:  # a broken driver install
            return 0, f"CUDA initialisation failed: {str(exc).splitlines()[0]}"
        return (count, "") if count else (0, _no_device_reason())

    def properties(self, index: int) -> dict[str, Any]:
        import torch

        props = torch.cuda.get_device_properties(index)
        hip_arch = getattr(props, "gcnArchName", "") if getattr(torch.version, "hip", None) else ""
        return {
            "name": props.name,
            "total_memory": int(props.total_memory),
            "compute_capability": hip_arch.split(":")[0] if hip_arch else f"{props.major}.{props.minor}",
            "sm_count": int(props.multi_processor_count),
            "uuid": str(getattr(props, "uuid", "") or ""),
        }


def _no_device_reason() -> str:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    hint = f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else ""
    return f"PyTorch sees no CUDA device{hint}"


# ---------------------------------------------------------------- GPU specs

def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown-gpu"


def _mig_slice_spec(name: str, memory_bytes: int, sm_count: int) -> HardwareSpec | None:
    """A MIG slice: its parent's datasheet peaks scaled by the slice's SM share.

    The slice's SM fraction is not g/7 (GH200 1g = 16 of 132 SMs), so the
    scale comes from torch's ``multi_processor_count`` of the slice.
    """
    parent = match_device_name(re.split(r"\bmig\b", name, flags=re.IGNORECASE)[0].strip())
    if parent is None or not parent.sm_count or sm_count <= 0:
        return None
    share = sm_count / parent.sm_count
    mem_share = min(1.0, memory_bytes / parent.memory_bytes) if memory_bytes else share
    note = f"MIG slice: {sm_count}/{parent.sm_count} SMs of {parent.name}; peaks and bandwidth scaled"
    return dataclasses.replace(
        parent, key=f"{parent.key}-mig-{sm_count}sm", name=name, memory_bytes=int(memory_bytes),
        memory_bandwidth=parent.memory_bandwidth * mem_share,
        peak_flops={d: v * share for d, v in parent.peak_flops.items()}, sm_count=sm_count,
        source=f"scaled: {parent.source}", derived=True, notes=f"{note}; {parent.notes}",
    )


def resolve_gpu_spec(name: str, memory_bytes: int, compute_capability: str | None,
                     sm_count: int | None, clock_hz: float | None) -> tuple[HardwareSpec, list[str]]:
    """Datasheet row by name; else a MIG-scaled parent; else SM count x clock; else no peak.

    ``clock_hz`` should be NVML's max SM clock: it overstates the tensor clock
    (H100 SXM 1,980 vs 1,830 MHz), so a derived peak is an upper bound.
    """
    if re.search(r"\bmig\b", name, flags=re.IGNORECASE) and sm_count:
        spec = _mig_slice_spec(name, memory_bytes, sm_count)
        if spec is not None:
            return spec, [spec.notes.split(";")[0]]
    spec = match_device_name(name, memory_bytes or None)
    if spec is not None:
        if memory_bytes:
            spec = dataclasses.replace(spec, memory_bytes=int(memory_bytes),
                                       notes=f"{spec.notes}; memory_bytes: the device's reported total")
        return spec, []
    if sm_count and clock_hz and compute_capability:
        spec = derived_gpu_spec(name, compute_capability, sm_count, clock_hz, memory_bytes)
        if spec.peak_flops:
            return spec, [f"{UNKNOWN_GPU_WARNING} ({sm_count} SMs x {clock_hz / 1e6:.0f} MHz, CC "
                          f"{spec.compute_capability}; an upper bound; set --peak-tflops to override)"]
        return spec, [f"unknown GPU {name!r} (architecture {spec.compute_capability}): "
                      "MFU n/a (unknown peak; --peak-tflops)"]
    spec = HardwareSpec(
        key=_slug(name), name=name, vendor="nvidia", memory_bytes=int(memory_bytes or 0),
        memory_bandwidth=0.0, peak_flops={}, intra_node_bandwidth=0.0, inter_node_bandwidth=0.0,
        sm_count=sm_count, compute_capability=compute_capability, boost_clock_hz=clock_hz,
        tdp_watts=None, source="unknown: no spec row and no SM count/clock to derive a peak", derived=True,
    )
    return spec, [f"unknown GPU {name!r}: MFU n/a (unknown peak; --peak-tflops)"]


# ---------------------------------------------------------------- CPU spec

def _default_benchmark(dtype: str) -> dict:
    return cpu_probe.measured_peak(dtype)


def cpu_device_spec(info: dict[str, Any], dtypes: tuple[str, ...],
                    benchmark: Benchmark | None = None) -> tuple[HardwareSpec, HardwareSpec, dict, list[str]]:
    """(measured spec, theoretical spec, benchmark results by dtype, warnings) for this CPU."""
    benchmark = benchmark or _default_benchmark
    warnings: list[str] = []
    clock = info.get("clock_max_hz") or info.get("clock_current_hz")
    if not clock:
        clock = 1e9
        warnings.append("CPU clock unknown: the theoretical peak assumes 1 GHz")
    theoretical = cpu_spec(info["model_name"], cpu_probe.compute_cores(info), clock, info["isa_flags"],
                           info["memory_total_bytes"])
    spec, measured = theoretical, {}
    for dtype in dict.fromkeys(("fp32", *dtypes)):  # fp32 first, no repeats
        result = benchmark(dtype)
        measured[dtype] = result
        if result.get("flops"):
            label = f"measured matmul benchmark (n={result['size']}, {result.get('threads', '?')} threads)"
            spec = with_peak_override(spec, dtype, result["flops"], label=label)
            if dtype == "fp32":  # CPUs have no TF32: a tf32 run does fp32 math
                spec = with_peak_override(spec, "tf32", result["flops"], label="measured fp32 (no TF32 on CPU)")
        else:
            then = (f"MFU for {dtype} divides by the theoretical peak" if theoretical.peak(dtype)
                    else f"no {dtype} peak: MFU n/a for {dtype}")
            why = (f"no fast {dtype} matmul path on this CPU" if result.get("usable") is False
                   else result.get("note") or f"{dtype} not measured")
            warnings.append(f"{why}; {then}")
    return spec, theoretical, measured, warnings


# ---------------------------------------------------------------- detection

def _parse_requested(requested: str) -> tuple[str, int]:
    text = str(requested).strip().lower()
    if text in ("auto", "cpu", "cuda"):
        return text, 0
    if m := re.fullmatch(r"cuda:(\d+)", text):
        return "cuda", int(m.group(1))
    raise ConfigError(f"unknown device {requested!r}; choose auto, cuda, cuda:N or cpu")


def peak_source(spec: HardwareSpec, dtype: str, measured: dict | None = None) -> str:
    """Where ``spec.peak(dtype)`` comes from: a benchmark, a datasheet row, or a derivation."""
    if spec.peak(dtype) is None:
        return "unknown"
    result = (measured or {}).get("fp32" if dtype == "tf32" else dtype)
    if result and result.get("flops"):
        return (f"measured: {result['dtype']} matmul benchmark (n={result['size']}, "
                f"{result.get('threads', '?')} threads, best of several)")
    return spec.source


def detect_device(requested: str = "auto", precision: str = "bf16-mixed", peak_tflops: float | None = None,
                  nvml: Any = None, *, cuda: Any = None, cpu_benchmark: Benchmark | None = None) -> DetectedDevice:
    """The device a run uses, its spec, and the ``DeviceDetected`` event.

    ``--device cuda`` without CUDA is a ConfigError (one line, with the reason);
    ``auto`` falls back to the CPU and records why in ``event.reason``.
    """
    want, index = _parse_requested(requested)
    dtype = get_precision(precision).matmul_dtype
    if peak_tflops is not None and not (isinstance(peak_tflops, (int, float)) and math.isfinite(peak_tflops)
                                        and peak_tflops > 0):
        raise ConfigError(f"--peak-tflops must be a positive number of TFLOP/s, got {peak_tflops!r}")
    gpus, nvml_reason = nvml_probe.query_gpus(nvml) if want != "cpu" else ([], "")
    cuda = cuda or TorchCuda(nvml_reason)
    count, reason = (0, "--device cpu requested") if want == "cpu" else cuda.count_and_reason()
    if want == "cuda" and count == 0:
        why = "; ".join(filter(None, (reason, nvml_reason))) or "unknown reason"
        raise ConfigError(f"--device cuda requested but CUDA is not available: {why}")
    if want == "cuda" and index >= count:
        raise ConfigError(f"--device cuda:{index} requested but only {count} CUDA device(s) are visible")

    if count:
        detected = _detect_cuda(cuda, index, gpus, nvml_reason, dtype)
    else:
        reason = "; ".join(filter(None, (reason, nvml_reason)))
        detected = _detect_cpu(dtype, reason, cpu_benchmark)
    if peak_tflops is not None:
        spec = with_peak_override(detected.spec, dtype, peak_tflops * 1e12, label="--peak-tflops")
        event = dataclasses.replace(detected.event, peak_flops=spec.peak(dtype), peak_source="--peak-tflops")
        detected = dataclasses.replace(detected, spec=spec, event=event)
    elif detected.event.peak_flops is None:
        detected.warnings.append(f"{detected.spec.name} has no dense {dtype} peak: "
                                 "MFU n/a (unknown peak; --peak-tflops)")
    return detected


def _detect_cuda(cuda: Any, index: int, gpus: list[dict], nvml_reason: str, dtype: str) -> DetectedDevice:
    props = cuda.properties(index)
    pos = nvml_probe.find_gpu_index(gpus, uuid=props.get("uuid") or None,
                                    index=None if props.get("uuid") else index)
    nvml_fields = gpus[pos] if pos is not None else {}
    clock = nvml_fields.get("sm_clock_max_hz")
    spec, warnings = resolve_gpu_spec(props["name"], props["total_memory"], props["compute_capability"],
                                      props["sm_count"], clock if isinstance(clock, (int, float)) else None)
    details = {**nvml_fields, "torch_name": props["name"], "torch_total_memory_bytes": props["total_memory"],
               "sm_count": props["sm_count"], "compute_capability": props["compute_capability"]}
    if not nvml_fields:
        details["nvml"] = nvml_reason or "this device was not found in NVML's list"
    event = DeviceDetected(
        device="cuda", name=props["name"], spec_key=None if spec.derived else spec.key,
        memory_total_bytes=props["total_memory"], peak_flops=spec.peak(dtype), peak_dtype=dtype,
        peak_source=peak_source(spec, dtype), details=details, reason="",
    )
    return DetectedDevice(f"cuda:{index}", "cuda", spec, event, warnings)


def _detect_cpu(dtype: str, reason: str, benchmark: Benchmark | None) -> DetectedDevice:
    info = cpu_probe.cpu_info()
    wanted = (dtype,) if dtype in CPU_MEASURED_DTYPES else ()
    spec, theoretical, measured, warnings = cpu_device_spec(info, wanted, benchmark)
    details = {**info, "measured_peaks": measured, "theoretical_peak_flops": dict(theoretical.peak_flops)}
    event = DeviceDetected(
        device="cpu", name=info["model_name"], spec_key=spec.key, memory_total_bytes=info["memory_total_bytes"],
        peak_flops=spec.peak(dtype), peak_dtype=dtype, peak_source=peak_source(spec, dtype, measured),
        details=details, reason=reason,
    )
    return DetectedDevice("cpu", "cpu", spec, event, warnings)


def nvml_process_memory(torch_device: str, nvml: Any = None) -> int | None:
    """GPU memory NVML charges to this process on ``torch_device``; None when unknown (CPU, no NVML,
    or a container whose PIDs NVML does not see)."""
    text = str(torch_device).strip().lower()
    if not text.startswith("cuda"):
        return None
    index = int(text.partition(":")[2] or 0)
    return nvml_probe.process_memory(os.getpid(), uuid=_torch_uuid(index), index=index, nvml_module=nvml)


@functools.lru_cache(maxsize=None)
def _torch_uuid(index: int) -> str | None:
    """torch's UUID for a device (fixed for the process: asked once, then cached)."""
    try:
        return TorchCuda().properties(index).get("uuid") or None
    except Exception:  # no CUDA in this process: NVML's index is the best guess
        return None


# ---------------------------------------------------------------- mfutop gpus

def describe_devices(nvml: Any = None, *, cuda: Any = None, cpu_benchmark: Benchmark | None = None) -> dict:
    """The ``mfutop gpus --json`` object: every GPU (NVML fields, spec, peaks) or the CPU and why."""
    gpus, nvml_reason = nvml_probe.query_gpus(nvml)  # first: it can spare torch's import (TorchCuda)
    cuda = cuda or TorchCuda(nvml_reason)
    count, cuda_reason = cuda.count_and_reason()
    torch_props = [cuda.properties(i) for i in range(count)]
    entries, seen = [], set()
    for i, props in enumerate(torch_props):
        pos = nvml_probe.find_gpu_index(gpus, uuid=props.get("uuid") or None,
                                        index=None if props.get("uuid") else i)
        seen.add(pos)
        entries.append(_gpu_entry(gpus[pos] if pos is not None else {}, props, f"cuda:{i}"))
    for pos, fields in enumerate(gpus):  # cards NVML lists but torch cannot use
        if pos not in seen:
            entries.append(_gpu_entry(fields, None, None))
    out: dict[str, Any] = {
        "device": "cuda:0" if count else "cpu",
        "reason": "" if count else "; ".join(filter(None, (cuda_reason, nvml_reason))),
        "nvml": {"available": bool(gpus), "reason": nvml_reason},
        "gpus": entries,
        "cpu": None,
    }
    if not count:
        info = cpu_probe.cpu_info()
        spec, theoretical, measured, warnings = cpu_device_spec(info, CPU_MEASURED_DTYPES, cpu_benchmark)
        out["cpu"] = {
            "info": info, "spec": spec.to_dict(), "peak_flops": dict(spec.peak_flops),
            "peak_source": {d: peak_source(spec, d, measured) for d in spec.peak_flops},
            "theoretical_peak_flops": dict(theoretical.peak_flops), "measured": measured, "warnings": warnings,
        }
    return out


def _gpu_entry(fields: dict, props: dict | None, torch_device: str | None) -> dict[str, Any]:
    name = props["name"] if props else str(fields.get("name", "unknown GPU"))
    total = fields.get("memory_total_bytes")
    memory = props["total_memory"] if props else (total if isinstance(total, int) else 0)
    cc = props["compute_capability"] if props else fields.get("compute_capability")
    clock = fields.get("sm_clock_max_hz")
    spec, warnings = resolve_gpu_spec(name, memory, cc if cc != nvml_probe.NA else None,
                                      props["sm_count"] if props else None,
                                      clock if isinstance(clock, (int, float)) else None)
    if props is None:
        warnings.append("PyTorch cannot use this GPU (CPU-only build, or hidden by CUDA_VISIBLE_DEVICES)")
    return {
        "torch_device": torch_device, "name": name, "nvml": fields,
        "sm_count": props["sm_count"] if props else None, "spec": spec.to_dict(),
        "peak_flops": {d: spec.peak_flops.get(d) for d in DTYPES},
        "peak_source": spec.source, "derived": spec.derived, "warnings": warnings,
    }
