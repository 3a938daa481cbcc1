"""`HardwarePanel`: the device the run uses — name, memory bar, dense peak and its source, live GPU figures.

CPU: the ``DeviceDetected`` details (cores, clock, ISA, theoretical vs measured
peak). GPU: the detection's NVML fields, replaced each second during a live run
by ``profiler.nvml_probe.sample_gpus()`` readings (one block per visible GPU).

A live run's child process needs seconds (torch's import) before it detects
anything, so the panel first shows ``local_device()``: the same event built
here, from NVML, /proc and the CPU peak cache, without torch, in a thread
worker. The run's own ``DeviceDetected`` (the peak its MFU divides by) then
replaces it. A replayed or remote run shows only its own detection: this
machine is not the one it ran on.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from typing import Any

from rich.table import Table
from rich.text import Text
from textual.message import Message
from textual.widgets import Static

from estimator.units import fmt_bytes, fmt_rate
from profiler.events import DeviceDetected
from tui.app.run_state import RunState
from tui.app.view import StateView, shows, update_if_changed
from tui.plain_text import plain

BAR_WIDTH = 14
MATMUL_ISA_PREFIXES = ("avx2", "avx512", "amx", "fma", "neon", "sve", "asimd", "bf16", "i8mm")  # what sets a CPU's peak
NA = "N/A"
LABEL_CHARS = 10
EARLY_NOTE = "detected here; the run's own detection follows"
NOT_CACHED = "no cached matmul benchmark for this CPU yet: the run measures it"


def memory_bar(used: Any, total: Any, width: int = BAR_WIDTH) -> Text:
    """'████░░░░ 1.2/16.0 GiB' — or just the total when usage is unknown."""
    if not _num(total) or total <= 0:
        return Text(fmt_bytes(used) if _num(used) else NA)
    if not _num(used):
        return Text(f"{fmt_bytes(total, 1)} total")
    fraction = max(0.0, min(1.0, used / total))
    filled = round(fraction * width)
    style = "green" if fraction < 0.7 else "yellow" if fraction < 0.9 else "red"
    bar = Text("█" * filled, style=style) + Text("░" * (width - filled), style="dim")
    if used < 2**30 / 10:  # a small run: GiB with one decimal would read 0.0
        return bar + Text(f" {fmt_bytes(used, 1)} of {fmt_bytes(total, 1)}")
    return bar + Text(f" {used / 2**30:.1f}/{total / 2**30:.1f} GiB")


def _num(value: Any) -> bool:
    """A real, finite number (outside data may hold a string, a bool, NaN where a figure goes)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _row(grid: Table, label: Any, value: Any) -> None:
    """A grid row whose cells are plain Text: a str cell would be parsed as Rich markup.
    A label from the data (the device kind) is kept short so the value column keeps its room."""
    grid.add_row(label if isinstance(label, Text) else plain(label, max_chars=LABEL_CHARS),
                 value if isinstance(value, Text) else plain(value))


def _mhz(hz: Any) -> str:
    return f"{hz / 1e6:.0f} MHz" if _num(hz) else NA


def _unit(value: Any, unit: str, digits: int = 0) -> str:
    return f"{value:.{digits}f} {unit}" if _num(value) else NA


def _grid() -> Table:
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="bold", no_wrap=True, min_width=8)
    grid.add_column()
    return grid


def cpu_rows(grid: Table, device: DeviceDetected) -> None:
    d = _dict(device.details)
    if _num(d.get("physical_cores")):
        _row(grid, "cores", f"{d['physical_cores']} physical · {d.get('logical_cores', '?')} logical"
                              f" · torch {d.get('torch_threads', '?')} threads")
    clock = d.get("clock_max_hz") if _num(d.get("clock_max_hz")) else d.get("clock_current_hz")
    if _num(clock):
        _row(grid, "clock", f"{clock / 1e9:.2f} GHz")
    theoretical = _dict(d.get("theoretical_peak_flops")).get(device.peak_dtype)
    if _num(theoretical):
        _row(grid, "theory", f"{fmt_rate(theoretical)} {device.peak_dtype} (cores x clock x ISA)")
    isa = d.get("isa_flags") if isinstance(d.get("isa_flags"), list) else []
    flags = [f for f in isa if str(f).startswith(MATMUL_ISA_PREFIXES)]
    if flags:
        _row(grid, "ISA", plain(" ".join(map(str, flags)), style="dim"))


def gpu_static_rows(grid: Table, d: dict[str, Any]) -> None:
    """What does not change during a run: driver, SMs, max clock, power limit, links, MIG."""
    if d.get("driver_version") not in (None, NA):
        _row(grid, "driver", f"{d['driver_version']} · CUDA {d.get('cuda_driver_version', NA)}")
    if d.get("sm_count") is not None:
        _row(grid, "SMs", f"{d['sm_count']} · CC {d.get('compute_capability', NA)} · max {_mhz(d.get('sm_clock_max_hz'))}")
    if d.get("pcie_gen_current") not in (None, NA):
        _row(grid, "PCIe", f"gen {d['pcie_gen_current']} x{d.get('pcie_width_current', '?')}"
                             f" · NVLink {d.get('nvlink_active_links', NA)} · MIG {d.get('mig_mode', NA)}")
    if d.get("nvml"):
        _row(grid, "NVML", plain(d["nvml"], style="yellow"))


def gpu_live_rows(grid: Table, g: dict[str, Any], power_limit: Any) -> None:
    """Figures NVML refreshes: memory used, clocks, power, temperature, utilisation."""
    _row(grid, "memory", memory_bar(g.get("memory_used_bytes"), g.get("memory_total_bytes")))
    _row(grid, "clocks", f"SM {_mhz(g.get('sm_clock_hz'))} · mem {_mhz(g.get('mem_clock_hz'))}")
    _row(grid, "power", f"{_unit(g.get('power_draw_w'), 'W')} / {_unit(power_limit, 'W')}")
    _row(grid, "temp", _unit(g.get("temperature_c"), "°C"))
    _row(grid, "util", f"GPU {_unit(g.get('utilization_gpu_pct'), '%')}"
                         f" · mem {_unit(g.get('utilization_memory_pct'), '%')}")


def other_gpu_line(g: dict[str, Any]) -> Text:
    """'█░░░░ 12/80 GiB · 30°C · 5%' for a GPU beside the one measured (fits the sidebar's width)."""
    used, total = g.get("memory_used_bytes"), g.get("memory_total_bytes")
    if _num(used) and _num(total) and total > 0:
        filled = round(max(0.0, min(1.0, used / total)) * 5)
        line = Text("█" * filled) + Text("░" * (5 - filled), style="dim")
        line.append(f" {used / 2**30:.0f}/{total / 2**30:.0f} GiB")
    else:
        line = Text("memory N/A")
    temp, util = g.get("temperature_c"), g.get("utilization_gpu_pct")
    line.append(f" · {f'{temp:.0f}°C' if _num(temp) else 'N/A'} · {f'{util:.0f}%' if _num(util) else 'N/A'}")
    return line


# ---------------------------------------------------------------- the early view: this machine, without torch

def visible_gpus(gpus: list[dict[str, Any]], env: Any = os.environ) -> list[dict[str, Any]] | None:
    """NVML's cards in the order torch numbers them: ``CUDA_VISIBLE_DEVICES`` (indices or GPU- UUID
    prefixes) picks them and, as in CUDA, ends at the first entry that names no card. None for a
    MIG slice (its name and share are not in NVML's list of cards)."""
    value = env.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return list(gpus)
    out = []
    for token in (t.strip() for t in value.split(",")):
        if token.upper().startswith("MIG"):
            return None
        if token.isdigit():
            found = gpus[int(token)] if int(token) < len(gpus) else None
        else:
            found = next((g for g in gpus if token.lower().startswith("gpu-")
                          and str(g.get("uuid", "")).lower().startswith(token.lower())), None)
        if found is None:
            break
        out.append(found)
    return out


class NvmlCuda:
    """``profiler.detect.detect_device``'s ``cuda`` seam answered from NVML, so a GPU is detected
    without torch. NVML has no SM count: the SM row and a derived peak wait for the run."""

    def __init__(self, visible: list[dict[str, Any]], reason: str) -> None:
        self.visible, self.reason = visible, reason

    def count_and_reason(self) -> tuple[int, str]:
        return len(self.visible), self.reason

    def properties(self, index: int) -> dict[str, Any]:
        gpu = self.visible[index]
        total, cc = gpu.get("memory_total_bytes"), gpu.get("compute_capability")
        return {"name": str(gpu.get("name", "unknown GPU")), "total_memory": total if _num(total) else 0,
                "compute_capability": cc if isinstance(cc, str) and cc != NA else None, "sm_count": None,
                "uuid": str(gpu.get("uuid") or "")}


def local_cpu(dtype: str, reason: str) -> DeviceDetected:
    """The CPU as ``detect_device`` describes it, with a cached peak only (else none, and the source says
    the run measures it)."""
    from profiler import cpu_probe, detect

    info = cpu_probe.cpu_info(allow_import=False)
    cached = {d: e for d in ("fp32", dtype) if (e := cpu_probe.cached_peak(d, info["torch_threads"]))}
    wanted = (dtype,) if dtype in detect.CPU_MEASURED_DTYPES else ()
    spec, theoretical, measured, _ = detect.cpu_device_spec(
        info, wanted, lambda d: cached.get(d, {"flops": None, "note": NOT_CACHED}))
    known = ("fp32" if dtype == "tf32" else dtype) in cached  # a CPU's tf32 is its fp32
    return DeviceDetected(
        device="cpu", name=info["model_name"], spec_key=spec.key, memory_total_bytes=info["memory_total_bytes"],
        peak_flops=spec.peak(dtype) if known else None, peak_dtype=dtype,
        peak_source=detect.peak_source(spec, dtype, measured) if known else NOT_CACHED,
        details={**info, "measured_peaks": measured, "theoretical_peak_flops": dict(theoretical.peak_flops)},
        reason=reason)


def local_device(requested: str = "auto", precision: str = "bf16-mixed", peak_tflops: float | None = None,
                 nvml: Any = None) -> DeviceDetected | None:
    """The device a run of this setup will detect, told in milliseconds: NVML's card, else the CPU.

    Never imports torch or runs the CPU benchmark. None when this machine cannot tell (``--device
    cuda`` where NVML sees no card, a MIG slice, a GPU index past the list): the run says why.
    ``nvml`` is a fake ``pynvml`` module in tests.
    """
    from estimator.errors import ConfigError
    from estimator.precision import get_precision
    from profiler import cpu_probe, detect, nvml_probe

    dtype = get_precision(precision).matmul_dtype
    build, reason = cpu_probe.torch_build(), "--device cpu requested"
    if requested != "cpu":
        gpus, reason = nvml_probe.query_gpus(nvml)
        visible = visible_gpus(gpus)
        if visible is None:
            return None
        if build and not (build.get("cuda") or build.get("hip")):
            no_cuda = f"this PyTorch build ({build.get('version')}) has no CUDA support"
            visible, reason = [], "; ".join(filter(None, (no_cuda, reason)))
        if visible:
            try:
                event = detect.detect_device(requested, precision, nvml=nvml, cuda=NvmlCuda(visible, reason)).event
            except ConfigError:
                return None
            return _with_peak_override(event, peak_tflops)
        if requested != "auto":
            return None
    return _with_peak_override(local_cpu(dtype, reason), peak_tflops)


def _with_peak_override(event: DeviceDetected, peak_tflops: float | None) -> DeviceDetected:
    if not peak_tflops:
        return event
    return dataclasses.replace(event, peak_flops=peak_tflops * 1e12, peak_source="--peak-tflops")


# ---------------------------------------------------------------- the widget

class HardwarePanel(Static, StateView):
    """What the hardware promises: first as detected here, then from the run's DeviceDetected; GPU
    figures refresh each second in a live run."""

    class LocallyDetected(Message):
        """``local_device()``'s answer (None: this machine cannot tell) for the setup ``key`` it was asked."""

        def __init__(self, key: tuple, device: DeviceDetected | None) -> None:
            super().__init__()
            self.key, self.device = key, device

    def __init__(self, **kwargs) -> None:
        super().__init__("", **kwargs)
        self.border_title = "Hardware"
        self.early: DeviceDetected | None = None  # the local detection, until the run's own arrives
        self._early_key: tuple | None = None  # the setup it is (being) detected for
        self.showing: DeviceDetected | None = None  # what the panel draws now
        self.showing_early = False

    def on_mount(self) -> None:
        self._detect_locally()
        self.show(self.app.state)  # type: ignore[attr-defined]

    def _local_setup(self) -> tuple | None:
        """(device, precision, peak TFLOP/s) of the live run this app starts here; None when it shows a
        recorded or remote run, whose hardware is not this machine's."""
        config = getattr(self.app, "run_config", None)
        if config is None or not getattr(self.app, "setup_editable", False):  # editable: the app runs it here
            return None
        return (config.device, config.precision, config.peak_tflops)

    def _detect_locally(self) -> None:
        key = self._local_setup()
        if key is None or key == self._early_key:
            return
        self._early_key, self.early = key, None
        self.run_worker(functools.partial(self._detect, key), thread=True, exclusive=True, group="local-detect",
                        exit_on_error=False)

    def _detect(self, key: tuple) -> None:  # in the worker thread
        try:
            device = local_device(*key)
        except Exception:  # noqa: BLE001 - the early view is a head start; the run's detection follows
            device = None
        self.post_message(self.LocallyDetected(key, device))

    def on_hardware_panel_locally_detected(self, message: LocallyDetected) -> None:
        message.stop()
        if message.key == self._early_key:
            self.early = message.device
            self.show(self.app.state)  # type: ignore[attr-defined]

    def show(self, state: RunState) -> None:
        device, early = state.device, False
        if device is None:
            self._detect_locally()  # a re-run of an edited setup: detect what it will use
            device, early = self.early, self.early is not None
        self.showing, self.showing_early = device, early
        if device is None:
            update_if_changed(self, Text("waiting for the run to detect the device…", style="dim"))
            return
        key = (id(device), early, self._run_peak(state), repr(state.gpus))  # all the grid is drawn from
        if shows(self, key):
            return  # building the grid costs more than comparing what it is drawn from
        grid = self._device_grid(state, device, early)
        if early:
            _row(grid, "", Text(EARLY_NOTE, style="dim"))
        update_if_changed(self, grid, key)

    def _device_grid(self, state: RunState, device: DeviceDetected, early: bool) -> Table:
        details = _dict(device.details)
        grid = _grid()
        _row(grid, str(device.device).upper(), plain(device.name, style="bold"))
        known = _num(device.peak_flops) and device.peak_flops > 0
        if known:
            peak = plain(f"{fmt_rate(device.peak_flops)} {device.peak_dtype}", style="cyan")
        elif early and device.peak_source == NOT_CACHED:
            peak = plain(f"{device.peak_dtype}: measured by the run", style="dim")
        else:
            peak = plain(f"n/a ({device.peak_dtype}; --peak-tflops)", style="yellow")
        _row(grid, "peak", peak)
        _row(grid, "source", plain(device.peak_source or "unknown", style="dim"))
        if device.device == "cpu":
            _row(grid, "run peak", memory_bar(self._run_peak(state), device.memory_total_bytes))
            cpu_rows(grid, device)
            return grid
        gpu_static_rows(grid, details)
        own = details.get("index")
        samples = [g for g in state.gpus if isinstance(g, dict)] or [details]  # replay / remote: at detection
        mine = next((g for g in samples if g.get("index") == own), samples[0] if len(samples) == 1 else None)
        if mine is not None:
            gpu_live_rows(grid, mine, details.get("power_limit_w"))
        if not state.gpus:
            _row(grid, "", Text("readings at detection", style="dim"))
        for other in samples:
            if other is not mine:  # GPUs this run does not use: one line each
                _row(grid, f"GPU {other.get('index', '?')}", other_gpu_line(other))
        return grid

    @staticmethod
    def _run_peak(state: RunState) -> int | None:
        """Without NVML (CPU): the run's own peak memory so far."""
        return max((s.memory_peak_bytes for s in state.samples), default=None)
