"""How soon the app shows numbers: from starting `mfutop` (a live default run on this machine, its real
child process) to (a) the hardware panel showing a device and (b) the first measured tokens/s in the
comparison table.

Targets (reported, not asserted): (a) <= 0.5 s, (b) <= 2 s. Each launch is a fresh interpreter (cold
imports, as a user's `mfutop`) that drives the real app in-process with Textual's ``run_test()``,
polling the widgets every 10 ms; the run is cancelled once (b) is reached. Time zero is the app's start
(before the app's imports: the run's child is started first, as `mfutop` does, then Textual loads);
"from exec" adds the interpreter's start.
Also shown: when the run's own DeviceDetected arrived (what the panel waited for before it detected
locally). Median of ``--runs`` launches; the load average before and after, and each launch's.
``--wait-idle S`` waits up to S seconds before each launch for a second in which the CPUs are >= 90 %
idle (on a shared machine a neighbour's job can triple a small CPU's step time); the idle share found is
printed with the launch.

    python benchmarks/bench_app_startup.py [--runs 5] [--device auto] [--timeout 120] [--wait-idle 0]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

TARGETS_S = {"panel": 0.5, "tokens": 2.0}
POLL_S = 0.01
FIGURES = (  # (key, what it is)
    ("ready", "    app ready (first screen drawn)"),
    ("panel", "(a) hardware panel shows a device"),
    ("panel_run", "    ... from the run's own DeviceDetected"),
    ("tokens", "(b) first measured tokens/s on screen"),
)


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def _cpu_idle(seconds: float = 1.0) -> float:
    """The share of CPU time idle over ``seconds`` (/proc/stat; 1.0 where it cannot be read)."""
    def read() -> tuple[int, int]:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        return values[3] + values[4], sum(values)
    try:
        idle0, total0 = read()
        time.sleep(seconds)
        idle1, total1 = read()
    except OSError:
        return 1.0
    return (idle1 - idle0) / max(1, total1 - total0)


def wait_for_idle(limit_s: float, share: float = 0.9) -> float:
    """Up to ``limit_s`` seconds until one second is ``share`` idle; the last idle share seen."""
    deadline = time.monotonic() + limit_s
    idle = 1.0
    while limit_s > 0:
        idle = _cpu_idle()
        if idle >= share or time.monotonic() >= deadline:
            break
    return idle


def one_launch(device: str, timeout_s: float) -> dict:
    """One app start in this process; monotonic stamps (comparable across processes on Linux)."""
    import asyncio

    imported_from = time.monotonic()
    from profiler.run_config import RunConfig
    from tui.cmd_app import app_with_run_started

    app = app_with_run_started(RunConfig(device=device))  # as `mfutop`: the run's child starts first
    from textual.widgets.data_table import CellDoesNotExist

    stamps: dict[str, float] = {"imports_s": time.monotonic() - imported_from, "start": imported_from}

    found: dict[str, object] = {}

    def widget(selector: str):
        """The widget once found, queried again only if it was replaced: a query walks the whole DOM,
        and 100 walks a second cost the app more CPU than its own redraws while the run steps."""
        hit = found.get(selector)
        if hit is None or not hit.is_attached:
            hits = app.query(selector)
            hit = found[selector] = hits.first() if hits else None
        return hit

    def tokens_shown() -> bool:
        table = widget("#comparison")
        try:
            text = table.cell_text("tokens_per_s", "measured") if table is not None else ""
        except CellDoesNotExist:  # the table is not built yet
            return False
        return any(ch.isdigit() for ch in text)

    async def drive() -> None:
        async with app.run_test(size=(120, 40)):
            stamps["ready"] = time.monotonic()
            deadline = stamps["start"] + timeout_s
            while "tokens" not in stamps and time.monotonic() < deadline:
                now = time.monotonic()
                panel = widget("#hardware")
                shown = panel.showing if panel is not None else None
                if shown is not None and "panel" not in stamps:
                    stamps["panel"], stamps["panel_early"] = now, panel.showing_early
                if app.state.device is not None and "panel_run" not in stamps:
                    stamps["panel_run"] = now
                if tokens_shown():
                    stamps["tokens"] = now
                if app.state.failure is not None:
                    stamps["failed"] = app.state.failure.message  # type: ignore[assignment]
                    break
                await asyncio.sleep(POLL_S)  # not pilot.pause: it messages every widget, loading the app
            app.action_cancel()
            await app.wait_for_run()

    asyncio.run(drive())
    return stamps


def launch(device: str, timeout_s: float) -> dict:
    """A fresh interpreter running ``one_launch``: seconds from the app's start and from exec."""
    exec_at = time.monotonic()
    done = subprocess.run([sys.executable, __file__, "--one", "--device", device, "--timeout", str(timeout_s)],
                          check=False, capture_output=True, text=True, timeout=timeout_s + 60)
    if done.returncode != 0:
        raise SystemExit(f"launch failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    stamps = json.loads(done.stdout.strip().splitlines()[-1])
    if "failed" in stamps:
        raise SystemExit(f"the run failed: {stamps['failed']}")
    out = {"imports_s": stamps["imports_s"], "panel_early": stamps.get("panel_early")}
    for key, _ in FIGURES:
        if key in stamps:
            out[key] = stamps[key] - stamps["start"]
            out[key + "_from_exec"] = stamps[key] - exec_at
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--timeout", type=float, default=120.0, help="per launch, seconds")
    parser.add_argument("--wait-idle", type=float, default=0.0,
                        help="before each launch, wait up to this many seconds for idle CPUs")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a single launch, JSON out
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_launch(args.device, args.timeout)))
        return
    print(f"load average before: {_load()}  ({os.cpu_count()} CPUs)")
    results = []
    for i in range(args.runs):
        idle = wait_for_idle(args.wait_idle)
        load = _load()
        r = launch(args.device, args.timeout)
        results.append(r)
        cells = "  ".join(f"{key} {r[key]:.3f}" if key in r else f"{key} -" for key, _ in FIGURES)
        waited = f", idle {idle:.0%}" if args.wait_idle > 0 else ""
        print(f"launch {i + 1}: {cells}  (imports {r['imports_s']:.3f}, early panel: {r['panel_early']}; "
              f"load {load}{waited})")
    print(f"\nmedian of {args.runs} launches   from app start   from exec   target")
    for key, label in FIGURES:
        values = [r[key] for r in results if key in r]
        execs = [r[key + "_from_exec"] for r in results if key in r]
        if not values:
            print(f"{label:<42} not reached")
            continue
        target = f"<= {TARGETS_S[key]:.1f} s" if key in TARGETS_S else ""
        print(f"{label:<42} {statistics.median(values):8.3f} s   {statistics.median(execs):8.3f} s   {target}")
    print(f"\nload average after:  {_load()}")


if __name__ == "__main__":
    main()
