"""The hardware panel on a GPU, without one: a fake CUDA device and fake NVML samples each second."""

from __future__ import annotations

import threading

import tui.app.app as app_module
from tui.app import gpu_polling
from profiler.events import DeviceDetected, RunFinished
from profiler.run_config import RunConfig
from tui.app import MfutopApp
from tui.app.hardware_panel import memory_bar

from fixtures.app_helpers import run, wait_until
from fixtures.fake_run import fake_run_events

GIB = 2**30
H100 = DeviceDetected(
    device="cuda", name="NVIDIA H100 80GB HBM3", spec_key="h100-sxm", memory_total_bytes=80 * GIB,
    peak_flops=989e12, peak_dtype="bf16", peak_source="H100-DS (sparse 1,979 halved)",
    details={"index": 0, "driver_version": "550.54", "cuda_driver_version": "12.4", "compute_capability": "9.0",
             "sm_count": 132, "sm_clock_max_hz": 1_980_000_000, "power_limit_w": 700.0, "pcie_gen_current": 5,
             "pcie_width_current": 16, "nvlink_active_links": 18, "mig_mode": "disabled",
             "memory_used_bytes": 1 * GIB, "memory_total_bytes": 80 * GIB, "sm_clock_hz": 345_000_000,
             "mem_clock_hz": 2_619_000_000, "power_draw_w": 70.5, "temperature_c": 31,
             "utilization_gpu_pct": 0, "utilization_memory_pct": 0},
)


def gpu_run(cancel: threading.Event):
    """The fake CPU run's events on an H100: device first, then hold until cancelled (so samples arrive)."""
    yield H100
    for event in fake_run_events(cancel):
        if not isinstance(event, (DeviceDetected, RunFinished)):
            yield event
    cancel.wait(30)
    yield RunFinished(summary={}, cancelled=True)


def test_memory_bar_says_used_and_total():
    assert memory_bar(20 * GIB, 80 * GIB, width=8).plain == "██░░░░░░ 20.0/80.0 GiB"
    assert memory_bar("N/A", 80 * GIB).plain == "80.0 GiB total"
    assert memory_bar(None, None).plain == "N/A"
    assert memory_bar(45 * 2**20, 23.5 * GIB, width=4).plain == "░░░░ 45.0 MiB of 23.5 GiB"  # a small run never reads 0.0


def test_live_gpu_figures_refresh_from_nvml(monkeypatch):
    readings = iter(range(1, 1000))

    def sample_gpus():
        n = next(readings)
        return [{"index": 0, "memory_used_bytes": 40 * GIB, "memory_total_bytes": 80 * GIB,
                 "sm_clock_hz": 1_755_000_000, "mem_clock_hz": 2_619_000_000, "power_draw_w": 600.0 + n,
                 "temperature_c": 70, "utilization_gpu_pct": 99, "utilization_memory_pct": "N/A"},
                {"index": 1, "memory_used_bytes": 0, "memory_total_bytes": 80 * GIB, "sm_clock_hz": "N/A",
                 "mem_clock_hz": "N/A", "power_draw_w": "N/A", "temperature_c": "N/A",
                 "utilization_gpu_pct": "N/A", "utilization_memory_pct": "N/A"}]

    monkeypatch.setattr(app_module, "live_source", lambda config: gpu_run)
    from profiler import nvml_probe

    monkeypatch.setattr(nvml_probe, "sample_gpus", sample_gpus)
    monkeypatch.setattr(gpu_polling, "GPU_POLL_S", 0.05)

    async def go():
        app = MfutopApp(run_config=RunConfig(device="cuda"))
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_until(pilot, lambda: len(app.state.gpus) == 2 and app.state.gpus[0]["power_draw_w"] > 602)
            app.redraw()
            text = _panel_text(app)
            await pilot.press("c")
            await wait_until(pilot, lambda: app.state.done and not app.running)
            return app, text

    app, text = run(go())
    assert "NVIDIA H100 80GB HBM3" in text and "989.00 TFLOP/s bf16" in text
    assert "40.0/80.0 GiB" in text
    assert "SM 1755 MHz" in text and "/ 700 W" in text and "70 °C" in text and "GPU 99 %" in text
    assert "mem N/A" in text  # an unsupported NVML field reads N/A, never crashes
    assert "GPU 1    ░░░░░ 0/80 GiB · N/A · N/A" in text  # a GPU the run does not use: one line
    assert "550.54 · CUDA 12.4" in text and "132 · CC 9.0" in text
    assert app._gpu_timer is None  # polling stops with the run


def test_a_replayed_gpu_run_shows_the_readings_taken_at_detection():
    async def go():
        app = MfutopApp(source=lambda cancel: iter([H100]))
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_until(pilot, lambda: app.state.done)
            app.redraw()
            return _panel_text(app)

    text = run(go())
    assert "readings at detection" in text and "1.0/80.0 GiB" in text and "SM 345 MHz" in text


def _panel_text(app) -> str:
    from rich.console import Console

    console = Console(width=40, record=True, file=open("/dev/null", "w"))
    console.print(app.query_one("#hardware").content)
    return console.export_text()
