"""NVML probing against a fake pynvml: fields, units, "N/A" for unsupported queries, init failure."""

from __future__ import annotations

import pynvml
import pytest
from fakes.fake_pynvml import (
    MiB,
    FakeNvml,
    NVMLError_DriverNotLoaded,
    NVMLError_LibraryNotFound,
    h100_sxm,
    pcie_card_without_power_or_nvlink,
    unknown_gpu,
)

from profiler import nvml_probe
from profiler.nvml_probe import NA, find_gpu_index, process_memory, query_gpus, sample_gpus


@pytest.fixture(autouse=True)
def _fresh_shared_session():
    nvml_probe.close_shared_session()
    yield
    nvml_probe.close_shared_session()


def test_h100_fields_and_units():
    fake = FakeNvml([h100_sxm(processes=[(4242, 1_234 * MiB)])])
    gpus, reason = query_gpus(fake)
    assert reason == ""
    assert len(gpus) == 1
    gpu = gpus[0]
    assert gpu["index"] == 0
    assert gpu["name"] == "NVIDIA H100 80GB HBM3"
    assert gpu["uuid"] == "GPU-11111111-2222-3333-4444-555555555555"
    assert gpu["memory_total_bytes"] == 81_559 * MiB
    assert gpu["memory_used_bytes"] == 520 * MiB
    assert gpu["memory_free_bytes"] == (81_559 - 520) * MiB
    assert gpu["driver_version"] == "550.54.15"
    assert gpu["cuda_driver_version"] == "12.4"
    assert gpu["compute_capability"] == "9.0"
    assert gpu["sm_clock_hz"] == 1_755_000_000
    assert gpu["sm_clock_max_hz"] == 1_980_000_000
    assert gpu["mem_clock_max_hz"] == 2_619_000_000
    assert gpu["power_draw_w"] == 71.0
    assert gpu["power_limit_w"] == 700.0
    assert gpu["temperature_c"] == 33
    assert (gpu["utilization_gpu_pct"], gpu["utilization_memory_pct"]) == (0, 0)
    assert (gpu["pcie_gen_current"], gpu["pcie_gen_max"]) == (5, 5)
    assert (gpu["pcie_width_current"], gpu["pcie_width_max"]) == (16, 16)
    assert gpu["nvlink_active_links"] == 18
    assert gpu["mig_mode"] == "disabled"
    assert gpu["processes"] == [{"pid": 4242, "used_bytes": 1_234 * MiB}]
    assert fake.initialised == 0, "query_gpus must shut NVML down again"


def test_nvlink_counts_only_active_links_and_stops_at_the_cards_link_count():
    fake = FakeNvml([h100_sxm(nvlink_states=(1, 0, 1, 1))])
    gpus, _ = query_gpus(fake)
    assert gpus[0]["nvlink_active_links"] == 3
    assert fake.calls.count("nvmlDeviceGetNvLinkState") == 5  # 4 links, the 5th raises InvalidArgument


def test_unsupported_queries_read_na_and_never_raise():
    fake = FakeNvml([pcie_card_without_power_or_nvlink()])
    gpus, reason = query_gpus(fake)
    gpu = gpus[0]
    assert reason == ""
    for key in ("power_draw_w", "power_limit_w", "nvlink_active_links", "mig_mode",
                "utilization_gpu_pct", "utilization_memory_pct"):
        assert gpu[key] == NA, key
    assert gpu["memory_total_bytes"] == 23_028 * MiB  # the supported ones still answer
    assert gpu["temperature_c"] == 33


def test_every_device_query_unsupported_gives_na_everywhere():
    names = {n for n in dir(FakeNvml) if n.startswith("nvmlDevice") and n not in
             ("nvmlDeviceGetCount", "nvmlDeviceGetHandleByIndex")}
    fake = FakeNvml([h100_sxm(unsupported=names)])
    gpu = query_gpus(fake)[0][0]
    assert gpu["index"] == 0
    assert gpu["driver_version"] == "550.54.15"  # system queries are not per-device
    per_device = {k: v for k, v in gpu.items() if k not in ("index", "driver_version", "cuda_driver_version")}
    assert set(per_device.values()) == {NA}


def test_mig_mode_enabled_and_pending():
    gpus, _ = query_gpus(FakeNvml([h100_sxm(mig=(1, 1)), h100_sxm(mig=(0, 1))]))
    assert gpus[0]["mig_mode"] == "enabled"
    assert gpus[1]["mig_mode"] == "disabled (pending enabled after reset)"


@pytest.mark.parametrize("error, words", [
    (NVMLError_LibraryNotFound, "no NVIDIA driver installed"),
    (NVMLError_DriverNotLoaded, "driver is not loaded"),
])
def test_init_failure_gives_no_gpus_and_a_one_line_reason(error, words):
    gpus, reason = query_gpus(FakeNvml([h100_sxm()], init_error=error))
    assert gpus == []
    assert reason.startswith("NVML init failed: ")
    assert words in reason
    assert "\n" not in reason


def test_no_gpu_reason():
    gpus, reason = query_gpus(FakeNvml([]))
    assert gpus == [] and reason == "NVML found no GPU"


def test_real_pynvml_on_this_machine_does_not_raise():
    """On a machine without an NVIDIA driver the real module fails cleanly, with a reason."""
    gpus, reason = query_gpus()
    assert bool(reason) == (not gpus)
    assert len(sample_gpus()) == len(gpus)


def test_the_real_pynvml_has_every_function_the_probe_calls():
    called = {n for n in dir(FakeNvml) if n.startswith("nvml")}
    assert called <= set(dir(pynvml))


def test_sample_gpus_returns_live_subset_and_reuses_one_init():
    fake = FakeNvml([h100_sxm(), unknown_gpu(power_mw=250_500, util_gpu=97)])
    first = sample_gpus(fake)
    second = sample_gpus(fake)
    assert fake.calls.count("nvmlDeviceGetCount") == 1  # one session for every sample
    assert [s["index"] for s in second] == [0, 1]
    assert set(first[1]) == set(nvml_probe.SAMPLE_FIELDS)
    assert second[1]["power_draw_w"] == 250.5
    assert second[1]["utilization_gpu_pct"] == 97
    assert second[0]["memory_used_bytes"] == 520 * MiB


def test_sample_gpus_without_nvml_is_empty():
    assert sample_gpus(FakeNvml([h100_sxm()], init_error=NVMLError_LibraryNotFound)) == []


def test_process_memory_by_uuid_and_index():
    me = 777
    fake = FakeNvml([unknown_gpu(processes=[(1, 5 * MiB)]),
                     h100_sxm(processes=[(me, 3_000 * MiB), (12, 9 * MiB)])])
    assert process_memory(me, uuid="11111111-2222-3333-4444-555555555555", nvml_module=fake) == 3_000 * MiB
    assert process_memory(me, index=1, nvml_module=fake) == 3_000 * MiB
    assert process_memory(me, index=0, nvml_module=fake) is None  # not on that card
    assert process_memory(me, uuid="no-such-gpu", nvml_module=fake) is None


def test_process_memory_hidden_by_the_driver_is_none():
    fake = FakeNvml([h100_sxm(processes=[(5, None)])])
    assert process_memory(5, index=0, nvml_module=fake) is None


def test_find_gpu_index_ignores_the_gpu_prefix():
    gpus = [{"uuid": "GPU-aa"}, {"uuid": "GPU-bb"}]
    assert find_gpu_index(gpus, uuid="bb") == 1
    assert find_gpu_index(gpus, uuid="GPU-BB") == 1
    assert find_gpu_index(gpus, index=5) is None
