"""`HardwarePanel`: the device the run uses — name, memory bar, dense peak and its source, live GPU figures.

CPU: the ``DeviceDetected`` details (cores, clock, ISA, theoretical vs measured
peak). GPU: the detection's NVML fields, replaced each second during a live run
by ``profiler.nvml_probe.sample_gpus()`` readings (one block per visible GPU).
"""

from __future__ import annotations

import math
from typing import Any

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from estimator.units import fmt_bytes, fmt_rate
from profiler.events import DeviceDetected
from tui.app.run_state import RunState
from tui.app.view import StateView
from tui.plain_text import plain

BAR_WIDTH = 14
MATMUL_ISA_PREFIXES = ("avx2", "avx512", "amx", "fma", "neon", "sve", "asimd", "bf16", "i8mm")  # what sets a CPU's peak
NA = "N/A"
LABEL_CHARS = 10


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


class HardwarePanel(Static, StateView):
    """What the hardware promises, from DeviceDetected; GPU figures refresh each second in a live run."""

    def __init__(self, **kwargs) -> None:
        super().__init__("", **kwargs)
        self.border_title = "Hardware"

    def on_mount(self) -> None:
        self.show(self.app.state)  # type: ignore[attr-defined]

    def show(self, state: RunState) -> None:
        device = state.device
        if device is None:
            self.update(Text("waiting for the run to detect the device…", style="dim"))
            return
        details = _dict(device.details)
        grid = _grid()
        _row(grid, str(device.device).upper(), plain(device.name, style="bold"))
        known = _num(device.peak_flops) and device.peak_flops > 0
        peak = f"{fmt_rate(device.peak_flops)} {device.peak_dtype}" if known else \
            f"n/a ({device.peak_dtype}; --peak-tflops)"
        _row(grid, "peak", plain(peak, style="cyan" if known else "yellow"))
        _row(grid, "source", plain(device.peak_source or "unknown", style="dim"))
        if device.device == "cpu":
            _row(grid, "run peak", memory_bar(self._run_peak(state), device.memory_total_bytes))
            cpu_rows(grid, device)
            self.update(grid)
            return
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
        self.update(grid)

    @staticmethod
    def _run_peak(state: RunState) -> int | None:
        """Without NVML (CPU): the run's own peak memory so far."""
        return max((s.memory_peak_bytes for s in state.samples), default=None)
