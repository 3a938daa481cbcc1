"""`mfutop gpus`: the detected devices and their peaks; `--list`: the estimator's spec table.

Detection (NVML fields, the matched or derived spec per GPU, or the CPU with
its measured matmul peak and the reason no GPU was found) imports torch
inside the command; ``--list`` reads only the pure-Python estimator and
never imports torch.
"""

from __future__ import annotations

from typing import Any

import typer

from tui.cli_support import emit_json, user_errors
from tui.plain_text import plain

NA = "N/A"


def list_specs() -> dict[str, Any]:
    """The ``mfutop gpus --list --json`` object: every spec row, every dtype (None = no such path)."""
    from estimator.hardware import DTYPES, list_gpus

    rows = []
    for spec in list_gpus():
        row = spec.to_dict()
        row["peak_flops"] = {d: spec.peak_flops.get(d) for d in DTYPES}
        rows.append(row)
    return {"dtypes": list(DTYPES), "convention": "dense FLOP/s (int8: OP/s); bf16/fp16 with fp32 accumulate; "
            "fp32 is the non-tensor rate; None = no such path", "gpus": rows}


# ---------------------------------------------------------------- rendering
# NVML strings, the CPU model name and cache notes are outside text: every cell and title goes
# through ``plain`` (a Rich ``str`` cell is parsed as markup, and escapes would reach the terminal).

def _row(table: Any, *cells: Any) -> None:
    table.add_row(*(plain(cell, max_chars=400) for cell in cells))


def _warn(console: Any, warning: Any) -> None:
    from rich.text import Text

    console.print(Text("warning: ", style="yellow") + plain(warning, max_chars=2000))

def _tflops(value: float | None) -> str:
    return "–" if value is None else f"{value / 1e12:.4g}"  # 989.4, 1979: at most 5 characters


def _num(value: Any, scale: float = 1.0, unit: str = "", digits: int = 0, sep: str = ",") -> str:
    if value is None or value == NA:
        return NA
    return f"{value / scale:{sep}.{digits}f}{unit}"


def _bytes(value: Any) -> str:
    from estimator.units import fmt_bytes

    return NA if value is None or value == NA else fmt_bytes(value)


def _print_list(data: dict[str, Any]) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console()
    peaks = Table(title="Known GPUs: dense peak TFLOP/s (int8: TOPS)", caption=plain(data["convention"], max_chars=400),
                  box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    peaks.add_column("key", no_wrap=True)
    for dtype in data["dtypes"]:
        peaks.add_column(dtype, justify="right")
    for column in ("GiB", "BW GB/s", "link GB/s"):
        peaks.add_column(column, justify="right")
    for row in data["gpus"]:
        _row(peaks, row["key"], *(_tflops(row["peak_flops"][d]) for d in data["dtypes"]),
                      _num(row["memory_bytes"], 2**30, digits=1, sep=""), _num(row["memory_bandwidth"], 1e9, sep=""),
                      _num(row["intra_node_bandwidth"], 1e9, sep=""))
    console.print(peaks)
    sources = Table(title="Names and sources", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for column in ("key", "name", "source"):
        sources.add_column(column, no_wrap=column == "key")
    for row in data["gpus"]:
        _row(sources, row["key"], row["name"], row["source"].removesuffix("; via reference/gpu-specs.md"))
    console.print(sources)


def _print_gpu(gpu: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    n = gpu["nvml"]
    where = gpu["torch_device"] or "not usable by PyTorch"
    facts = Table(title=plain(f"{gpu['name']} ({where})"), show_header=False)
    facts.add_column("field", style="bold")
    facts.add_column("value")
    procs = n.get("processes")
    for label, value in (
        ("memory total / used / free", " / ".join(_bytes(n.get(k)) for k in
                                                   ("memory_total_bytes", "memory_used_bytes", "memory_free_bytes"))),
        ("driver / CUDA", f"{n.get('driver_version', NA)} / {n.get('cuda_driver_version', NA)}"),
        ("compute capability / SMs", f"{gpu['spec']['compute_capability'] or NA} / {gpu['sm_count'] or NA}"),
        ("SM clock now / max", f"{_num(n.get('sm_clock_hz'), 1e6, ' MHz')} / {_num(n.get('sm_clock_max_hz'), 1e6, ' MHz')}"),
        ("memory clock now / max", f"{_num(n.get('mem_clock_hz'), 1e6, ' MHz')} / "
                                   f"{_num(n.get('mem_clock_max_hz'), 1e6, ' MHz')}"),
        ("power draw / limit", f"{_num(n.get('power_draw_w'), unit=' W', digits=1)} / "
                               f"{_num(n.get('power_limit_w'), unit=' W')}"),
        ("temperature", _num(n.get("temperature_c"), unit=" °C")),
        ("utilisation GPU / memory", f"{_num(n.get('utilization_gpu_pct'), unit=' %')} / "
                                     f"{_num(n.get('utilization_memory_pct'), unit=' %')}"),
        ("PCIe gen / width (max)", f"{n.get('pcie_gen_current', NA)} ({n.get('pcie_gen_max', NA)}) / "
                                   f"x{n.get('pcie_width_current', NA)} (x{n.get('pcie_width_max', NA)})"),
        ("NVLink active links", str(n.get("nvlink_active_links", NA))),
        ("MIG mode", str(n.get("mig_mode", NA))),
        ("compute processes", NA if procs in (None, NA) else str(len(procs))),
        ("spec", f"{gpu['spec']['key']}{' (derived)' if gpu['derived'] else ''}"),
    ):
        _row(facts, label, value)
    console.print(facts)
    peaks = Table(title="Dense peak per dtype", caption=plain(gpu["peak_source"], max_chars=400))
    peaks.add_column("dtype")
    peaks.add_column("TFLOP/s", justify="right")
    for dtype, value in gpu["peak_flops"].items():
        _row(peaks, dtype, _tflops(value))
    console.print(peaks)


def _print_cpu(cpu: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    info = cpu["info"]
    facts = Table(title=plain(f"CPU: {info['model_name']}"), show_header=False)
    facts.add_column("field", style="bold")
    facts.add_column("value")
    clock = info["clock_max_hz"] or info["clock_current_hz"]
    for label, value in (
        ("cores (physical/logical/torch)",
         f"{info['physical_cores']} / {info['logical_cores']} / {info['torch_threads']}"),
        ("clock", _num(clock, 1e9, " GHz", 2) + ("" if info["clock_max_hz"] else " (current)")),
        ("ISA flags", " ".join(info["isa_flags"]) or NA),
        ("RAM total / available", f"{_bytes(info['memory_total_bytes'])} / {_bytes(info['memory_available_bytes'])}"),
    ):
        _row(facts, label, value)
    console.print(facts)
    peaks = Table(title="Peak per dtype: measured matmul vs theoretical (cores x clock x FLOPs/cycle)")
    for column in ("dtype", "measured TFLOP/s", "theoretical TFLOP/s", "note"):
        peaks.add_column(column, justify="right" if "TFLOP" in column else "left")
    for dtype in dict.fromkeys([*cpu["measured"], *cpu["theoretical_peak_flops"]]):
        result = cpu["measured"].get(dtype, {})
        note = result.get("note", "")
        if result.get("cached"):
            note = f"{note} (cached {result.get('measured_at', '')}; --remeasure to refresh)".strip()
        _row(peaks, dtype, _tflops(result.get("flops")), _tflops(cpu["theoretical_peak_flops"].get(dtype)), note)
    console.print(peaks)


def _print_devices(data: dict[str, Any]) -> None:
    from rich.console import Console

    console = Console()
    from rich.text import Text

    for gpu in data["gpus"]:
        _print_gpu(gpu, console)
        for warning in gpu["warnings"]:
            _warn(console, warning)
    if data["cpu"] is not None:
        console.print(Text("No GPU in use: ", style="bold") + plain(data["reason"], max_chars=2000))
        _print_cpu(data["cpu"], console)
        for warning in data["cpu"]["warnings"]:
            _warn(console, warning)
        for result in data["cpu"]["measured"].values():
            if isinstance(result, dict) and result.get("cache_problem"):
                _warn(console, result["cache_problem"])


# ---------------------------------------------------------------- command

def gpus(
    list_known: bool = typer.Option(False, "--list", help="List the spec table (known GPUs and peaks) instead."),
    remeasure: bool = typer.Option(False, "--remeasure", help="Re-run the CPU matmul benchmark, refreshing its cache."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Detected devices with NVML fields and dense peaks per dtype (or the CPU's measured peak)."""
    with user_errors():
        if list_known:
            data = list_specs()
        else:
            from profiler.cpu_probe import measured_peak
            from profiler.detect import describe_devices

            data = describe_devices(cpu_benchmark=lambda dtype: measured_peak(dtype, refresh=remeasure))
    if as_json:
        emit_json(data)
    elif list_known:
        _print_list(data)
    else:
        _print_devices(data)


def register(app: typer.Typer) -> None:
    """Adds `mfutop gpus` to the app."""
    app.command("gpus")(gpus)
