"""The largest micro-batch whose predicted memory fits, by exact integer search.

Predicted memory is monotonic in the batch (every batch-dependent term is a
non-negative multiple of it), so doubling to the first misfit and then
bisecting finds the exact answer in O(log b) evaluations.
"""

from __future__ import annotations

from typing import Callable

from estimator.errors import ConfigError
from estimator.hardware import HardwareSpec
from estimator.model_config import ModelConfig
from estimator.setup import TrainSetup

CUDA_CONTEXT_BYTES = 512 * 2**20  # CUDA context + cuBLAS/cuDNN workspaces, invisible to torch's allocator
ALLOCATOR_HEADROOM = 0.05  # fraction of the card kept for caching-allocator fragmentation
MAX_SEARCH_BATCH = 2**30  # a search bound, far past any real micro-batch


def default_memory_limit(hardware: HardwareSpec) -> int:
    """Bytes usable by tensors on ``hardware`` when no --memory-limit is given."""
    usable = hardware.memory_bytes - CUDA_CONTEXT_BYTES - int(hardware.memory_bytes * ALLOCATOR_HEADROOM)
    return max(usable, 0)


def limit_assumptions(hardware: HardwareSpec, memory_limit_bytes: int | None) -> dict[str, object]:
    if memory_limit_bytes is not None:
        return {"memory.limit_bytes": memory_limit_bytes, "memory.limit": "--memory-limit, used as given"}
    return {
        "memory.limit_bytes": default_memory_limit(hardware),
        "memory.limit": (f"{hardware.key} memory {hardware.memory_bytes} B minus CUDA context "
                         f"{CUDA_CONTEXT_BYTES} B minus {ALLOCATOR_HEADROOM:.0%} allocator headroom"),
        "memory.cuda_context_bytes": CUDA_CONTEXT_BYTES,
        "memory.allocator_headroom": ALLOCATOR_HEADROOM,
    }


def largest_fitting(total_at: Callable[[int], int], limit: int) -> int:
    """Largest b ≥ 1 with ``total_at(b) <= limit`` (``total_at`` non-decreasing), else 0."""
    if total_at(1) > limit:
        return 0
    good, bad = 1, 2
    while total_at(bad) <= limit:
        good, bad = bad, bad * 2
        if bad > MAX_SEARCH_BATCH:
            return good
    while bad - good > 1:
        mid = (good + bad) // 2
        if total_at(mid) <= limit:
            good = mid
        else:
            bad = mid
    return good


def max_batch_size(model: ModelConfig, hardware: HardwareSpec, setup: TrainSetup,
                   memory_limit_bytes: int | None = None) -> int:
    """Largest training micro-batch per GPU that fits; 0 when batch 1 does not.

    Same memory model as ``predict()``: CPU autocast's bf16 softmax when ``hardware.vendor`` is
    "cpu", and the AdamW the profiler runs there (fused where torch has the kernel)."""
    from estimator.memory import training_memory
    from estimator.step_overheads import default_overheads

    kind = "cpu" if hardware.vendor == "cpu" else "gpu"
    impl = default_overheads(hardware).optimizer_impl
    limit = default_memory_limit(hardware) if memory_limit_bytes is None else memory_limit_bytes
    return largest_fitting(lambda b: training_memory(model, setup, batch_size=b, device_kind=kind,
                                                     optimizer_impl=impl).total, limit)


TRAIN_HINT = "try --zero, --tp/--pp, --recompute full, a shorter --seq-len or a larger GPU"
INFER_HINT = "try --weight-bits 8 or 4, --tp/--pp, shorter --prompt-len/--gen-len or a larger GPU"


def does_not_fit(what: str, needed: int, limit: int, hint: str = TRAIN_HINT) -> ConfigError:
    """The one message for a setup that cannot run even at batch 1."""
    return ConfigError(f"{what} does not fit at batch 1: needs {needed / 2**30:,.2f} GiB, "
                       f"limit {limit / 2**30:,.2f} GiB; {hint}")
