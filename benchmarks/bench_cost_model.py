"""Accuracy of the measured cost model on the CPU: the op graph timed by a device profile vs real steps.

One device profile is measured first (``profiler.calibrate.measure_profile``,
never the models' own shapes): ``--calibrations`` of them back to back, folded
as ``mfutop calibrate --remeasure`` folds them (``profiler.profile_merge``), the
first one's own prediction error printed beside ("1 cal."); then for each config — gpt-tiny, gpt-mini,
gpt-small, llama-tiny x two batch sizes x fp32 / bf16-mixed x SDPA / explicit —
the profiled GPT trains (``profiler.step.TrainingStep``): warm-up steps, then
timed steps (``profiler.step_timer.StepTimer``) in interleaved rounds over all configs (the median
of every round's steps), then, in the first round, the measured per-category breakdown
(``step_breakdown.measure_breakdown``: one more step's ops recorded and replayed one by one). Printed per
config: predicted (profile) and measured step time and their error, the
datasheet prediction's error beside it, the load average, and "slow": a fixed
cache-resident workload's time before the config over its time at calibration
(a shared host's neighbours slow small steps by up to 40 % for minutes), and "rounds": the slowest
round's median step over the fastest's (the measurement's own repeatability; "*" when the prediction
lies between them). Then the
extrapolation cases (batch x4, and larger shapes than any grid point), and
per category the predicted vs measured time for categories that take >= 10 %
of the step.

    python benchmarks/bench_cost_model.py [--steps 5] [--rounds 3] [--calibrations 1] [--quick] [--json out.json]

Targets (issue 17, idle machine): median |error| <= 5 %, max <= 12 %;
extrapolation max <= 15 %; categories >= 10 % of the step within 20 %.
Threads: torch's default unless OMP_NUM_THREADS is set (printed).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

from estimator.predict import predict
from estimator.presets import get_model
from estimator.setup import TrainSetup

BATCHES = {"gpt-tiny": ((8, 128), (32, 128)), "gpt-mini": ((4, 256), (8, 256)),
           "gpt-small": ((2, 256), (8, 256)), "llama-tiny": ((4, 256), (8, 256))}
EXTRAPOLATION = (("gpt-mini", 32, 256), ("gpt-small", 16, 256), ("llama-tiny", 32, 256))
PRECISIONS = ("fp32", "bf16-mixed")
MIN_SHARE = 0.10


def _load() -> float:
    return os.getloadavg()[0]


def _err(p: float, m: float) -> float:
    return (p - m) / m


def speed_probe() -> float:
    """Seconds of a fixed cache-resident workload (a chain of 256 x 256 fp32 matmuls): the machine's speed
    now. A neighbour on a shared host slows small, cache-resident steps most; printed beside each config as
    its ratio to the probe at calibration, so a miss can be told from a slow spell."""
    import torch

    a = torch.randn(256, 256)
    times = []
    for _ in range(5):
        start = time.perf_counter()
        x = a
        for _ in range(40):
            x = torch.mm(x, a).clamp_(-1, 1)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_case(profile, name: str, batch: int, seq: int, precision: str, flash: bool, steps: int,
             warmup: int, breakdown: bool, first=None) -> dict:
    """One config: its predictions (from ``profile``, and from ``first``, the first calibration alone, when
    ``profile`` folds several), ``steps`` timed steps after ``warmup`` and, when asked, the measured
    per-category breakdown of one more step."""
    from profiler.detect import detect_device
    from profiler.step import StepOptions, TrainingStep
    from profiler.op_timer import LIVE_METHOD  # the method a breakdown too large to record and replay reports
    from profiler.step_breakdown import measure_breakdown
    from profiler.step_timer import StepTimer

    cfg = get_model(name)
    setup = TrainSetup(batch_size=batch, seq_len=seq, precision=precision, flash_attention=flash)
    spec = detect_device("cpu", precision, None).spec
    pred = predict(cfg, spec, setup, check_fit=False, device_profile=profile)["step"]
    single = predict(cfg, spec, setup, check_fit=False, device_profile=first)["step"] if first is not None else pred
    trainer = TrainingStep(cfg, "cpu", StepOptions(precision=precision, flash_attention=flash))
    x, y = trainer.make_batch(batch, seq)
    load, probe = _load(), speed_probe()
    for _ in range(warmup):
        trainer.step(x, y)
    timer, times = StepTimer("cpu"), []
    for _ in range(steps):
        timer.start()
        trainer.step(x, y)
        times.append(timer.stop())
    split = measure_breakdown(trainer, x, y, reference_s=statistics.median(times)) if breakdown else None
    trainer.close()
    return {"model": name, "batch_size": batch, "seq_len": seq, "precision": precision,
            "attention": "sdpa" if flash else "explicit", "load": load, "probe_s": [probe],
            "predicted_s": pred["time_s"], "predicted_single_s": single["time_s"],
            "datasheet_s": pred["spec"]["time_s"], "times": times,
            "extrapolated": pred.get("extrapolated", []), "predicted_categories": pred["categories"],
            "measured_categories": split["categories"] if split else None,
            "breakdown_live": bool(split) and split.get("method") == LIVE_METHOD}


def run_rounds(profile, cases: list[tuple], rounds: int, steps: int, warmup: int, first=None) -> list[dict]:
    """Every case once per round, the rounds one after another, so a slow spell of a shared machine
    lands on every case a little instead of on a few a lot; measured = the median of all timed steps."""
    rows: list[dict] = []
    for r in range(rounds):
        for i, case in enumerate(cases):
            got = run_case(profile, *case, steps, warmup, breakdown=r == 0, first=first)
            got["round_medians"] = [statistics.median(got["times"])]
            if r == 0:
                rows.append(got)
            else:
                rows[i]["round_medians"] += got["round_medians"]
                rows[i]["times"] += got["times"]
                rows[i]["probe_s"] += got["probe_s"]
                rows[i]["load"] = max(rows[i]["load"], got["load"])
            print(f"round {r + 1}/{rounds}: {case}", file=sys.stderr)
    for row in rows:
        row["measured_s"], row["measured_min_s"] = statistics.median(row["times"]), min(row["times"])
        low, high = min(row["round_medians"]), max(row["round_medians"])
        row["round_spread"] = high / low - 1  # the measurement's own repeatability: the noise floor
        row["in_round_range"] = low <= row["predicted_s"] <= high
    return rows


def print_rows(title: str, rows: list[dict]) -> list[float]:
    print(f"\n{title}")
    print(f"{'model':10} {'B x T':>7} {'precision':>10} {'attn':>8} {'load':>4} | {'pred':>8} {'meas':>8} "
          f"{'err':>7} | {'1 cal.':>7} | {'spec':>8} {'err':>7} | {'slow':>5} {'rounds':>6} | extrapolated")
    errs = []
    for r in rows:
        e, ds = _err(r["predicted_s"], r["measured_s"]), _err(r["datasheet_s"], r["measured_s"])
        one = _err(r["predicted_single_s"], r["measured_s"])
        errs.append(abs(e))
        print(f"{r['model']:10} {r['batch_size']:>3}x{r['seq_len']:<3} {r['precision']:>10} {r['attention']:>8} "
              f"{r['load']:>4.1f} | {r['predicted_s'] * 1e3:>6.1f}ms {r['measured_s'] * 1e3:>6.1f}ms {e:>+7.1%} | "
              f"{one:>+7.1%} | {r['datasheet_s'] * 1e3:>6.1f}ms {ds:>+7.1%} | {r['slowdown']:>4.2f}x "
              f"{r['round_spread']:>6.0%}{'*' if r['in_round_range'] else ' '}| "
              f"{','.join(r['extrapolated']) or '-'}")
    if errs:
        spec = [abs(_err(r["datasheet_s"], r["measured_s"])) for r in rows]
        ones = [abs(_err(r["predicted_single_s"], r["measured_s"])) for r in rows]
        signed = statistics.mean(_err(r["predicted_s"], r["measured_s"]) for r in rows)
        print(f"|error| profile: median {statistics.median(errs):.1%}, max {max(errs):.1%} (mean signed "
              f"{signed:+.1%});  its first calibration alone: median {statistics.median(ones):.1%}, max "
              f"{max(ones):.1%};  datasheet: median {statistics.median(spec):.1%}, max {max(spec):.1%}")
        spreads = [r["round_spread"] for r in rows]
        print(f"the measurement's own repeatability (rounds: slowest round's median step over the fastest's, "
              f"less 1): median {statistics.median(spreads):.1%}, max {max(spreads):.1%}; the prediction lies "
              f"between the fastest and slowest round (*) in {sum(r['in_round_range'] for r in rows)}/{len(rows)}")
    return errs


def print_categories(rows: list[dict]) -> None:
    from profiler.step_breakdown import category_errors

    print(f"\nper category (categories >= {MIN_SHARE:.0%} of the measured step): predicted / measured ms (error)")
    worst: dict[str, float] = {}
    for r in rows:
        cats = category_errors(r["predicted_categories"], r["measured_categories"], MIN_SHARE)
        cells = []
        for c, v in cats.items():
            cells.append(f"{c} {v['predicted_s'] * 1e3:.1f}/{v['measured_s'] * 1e3:.1f} "
                         f"({v['error']:+.0%}, {v['share']:.0%} of step)" if v["error"] is not None else c)
            if v["error"] is not None:
                worst[c] = max(worst.get(c, 0.0), abs(v["error"]))
        live = " [timed live: too large to record and replay]" if r.get("breakdown_live") else ""
        print(f"  {r['model']:10} {r['batch_size']:>3}x{r['seq_len']:<3} {r['precision']:>10} {r['attention']:>8}: "
              + "; ".join(cells) + live)
    print("worst |error| per category: " + ", ".join(f"{c} {e:.0%}" for c, e in worst.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per config")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds over all configs")
    parser.add_argument("--quick", action="store_true", help="one batch size per model, SDPA only")
    parser.add_argument("--calibrations", type=int, default=1,
                        help="calibrations folded into the profile (profiler.profile_merge; 1: a single one)")
    parser.add_argument("--json", help="also write every case to this file")
    args = parser.parse_args()

    import torch

    from profiler.calibrate import measure_profile
    from profiler.profile_merge import merge

    print(f"uptime before: load average {os.getloadavg()}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})")
    calibration_probe = speed_probe()
    calibrations = []
    for _ in range(max(args.calibrations, 1)):
        start = time.perf_counter()
        calibrations.append(measure_profile("cpu"))
        c = calibrations[-1]
        print(f"device profile: {c.measure_seconds:.2f} s to measure ({time.perf_counter() - start:.2f} s with "
              f"setup), load average {c.load_average}, busy {c.busy}; {c.notes[1]}")
    first, profile = calibrations[0], calibrations[0]
    for c in calibrations[1:]:
        profile = merge(profile, c)
    grid = [(name, batch, seq, precision, flash) for name, shapes in BATCHES.items()
            for batch, seq in (shapes[-1:] if args.quick else shapes) for precision in PRECISIONS
            for flash in ((True,) if args.quick else (True, False))]
    extrapolation = [(name, batch, seq, precision, True) for name, batch, seq in EXTRAPOLATION
                     for precision in PRECISIONS]
    rows = run_rounds(profile, grid, args.rounds, args.steps, args.warmup, first)
    extra = run_rounds(profile, extrapolation, args.rounds, args.steps, args.warmup, first)
    for row in rows + extra:
        row["slowdown"] = statistics.median(row["probe_s"]) / calibration_probe
    print_rows("grid configs (profile measured once; no model shape in its grid)", rows)
    print_rows("extrapolation: batch x4 and more tokens than the grid's largest points", extra)
    print_categories(rows + extra)
    print(f"\nuptime after: load average {os.getloadavg()}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"profile": profile.to_dict(), "cases": rows, "extrapolation": extra}, fh, indent=1)


if __name__ == "__main__":
    main()
