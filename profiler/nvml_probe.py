"""NVIDIA GPUs as NVML sees them, without torch: what the driver reports per card.

Every field a card does not support (power on some boards, NVLink on PCIe
cards, MIG on consumer parts) reads ``"N/A"``; no NVML query ever raises out
of this module.  No NVML at all (package missing, no driver, init error) gives
an empty GPU list and the reason, which detection shows as "why CPU only".

Units are SI: bytes, Hz, watts, degrees Celsius, percent.

The ``nvml_module`` parameter is a seam: tests pass a fake module with the
``pynvml`` function names; by default the real ``pynvml`` (nvidia-ml-py) is
imported lazily.
"""

from __future__ import annotations

import atexit
import threading
from typing import Any, Callable

NA = "N/A"

# pynvml constants, used when a (fake or old) module lacks one.
_DEFAULTS = {
    "NVML_CLOCK_SM": 1,
    "NVML_CLOCK_MEM": 2,
    "NVML_TEMPERATURE_GPU": 0,
    "NVML_FEATURE_ENABLED": 1,
    "NVML_DEVICE_MIG_ENABLE": 1,
    "NVML_NVLINK_MAX_LINKS": 18,
}

# Live fields: cheap enough to read every second from the app.
SAMPLE_FIELDS = (
    "index", "memory_used_bytes", "memory_total_bytes", "sm_clock_hz", "mem_clock_hz",
    "power_draw_w", "temperature_c", "utilization_gpu_pct", "utilization_memory_pct",
)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _const(nvml: Any, name: str) -> int:
    return getattr(nvml, name, _DEFAULTS[name])


def load_nvml(nvml_module: Any = None) -> tuple[Any | None, str]:
    """The NVML module to use, or (None, why not)."""
    if nvml_module is not None:
        return nvml_module, ""
    try:
        import pynvml  # nvidia-ml-py
    except ImportError as exc:  # pragma: no cover - a declared dependency
        return None, f"nvidia-ml-py (pynvml) is not installed: {exc}"
    return pynvml, ""


def _init_reason(nvml: Any, exc: BaseException) -> str:
    """One line saying why NVML could not start, with the likely cause."""
    message = str(exc) or type(exc).__name__
    hint = ""
    lowered = message.lower()
    if "library not found" in lowered or "shared library" in lowered:
        hint = " (no NVIDIA driver installed on this machine)"
    elif "driver not loaded" in lowered:
        hint = " (the NVIDIA kernel driver is not loaded)"
    elif "permission" in lowered:
        hint = " (no permission to open the GPU device files)"
    return f"NVML init failed: {message}{hint}"


class NvmlSession:
    """An initialised NVML plus its device handles.

    ``nvmlInit`` is reference-counted by pynvml, so several sessions (a one-off
    query and the app's live sampler) may be open at once.
    """

    def __init__(self, nvml_module: Any = None):
        self.nvml, self.reason = load_nvml(nvml_module)
        self.handles: list[Any] = []
        self.ok = False
        if self.nvml is None:
            return
        errors = self._errors()
        try:
            self.nvml.nvmlInit()
        except errors as exc:
            self.reason = _init_reason(self.nvml, exc)
            return
        self.ok = True
        try:
            count = int(self.nvml.nvmlDeviceGetCount())
            self.handles = [self.nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        except errors as exc:
            self.reason = f"NVML could not list GPUs: {exc}"
            self.handles = []
        if not self.handles and not self.reason:
            self.reason = "NVML found no GPU"

    def _errors(self) -> tuple[type[BaseException], ...]:
        # AttributeError: an older pynvml without the function; NVMLError covers
        # NotSupported, NoPermission, GpuIsLost, ...
        error = getattr(self.nvml, "NVMLError", None)
        return (error, AttributeError) if isinstance(error, type) else (AttributeError,)

    def call(self, fn_name: str, *args: Any) -> Any:
        """``nvml.fn_name(*args)``, or ``NA`` where the card/driver does not support it."""
        try:
            return getattr(self.nvml, fn_name)(*args)
        except self._errors():
            return NA

    def close(self) -> None:
        if self.ok:
            self.ok = False
            try:
                self.nvml.nvmlShutdown()
            except self._errors():
                pass

    # ------------------------------------------------------------ per device

    def device_info(self, index: int) -> dict[str, Any]:
        """Every field for GPU ``index``; "N/A" where unsupported."""
        nvml, handle = self.nvml, self.handles[index]
        info: dict[str, Any] = {
            "index": index,
            "name": _map(self.call("nvmlDeviceGetName", handle), _text),
            "uuid": _map(self.call("nvmlDeviceGetUUID", handle), _text),
        }
        info.update(self._memory(handle))
        info["driver_version"] = _map(self.call("nvmlSystemGetDriverVersion"), _text)
        info["cuda_driver_version"] = _map(self.call("nvmlSystemGetCudaDriverVersion"), _cuda_version)
        info["compute_capability"] = _map(self.call("nvmlDeviceGetCudaComputeCapability", handle),
                                          lambda cc: f"{int(cc[0])}.{int(cc[1])}")
        sm, mem = _const(nvml, "NVML_CLOCK_SM"), _const(nvml, "NVML_CLOCK_MEM")
        info["sm_clock_hz"] = _map(self.call("nvmlDeviceGetClockInfo", handle, sm), _mhz)
        info["sm_clock_max_hz"] = _map(self.call("nvmlDeviceGetMaxClockInfo", handle, sm), _mhz)
        info["mem_clock_hz"] = _map(self.call("nvmlDeviceGetClockInfo", handle, mem), _mhz)
        info["mem_clock_max_hz"] = _map(self.call("nvmlDeviceGetMaxClockInfo", handle, mem), _mhz)
        info["power_draw_w"] = _map(self.call("nvmlDeviceGetPowerUsage", handle), _milli)
        info["power_limit_w"] = _map(self.call("nvmlDeviceGetEnforcedPowerLimit", handle), _milli)
        info["temperature_c"] = self._temperature(handle)
        info.update(self._utilisation(handle))
        info["pcie_gen_current"] = _map(self.call("nvmlDeviceGetCurrPcieLinkGeneration", handle), int)
        info["pcie_gen_max"] = _map(self.call("nvmlDeviceGetMaxPcieLinkGeneration", handle), int)
        info["pcie_width_current"] = _map(self.call("nvmlDeviceGetCurrPcieLinkWidth", handle), int)
        info["pcie_width_max"] = _map(self.call("nvmlDeviceGetMaxPcieLinkWidth", handle), int)
        info["nvlink_active_links"] = self._nvlink_active(handle)
        info["mig_mode"] = self._mig_mode(handle)
        info["processes"] = self.processes(index)
        return info

    def sample(self, index: int) -> dict[str, Any]:
        """The live subset of ``device_info`` (about 7 NVML calls)."""
        nvml, handle = self.nvml, self.handles[index]
        memory = self._memory(handle)
        out = {
            "index": index,
            "memory_used_bytes": memory["memory_used_bytes"],
            "memory_total_bytes": memory["memory_total_bytes"],
            "sm_clock_hz": _map(self.call("nvmlDeviceGetClockInfo", handle, _const(nvml, "NVML_CLOCK_SM")), _mhz),
            "mem_clock_hz": _map(self.call("nvmlDeviceGetClockInfo", handle, _const(nvml, "NVML_CLOCK_MEM")), _mhz),
            "power_draw_w": _map(self.call("nvmlDeviceGetPowerUsage", handle), _milli),
            "temperature_c": self._temperature(handle),
        }
        out.update(self._utilisation(handle))
        return out

    def processes(self, index: int) -> list[dict[str, Any]] | str:
        """Compute processes on GPU ``index``: pid and used bytes (None where the driver hides it)."""
        procs = self.call("nvmlDeviceGetComputeRunningProcesses", self.handles[index])
        if procs == NA:
            return NA
        out = []
        for proc in procs or ():
            used = getattr(proc, "usedGpuMemory", None)
            out.append({"pid": int(proc.pid), "used_bytes": None if used is None else int(used)})
        return out

    def _memory(self, handle: Any) -> dict[str, Any]:
        mem = self.call("nvmlDeviceGetMemoryInfo", handle)
        if mem == NA:
            return {"memory_total_bytes": NA, "memory_used_bytes": NA, "memory_free_bytes": NA}
        return {"memory_total_bytes": int(mem.total), "memory_used_bytes": int(mem.used),
                "memory_free_bytes": int(mem.free)}

    def _temperature(self, handle: Any) -> Any:
        return _map(self.call("nvmlDeviceGetTemperature", handle, _const(self.nvml, "NVML_TEMPERATURE_GPU")), int)

    def _utilisation(self, handle: Any) -> dict[str, Any]:
        rates = self.call("nvmlDeviceGetUtilizationRates", handle)
        if rates == NA:
            return {"utilization_gpu_pct": NA, "utilization_memory_pct": NA}
        return {"utilization_gpu_pct": int(rates.gpu), "utilization_memory_pct": int(rates.memory)}

    def _nvlink_active(self, handle: Any) -> Any:
        """Active links; "N/A" when the first link query is unsupported (no NVLink).

        Links past the card's count raise (InvalidArgument), which ends the scan.
        """
        enabled = _const(self.nvml, "NVML_FEATURE_ENABLED")
        active, answered = 0, False
        for link in range(_const(self.nvml, "NVML_NVLINK_MAX_LINKS")):
            state = self.call("nvmlDeviceGetNvLinkState", handle, link)
            if state == NA:
                break
            answered = True
            active += int(state == enabled)
        return active if answered else NA

    def _mig_mode(self, handle: Any) -> str:
        modes = self.call("nvmlDeviceGetMigMode", handle)
        if modes == NA:
            return NA
        current, pending = int(modes[0]), int(modes[1])
        enable = _const(self.nvml, "NVML_DEVICE_MIG_ENABLE")
        text = "enabled" if current == enable else "disabled"
        if pending != current:
            text += f" (pending {'enabled' if pending == enable else 'disabled'} after reset)"
        return text


def _map(value: Any, fn: Callable[[Any], Any]) -> Any:
    return NA if value == NA else fn(value)


def _mhz(value: Any) -> int:
    return int(value) * 1_000_000


def _milli(value: Any) -> float:
    return int(value) / 1000.0


def _cuda_version(value: Any) -> str:
    """12040 -> '12.4' (NVML encodes major*1000 + minor*10)."""
    value = int(value)
    return f"{value // 1000}.{(value % 1000) // 10}"


# ---------------------------------------------------------------- public API

def query_gpus(nvml_module: Any = None) -> tuple[list[dict[str, Any]], str]:
    """Every GPU's fields, and the reason when the list is empty ("" otherwise)."""
    session = NvmlSession(nvml_module)
    try:
        if not session.ok:
            return [], session.reason
        gpus = [session.device_info(i) for i in range(len(session.handles))]
        return gpus, "" if gpus else session.reason
    finally:
        session.close()


_shared: NvmlSession | None = None
_shared_lock = threading.Lock()


def _shared_session(nvml_module: Any = None) -> NvmlSession:
    """One long-lived session for per-second sampling, opened on first use."""
    global _shared
    with _shared_lock:
        wanted = load_nvml(nvml_module)[0]
        if _shared is None or _shared.nvml is not wanted:
            if _shared is not None:
                _shared.close()
            _shared = NvmlSession(nvml_module)
        return _shared


def close_shared_session() -> None:
    global _shared
    with _shared_lock:
        if _shared is not None:
            _shared.close()
            _shared = None


atexit.register(close_shared_session)


def sample_gpus(nvml_module: Any = None) -> list[dict[str, Any]]:
    """Live per-GPU readings (``SAMPLE_FIELDS``); [] without NVML. Cheap: call it every second."""
    session = _shared_session(nvml_module)
    if not session.ok:
        return []
    with _shared_lock:
        return [session.sample(i) for i in range(len(session.handles))]


def find_gpu_index(gpus: list[dict[str, Any]], uuid: str | None = None, index: int | None = None) -> int | None:
    """Position in ``gpus`` of the card with this UUID (torch's has no "GPU-" prefix), else of ``index``."""
    if uuid:
        bare = str(uuid).lower().removeprefix("gpu-")
        for pos, gpu in enumerate(gpus):
            if str(gpu.get("uuid", "")).lower().removeprefix("gpu-") == bare:
                return pos
        return None
    if index is not None and 0 <= index < len(gpus):
        return index
    return None


def process_memory(pid: int, uuid: str | None = None, index: int | None = None,
                   nvml_module: Any = None) -> int | None:
    """Bytes NVML charges to ``pid`` on one GPU; None when unknown.

    Inside a container NVML lists host PIDs, so our own PID is often absent:
    that reads None, not 0.
    """
    session = _shared_session(nvml_module)
    if not session.ok:
        return None
    with _shared_lock:
        if uuid:
            names = [{"uuid": _text(session.call("nvmlDeviceGetUUID", h))} for h in session.handles]
            pos = find_gpu_index(names, uuid=uuid)
        else:
            pos = find_gpu_index([{}] * len(session.handles), index=index)
        if pos is None:
            return None
        procs = session.processes(pos)
    if procs == NA:
        return None
    used = [p["used_bytes"] for p in procs if p["pid"] == pid and p["used_bytes"] is not None]
    return sum(used) if used else None
