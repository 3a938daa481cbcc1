"""Cost of the event boundary: validating a recorded run's lines, and refusing huge ones.

Goals (median of ``--runs``):
- a typical event line (a step sample, a summary) validates in ≤ 50 µs, so a 10,000-step
  replay spends < 0.5 s in validation;
- a line just over ``MAX_LINE_CHARS`` is refused in ≤ 1 ms (its length is checked, it is not parsed);
- a 50 MB line is read past by ``bounded_lines`` in ≤ 1 s with memory bounded by the cap.

    python benchmarks/bench_event_validation.py [--runs 5]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

from fixtures.fake_run import fake_run_events

from profiler.event_validation import MAX_LINE_CHARS, bounded_lines, parse_event_line

GOALS_S = {"typical line": 50e-6, "over-cap line": 1e-3, "50 MB line": 1.0}


def _time(fn, repeat: int) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    lines = [json.dumps(e.to_dict()) for e in fake_run_events()]
    over = '{"event":"log","level":"info","text":"' + "x" * MAX_LINE_CHARS + '"}'
    huge = "a\n" + "b" * 50_000_000 + "\nc\n"
    cases = {
        "typical line": lambda: [parse_event_line(line) for line in lines],
        "over-cap line": lambda: parse_event_line(over),
        "50 MB line": lambda: list(bounded_lines(io.StringIO(huge))),
    }
    per_call = {"typical line": len(lines), "over-cap line": 1, "50 MB line": 1}
    repeats = {"typical line": 200, "over-cap line": 200, "50 MB line": 1}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average (1 min) {load:.2f} on {os.cpu_count()} CPUs")
    for name, fn in cases.items():
        runs = [_time(fn, repeats[name]) / per_call[name] for _ in range(args.runs)]
        median = statistics.median(runs)
        verdict = "ok" if median <= GOALS_S[name] else "SLOW"
        print(f"{name:<14} {median * 1e6:>12,.1f} µs  (goal ≤ {GOALS_S[name] * 1e6:,.0f} µs)  {verdict}")


if __name__ == "__main__":
    main()
