"""Turn a ``gpu_acceptance.sh`` folder into ``report.md`` and ``summary.json``.

    python benchmarks/gpu_acceptance_report.py DIR

Reads ``DIR/run.json`` and every ``DIR/NN-name.step.json`` with the step's
output beside it (``.out``: the command's stdout; ``.events.jsonl``: a
recorded event stream). Any file may be missing, truncated or not JSON (a
step killed at its time limit): the report then says what is missing and
shows what there is; it never raises on bad input. ``summary.json`` holds the
same figures as numbers (SI units), for tests and for comparing runs;
``report.md`` humanises them (GiB = 2^30). No figure is computed here that a
command did not measure: MFU, predictions and errors are read as mfutop wrote
them.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from estimator.units import fmt_bytes, fmt_pct, fmt_rate, fmt_seconds, fmt_si  # noqa: E402

STATUS_MARK = {"passed": "PASS", "failed": "FAIL", "skipped": "skip"}
SCREEN_LINES = 60


# ----------------------------------------------------------------- reading, never raising

def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(errors="replace"))
    except (OSError, ValueError):
        return None


def read_jsonl(path: Path) -> list[dict]:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            out.append(value)
    return out


def read_text(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None


def num(value: Any) -> float | None:
    """A finite number, else None (bools, strings, "N/A", NaN and infinities are not figures)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value if math.isfinite(value) else None


def finite_tree(value: Any) -> Any:
    """The same structure with NaN and infinities as None, so summary.json is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): finite_tree(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_tree(v) for v in value]
    return value


def get(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def last_event(events: list[dict], kind: str) -> dict | None:
    return next((e for e in reversed(events) if e.get("event") == kind), None)


# ----------------------------------------------------------------- formatting

def cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ").strip()


def fmt_tokens(x: Any) -> str:
    x = num(x)
    return "n/a" if x is None else f"{x:,.0f} tok/s"


def fmt_error(x: Any) -> str:
    x = num(x)
    return "n/a" if x is None else f"{x * 100:+.1f} %"


UNIT_FORMATS = {
    "bytes": fmt_bytes, "seconds": fmt_seconds, "tokens_per_s": fmt_tokens, "fraction": fmt_pct,
    "flops": lambda x: f"{x:,.0f} FLOP",
}


def fmt_value(unit: str, value: Any) -> str:
    """One compare-row value in the unit the row declares (count and batch: plain integers)."""
    if value is None:
        return "n/a"
    x = num(value)
    if x is None:
        return cell(value)
    if unit in UNIT_FORMATS:
        return UNIT_FORMATS[unit](x)
    return f"{x:,.0f}" if float(x).is_integer() else f"{x:,.4g}"


def table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return lines


# ----------------------------------------------------------------- figures per step

def env_figures(out: Any) -> dict:
    if not isinstance(out, dict):
        return {}
    keys = ("python", "torch", "torch_cuda", "cuda_available", "device_name", "device_count", "packages")
    return {k: out.get(k) for k in keys}


def gpus_figures(out: Any) -> dict:
    if not isinstance(out, dict):
        return {}
    gpus = []
    for entry in out.get("gpus") or []:
        if not isinstance(entry, dict):
            continue
        nvml = entry.get("nvml") if isinstance(entry.get("nvml"), dict) else {}
        spec = entry.get("spec") if isinstance(entry.get("spec"), dict) else {}
        gpus.append({
            "torch_device": entry.get("torch_device"), "name": entry.get("name"), "spec_key": spec.get("key"),
            "derived": entry.get("derived"), "peak_bf16_flops": num(get(entry, "peak_flops", "bf16")),
            "peak_source": entry.get("peak_source"), "sm_count": entry.get("sm_count"),
            "nvml": nvml, "warnings": entry.get("warnings") or [],
        })
    cpu = out.get("cpu") if isinstance(out.get("cpu"), dict) else None
    return {
        "device": out.get("device"), "reason": out.get("reason"), "gpus": gpus,
        "cpu": None if cpu is None else {
            "name": get(cpu, "info", "model_name"), "peak_flops": cpu.get("peak_flops"),
            "peak_source": cpu.get("peak_source"),
        },
    }


def profile_summary(folder: Path, step_id: str) -> tuple[dict | None, list[dict], str]:
    """The profile's summary, its recorded events, and where the summary came from."""
    events = read_jsonl(folder / f"{step_id}.events.jsonl")
    out = read_json(folder / f"{step_id}.out")
    if isinstance(out, dict) and "measured" in out:
        return out, events, "stdout (--json)"
    finished = last_event(events, "run_finished")
    if finished and isinstance(finished.get("summary"), dict):
        return finished["summary"], events, "the recorded run_finished event"
    return None, events, ""


def memory_back(probes: list[dict], warnings: list[str]) -> dict:
    """Whether every OOM probe left memory at its pre-probe figure, and how that is known."""
    ooms = [p for p in probes if p.get("outcome") == "oom"]
    if not ooms:
        return {"oom_probes": 0, "memory_back": None, "how": "no probe hit an OOM"}
    direct = [p for p in ooms if num(p.get("baseline_bytes")) is not None and num(p.get("after_bytes")) is not None]
    if direct:
        back = all(p["after_bytes"] <= p["baseline_bytes"] for p in direct)
        return {"oom_probes": len(ooms), "memory_back": back,
                "how": f"after vs before bytes of {len(direct)} OOM probe(s)"}
    leaks = [w for w in warnings if "allocated after recovery" in w]
    return {"oom_probes": len(ooms), "memory_back": not leaks,
            "how": (leaks[0] if leaks else "no probe reported memory left allocated after its recovery "
                    "(the run warns when live bytes after a probe exceed those before it)")}


def profile_figures(folder: Path, step_id: str) -> dict:
    summary, events, source = profile_summary(folder, step_id)
    logs = [str(e.get("text", "")) for e in events if e.get("event") == "log"]
    if summary is None:
        probes = [e for e in events if e.get("event") == "probe_result"]
        samples = [e for e in events if e.get("event") == "step_sample" and not e.get("warmup")]
        rates = [s["tokens_per_s"] for s in samples if num(s.get("tokens_per_s")) is not None]
        failed = last_event(events, "run_failed")
        return {
            "partial": True, "events": len(events), "run_failed": (failed or {}).get("message"),
            "probes": probes, "timed_steps": len(samples),
            "tokens_per_s_median": statistics.median(rates) if rates else None,
            **memory_back(probes, logs),
        }
    measured = summary.get("measured") if isinstance(summary.get("measured"), dict) else {}
    config = summary.get("config") if isinstance(summary.get("config"), dict) else {}
    search = summary.get("search") if isinstance(summary.get("search"), dict) else {}
    probes = [p for p in search.get("probes") or [] if isinstance(p, dict)]
    warnings = [str(w) for w in summary.get("warnings") or []]
    compare = [r for r in summary.get("compare") or [] if isinstance(r, dict)]
    return {
        "partial": False, "source": source,
        "model": config.get("model"), "device": get(summary, "device", "name"),
        "precision": config.get("precision_effective") or config.get("precision"),
        "compile": config.get("compile"), "memory_limit_bytes": config.get("memory_limit_bytes"),
        "batch_size": measured.get("batch_size"), "seq_len": measured.get("seq_len"),
        "tokens_per_s": num(measured.get("tokens_per_s")), "step_time_s": num(measured.get("step_time_s")),
        "step_time_relative_spread": num(measured.get("step_time_relative_spread")),
        "steady": measured.get("steady"), "mfu": num(measured.get("mfu")), "mfu_causal": num(measured.get("mfu_causal")),
        "peak_flops": num(measured.get("peak_flops")), "peak_dtype": measured.get("peak_dtype"),
        "peak_source": get(summary, "device", "peak_source"),
        "peak_memory_bytes": num(measured.get("peak_memory_bytes")),
        "compare": [{k: r.get(k) for k in ("key", "label", "unit", "predicted", "measured", "error")} for r in compare],
        "search": {
            "predicted_max_batch_size": search.get("predicted_max_batch_size"),
            "max_batch_size": search.get("max_batch_size"), "limited_by": search.get("limited_by"),
            "memory_limit_bytes": search.get("memory_limit_bytes"),
            "memory_limit_source": search.get("memory_limit_source"), "probes": probes,
        },
        **memory_back(probes, warnings + logs),
        "warnings": warnings,
    }


def ladder_figures(folder: Path, step_id: str) -> dict:
    events = read_jsonl(folder / f"{step_id}.out")
    finished = last_event(events, "run_finished")
    rungs = get(finished, "summary", "rungs") if finished else None
    partial = not isinstance(rungs, list)
    if partial:
        rungs = [e["rung"] for e in events if e.get("event") == "ladder_rung" and isinstance(e.get("rung"), dict)]
    keys = ("name", "status", "batch_size", "precision", "tokens_per_s", "step_time_s", "mfu", "peak_dtype",
            "speedup_prev", "speedup_base", "predicted_tokens_per_s", "seed_a100_tokens_per_s", "reason")
    return {"partial": partial, "rungs": [{k: r.get(k) for k in keys} for r in rungs if isinstance(r, dict)],
            "device": get(finished, "summary", "device", "name") if finished else None}


def junit_figures(path: Path) -> dict:
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return {}
    tests = []
    for case in root.iter("testcase"):
        outcome, detail = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[child.tag]
                detail = (child.get("message") or "").splitlines()[0][:200] if child.get("message") else ""
        tests.append({"name": case.get("name"), "outcome": outcome, "seconds": num(float(case.get("time", 0) or 0)),
                      "detail": detail})
    counts = {o: sum(t["outcome"] == o for t in tests) for o in ("passed", "failed", "error", "skipped")}
    return {"counts": counts, "tests": tests}


def tui_figures(folder: Path, step_id: str) -> dict:
    screen = read_text(folder / f"{step_id}.out")
    events = read_jsonl(folder / f"{step_id}.events.jsonl")
    finished = last_event(events, "run_finished")
    measured = get(finished, "summary", "measured") if finished else None
    return {"screen_lines": len(screen.splitlines()) if screen else 0,
            "comparison_table": bool(screen and "Predicted vs measured" in screen),
            "run_finished": finished is not None,
            "tokens_per_s": num(get(measured, "tokens_per_s")), "mfu": num(get(measured, "mfu"))}


def generic_figures(out: Any) -> dict:
    """A command whose JSON shape this report does not know yet: its top-level scalars."""
    if not isinstance(out, dict):
        return {}
    return {k: v for k, v in list(out.items())[:40] if v is None or isinstance(v, (str, int, float, bool))}


def figures_for(folder: Path, step: dict) -> dict:
    step_id, name = step.get("id", ""), step.get("name", "")
    if name in ("profile", "profile-memory-limit"):
        return profile_figures(folder, step_id)
    if name == "ladder":
        return ladder_figures(folder, step_id)
    if name == "pytest-gpu":
        return junit_figures(folder / f"{step_id}.xml")
    if name == "tui":
        return tui_figures(folder, step_id)
    if name == "version":
        text = read_text(folder / f"{step_id}.out") or ""
        return {"version": text.strip().splitlines()[0] if text.strip() else None}
    out = read_json(folder / f"{step_id}.out")
    if name == "env":
        return env_figures(out)
    if name == "gpus":
        return gpus_figures(out)
    if name == "tracker":
        return {k: v for k, v in (out or {}).items() if k != "config"} if isinstance(out, dict) else {}
    return generic_figures(out)


# ----------------------------------------------------------------- report.md sections

def steps_section(steps: list[dict]) -> list[str]:
    rows = [[s.get("id"), s.get("title"), STATUS_MARK.get(s.get("status"), s.get("status")),
             "" if num(s.get("seconds")) is None else f"{s['seconds']:.1f}",
             s.get("limit_s") or "", s.get("reason") or ""] for s in steps]
    return ["## Steps", "", *table(["step", "what", "status", "s", "limit s", "reason"], rows), ""]


def nvml_value(key: str, value: Any) -> str:
    """NVML fields are SI (bytes, Hz, W); "N/A" where the card does not say."""
    x = num(value)
    if x is None:
        return cell(value)
    if key.endswith("_bytes"):
        return fmt_bytes(x)
    if key.endswith("_hz"):
        return fmt_si(x, "Hz")
    if key.endswith("_w"):
        return f"{x:g} W"
    return cell(value)


def gpus_section(fig: dict) -> list[str]:
    lines = ["## Device (`mfutop gpus --json`)", ""]
    for gpu in fig.get("gpus") or []:
        nvml = gpu.get("nvml") or {}
        peak = gpu.get("peak_bf16_flops")
        lines += [f"- **{cell(gpu.get('name'))}** ({gpu.get('torch_device') or 'not visible to torch'}): "
                  f"spec `{gpu.get('spec_key')}`{' (derived)' if gpu.get('derived') else ''}, "
                  f"dense bf16 peak {fmt_rate(peak) if peak else 'n/a'} ({cell(gpu.get('peak_source'))})"]
        shown = ("memory_total_bytes", "driver_version", "cuda_driver_version", "compute_capability",
                 "sm_clock_max_hz", "mem_clock_max_hz", "power_limit_w", "temperature_c", "pcie_gen_current",
                 "pcie_width_current", "nvlink_active_links", "mig_mode")
        fields = [f"{k} = {nvml_value(k, nvml[k])}" for k in shown if k in nvml]
        if fields:
            lines.append("  - NVML: " + "; ".join(fields) + f"; SMs = {gpu.get('sm_count')}")
        na = sorted(k for k, v in nvml.items() if v == "N/A")
        if na:
            lines.append("  - NVML fields N/A on this card: " + ", ".join(na))
    cpu = fig.get("cpu")
    if cpu:
        peaks = ", ".join(f"{d} {fmt_rate(v)}" for d, v in (cpu.get("peak_flops") or {}).items() if num(v))
        lines.append(f"- CPU only ({cell(fig.get('reason'))}): {cell(cpu.get('name'))}; measured peaks {peaks}")
    return lines + [""]


def profile_section(title: str, fig: dict) -> list[str]:
    lines = [f"## {title}", ""]
    if fig.get("partial"):
        lines += [f"No summary (the step did not finish): {fig.get('events', 0)} events recorded, "
                  f"{len(fig.get('probes') or [])} probes, {fig.get('timed_steps', 0)} timed steps"
                  + (f"; run failed: {cell(fig['run_failed'])}" if fig.get("run_failed") else "") + ".", ""]
    else:
        peak = fig.get("peak_flops")
        lines += [
            f"{cell(fig.get('model'))} on {cell(fig.get('device'))}, {cell(fig.get('precision'))}"
            f"{', torch.compile' if fig.get('compile') else ''}, batch {fig.get('batch_size')} x "
            f"{fig.get('seq_len')} tokens"
            + (f", memory limit {fmt_bytes(fig['memory_limit_bytes'])}" if num(fig.get('memory_limit_bytes')) else "")
            + f" (summary from {fig.get('source')}).", "",
            f"- tokens/s **{fmt_tokens(fig.get('tokens_per_s'))}**, step time {fmt_seconds(num(fig.get('step_time_s')))}"
            f" (IQR/median {fmt_pct(num(fig.get('step_time_relative_spread')))}, steady: {fig.get('steady')})",
            f"- MFU **{fmt_pct(fig.get('mfu'))}** of the dense {cell(fig.get('peak_dtype'))} peak "
            f"{fmt_rate(peak) if peak else 'n/a'} ({cell(fig.get('peak_source'))}); causal-halved attention: "
            f"{fmt_pct(fig.get('mfu_causal'))}",
            f"- peak memory {fmt_bytes(num(fig.get('peak_memory_bytes')))}", "",
        ]
        rows = [[r.get("label") or r.get("key"), fmt_value(str(r.get("unit")), r.get("predicted")),
                 fmt_value(str(r.get("unit")), r.get("measured")), fmt_error(r.get("error"))]
                for r in fig.get("compare") or []]
        if rows:
            lines += table(["quantity", "predicted", "measured", "error (pred - meas) / meas"], rows) + [""]
        search = fig.get("search") or {}
        lines.append(f"Search: predicted max batch {search.get('predicted_max_batch_size')}, found "
                     f"{search.get('max_batch_size')}"
                     + (f" (limited by {search['limited_by']})" if search.get("limited_by") else "")
                     + (f", under {fmt_bytes(search['memory_limit_bytes'])} ({cell(search.get('memory_limit_source'))})"
                        if num(search.get("memory_limit_bytes")) else "") + ".")
        lines.append("")
    probes = (fig.get("search") or {}).get("probes") if not fig.get("partial") else fig.get("probes")
    if probes:
        lines += table(["probe batch", "outcome", "peak memory", "seconds", "detail"],
                       [[p.get("batch_size"), p.get("outcome"), fmt_bytes(num(p.get("peak_memory_bytes"))),
                         "" if num(p.get("seconds")) is None else f"{p['seconds']:.2f}", p.get("detail") or ""]
                        for p in probes]) + [""]
    back = fig.get("memory_back")
    lines += [f"OOM probes: {fig.get('oom_probes', 0)}; memory back to its pre-probe figure after each: "
              f"{'n/a' if back is None else 'yes' if back else '**no**'} ({cell(fig.get('how'))}).", ""]
    for w in fig.get("warnings") or []:
        lines.append(f"- warning: {cell(w)}")
    return lines + ([""] if fig.get("warnings") else [])


def ladder_section(fig: dict) -> list[str]:
    lines = ["## Ladder", ""]
    if fig.get("partial"):
        lines += ["The ladder did not finish: the rungs below are the ones it streamed.", ""]
    rows = [[r.get("name"), r.get("status"), r.get("batch_size"), r.get("precision"), fmt_tokens(r.get("tokens_per_s")),
             fmt_seconds(num(r.get("step_time_s"))),
             fmt_pct(num(r.get("mfu"))) + (f" ({r['peak_dtype']})" if num(r.get("mfu")) is not None else ""),
             "" if num(r.get("speedup_prev")) is None else f"{r['speedup_prev']:.2f}x",
             fmt_tokens(r.get("predicted_tokens_per_s")), r.get("seed_a100_tokens_per_s") or "",
             r.get("reason") if r.get("status") != "measured" else ""]
            for r in fig.get("rungs") or []]
    if not rows:
        return lines + ["No rung was measured.", ""]
    return lines + table(["rung", "status", "batch", "precision", "tokens/s", "step", "MFU (peak dtype)", "vs prev",
                          "predicted", "seed A100 tok/s", "note"], rows) + [""]


def pytest_section(fig: dict) -> list[str]:
    counts = fig.get("counts")
    if not counts:
        return ["## GPU tests (`pytest -m gpu`)", "", "No JUnit XML was written.", ""]
    lines = ["## GPU tests (`pytest -m gpu`)", "",
             ", ".join(f"{n} {o}" for o, n in counts.items()), ""]
    return lines + table(["test", "outcome", "s", "detail"],
                         [[t["name"], t["outcome"], "" if t["seconds"] is None else f"{t['seconds']:.2f}", t["detail"]]
                          for t in fig.get("tests") or []]) + [""]


def tui_section(folder: Path, step: dict, fig: dict) -> list[str]:
    lines = ["## The app under tmux", "",
             f"Run finished: {fig.get('run_finished')}; comparison table on screen: {fig.get('comparison_table')}; "
             f"tokens/s {fmt_tokens(fig.get('tokens_per_s'))}, MFU {fmt_pct(fig.get('mfu'))}.", ""]
    screen = read_text(folder / f"{step.get('id')}.out")
    if screen:
        shown = screen.rstrip("\n").splitlines()[:SCREEN_LINES]
        lines += ["```text", *(line.rstrip() for line in shown), "```", ""]
    return lines


def tracker_section(fig: dict) -> list[str]:
    if not fig:
        return []
    return ["## Own-loop Tracker", "",
            f"{cell(fig.get('model'))} on {cell(fig.get('device'))}: {fig.get('params')} parameters, "
            f"{fig.get('steps')} steps of {fig.get('tokens_per_step')} tokens; Tracker tokens/s "
            f"{fmt_tokens(fig.get('tokens_per_s'))}, MFU {fmt_pct(num(fig.get('mfu')))}, step "
            f"{fmt_seconds(num(fig.get('step_time_s')))}; the whole loop timed outside: "
            f"{fmt_tokens(fig.get('loop_tokens_per_s'))}; events {fig.get('events')}.", ""]


def generic_section(title: str, fig: dict) -> list[str]:
    if not fig:
        return []
    return [f"## {title}", "", *table(["key", "value"], [[k, v] for k, v in fig.items()]), ""]


def env_section(fig: dict) -> list[str]:
    if not fig:
        return []
    packages = ", ".join(f"{k} {v}" for k, v in (fig.get("packages") or {}).items())
    return ["## Environment", "",
            f"Python {fig.get('python')}, torch {fig.get('torch')} (CUDA {fig.get('torch_cuda')}), "
            f"CUDA available: {fig.get('cuda_available')}, device: {cell(fig.get('device_name'))}; {packages}.", ""]


# ----------------------------------------------------------------- the whole report

def load_steps(folder: Path) -> list[dict]:
    steps = []
    for path in sorted(folder.glob("[0-9][0-9]-*.step.json")):
        step = read_json(path)
        if isinstance(step, dict):
            steps.append(step)
        else:
            steps.append({"id": path.name.removesuffix(".step.json"), "title": "?", "status": "failed",
                          "reason": f"{path.name} is not readable JSON"})
    return steps


def build(folder: Path) -> tuple[str, dict]:
    run = read_json(folder / "run.json")
    run = run if isinstance(run, dict) else {}
    steps = load_steps(folder)
    figures = {s.get("name") or s.get("id"): figures_for(folder, s) for s in steps}
    counts = {st: sum(s.get("status") == st for s in steps) for st in ("passed", "failed", "skipped")}
    mode = run.get("mode", "unknown")
    total = sum(num(s.get("seconds")) or 0.0 for s in steps)
    lines = ["# mfutop GPU acceptance run", ""]
    if mode == "dry-run":
        lines += ["**Dry run**: the CPU, gpt-tiny, tiny step counts, no torch.compile. These are CPU figures "
                  "that prove the script runs; they say nothing about a GPU.", ""]
    lines += [f"Mode {mode}, device `{run.get('device')}`, model `{run.get('model')}`, host {cell(run.get('host'))}, "
              f"budget {run.get('budget_s')} s; steps took {total:.1f} s in all: "
              f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped.", ""]
    lines += steps_section(steps)
    by_name = {s.get("name"): s for s in steps}
    for name, fig in figures.items():
        step = by_name.get(name, {})
        if name == "env":
            lines += env_section(fig)
        elif name == "gpus" and fig:
            lines += gpus_section(fig)
        elif name == "pytest-gpu" and fig:
            lines += pytest_section(fig)
        elif name == "calibrate":
            lines += generic_section("Device profile (`mfutop calibrate --json`)", fig)
        elif name == "profile" and step.get("status") != "skipped":
            lines += profile_section("Profile: auto batch", fig)
        elif name == "profile-memory-limit" and step.get("status") != "skipped":
            lines += profile_section("Profile: auto batch under --memory-limit", fig)
        elif name == "ladder" and step.get("status") != "skipped":
            lines += ladder_section(fig)
        elif name == "tui" and step.get("status") != "skipped":
            lines += tui_section(folder, step, fig)
        elif name == "tracker":
            lines += tracker_section(fig)
    summary = {"run": run, "counts": counts, "steps": steps, "figures": figures}
    return "\n".join(lines).rstrip() + "\n", summary


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: gpu_acceptance_report.py DIR", file=sys.stderr)
        return 2
    folder = Path(argv[0])
    if not folder.is_dir():
        print(f"gpu_acceptance_report.py: {folder} is not a folder", file=sys.stderr)
        return 2
    text, summary = build(folder)
    (folder / "report.md").write_text(text)
    (folder / "summary.json").write_text(json.dumps(finite_tree(summary), indent=1, default=str, allow_nan=False) + "\n")
    print(folder / "report.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
