"""Predicted vs published: mfutop's estimate against measurements others have published.

Every case in ``benchmarks/published_cases.json`` is a published figure — a paper's table,
a model card, a benchmark README — with its source, and the exact ``mfutop estimate``
arguments that describe that run.  This script runs each one through the CLI (``--json``:
the public behaviour, so it measures what a user would see), reads one figure from the
answer, and prints predicted, published and the relative error
(predicted − published) / published, then the share of cases inside the tolerance of
their kind: 15 % for time and throughput, 10 % for memory, exact for counts.

It reports; it does not tune.  The cases' arguments were fixed from the papers'
descriptions (where a paper leaves a setting open, the case's note says what was
assumed), never adjusted towards the published answer.  A case the estimator cannot
answer (e.g. "does not fit") is counted as a miss and its one-line error is printed.

    python benchmarks/bench_published.py                 # the table and the summary
    python benchmarks/bench_published.py --group gpt-fast --json out.json
    python benchmarks/bench_published.py --compare benchmarks/published_before.json   # add a 'before' column

Pure Python on the estimator side: a few seconds on one core (one CLI process per case;
``--jobs`` runs several at once).  Print ``uptime`` beside any timing you quote.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

CASES_FILE = Path(__file__).with_name("published_cases.json")
KINDS = ("throughput", "time", "memory", "count")


def _mfutop() -> list[str]:
    """The installed console script next to this interpreter, else on PATH, else the module."""
    beside = Path(sys.executable).with_name("mfutop")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("mfutop")
    return [found] if found else [sys.executable, "-c", "from tui.cli import run; run()"]


def _git_head() -> str | None:
    """The commit the estimate came from (uncommitted changes not included), for a --compare baseline."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _metric(answer: dict, metric: str) -> float | int | None:
    """One figure from ``mfutop estimate --json``: the keys a user reads, nothing recomputed
    except the unit change TFLOP/s = utilisation x the printed peak."""
    step, hw = answer.get("step") or {}, answer.get("hardware") or {}
    if metric == "hfu_tflops_per_gpu":
        return None if step.get("hfu") is None else step["hfu"] * hw["peak_flops"] / 1e12
    if metric == "model_tflops_per_gpu":
        return None if step.get("achieved_flops_per_gpu") is None else step["achieved_flops_per_gpu"] / 1e12
    if metric == "mfu":
        return step.get("mfu")
    if metric == "step_time_s":
        return step.get("time_s")
    if metric == "tokens_per_s_per_gpu":
        return step.get("tokens_per_s_per_gpu")
    if metric == "gpu_hours":
        return (answer.get("train") or {}).get("gpu_hours")
    if metric == "decode_tokens_per_s":
        return (answer.get("decode") or {}).get("tokens_per_s")
    if metric == "activation_bytes_per_layer":
        return ((answer.get("memory") or {}).get("breakdown") or {}).get("activations/per_layer")
    if metric == "params_total":
        return (answer.get("params") or {}).get("total")
    raise ValueError(f"unknown metric {metric!r}")


def run_case(case: dict, command: list[str]) -> dict:
    """Run one case; returns the case's id, kind, published and predicted figures, error and status."""
    argv = [*command, "estimate", *case["args"], "--json"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    out = {"id": case["id"], "group": case["group"], "kind": case["kind"], "metric": case["metric"],
           "units": case["units"], "published": case["published"], "predicted": None, "error": None,
           "status": "ok", "exit_code": proc.returncode}
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if ln.strip()]
        out["status"] = lines[-1] if lines else f"exit {proc.returncode}"
        return out
    try:
        answer = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        out["status"] = f"unreadable JSON: {exc}"
        return out
    predicted = _metric(answer, case["metric"])
    if (answer.get("memory") or {}).get("fits") is False:  # an estimate that answers although it does not fit
        out["status"] = "fits: false"
    if predicted is None:
        out["status"] = f"{case['metric']} absent from the answer"
        return out
    out["predicted"] = predicted
    out["error"] = (predicted - case["published"]) / case["published"]
    return out


def within(result: dict, tolerance: dict) -> bool:
    if result["predicted"] is None:
        return False
    if result["kind"] == "count":
        return result["predicted"] == result["published"]
    return abs(result["error"]) <= tolerance[result["kind"]]


def _fmt(value: float | int | None) -> str:
    if value is None:
        return "–"
    if isinstance(value, int) or float(value).is_integer() and abs(value) >= 1e4:
        return f"{int(value):,}"
    magnitude = abs(value)
    return f"{value:.3g}" if magnitude < 1 else f"{value:,.4g}" if magnitude < 1e4 else f"{value:,.0f}"


def print_table(results: list[dict], tolerance: dict, before: dict[str, dict] | None = None) -> None:
    head = f"{'case':34} {'metric':27} {'published':>15} {'predicted':>15} {'error':>8}"
    head += f" {'before':>8}" if before is not None else ""
    print(head + "  ok")
    group = None
    for r in results:
        if r["group"] != group:
            group = r["group"]
            print(f"-- {group}")
        err = "–" if r["error"] is None else f"{r['error']:+.1%}"
        line = f"{r['id']:34} {r['metric']:27} {_fmt(r['published']):>15} {_fmt(r['predicted']):>15} {err:>8}"
        if before is not None:
            old = before.get(r["id"], {}).get("error")
            line += f" {'–' if old is None else f'{old:+.1%}':>8}"
        status = "" if r["status"] == "ok" else f"  [{r['status']}]"
        print(line + ("  yes" if within(r, tolerance) else "  no") + status)


def summary(results: list[dict], tolerance: dict) -> dict:
    """Per kind: cases, answered, within tolerance, share, and the median |error|."""
    out = {}
    for kind in KINDS:
        rows = [r for r in results if r["kind"] == kind]
        if not rows:
            continue
        errors = sorted(abs(r["error"]) for r in rows if r["error"] is not None)
        hits = sum(within(r, tolerance) for r in rows)
        out[kind] = {"cases": len(rows), "answered": len(errors), "within": hits, "share": hits / len(rows),
                     "tolerance": tolerance[kind], "median_abs_error": errors[len(errors) // 2] if errors else None}
    return out


def print_summary(stats: dict) -> None:
    print()
    for kind, s in stats.items():
        tol = "exact" if kind == "count" else f"within {s['tolerance']:.0%}"
        med = "–" if s["median_abs_error"] is None else f"{s['median_abs_error']:.1%}"
        print(f"{kind:11} {s['within']:>3}/{s['cases']:<3} {tol:11} ({s['share']:.0%}; answered {s['answered']}, "
              f"median |error| {med})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=Path, default=CASES_FILE)
    parser.add_argument("--group", help="only cases whose group or id contains this text (case-insensitive)")
    parser.add_argument("--jobs", type=int, default=2, help="CLI processes at once (default 2)")
    parser.add_argument("--json", type=Path, help="write the results and summary here")
    parser.add_argument("--compare", type=Path, help="a previous --json output: print its error beside each case")
    args = parser.parse_args(argv)

    data = json.loads(args.cases.read_text())
    tolerance = data["tolerance"]
    cases = data["cases"]
    if args.group:
        needle = args.group.lower()
        cases = [c for c in cases if needle in c["group"].lower() or needle in c["id"].lower()]
    command = _mfutop()
    load = os.getloadavg()[0]
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(pool.map(lambda c: run_case(c, command), cases))
    wall = time.perf_counter() - start
    before = None
    if args.compare:
        before = {r["id"]: r for r in json.loads(args.compare.read_text())["results"]}
    print_table(results, tolerance, before)
    stats = summary(results, tolerance)
    print_summary(stats)
    print(f"\n{len(results)} cases in {wall:.1f} s, {args.jobs} at once; 1-min load average before: {load:.2f}")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "summary": stats, "load_before": load, "wall_s": wall,
                                         "git_head": _git_head()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
