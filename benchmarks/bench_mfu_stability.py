"""The same default CPU run several times in a row: does its MFU hold, and when it moves, why?

Each run is a fresh `mfutop profile --json` (the app's default: the device's default model, the
cached CPU peak). Reported per run: the median step, MFU, the peak MFU divided by (it must not
move: a cached figure), the within-run spread, the CPU share other processes used during its
timed steps (``measured.others_cpu_share``, from /proc), and a *speed canary* measured just before
the run in this process: fp32 matmuls of a fixed size, GFLOP/s, with the run's thread count.

Target (issue 16, reported, not asserted): the runs' MFU within 10 % of each other on an idle
machine. When the canary moves with the MFU while others' share stays ~0, the machine itself
changed speed (a shared host), which no statistic inside one run can undo; "MFU per canary"
shows how much of the spread that explains.

    python benchmarks/bench_mfu_stability.py [--runs 5] [--pause 2] [--canary-n 768]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

TARGET_SPREAD = 0.10


def spread(values: list[float]) -> float:
    """max / min - 1: how far apart the runs are."""
    return max(values) / min(values) - 1 if values and min(values) > 0 else float("nan")


def canary_gflops(n: int, seconds: float = 0.3) -> float:
    """The best of repeated n^3 fp32 matmuls over ``seconds``, in GFLOP/s (this machine's speed now)."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def one_run() -> dict:
    done = subprocess.run([sys.executable, "-m", "tui", "profile", "--json"], capture_output=True, text=True,
                          check=False, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"mfutop profile failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--pause", type=float, default=2.0, help="seconds idle between runs")
    parser.add_argument("--canary-n", type=int, default=768)
    args = parser.parse_args()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}  ({os.cpu_count()} CPUs)")
    rows = []
    for i in range(args.runs):
        time.sleep(args.pause)
        canary = canary_gflops(args.canary_n)
        summary = one_run()
        m = summary["measured"]
        rows.append({"step_ms": m["step_time_s"] * 1e3, "mfu": m["mfu"], "peak": m["peak_flops"],
                     "spread": m["step_time_relative_spread"], "others": m.get("others_cpu_share"),
                     "steps": m["steps"], "canary": canary, "model": summary["prediction"]["model"]["name"]})
        r = rows[-1]
        others = "n/a" if r["others"] is None else f"{r['others']:.1%}"
        print(f"run {i + 1}: {r['model']} step {r['step_ms']:.2f} ms  MFU {r['mfu']:.2%}  "
              f"peak {r['peak'] / 1e9:.1f} GFLOP/s  within-run spread {r['spread']:.1%} ({r['steps']} steps)  "
              f"others {others}  canary {canary:.1f} GFLOP/s")
    mfus = [r["mfu"] for r in rows]
    per_canary = [r["mfu"] / r["canary"] for r in rows]
    peaks = {r["peak"] for r in rows}
    print(f"\nMFU: median {statistics.median(mfus):.2%}, spread {spread(mfus):.1%} "
          f"(target <= {TARGET_SPREAD:.0%}); the same peak in every run: {len(peaks) == 1}")
    print(f"canary: spread {spread([r['canary'] for r in rows]):.1%}; MFU per canary: spread {spread(per_canary):.1%}")
    best3 = min(spread(mfus[i:i + 3]) for i in range(max(1, len(mfus) - 2)))
    print(f"three runs in a row, the closest: {best3:.1%}")
    print(f"load average after:  {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
