"""`mfutop calibrate`: measure this device's kernel profile (or load the cached one) and print it.

The profile is what ``mfutop estimate --device-profile FILE`` and the run's
prediction time the op graph with. torch is imported inside the command only.
"""

from __future__ import annotations

from typing import Any

import typer

from tui.cli_support import emit_json, fail, user_errors, warn


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name not in ("cpu", "cuda"):
        fail(f"device must be auto, cpu or cuda, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        fail("no CUDA device is usable by PyTorch here")
    return name


def _print(data: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    p = data["profile"]
    head = Table(title=f"Device profile: {p['device']['name']}", show_header=False)
    head.add_column("field", style="bold")
    head.add_column("value")
    for label, value in (
        ("torch / threads", f"{p['torch_version']} / {p['threads']}"),
        ("measured at", f"{p['measured_at']} ({_contention(p)}, "
                        f"{'busy: not cached' if p['busy'] else 'idle'})"),
        ("measurement", f"{p['measure_seconds']:.1f} s"),
        ("calibrations", f"{p.get('calibrations', 1)}" + (" (each time a geometric mean of them; --reset starts "
                                                           "over)" if p.get("calibrations", 1) > 1 else "")),
        ("file", f"{data['path']} ({'cached' if data['cached'] else 'measured now'})"),
    ):
        head.add_row(label, str(value))
    console.print(head, markup=False)
    rates = Table(title="GEMM: best measured rate per dtype")
    rates.add_column("dtype")
    rates.add_column("GFLOP/s", justify="right")
    for dtype, flops in data["summary"]["gemm_best_flops"].items():
        rates.add_row(dtype, f"{flops / 1e9:,.1f}")
    console.print(rates)
    host = Table(title=f"Host time of a training step beyond its kernels (bare kernel call "
                       f"{p['dispatch']['bare_s'] * 1e6:.2f} µs)")
    host.add_column("block design . attention . precision")
    host.add_column("per micro-batch ms", justify="right")
    host.add_column("per block ms", justify="right")
    for variant, row in p.get("framework", {}).items():
        host.add_row(variant, f"{row['per_step_s'] * 1e3:.3f}", f"{row['per_layer_s'] * 1e3:.3f}")
    console.print(host, markup=False)


def _contention(p: dict) -> str:
    share = p.get("others_cpu_share")
    where = f"others used {share:.0%} of the CPUs' time" if share is not None else "others' CPU use unknown"
    return f"{where}, load average {p['load_average']}"


def calibrate(
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda."),
    remeasure: bool = typer.Option(
        False, "--remeasure", help="Measure again and fold it into the cached profile: each time becomes a "
        "geometric mean over the calibrations (the newest weighing at least 1/4), a shared machine's typical "
        "speed rather than one moment's."),
    reset: bool = typer.Option(False, "--reset", help="Measure again and replace the cached profile."),
    out: str = typer.Option(None, "--out", help="Also write the profile to this file."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (the profile itself under 'profile')."),
) -> None:
    """Measure this device's kernels (GEMM, attention, elementwise, dispatch, optimizer): the device profile."""
    from pathlib import Path

    with user_errors():
        from estimator.device_profile import dumps
        from profiler.profile_cache import device_profile, write_atomic

        dev = _device(device)
        profile, info = device_profile(dev, remeasure=remeasure, reset=reset)
        if out:
            try:
                write_atomic(Path(out), dumps(profile))
            except OSError as exc:
                fail(f"cannot write {out}: {exc}")
    data = {"profile": profile.to_dict(), "summary": profile.summary(), **info}
    if profile.busy:
        warn(f"the machine was busy ({_contention(data['profile'])}): this profile is not cached; "
             "calibrate again when it is quiet")
    if as_json:
        emit_json(data)
    else:
        _print(data)


def register(app: typer.Typer) -> None:
    """Adds `mfutop calibrate` to the app."""
    app.command("calibrate")(calibrate)
