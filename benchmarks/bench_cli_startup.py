"""Wall-clock start-up of the CLI: `mfutop --help` and `mfutop estimate --model gpt2 --json`.

Goal: ≤ 0.3 s each (median). Each command runs in a fresh process, like a
user's shell. ``--importtime`` also prints the slowest imports of each command
(``python -X importtime``) to show where the time goes.

    python benchmarks/bench_cli_startup.py [--runs 7] [--importtime]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

GOAL_S = 0.3
COMMANDS = {
    "mfutop --help": ["--help"],
    "mfutop estimate --model gpt2 --json": ["estimate", "--model", "gpt2", "--json"],
}


def _mfutop() -> list[str]:
    """The console script beside this interpreter, else `python -m tui`."""
    script = Path(sys.executable).with_name("mfutop")
    if script.exists():
        return [str(script)]
    found = shutil.which("mfutop")
    return [found] if found else [sys.executable, "-m", "tui"]


def time_command(argv: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        times.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return times


def slowest_imports(args: list[str], top: int = 12) -> list[tuple[int, str]]:
    """(cumulative µs, module) of the slowest top-level imports of `python -X importtime -m tui ARGS`."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "tui", *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "0"})
    rows = []
    for line in done.stderr.splitlines():  # "import time:  self_us | cumulative_us | <indent>module"
        parts = line.split("|")
        if not line.startswith("import time:") or len(parts) != 3 or "cumulative" in parts[1]:
            continue
        name = parts[2].rstrip()
        depth = (len(name) - len(name.lstrip())) // 2
        if depth <= 1:  # top-level imports and their direct children
            rows.append((int(parts[1]), name.strip()))
    return sorted(rows, reverse=True)[:top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--importtime", action="store_true", help="also list the slowest imports")
    opts = parser.parse_args()
    base = _mfutop()
    time_command(base + ["--help"], 1)  # warm the bytecode cache
    print(f"{'command':<40} {'median':>8} {'min':>8} {'max':>8}  goal {GOAL_S:.1f} s  ({opts.runs} runs, {base[0]})")
    for label, args in COMMANDS.items():
        times = time_command(base + args, opts.runs)
        median = statistics.median(times)
        verdict = "ok" if median <= GOAL_S else "SLOW"
        print(f"{label:<40} {median:8.3f} {min(times):8.3f} {max(times):8.3f}  {verdict}")
    if opts.importtime:
        for label, args in COMMANDS.items():
            print(f"\nslowest imports of {label} (cumulative ms):")
            for micros, name in slowest_imports(args):
                print(f"  {micros / 1000:8.1f}  {name}")


if __name__ == "__main__":
    main()
