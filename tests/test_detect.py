"""Device detection: spec matching, derived peaks, CPU fallback and its reason, overrides, errors."""

from __future__ import annotations

import json
import os

import pytest
from fakes.fake_pynvml import (
    MiB,
    FakeCuda,
    FakeNvml,
    NVMLError_LibraryNotFound,
    h100_sxm,
    pcie_card_without_power_or_nvlink,
    torch_props,
    unknown_gpu,
)

from estimator.errors import ConfigError
from profiler import nvml_probe
from profiler.cpu_probe import measured_peak
from profiler.detect import UNKNOWN_GPU_WARNING, describe_devices, detect_device, nvml_process_memory
from profiler.events import DeviceDetected, event_from_dict


def fake_benchmark(dtype: str) -> dict:
    """A fixed CPU 'measurement' so tests need no timing."""
    flops = {"fp32": 100e9, "bf16": 250e9}.get(dtype)
    return {"dtype": dtype, "flops": flops, "median_flops": flops, "size": 64, "seconds": 1e-3, "threads": 2,
            "usable": flops is not None, "note": "" if flops else f"{dtype} too slow here", "cached": False}


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    nvml_probe.close_shared_session()
    yield
    nvml_probe.close_shared_session()


def _gpu_setup(gpu, sm_count):
    return FakeNvml([gpu]), FakeCuda([torch_props(gpu, sm_count)])


def test_h100_matches_the_datasheet_row():
    nvml, cuda = _gpu_setup(h100_sxm(), 132)
    dev = detect_device("auto", "bf16-mixed", nvml=nvml, cuda=cuda)
    assert (dev.torch_device, dev.kind) == ("cuda:0", "cuda")
    assert dev.spec.key == "h100-sxm"
    assert dev.event.peak_flops == 989.4e12
    assert dev.event.peak_dtype == "bf16"
    assert dev.event.spec_key == "h100-sxm"
    assert "H100-WP" in dev.event.peak_source
    assert dev.event.memory_total_bytes == (81_559 - 500) * MiB  # torch's total, not the datasheet's
    assert dev.spec.memory_bytes == (81_559 - 500) * MiB
    assert dev.event.details["power_limit_w"] == 700.0
    assert dev.event.details["sm_count"] == 132
    assert dev.event.reason == ""
    assert dev.warnings == []


@pytest.mark.parametrize("precision, peak", [("fp32", 66.9e12), ("tf32", 494.7e12), ("fp16-mixed", 989.4e12)])
def test_peak_follows_the_precisions_matmul_dtype(precision, peak):
    nvml, cuda = _gpu_setup(h100_sxm(), 132)
    assert detect_device("cuda", precision, nvml=nvml, cuda=cuda).event.peak_flops == peak


def test_unknown_gpu_gets_a_derived_peak_and_a_warning():
    gpu = unknown_gpu()  # CC 8.0, NVML max SM clock 1,410 MHz
    nvml, cuda = _gpu_setup(gpu, 108)
    dev = detect_device("auto", "bf16-mixed", nvml=nvml, cuda=cuda)
    assert dev.spec.derived
    assert dev.event.spec_key is None
    assert dev.event.peak_flops == pytest.approx(108 * 2048 * 1.41e9)  # A100's 312e12 rebuilt from parts
    assert dev.event.peak_source.startswith("derived:")
    assert len(dev.warnings) == 1 and dev.warnings[0].startswith(UNKNOWN_GPU_WARNING)


def test_unknown_gpu_without_a_clock_has_no_peak_and_says_mfu_na():
    gpu = unknown_gpu(unsupported={"nvmlDeviceGetMaxClockInfo"})
    nvml, cuda = _gpu_setup(gpu, 108)
    dev = detect_device("auto", nvml=nvml, cuda=cuda)
    assert dev.event.peak_flops is None
    assert dev.event.peak_source == "unknown"
    assert any("MFU n/a" in w and "--peak-tflops" in w for w in dev.warnings)


def test_card_with_unsupported_fields_still_matches_and_shows_na():
    gpu = pcie_card_without_power_or_nvlink()
    nvml, cuda = _gpu_setup(gpu, 72)
    dev = detect_device("auto", nvml=nvml, cuda=cuda)
    assert dev.spec.key == "a10"
    assert dev.event.peak_flops == 125e12
    assert dev.event.details["power_draw_w"] == "N/A"
    assert dev.event.details["nvlink_active_links"] == "N/A"


def test_mig_slice_scales_the_parent_peak_by_its_sm_share():
    gpu = h100_sxm(name="NVIDIA H100 80GB HBM3 MIG 1g.10gb", memory_total=9_984 * MiB)
    nvml, cuda = FakeNvml([]), FakeCuda([torch_props(gpu, 16)])
    dev = detect_device("auto", nvml=nvml, cuda=cuda)
    assert dev.event.peak_flops == pytest.approx(989.4e12 * 16 / 132)
    assert dev.spec.derived and dev.spec.sm_count == 16
    assert dev.warnings[0].startswith("MIG slice: 16/132 SMs")
    assert "nvml" in dev.event.details  # no NVML entry for the slice: says why


def test_gpu_without_a_dtype_path_says_mfu_na():
    t4 = h100_sxm(name="NVIDIA T4", memory_total=15_360 * MiB, cc=(7, 5))
    nvml, cuda = _gpu_setup(t4, 40)
    dev = detect_device("auto", "bf16-mixed", nvml=nvml, cuda=cuda)
    assert dev.spec.key == "t4"
    assert dev.event.peak_flops is None
    assert any("no dense bf16 peak" in w for w in dev.warnings)


def test_nvml_init_failure_falls_back_to_cpu_with_the_reason():
    nvml = FakeNvml([h100_sxm()], init_error=NVMLError_LibraryNotFound)
    dev = detect_device("auto", "bf16-mixed", nvml=nvml, cuda=FakeCuda([]), cpu_benchmark=fake_benchmark)
    assert (dev.torch_device, dev.kind) == ("cpu", "cpu")
    assert "PyTorch sees no CUDA device" in dev.event.reason
    assert "NVML init failed: NVML Shared Library Not Found" in dev.event.reason
    assert dev.event.peak_flops == 250e9
    assert dev.spec.peak("fp32") == 100e9 and dev.spec.peak("tf32") == 100e9
    assert dev.event.peak_source.startswith("measured: bf16 matmul benchmark")
    assert dev.event.details["theoretical_peak_flops"]["fp32"] > 0
    assert dev.event.details["measured_peaks"]["bf16"]["flops"] == 250e9


def test_cpu_low_precision_without_a_fast_path_warns_and_has_no_peak():
    dev = detect_device("cpu", "fp16-mixed", nvml=FakeNvml([]), cuda=FakeCuda([]), cpu_benchmark=fake_benchmark)
    assert dev.event.reason == "--device cpu requested"
    assert any(w.startswith("no fast fp16 matmul path on this CPU; ") for w in dev.warnings)
    assert dev.event.peak_flops is None  # cpu_spec has no fp16 peak: MFU n/a, not a made-up figure


def test_device_cpu_is_honoured_even_with_a_gpu():
    nvml, cuda = _gpu_setup(h100_sxm(), 132)
    dev = detect_device("cpu", "fp32", nvml=nvml, cuda=cuda, cpu_benchmark=fake_benchmark)
    assert dev.torch_device == "cpu"
    assert dev.event.peak_flops == 100e9


def test_peak_tflops_overrides_the_peak():
    nvml, cuda = _gpu_setup(unknown_gpu(), 108)
    dev = detect_device("auto", "bf16-mixed", peak_tflops=123.5, nvml=nvml, cuda=cuda)
    assert dev.event.peak_flops == 123.5e12
    assert dev.event.peak_source == "--peak-tflops"
    assert dev.spec.peak("bf16") == 123.5e12


@pytest.mark.parametrize("kwargs, words", [
    (dict(requested="tpu"), "unknown device 'tpu'"),
    (dict(requested="cuda:1"), "only 1 CUDA device"),
    (dict(peak_tflops=-3), "--peak-tflops must be a positive number"),
    (dict(precision="int4"), "unknown precision"),
])
def test_bad_input_is_a_one_line_config_error(kwargs, words):
    nvml, cuda = _gpu_setup(h100_sxm(), 132)
    with pytest.raises(ConfigError, match=words) as info:
        detect_device(**kwargs, nvml=nvml, cuda=cuda)
    assert "\n" not in str(info.value)


# ------------------------------------------------------------ the real machine (no GPU here)

def test_auto_on_this_machine_is_the_cpu_with_a_measured_peak(tmp_path):
    def tiny(dtype):
        return measured_peak(dtype, tmp_path / "peak.json", max_size=64, repeats=1, warmup_seconds=0)

    dev = detect_device("auto", "fp32", cpu_benchmark=tiny)
    if dev.kind == "cuda":  # pragma: no cover - run on a GPU machine
        pytest.skip("this machine has a GPU")
    assert dev.torch_device == "cpu"
    assert dev.event.reason  # says why there is no GPU
    assert "\n" not in dev.event.reason
    measured = dev.event.details["measured_peaks"]["fp32"]
    assert measured["size"] == 64 and measured["flops"] > 0
    assert dev.event.peak_flops == measured["flops"]
    assert dev.event.details["torch_threads"] >= 1
    # the event survives a JSONL round trip (replay, remote)
    again = event_from_dict(json.loads(json.dumps(dev.event.to_dict())))
    assert isinstance(again, DeviceDetected) and again.peak_flops == dev.event.peak_flops


def test_device_cuda_on_this_machine_is_a_one_line_config_error():
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        has_cuda = False
    if has_cuda:  # pragma: no cover
        pytest.skip("this machine has a GPU")
    with pytest.raises(ConfigError) as info:
        detect_device("cuda")
    message = str(info.value)
    assert message.startswith("--device cuda requested but CUDA is not available: ")
    assert "\n" not in message and len(message) > len("--device cuda requested but CUDA is not available: ")


# ------------------------------------------------------------ process memory, describe_devices

def test_nvml_process_memory():
    nvml = FakeNvml([h100_sxm(processes=[(os.getpid(), 2_048 * MiB)])])
    assert nvml_process_memory("cuda:0", nvml=nvml) == 2_048 * MiB
    assert nvml_process_memory("cuda", nvml=nvml) == 2_048 * MiB
    assert nvml_process_memory("cpu", nvml=nvml) is None
    assert nvml_process_memory("cuda:0", nvml=FakeNvml([], init_error=NVMLError_LibraryNotFound)) is None


def test_describe_devices_lists_each_gpu_with_its_spec():
    h100, other = h100_sxm(), unknown_gpu()
    nvml = FakeNvml([h100, other])
    cuda = FakeCuda([torch_props(h100, 132), torch_props(other, 108)])
    out = describe_devices(nvml, cuda=cuda)
    assert out["device"] == "cuda:0" and out["reason"] == "" and out["cpu"] is None
    first, second = out["gpus"]
    assert first["spec"]["key"] == "h100-sxm" and first["peak_flops"]["bf16"] == 989.4e12
    assert first["nvml"]["uuid"] == h100.uuid and first["torch_device"] == "cuda:0"
    assert second["derived"] and second["warnings"][0].startswith(UNKNOWN_GPU_WARNING)
    assert second["peak_flops"]["fp8"] is None  # Ampere has no fp8 path


def test_describe_devices_without_a_gpu_shows_the_cpu_and_why():
    nvml = FakeNvml([], init_error=NVMLError_LibraryNotFound)
    out = describe_devices(nvml, cuda=FakeCuda([]), cpu_benchmark=fake_benchmark)
    assert out["device"] == "cpu" and out["gpus"] == []
    assert "NVML init failed" in out["reason"] and out["nvml"]["available"] is False
    cpu = out["cpu"]
    assert cpu["peak_flops"]["fp32"] == 100e9 and cpu["peak_flops"]["bf16"] == 250e9
    assert set(cpu["measured"]) == {"fp32", "bf16", "fp16"}
    assert cpu["peak_source"]["fp32"].startswith("measured: fp32")
    assert cpu["theoretical_peak_flops"]["fp32"] > 0
    json.dumps(out)  # serialisable as is


def test_gpu_that_torch_cannot_use_is_listed_by_name():
    nvml = FakeNvml([h100_sxm()])
    out = describe_devices(nvml, cuda=FakeCuda([]), cpu_benchmark=fake_benchmark)
    assert out["device"] == "cpu"
    assert out["gpus"][0]["spec"]["key"] == "h100-sxm"
    assert out["gpus"][0]["torch_device"] is None
    assert "PyTorch cannot use this GPU" in out["gpus"][0]["warnings"][-1]
