"""The hardware panel fills before the run's child process has detected anything: a local, torch-free
detection (NVML, /proc, the CPU peak cache) first, replaced by the run's own DeviceDetected."""

from __future__ import annotations

import io
import subprocess
import sys
import threading

import pytest
from fakes.fake_pynvml import FakeNvml, h100_sxm
from fixtures.app_helpers import run, wait_until
from rich.console import Console

import tui.app.app as app_module
from estimator.hardware import match_device_name
from profiler import cpu_probe, nvml_probe
from profiler.events import DeviceDetected, RunFinished
from profiler.run_config import RunConfig
from tui.app import MfutopApp
from tui.app import hardware_panel as hp
from tui.app.run_state import RunState

pytestmark = pytest.mark.app

LOCAL_NAME = "Test CPU 9000"
TORCH = "9.9.9+test"
RUN_DEVICE = DeviceDetected(
    device="cpu", name="Run's CPU", spec_key="cpu", memory_total_bytes=8 * 2**30, peak_flops=5.5e11,
    peak_dtype="bf16", peak_source="measured: bf16 matmul benchmark (n=2048, 3 threads, best of several)",
    details={"physical_cores": 3, "logical_cores": 6, "torch_threads": 3})


@pytest.fixture
def this_machine(monkeypatch, tmp_path):
    """A made-up CPU with 3 torch threads, no NVML and a CPU-only torch: the local detection is deterministic.
    Returns a function that caches a bf16 peak for it."""
    monkeypatch.setattr(cpu_probe, "_cpuinfo_fields", lambda: {"model name": LOCAL_NAME, "flags": "sse avx2 fma"})
    monkeypatch.setattr(cpu_probe, "default_cache_path", lambda: tmp_path / "cpu_peak.json")
    monkeypatch.setattr(nvml_probe, "query_gpus", lambda nvml=None: ([], "no NVML in this test"))
    monkeypatch.setattr(cpu_probe, "torch_build", lambda: {"version": TORCH, "cuda": None, "hip": None})
    monkeypatch.setattr(cpu_probe, "torch_threads", lambda allow_import=True: 3)

    def cache_peak(flops: float, dtype: str = "bf16") -> None:
        cpu_probe._store_cache(tmp_path / "cpu_peak.json", cpu_probe._cache_key(dtype, cpu_probe.DEFAULT_MAX_SIZE),
                               {"dtype": dtype, "flops": flops, "size": 2048, "threads": 3, "usable": True,
                                "note": "best of 5 n=2048 matmuls", "measured_at": "2026-01-01T00:00:00"})
    return cache_peak


def text_of(renderable) -> str:
    console = Console(width=60, record=True, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def test_the_panel_shows_the_local_cpu_before_the_run_detects_it_then_the_runs_detection(monkeypatch, this_machine):
    this_machine(1.23e12)
    release = threading.Event()

    def silent_then_detected(cancel: threading.Event):
        while not (release.is_set() or cancel.is_set()):  # the child is still importing torch
            cancel.wait(0.02)
        if not cancel.is_set():
            yield RUN_DEVICE
        cancel.wait(30)
        yield RunFinished(summary={}, cancelled=True)

    monkeypatch.setattr(app_module, "live_source", lambda config: silent_then_detected)

    async def go():
        app = MfutopApp(run_config=RunConfig())
        async with app.run_test(size=(120, 40)) as pilot:
            panel = app.query_one("#hardware")
            await wait_until(pilot, lambda: panel.showing_early)
            early = (app.state.device, panel.early, text_of(panel.content))
            release.set()
            await wait_until(pilot, lambda: app.state.device is not None and panel.showing is app.state.device)
            late = (panel.showing_early, text_of(panel.content))
            app.action_cancel()
            await wait_until(pilot, lambda: not app.running)
            return early, late

    (run_device, local, early_text), (still_early, late_text) = run(go())
    assert run_device is None  # nothing had arrived from the run
    assert local.name == LOCAL_NAME and local.peak_flops == 1.23e12 and local.peak_dtype == "bf16"
    assert LOCAL_NAME in early_text and "1.23 TFLOP/s bf16" in early_text and hp.EARLY_NOTE in early_text
    assert "measured: bf16 matmul benchmark (n=2048, 3 threads" in early_text
    assert "torch 3 threads" in early_text
    assert not still_early
    assert "Run's CPU" in late_text and "550.00 GFLOP/s bf16" in late_text
    assert LOCAL_NAME not in late_text and hp.EARLY_NOTE not in late_text


def test_without_a_cached_peak_the_early_view_says_the_run_measures_it(this_machine):
    this_machine(2e11, dtype="fp32")  # another dtype's figure is not this one's
    device = hp.local_device("auto", "bf16-mixed")
    assert device.device == "cpu" and device.name == LOCAL_NAME
    assert device.peak_flops is None and device.peak_source == hp.NOT_CACHED
    assert device.details["measured_peaks"]["fp32"]["flops"] == 2e11
    text = text_of(hp.HardwarePanel()._device_grid(RunState(), device, early=True))
    assert "bf16: measured by the run" in text and "--peak-tflops" not in text
    assert hp.local_device("auto", "fp32").peak_flops == 2e11


def test_peak_tflops_overrides_the_local_peak_as_it_does_the_runs(this_machine):
    device = hp.local_device("cpu", "fp32", peak_tflops=2.0)
    assert device.peak_flops == 2e12 and device.peak_source == "--peak-tflops"


def test_a_replayed_run_never_shows_this_machines_hardware(this_machine):
    this_machine(1.23e12)
    release = threading.Event()

    def recording(cancel: threading.Event):
        release.wait(30)
        yield RUN_DEVICE

    async def go():
        app = MfutopApp(source=recording)
        async with app.run_test(size=(120, 40)) as pilot:
            panel = app.query_one("#hardware")
            await pilot.pause(0.3)
            before = (panel.early, panel.showing, text_of(panel.content))
            release.set()
            await wait_until(pilot, lambda: app.state.done and panel.showing is app.state.device)
            return before

    early, showing, text = run(go())
    assert early is None and showing is None and "waiting for the run" in text


def test_a_gpu_is_told_from_nvml_in_the_order_torch_numbers_them(monkeypatch):
    monkeypatch.setattr(cpu_probe, "torch_build", lambda: {"version": "2.5.1+cu124", "cuda": "12.4", "hip": None})
    second = h100_sxm(name="NVIDIA A100-SXM4-80GB", uuid="GPU-22222222-0000-0000-0000-000000000000", cc=(8, 0))
    nvml = FakeNvml([h100_sxm(), second])
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    device = hp.local_device("auto", "bf16-mixed", nvml=nvml)
    assert device.device == "cuda" and device.name == "NVIDIA H100 80GB HBM3"
    assert device.peak_flops == match_device_name("NVIDIA H100 80GB HBM3").peak("bf16")
    assert device.details["driver_version"] == "550.54.15" and device.details["sm_count"] is None
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,0")
    assert hp.local_device("cuda", "bf16-mixed", nvml=nvml).name == "NVIDIA A100-SXM4-80GB"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-2222")
    assert hp.local_device("auto", "bf16-mixed", nvml=nvml).details["uuid"] == second.uuid
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "MIG-0b9ec8c4-7e4c-5b1a-9d3c-7d3f1c9e2a11")
    assert hp.local_device("auto", "bf16-mixed", nvml=nvml) is None  # a MIG slice: the run tells
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert hp.local_device("cuda:1", "bf16-mixed", nvml=nvml) is None  # past the visible cards: the run says so


def test_no_visible_card_means_the_cpu_and_cuda_without_one_waits_for_the_run(monkeypatch, tmp_path):
    monkeypatch.setattr(cpu_probe, "torch_build", lambda: {"version": "2.5.1+cu124", "cuda": "12.4", "hip": None})
    monkeypatch.setattr(cpu_probe, "default_cache_path", lambda: tmp_path / "cpu_peak.json")
    nvml = FakeNvml([h100_sxm()])
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert hp.local_device("auto", "bf16-mixed", nvml=nvml).device == "cuda"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # every card hidden
    assert hp.local_device("auto", "bf16-mixed", nvml=nvml).device == "cpu"
    assert hp.local_device("cuda", "bf16-mixed", nvml=nvml) is None
    monkeypatch.setattr(cpu_probe, "torch_build", lambda: {"version": "2.5.1+cpu", "cuda": None, "hip": None})
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    cpu = hp.local_device("auto", "bf16-mixed", nvml=nvml)  # a CPU-only torch cannot use the card
    assert cpu.device == "cpu" and "has no CUDA support" in cpu.reason


def test_the_local_detection_imports_no_torch():
    code = ("import sys; from tui.app.hardware_panel import local_device; d = local_device(); "
            "print(d is not None, 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "False"]


def test_the_early_peak_is_the_runs_cached_one():
    """The panel reads the very cache entry the run writes: same key (CPU, threads, torch, dtype)."""
    import torch

    assert cpu_probe.torch_build()["version"] == torch.__version__
    assert cpu_probe.cpu_info(allow_import=False)["torch_threads"] == torch.get_num_threads()
