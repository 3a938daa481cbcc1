"""A fake ``pynvml`` module for tests: the real function names and error classes,
answering from ``FakeGpu`` records instead of a driver.

``FakeNvml(gpus, init_error=...)`` behaves like the module object; a GPU's
``unsupported`` set names functions that raise ``NVMLError_NotSupported`` on
that card, the way a PCIe board answers power or NVLink queries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_LIBRARY_NOT_FOUND = 12

_MESSAGES = {
    NVML_ERROR_INVALID_ARGUMENT: "Invalid Argument",
    NVML_ERROR_NOT_SUPPORTED: "Not Supported",
    NVML_ERROR_DRIVER_NOT_LOADED: "Driver Not Loaded",
    NVML_ERROR_LIBRARY_NOT_FOUND: "NVML Shared Library Not Found",
}


class NVMLError(Exception):
    def __init__(self, value: int):
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return _MESSAGES.get(self.value, f"NVML Error with code {self.value}")


class NVMLError_NotSupported(NVMLError):
    def __init__(self):
        super().__init__(NVML_ERROR_NOT_SUPPORTED)


class NVMLError_InvalidArgument(NVMLError):
    def __init__(self):
        super().__init__(NVML_ERROR_INVALID_ARGUMENT)


class NVMLError_LibraryNotFound(NVMLError):
    def __init__(self):
        super().__init__(NVML_ERROR_LIBRARY_NOT_FOUND)


class NVMLError_DriverNotLoaded(NVMLError):
    def __init__(self):
        super().__init__(NVML_ERROR_DRIVER_NOT_LOADED)


MiB = 2**20


@dataclass
class FakeGpu:
    name: str
    uuid: str
    memory_total: int
    memory_used: int = 0
    cc: tuple[int, int] = (9, 0)
    sm_clock_mhz: int = 1755
    sm_clock_max_mhz: int = 1980
    mem_clock_mhz: int = 2619
    mem_clock_max_mhz: int = 2619
    power_mw: int = 71_000
    power_limit_mw: int = 700_000
    temperature_c: int = 33
    util_gpu: int = 0
    util_mem: int = 0
    pcie_gen: tuple[int, int] = (5, 5)  # current, max
    pcie_width: tuple[int, int] = (16, 16)
    nvlink_states: tuple[int, ...] = (1,) * 18  # one per link; beyond -> InvalidArgument
    mig: tuple[int, int] = (0, 0)  # current, pending
    processes: list[tuple[int, int | None]] = field(default_factory=list)  # (pid, used bytes)
    unsupported: set[str] = field(default_factory=set)


def h100_sxm(**overrides) -> FakeGpu:
    """What NVML reports for an H100 SXM5 80GB (memory.total 81,559 MiB)."""
    values = dict(name="NVIDIA H100 80GB HBM3", uuid="GPU-11111111-2222-3333-4444-555555555555",
                  memory_total=81_559 * MiB, memory_used=520 * MiB)
    values.update(overrides)
    return FakeGpu(**values)


def unknown_gpu(**overrides) -> FakeGpu:
    """A card no spec row knows: an Ampere (CC 8.0) part with a made-up name."""
    values = dict(name="NVIDIA Quantum Widget 9000", uuid="GPU-99999999-0000-0000-0000-000000000000",
                  memory_total=40_960 * MiB, cc=(8, 0), sm_clock_max_mhz=1410, nvlink_states=())
    values.update(overrides)
    return FakeGpu(**values)


def pcie_card_without_power_or_nvlink(**overrides) -> FakeGpu:
    """A board that answers NotSupported for power, NVLink, MIG and utilisation."""
    values = dict(name="NVIDIA A10", uuid="GPU-aaaaaaaa-0000-0000-0000-000000000000", memory_total=23_028 * MiB,
                  cc=(8, 6), sm_clock_max_mhz=1695,
                  unsupported={"nvmlDeviceGetPowerUsage", "nvmlDeviceGetEnforcedPowerLimit",
                               "nvmlDeviceGetNvLinkState", "nvmlDeviceGetMigMode",
                               "nvmlDeviceGetUtilizationRates"})
    values.update(overrides)
    return FakeGpu(**values)


class FakeNvml:
    """Stands in for the ``pynvml`` module."""

    NVMLError = NVMLError
    NVMLError_NotSupported = NVMLError_NotSupported
    NVML_CLOCK_SM = 1
    NVML_CLOCK_MEM = 2
    NVML_TEMPERATURE_GPU = 0
    NVML_FEATURE_ENABLED = 1
    NVML_DEVICE_MIG_ENABLE = 1
    NVML_NVLINK_MAX_LINKS = 18

    def __init__(self, gpus: list[FakeGpu] | None = None, init_error: type[NVMLError] | None = None,
                 driver: str = "550.54.15", cuda: int = 12040):
        self.gpus = list(gpus or [])
        self.init_error = init_error
        self.driver = driver
        self.cuda = cuda
        self.initialised = 0
        self.calls: list[str] = []

    def _use(self, fn: str, gpu: FakeGpu | None = None) -> None:
        self.calls.append(fn)
        if not self.initialised:
            raise NVMLError(1)  # Uninitialized
        if gpu is not None and fn in gpu.unsupported:
            raise NVMLError_NotSupported()

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise self.init_error()
        self.initialised += 1

    def nvmlShutdown(self) -> None:
        self.initialised = max(0, self.initialised - 1)

    def nvmlDeviceGetCount(self) -> int:
        self._use("nvmlDeviceGetCount")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        self._use("nvmlDeviceGetHandleByIndex")
        return self.gpus[index]

    def nvmlDeviceGetName(self, gpu: FakeGpu) -> str:
        self._use("nvmlDeviceGetName", gpu)
        return gpu.name

    def nvmlDeviceGetUUID(self, gpu: FakeGpu) -> str:
        self._use("nvmlDeviceGetUUID", gpu)
        return gpu.uuid

    def nvmlDeviceGetMemoryInfo(self, gpu: FakeGpu) -> SimpleNamespace:
        self._use("nvmlDeviceGetMemoryInfo", gpu)
        return SimpleNamespace(total=gpu.memory_total, used=gpu.memory_used,
                               free=gpu.memory_total - gpu.memory_used)

    def nvmlSystemGetDriverVersion(self) -> str:
        self._use("nvmlSystemGetDriverVersion")
        return self.driver

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        self._use("nvmlSystemGetCudaDriverVersion")
        return self.cuda

    def nvmlDeviceGetCudaComputeCapability(self, gpu: FakeGpu) -> tuple[int, int]:
        self._use("nvmlDeviceGetCudaComputeCapability", gpu)
        return gpu.cc

    def nvmlDeviceGetClockInfo(self, gpu: FakeGpu, clock: int) -> int:
        self._use("nvmlDeviceGetClockInfo", gpu)
        return gpu.sm_clock_mhz if clock == self.NVML_CLOCK_SM else gpu.mem_clock_mhz

    def nvmlDeviceGetMaxClockInfo(self, gpu: FakeGpu, clock: int) -> int:
        self._use("nvmlDeviceGetMaxClockInfo", gpu)
        return gpu.sm_clock_max_mhz if clock == self.NVML_CLOCK_SM else gpu.mem_clock_max_mhz

    def nvmlDeviceGetPowerUsage(self, gpu: FakeGpu) -> int:
        self._use("nvmlDeviceGetPowerUsage", gpu)
        return gpu.power_mw

    def nvmlDeviceGetEnforcedPowerLimit(self, gpu: FakeGpu) -> int:
        self._use("nvmlDeviceGetEnforcedPowerLimit", gpu)
        return gpu.power_limit_mw

    def nvmlDeviceGetTemperature(self, gpu: FakeGpu, sensor: int) -> int:
        self._use("nvmlDeviceGetTemperature", gpu)
        return gpu.temperature_c

    def nvmlDeviceGetUtilizationRates(self, gpu: FakeGpu) -> SimpleNamespace:
        self._use("nvmlDeviceGetUtilizationRates", gpu)
        return SimpleNamespace(gpu=gpu.util_gpu, memory=gpu.util_mem)

    def nvmlDeviceGetCurrPcieLinkGeneration(self, gpu: FakeGpu) -> int:
        self._use("nvmlDeviceGetCurrPcieLinkGeneration", gpu)
        return gpu.pcie_gen[0]

    def nvmlDeviceGetMaxPcieLinkGeneration(self, gpu: FakeGpu) -> int:
        self._use("nvmlDeviceGetMaxPcieLinkGeneration", gpu)
        return gpu.pcie_gen[1]

    def nvmlDeviceGetCurrPcieLinkWidth(self, gpu: FakeGpu) -> int:
        self._use("nvmlDeviceGetCurrPcieLinkWidth", gpu)
        return gpu.pcie_width[0]

    def nvmlDeviceGetMaxPcieLinkWidth(self, gpu: FakeGpu) -> int:
        self._use("nvmlDeviceGetMaxPcieLinkWidth", gpu)
        return gpu.pcie_width[1]

    def nvmlDeviceGetNvLinkState(self, gpu: FakeGpu, link: int) -> int:
        self._use("nvmlDeviceGetNvLinkState", gpu)
        if not gpu.nvlink_states:
            raise NVMLError_NotSupported()
        if link >= len(gpu.nvlink_states):
            raise NVMLError_InvalidArgument()
        return gpu.nvlink_states[link]

    def nvmlDeviceGetMigMode(self, gpu: FakeGpu) -> list[int]:
        self._use("nvmlDeviceGetMigMode", gpu)
        return list(gpu.mig)

    def nvmlDeviceGetComputeRunningProcesses(self, gpu: FakeGpu) -> list[SimpleNamespace]:
        self._use("nvmlDeviceGetComputeRunningProcesses", gpu)
        return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in gpu.processes]


class FakeCuda:
    """Stands in for ``profiler.detect.TorchCuda``: what torch would say about the same cards."""

    def __init__(self, devices: list[dict] | None = None, reason: str = "PyTorch sees no CUDA device"):
        self.devices = list(devices or [])
        self.reason = reason

    def count_and_reason(self) -> tuple[int, str]:
        return (len(self.devices), "") if self.devices else (0, self.reason)

    def properties(self, index: int) -> dict:
        return dict(self.devices[index])


def torch_props(gpu: FakeGpu, sm_count: int, total_memory: int | None = None) -> dict:
    """torch.cuda.get_device_properties for the same card (torch's UUID has no "GPU-" prefix)."""
    return {"name": gpu.name, "total_memory": total_memory or gpu.memory_total - 500 * MiB,
            "compute_capability": f"{gpu.cc[0]}.{gpu.cc[1]}", "sm_count": sm_count,
            "uuid": gpu.uuid.removeprefix("GPU-")}
