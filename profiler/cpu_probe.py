"""The CPU as a training device: what it is, and what a matmul really gets out of it.

A CPU's theoretical peak (cores x clock x FLOPs/cycle from ISA flags) is a
guess: FMA-unit counts, AVX-512 down-clocking and turbo vary by part, and
the machine is often shared.  So MFU on CPU divides by a *measured* peak: the
best rate of large square matmuls in the run's dtype, measured once and
cached per (CPU model, threads, torch version, dtype, size).
"""

from __future__ import annotations

import ast
import contextlib
import functools
import importlib.util
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# ISA flags that decide matmul throughput (x86 /proc/cpuinfo "flags", aarch64 "Features").
RELEVANT_FLAGS = (
    "sse", "sse2", "sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c",
    "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16",
    "amx_tile", "amx_bf16", "amx_int8", "amx_fp16",
    "neon", "asimd", "asimdhp", "asimddp", "bf16", "i8mm", "sve", "sve2", "sme",
)

DEFAULT_MAX_SIZE = 2048  # n for n x n matmuls: 17 GFLOP, ~0.13 s at fp32 on 2 Zen 4 cores
MAX_MATMUL_SECONDS = 0.5  # n doubles only while the next matmul is predicted (8x) to stay under this
BUDGET_SECONDS = 2.0  # per dtype: the timed repetitions are cut to fit (at least one)
STABLE_FRACTION = 0.75  # median within 25 % of best, else the machine was busy: not cached
REPEATS = 5
WARMUP_SECONDS = 0.2  # sustained matmuls before timing
USABLE_FRACTION = 0.25  # a low-precision matmul slower than 1/4 of fp32 has no fast path
CACHE_VERSION = "v2"  # bump when the method changes: older figures are then ignored
# A cached CPU matmul peak outside this range is not a measurement (a hand edit, a corrupt file):
# 1 MFLOP/s is below any CPU since the 1990s; 10 PFLOP/s is 100x a 2-socket AMX server's bf16 peak.
PLAUSIBLE_FLOPS = (1e6, 1e16)
_TORCH_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


# ---------------------------------------------------------------- cpu_info

def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _cpuinfo_fields() -> dict[str, str]:
    """First value of each ``key : value`` line of /proc/cpuinfo (processor 0)."""
    fields: dict[str, str] = {}
    text = _read("/proc/cpuinfo") or ""
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    return fields


def _model_name(fields: dict[str, str]) -> str:
    for key in ("model name", "cpu model", "hardware", "processor"):
        value = fields.get(key, "")
        if value and not value.isdigit():
            return value
    return platform.processor() or platform.machine() or "unknown CPU"


def _clocks(fields: dict[str, str]) -> tuple[float | None, float | None]:
    """(max Hz, current Hz): cpufreq sysfs (kHz), then psutil (MHz), then /proc/cpuinfo."""
    base = "/sys/devices/system/cpu/cpu0/cpufreq/"
    max_khz, cur_khz = _read(base + "cpuinfo_max_freq"), _read(base + "scaling_cur_freq")
    max_hz = float(max_khz) * 1e3 if max_khz and max_khz.isdigit() else None
    cur_hz = float(cur_khz) * 1e3 if cur_khz and cur_khz.isdigit() else None
    try:
        import psutil

        freq = psutil.cpu_freq()
    except Exception:  # psutil raises various errors on exotic platforms
        freq = None
    if freq is not None:
        max_hz = max_hz or (freq.max * 1e6 if freq.max else None)
        cur_hz = cur_hz or (freq.current * 1e6 if freq.current else None)
    if cur_hz is None and fields.get("cpu mhz"):
        try:
            cur_hz = float(fields["cpu mhz"]) * 1e6
        except ValueError:
            pass
    return max_hz, cur_hz


def _cgroup_memory() -> tuple[int | None, int | None]:
    """(limit, usage) bytes of this container's memory cgroup (v2, then v1); None = unlimited."""
    for limit_path, usage_path in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        limit = _read(limit_path)
        if limit is None:
            continue
        if not limit.isdigit() or int(limit) >= 2**60:  # "max" or v1's "unlimited" sentinel
            return None, None
        usage = _read(usage_path)
        return int(limit), int(usage) if usage and usage.isdigit() else None
    return None, None


# ---------------------------------------------------------------- torch facts, without importing torch
# Importing torch takes 1-2 s; `mfutop gpus` on a CPU box needs only its version, whether the build has
# CUDA, and its default thread count (all keys of the cached peak), so those are read without it.

THREADS_CACHE_NAME = "torch_threads.json"
THREADS_CACHE_VERSION = "v1"
_THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")  # what torch reads at import to size its pool


def _version_file_constants(path: str) -> dict[str, Any]:
    """Top-level ``name = <str or None>`` assignments of torch's generated ``version.py``."""
    with open(path, encoding="utf-8") as stream:
        tree = ast.parse(stream.read(), path)
    out: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign):  # cuda: Optional[str] = None
            target, value = node.target, node.value
        else:
            continue
        if isinstance(target, ast.Name) and isinstance(value, ast.Constant) and \
                (value.value is None or isinstance(value.value, str)):
            out[target.id] = value.value
    return out


@functools.lru_cache(maxsize=None)
def torch_build() -> dict[str, str | None]:
    """torch's ``__version__``, ``version.cuda`` and ``version.hip``: from an imported torch, else from
    its ``version.py`` as text (the package is not imported); a file that cannot be read imports torch."""
    if "torch" not in sys.modules:
        try:
            spec = importlib.util.find_spec("torch")
            locations = list(spec.submodule_search_locations or []) if spec else []
            found = _version_file_constants(os.path.join(locations[0], "version.py")) if locations else {}
        except (OSError, SyntaxError, ValueError, ImportError):
            found = {}
        if isinstance(found.get("__version__"), str):
            return {"version": found["__version__"], "cuda": found.get("cuda"), "hip": found.get("hip")}
    import torch

    return {"version": str(torch.__version__), "cuda": torch.version.cuda,
            "hip": getattr(torch.version, "hip", None)}


def _threads_key() -> str:
    """What torch's default intra-op thread count depends on: build, CPU, CPUs usable, the env it reads."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS / Windows
        usable = os.cpu_count() or 1
    env = ",".join(f"{name}={os.environ.get(name, '')}" for name in _THREAD_ENV)
    return (f"{THREADS_CACHE_VERSION}|torch={torch_build()['version']}|{_model_name(_cpuinfo_fields())}"
            f"|cpus={os.cpu_count()}|usable={usable}|{env}")


def default_torch_threads(physical_cores: int) -> int:
    """The intra-op threads a fresh ``import torch`` starts with: OMP_NUM_THREADS, else MKL_NUM_THREADS,
    else the physical cores."""
    for name in _THREAD_ENV:
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return physical_cores


def torch_threads(allow_import: bool = True) -> int | None:
    """torch's intra-op thread count: asked of torch once it is imported; else the default a fresh
    ``import torch`` gave an earlier process on this machine (cached); else imported and cached — or,
    with ``allow_import`` False (a UI thread that must not stall for seconds), None."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return int(torch.get_num_threads())
    path = default_cache_path().with_name(THREADS_CACHE_NAME)
    key = _threads_key()
    entry = _load_cache(path).get(key)
    threads = entry.get("threads") if isinstance(entry, dict) else None  # a file anyone may edit:
    if isinstance(threads, int) and not isinstance(threads, bool) and 1 <= threads <= 1 << 16:
        return threads
    if not allow_import:
        return None
    import torch

    threads = int(torch.get_num_threads())
    _store_cache(path, key, {"threads": threads, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S")})
    return threads


def cpu_info(allow_import: bool = True) -> dict[str, Any]:
    """Model, cores (physical, logical, usable, torch's), clocks, ISA flags and RAM.

    Memory honours a container's cgroup limit: the batch search must gate
    probes on the RAM this process may really use, not the host's. With
    ``allow_import`` False torch's threads are never asked of a fresh import:
    the cached count, else torch's default (``default_torch_threads``).
    """
    import psutil

    fields = _cpuinfo_fields()
    flags = set((fields.get("flags") or fields.get("features") or "").split())
    logical = psutil.cpu_count(logical=True) or os.cpu_count() or 1
    physical = psutil.cpu_count(logical=False) or logical
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS / Windows
        usable = logical
    max_hz, cur_hz = _clocks(fields)
    vm = psutil.virtual_memory()
    limit, usage = _cgroup_memory()
    total, available = int(vm.total), int(vm.available)
    if limit is not None and limit < total:
        total = limit
        available = min(available, limit - usage) if usage is not None else min(available, limit)
    return {
        "model_name": _model_name(fields),
        "vendor": fields.get("vendor_id") or fields.get("cpu implementer") or platform.machine(),
        "architecture": platform.machine(),
        "physical_cores": int(physical),
        "logical_cores": int(logical),
        "usable_cores": int(usable),
        "torch_threads": torch_threads(allow_import) or default_torch_threads(int(physical)),
        "clock_max_hz": max_hz,
        "clock_current_hz": cur_hz,
        "isa_flags": sorted(f for f in RELEVANT_FLAGS if f in flags),
        "memory_total_bytes": total,
        "memory_available_bytes": max(0, available),
        "memory_cgroup_limit_bytes": limit,
    }


def compute_cores(info: dict[str, Any]) -> int:
    """Cores that do the math: torch's threads, at most the physical cores (SMT adds no FMA units)."""
    return max(1, min(info["torch_threads"], info["physical_cores"], info["usable_cores"]))


# ---------------------------------------------------------------- measured peak

def default_cache_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "mfutop" / "cpu_peak.json"


def _cache_key(dtype: str, max_size: int, threads: int | None = None) -> str:
    model = _model_name(_cpuinfo_fields())
    threads = torch_threads() if threads is None else threads
    return (f"{CACHE_VERSION}|{model}|threads={threads}|torch={torch_build()['version']}|{dtype}"
            f"|max_n={max_size}")


def cached_peak(dtype: str, threads: int | None = None, cache_path: str | os.PathLike | None = None,
                max_size: int = DEFAULT_MAX_SIZE) -> dict[str, Any] | None:
    """The cached matmul peak of ``dtype`` at ``threads`` (default: torch's) when it is usable here, else
    None: never a measurement (a UI or a preview must not benchmark)."""
    path = Path(cache_path) if cache_path is not None else default_cache_path()
    entry = _load_cache(path).get(_cache_key(dtype, max_size, threads))
    return {**entry, "cached": True} if entry is not None and entry_problem(entry, dtype) is None else None


def _load_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):  # missing, unreadable or corrupt: measure again
        return {}
    return data if isinstance(data, dict) else {}


def entry_problem(entry: Any, dtype: str) -> str | None:
    """Why a cached entry cannot be used (None when it can): the cache is a file anyone may edit.

    ``flops`` must be a finite float in ``PLAUSIBLE_FLOPS`` (``true`` is not 1 FLOP/s), or None
    for a dtype measured as having no fast path (then ``usable`` is false).
    """
    if not isinstance(entry, dict):
        return f"not an object ({type(entry).__name__})"
    if entry.get("dtype") != dtype:
        return f"dtype {str(entry.get('dtype'))[:40]!r} under the key of {dtype}"
    for key, kind in (("note", str), ("measured_at", str), ("usable", bool)):
        if key in entry and not isinstance(entry[key], kind):
            return f"{key} is not a {kind.__name__}"
    size = entry.get("size")
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= 2**20:
        return f"size {str(size)[:40]!r} is not a matmul size"  # the peak's label names it
    flops = entry.get("flops", "missing")
    if flops is None:
        return None if entry.get("usable") is False else "flops null but the dtype is not marked unusable"
    if isinstance(flops, bool) or not isinstance(flops, (int, float)):
        return f"flops {str(flops)[:40]!r} is not a number"
    if not math.isfinite(flops) or not PLAUSIBLE_FLOPS[0] <= flops <= PLAUSIBLE_FLOPS[1]:
        return (f"flops {flops!r} is outside the plausible {PLAUSIBLE_FLOPS[0]:.0e}-"
                f"{PLAUSIBLE_FLOPS[1]:.0e} FLOP/s")
    return None


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path``'s sidecar ``.lock`` file (POSIX ``flock``; no-op elsewhere), so two
    processes that store figures at once each keep the other's: read-modify-write is serialised."""
    try:
        import fcntl
    except ImportError:  # Windows: the atomic replace still keeps the file whole
        yield
        return
    with open(path.with_name(path.name + ".lock"), "a", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _store_cache(path: Path, key: str, result: dict[str, Any] | None) -> None:
    """Best effort, locked and atomic: a read-only home or another process writing must not fail a run,
    lose its entries or leave a half-written file. ``result`` None drops the key."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with _locked(path):
            data = _load_cache(path)
            if result is None:
                if key not in data:
                    return
                del data[key]
            else:
                data[key] = result
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as stream:
                    json.dump(data, stream, indent=2, sort_keys=True)
                    stream.flush()
                    os.fsync(stream.fileno())
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
    except OSError:
        pass


def _time_matmul(n: int, torch_dtype: Any, repeats: int, warmup_seconds: float = 0.0) -> list[float]:
    """Seconds per n x n @ n x n matmul, after one warm-up call (more while ``warmup_seconds`` last).

    A sustained warm-up matters on VMs: the first fraction of a second of
    matmuls runs up to 2x slower (clock ramp, page faults), then settles.
    """
    import torch

    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(torch_dtype)
    b = torch.randn(n, n, generator=gen).to(torch_dtype)
    out = torch.empty(n, n, dtype=torch_dtype)
    torch.matmul(a, b, out=out)
    deadline = time.perf_counter() + warmup_seconds
    while time.perf_counter() < deadline:
        torch.matmul(a, b, out=out)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b, out=out)
        times.append(time.perf_counter() - start)
    return times


def _rate(n: int, seconds: float) -> float:
    return 2.0 * n**3 / seconds


def _usability(dtype: str, torch_dtype: Any, n: int) -> tuple[bool, str]:
    """Is a low-precision matmul worth benchmarking at size? Compare with fp32 at a small n.

    fp16 matmul on CPUs without AVX512-FP16/AMX-FP16 runs ~50x slower than
    fp32; timing it at full size would take minutes.  fp32 gets more
    repetitions (they are cheap) so one preempted timing cannot make it look slow.
    """
    import torch

    fp32 = _rate(n, min(_time_matmul(n, torch.float32, 10)))
    low = _rate(n, min(_time_matmul(n, torch_dtype, 3)))
    ratio = low / fp32
    if ratio < USABLE_FRACTION:
        return False, (f"{dtype} matmul runs at {low / 1e9:.3g} GFLOP/s at n={n}, {ratio:.2g}x fp32: "
                       f"no fast {dtype} path on this CPU; not benchmarked further")
    return True, f"{dtype} matmul at n={n} runs {ratio:.2g}x fp32"


def measured_peak(dtype: str = "fp32", cache_path: str | os.PathLike | None = None, *,
                  max_size: int = DEFAULT_MAX_SIZE, max_matmul_seconds: float = MAX_MATMUL_SECONDS,
                  repeats: int = REPEATS, warmup_seconds: float = WARMUP_SECONDS,
                  budget_seconds: float = BUDGET_SECONDS, use_cache: bool = True,
                  refresh: bool = False) -> dict[str, Any]:
    """Best matmul FLOP/s in ``dtype`` ("fp32", "bf16", "fp16") on this CPU, cached.

    n doubles from 256 (or ``max_size`` if smaller) towards ``max_size``
    while the next size's matmul is predicted (8x the time) to take under
    ``max_matmul_seconds``; then, after ``warmup_seconds`` of untimed
    matmuls, the best of ``repeats`` timings (fewer if ``budget_seconds``
    would be exceeded) is the peak.  Best-of: noise on a shared machine only
    slows a run down.  About 1 s per dtype at the defaults on 2 cores.

    Not cached (returned all the same) when the timings are unsteady (median
    below ``STABLE_FRACTION`` of the best) or the machine was busy (others'
    CPU use while it measured, ``profiler.load_check``): a contended moment
    must not become the MFU denominator of every later run.

    Returns ``flops`` (None when the dtype has no usable fast path), ``dtype``,
    ``size``, ``seconds`` (best time of one matmul), ``repeats``,
    ``median_flops``, ``stable``, ``busy``, ``usable``, ``note``, ``threads``,
    ``load_average``, ``others_cpu_share``, ``measured_at`` and ``cached``.  ``refresh``
    re-measures and replaces (or, if not cacheable, drops) the cached figure;
    ``use_cache=False`` neither reads nor writes it.
    """
    from estimator.errors import ConfigError

    if dtype not in _TORCH_DTYPES:
        raise ConfigError(f"CPU peak can be measured for {', '.join(_TORCH_DTYPES)}, not {dtype!r}")
    if max_size < 1 or repeats < 1:
        raise ConfigError(f"max_size and repeats must be positive, got {max_size}, {repeats}")
    path = Path(cache_path) if cache_path is not None else default_cache_path()
    key = _cache_key(dtype, max_size)
    discarded = ""
    if use_cache and not refresh:
        cache = _load_cache(path)
        if key in cache:
            problem = entry_problem(cache[key], dtype)
            if problem is None:
                return {**cache[key], "cached": True}
            discarded = f"discarded the cached {dtype} peak in {path}: {problem}; measured again"
            refresh = True  # the bad entry is replaced (or dropped) whatever this measurement gives

    import torch  # only now: a cached figure is read without torch's 1-2 s import

    from profiler.load_check import contention_since, read_ticks

    ticks = read_ticks()
    result: dict[str, Any] = {"dtype": dtype, "threads": torch.get_num_threads()}
    torch_dtype = getattr(torch, _TORCH_DTYPES[dtype])
    start = time.perf_counter()
    n = min(256, max_size)
    usable, note = _usability(dtype, torch_dtype, n) if dtype != "fp32" else (True, "")
    if not usable:
        result.update(flops=None, median_flops=None, size=n, seconds=None, repeats=0, stable=True,
                      usable=False, note=note)
    else:
        one = min(_time_matmul(n, torch_dtype, 1))
        while n < max_size and 8 * one < max_matmul_seconds:
            n = min(n * 2, max_size)
            one = min(_time_matmul(n, torch_dtype, 1))
        left = budget_seconds - (time.perf_counter() - start)
        reps = max(1, min(repeats, int(left / one) if one > 0 else repeats))
        warm = max(0.0, min(warmup_seconds, left - (reps + 1) * one))
        times = _time_matmul(n, torch_dtype, reps, warm)
        best, median = min(times), statistics.median(times)
        stable = best / median >= STABLE_FRACTION
        notes = [f"best of {reps} n={n} matmuls", note]
        if not stable:
            notes.append(f"unsteady timings (best {median / best:.2g}x faster than median)")
        result.update(flops=_rate(n, best), median_flops=_rate(n, median), size=n, seconds=best, repeats=reps,
                      stable=stable, usable=True, note="; ".join(filter(None, notes)))
    contention = contention_since(ticks)  # others' CPU use while it measured, not this process's
    result.update(load_average=contention.load_average, others_cpu_share=contention.others_share,
                  busy=contention.busy)
    if contention.busy:
        result["note"] += f"; machine busy ({contention.reason()})"
    cacheable = result["stable"] and not contention.busy
    if not cacheable:
        result["note"] += "; not cached (mfutop gpus --remeasure when the machine is quiet)"
    if discarded:
        result["note"] += f"; {discarded}"
        result["cache_problem"] = discarded
    result["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    if use_cache and (cacheable or refresh):  # a refresh always discards the old figure
        _store_cache(path, key, result if cacheable else None)
    return {**result, "cached": False}
