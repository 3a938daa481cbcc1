"""profiler.host_allocator: a steady CPU step re-uses freed memory instead of page-faulting it in again."""

from __future__ import annotations

import resource
import sys

import pytest

torch = pytest.importorskip("torch")

from profiler.host_allocator import retain_freed_memory, retained  # noqa: E402


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_a_freed_large_tensor_is_reused_without_page_faults():
    assert retain_freed_memory() is True and retained()
    assert retain_freed_memory() is True  # once per process, idempotent
    elements = 48 * 2**20 // 4  # 48 MiB: above glibc's largest mmap threshold
    faults = []
    for _ in range(4):  # a training loop's pattern: the same large activation allocated and freed
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        x = torch.ones(elements)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
        assert x[-1].item() == 1.0
        del x
    # a fresh mapping faults every 4 KiB page (12,288 of them) on every pass; retained heap memory, once
    # the heap has grown to hold it, none
    assert min(faults[1:]) < 200, faults
