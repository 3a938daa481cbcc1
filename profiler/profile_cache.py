"""Where a device profile is kept and when a kept one may be used: one JSON file per device, torch version
and thread count, beside the CPU peak cache (``profiler.cpu_probe.default_cache_path``). A busy machine's
profile is returned but never cached, a profile from another torch or thread count is not reused, a corrupt
or non-finite file is re-measured (``estimator.device_profile.load`` validates it). A re-measurement folds
into the cached profile (``profiler.profile_merge``) unless reset. Written atomically.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from estimator.device_profile import DeviceProfile, dumps, load
from estimator.errors import ConfigError
from profiler import calibrate
from profiler.cpu_probe import default_cache_path
from profiler.profile_merge import merge


def cache_path(device="cpu", cache_dir: str | os.PathLike | None = None) -> Path:
    """One file per device, torch version and thread count, beside the CPU peak cache."""
    import torch

    base = Path(cache_dir) if cache_dir is not None else default_cache_path().parent
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", f"{calibrate.device_name(device)}-torch{torch.__version__}"
                  f"-t{torch.get_num_threads()}").strip("-")
    return base / "device_profiles" / f"{slug}.json"


def reusable(profile: DeviceProfile, device="cpu") -> str | None:
    """None when a cached profile fits this process, else why not."""
    import torch

    if profile.busy:
        return "measured on a busy machine"
    if profile.torch_version != torch.__version__:
        return f"measured with torch {profile.torch_version}, this is {torch.__version__}"
    if profile.threads != torch.get_num_threads():
        return f"measured with {profile.threads} threads, this run has {torch.get_num_threads()}"
    if profile.device_name != calibrate.device_name(device):
        return f"measured on {profile.device_name}"
    return None


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def cached_device_profile(device="cpu", dtypes: tuple[str, ...] = ("fp32",),
                          cache_dir: str | os.PathLike | None = None) -> tuple[DeviceProfile | None, str]:
    """The cached profile when it may be reused here (same device, torch, threads; not busy; these dtypes),
    else None and why not — a run never pays for a measurement it was not asked to make."""
    path = cache_path(device, cache_dir)
    if not path.exists():
        return None, "no device profile measured on this machine yet (mfutop calibrate, about 5 s)"
    try:
        cached = load(path)
    except ConfigError as exc:
        return None, str(exc)
    reason = reusable(cached, device)
    if reason is None and not all(d in cached.gemm for d in dtypes):
        reason = f"the cached device profile lacks {', '.join(d for d in dtypes if d not in cached.gemm)}"
    return (cached, f"device profile {path}") if reason is None else (None, reason)


def device_profile(device="cpu", *, remeasure: bool = False, reset: bool = False,
                   cache_dir: str | os.PathLike | None = None, dtypes: tuple[str, ...] = ("fp32", "bf16"),
                   use_cache: bool = True) -> tuple[DeviceProfile, dict]:
    """The cached profile for this device / torch / threads, or a fresh measurement (then cached unless the
    machine was busy). ``remeasure``: measure again and fold the measurement into the cached profile
    (``profiler.profile_merge``: a shared machine's typical speed over several calibrations); ``reset``:
    measure again and replace it. Returns (profile, info) with info ``cached``, ``path``, ``reason`` (why
    measured) and ``calibrations`` (how many measurements the profile averages)."""
    path = cache_path(device, cache_dir)
    reason = "reset requested" if reset else "remeasure requested" if remeasure else None
    previous = None
    if use_cache and not reset:
        cached, why = cached_device_profile(device, dtypes, cache_dir)
        if cached is not None and not remeasure:
            return cached, {"cached": True, "path": str(path), "reason": None, "calibrations": cached.calibrations}
        previous, reason = cached, reason or why
    profile = calibrate.measure_profile(device, dtypes)
    if previous is not None and not profile.busy:
        profile = merge(previous, profile)
    if use_cache and not profile.busy:
        try:
            write_atomic(path, dumps(profile))
        except OSError as exc:
            reason = f"{reason}; not cached ({exc})"
    return profile, {"cached": False, "path": str(path), "reason": reason, "calibrations": profile.calibrations}
