"""Keep freed tensor memory inside the process on glibc: a steady-state CPU step without page faults.

PyTorch's CPU tensors come straight from ``malloc``. glibc serves large
blocks with fresh ``mmap``\\ s and trims the top of its heaps back to the
kernel, so a training step that frees and re-allocates the same activations
page-faults them in again every step: measured here 0-94,000 minor faults per
step (``ru_minflt``), up to 18 % of a bf16 gpt-small step, varying from step
to step. jemalloc / tcmalloc avoid this by reusing memory (AMD ZenDNN user
guide, "Memory Allocators"; DeepRec docs, "CPU Memory Optimization": ptmalloc
"can cause severe page faults while allocating large memory chunks common to
DL applications"). Without preloading another allocator, ``mallopt(3)`` gives
the same reuse: no mmap for large blocks (``M_MMAP_MAX`` 0), no trimming
(``M_TRIM_THRESHOLD`` at its maximum). The cost is resident memory that stays
at the step's peak instead of shrinking between steps.

Only mfutop's own profiling processes call this (the run, DDP ranks, ladder
rungs, calibration); a user's process (the Tracker) keeps its allocator.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc malloc.h
_applied: bool | None = None


def retain_freed_memory() -> bool:
    """Apply the two ``mallopt`` settings once per process; True when glibc accepted them."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other libcs have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    _applied = bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
    return _applied


def retained() -> bool:
    """Whether this process retains freed memory (``retain_freed_memory`` succeeded)."""
    return bool(_applied)
