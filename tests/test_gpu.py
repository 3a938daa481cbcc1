"""The CUDA paths no CPU test can reach: event timing, the memory cap, real OOM recovery,
NVML on a real card, TF32 flags and pinned batches.

Every test here carries the ``gpu`` marker: tests/conftest.py skips them
without CUDA, and ``benchmarks/gpu_acceptance.sh`` runs them (``pytest -m gpu``)
the day a GPU is lent. Sizes are chosen so each test takes well under a
second of device time on an H100/H200 and fits any card of >= 8 GiB.
"""

from __future__ import annotations

import re
import time

import pytest
import torch

from estimator.presets import get_model
from profiler.bracket_search import find_max_batch
from profiler.detect import TorchCuda, describe_devices, detect_device
from profiler.nvml_probe import NA, find_gpu_index, query_gpus
from profiler.search import StepProbe, cap_cuda_memory
from profiler.step import StepOptions, TrainingStep
from profiler.step_timer import StepTimer

pytestmark = pytest.mark.gpu

GIB = 2**30
TINY = get_model("gpt-tiny")


@pytest.fixture
def cuda():
    """cuda:0 with an empty cache and no memory cap before and after each test."""
    device = torch.device("cuda", 0)
    torch.cuda.set_per_process_memory_fraction(1.0, device)
    torch.cuda.empty_cache()
    yield device
    torch.cuda.set_per_process_memory_fraction(1.0, device)
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()


def test_cuda_events_time_the_kernels_and_a_synchronised_host_clock_agrees(cuda):
    n, repeats = 8192, 10
    a = torch.randn(n, n, device=cuda, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=cuda, dtype=torch.bfloat16)
    for _ in range(3):  # cuBLAS heuristics and clocks up
        a @ b
    torch.cuda.synchronize(cuda)
    timer = StepTimer(cuda)
    assert timer.is_cuda
    host_start = time.perf_counter()
    timer.start()
    for _ in range(repeats):
        c = a @ b
    event_s = timer.stop()  # synchronises on the end event
    host_s = time.perf_counter() - host_start
    assert c.shape == (n, n)
    # The event pair lies inside the host interval, and the host sees little but the
    # ~10 ms of kernels (a launch-only timer would read ~0.1 ms here).
    assert 0 < event_s <= host_s
    assert event_s >= 0.8 * host_s
    flops = 2 * n**3 * repeats  # exact: 2mnk per product
    peak = detect_device("cuda", "bf16-mixed").event.peak_flops
    assert peak is not None and peak > 0
    assert flops / event_s <= 1.1 * peak  # no faster than the dense bf16 datasheet peak allows


def test_cap_cuda_memory_turns_an_allocation_past_the_cap_into_an_oom_and_its_undo_lifts_it(cuda):
    free, _ = torch.cuda.mem_get_info(cuda)
    if free < 4 * GIB:
        pytest.skip(f"needs 4 GiB free on {cuda}, {free / GIB:.1f} GiB free")
    assert cap_cuda_memory(cuda, None)() is None  # no limit: a no-op undo
    undo = cap_cuda_memory(cuda, 2 * GIB)
    try:
        fits = torch.empty(GIB, dtype=torch.uint8, device=cuda)
        with pytest.raises(torch.cuda.OutOfMemoryError):
            torch.empty(3 * GIB, dtype=torch.uint8, device=cuda)
        del fits
    finally:
        undo()
    lifted = torch.empty(3 * GIB, dtype=torch.uint8, device=cuda)
    assert lifted.numel() == 3 * GIB
    del lifted


def test_a_real_cuda_oom_in_the_search_probe_leaves_memory_at_its_pre_probe_figure(cuda):
    trainer = TrainingStep(TINY, cuda, StepOptions(precision="bf16-mixed"))
    undo = cap_cuda_memory(cuda, GIB)
    try:
        probe = StepProbe(trainer, seq_len=TINY.context_length, limit_bytes=GIB)
        assert probe(1).fits  # allocates AdamW state: the baseline from here on
        huge = probe(1 << 16)  # 8M tokens: the embedding output alone is 2 GiB in fp32
        assert (huge.fits, huge.outcome) == (False, "oom")
        assert huge.detail.startswith("OutOfMemoryError") and "injected" not in huge.detail
        assert huge.baseline_bytes is not None and huge.after_bytes == huge.baseline_bytes
        again = probe(4)
        assert again.fits and again.after_bytes == again.baseline_bytes == huge.baseline_bytes

        result = find_max_batch(probe, seed=256)
    finally:
        undo()
        trainer.close()
    ooms = [p for p in result.probes if p.outcome == "oom"]
    assert ooms, "the search under a 1 GiB cap should hit at least one real OOM"
    assert all(p.after_bytes == p.baseline_bytes for p in result.probes)
    assert result.max_batch_size >= 1 and result.high == result.max_batch_size + 1
    assert all(p.batch_size > result.max_batch_size for p in ooms)


def test_nvml_reports_the_card_torch_sees(cuda):
    gpus, reason = query_gpus()
    assert gpus, reason
    props = TorchCuda().properties(0)
    pos = find_gpu_index(gpus, uuid=props["uuid"] or None, index=None if props["uuid"] else 0)
    assert pos is not None, f"torch's UUID {props['uuid']!r} is not in NVML's list"
    gpu = gpus[pos]
    assert all(value is not None for value in gpu.values())  # unsupported reads "N/A", never None
    assert gpu["name"].strip().lower() == props["name"].strip().lower()
    assert gpu["compute_capability"] == props["compute_capability"]
    assert isinstance(gpu["memory_total_bytes"], int)
    assert abs(gpu["memory_total_bytes"] - props["total_memory"]) <= 0.05 * props["total_memory"]
    assert 0 <= gpu["memory_used_bytes"] <= gpu["memory_total_bytes"]
    assert re.fullmatch(r"\d+\.\d+(\.\d+)*", gpu["driver_version"])
    assert re.fullmatch(r"\d+\.\d+", gpu["cuda_driver_version"])
    for clock in ("sm_clock_max_hz", "mem_clock_max_hz"):
        assert isinstance(gpu[clock], int) and gpu[clock] >= 100_000_000, (clock, gpu[clock])
    if gpu["utilization_gpu_pct"] != NA:
        assert 0 <= gpu["utilization_gpu_pct"] <= 100

    described = describe_devices()
    entry = next(e for e in described["gpus"] if e["torch_device"] == "cuda:0")
    assert entry["nvml"].get("uuid") == gpu["uuid"]  # matched by UUID, not by position
    assert entry["peak_flops"]["bf16"] and entry["peak_flops"]["bf16"] > 0
    detected = detect_device("cuda", "bf16-mixed")
    assert (detected.kind, detected.event.peak_dtype) == ("cuda", "bf16")
    assert detected.event.peak_flops == entry["peak_flops"]["bf16"]


@pytest.mark.parametrize("before, precision, inside", [
    (("highest", False), "tf32", ("high", True)),
    (("high", True), "fp32", ("highest", False)),
])
def test_a_step_sets_tf32_for_its_own_duration_and_restores_the_flags(cuda, before, precision, inside):
    saved = (torch.get_float32_matmul_precision(), torch.backends.cuda.matmul.allow_tf32,
             torch.backends.cudnn.allow_tf32)
    torch.set_float32_matmul_precision(before[0])
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = before[1]
    seen = []

    def look():  # the fault seam runs between forward and backward, inside the step
        seen.append((torch.get_float32_matmul_precision(), torch.backends.cuda.matmul.allow_tf32,
                     torch.backends.cudnn.allow_tf32))

    try:
        trainer = TrainingStep(TINY, cuda, StepOptions(precision=precision))
        loss = trainer.step(*trainer.make_batch(2, 32), fault=look)
        torch.cuda.synchronize(cuda)
        after = (torch.get_float32_matmul_precision(), torch.backends.cuda.matmul.allow_tf32,
                 torch.backends.cudnn.allow_tf32)
    finally:
        torch.set_float32_matmul_precision(saved[0])
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[1], saved[2]
    assert torch.isfinite(loss).item()
    assert seen == [(inside[0], inside[1], inside[1])]
    assert after == (before[0], before[1], before[1])


def test_pinned_host_batches_are_page_locked_and_copy_the_same_tokens(cuda, monkeypatch):
    original = torch.Tensor.pin_memory
    pinned_calls = []

    def spy(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        pinned_calls.append(out.is_pinned())
        return out

    monkeypatch.setattr(torch.Tensor, "pin_memory", spy)
    pinned = TrainingStep(TINY, cuda, StepOptions(precision="fp32", pin_memory=True))
    plain = TrainingStep(TINY, cuda, StepOptions(precision="fp32", pin_memory=False))
    assert pinned.pinned and not plain.pinned
    x_pinned, y_pinned = pinned.make_batch(4, 64)
    assert pinned_calls == [True]  # one page-locked host batch, copied with non_blocking=True
    x_plain, y_plain = plain.make_batch(4, 64)
    assert pinned_calls == [True]  # the unpinned trainer never pins
    torch.cuda.synchronize(cuda)
    assert x_pinned.device.type == "cuda" and x_pinned.shape == (4, 64)
    assert torch.equal(x_pinned.cpu(), x_plain.cpu()) and torch.equal(y_pinned.cpu(), y_plain.cpu())
    stream = pinned.batches(4, 64, pool=2)
    next(stream)
    assert pinned_calls == [True, True, True]  # the pool of 2 is pinned once, up front
    loss = pinned.step(*next(stream))
    assert torch.isfinite(loss).item()
