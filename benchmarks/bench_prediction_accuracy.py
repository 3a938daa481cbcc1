"""Predicted vs measured step time and peak memory on the CPU, for the tiny GPT presets.

Each case is a real ``mfutop profile --device cpu`` run (``profiler.run.run_profile``:
warm-up, one tracked memory step, timed steps) at a fixed batch; the prediction is
the one that run emitted (``estimator.predict.predict`` on the detected CPU, whose
matmul peak is measured). Printed per case: the predicted and measured step time
(median of the timed steps, and their minimum — the quiet-machine figure), the
predicted and measured peak memory (live tensor bytes), and the relative errors
(predicted − measured) / measured. The 1-minute load average before each run is
printed too: this machine is shared, and a busy neighbour slows every step.

    python benchmarks/bench_prediction_accuracy.py [--quick] [--steps 5] [--json out.json]
    python benchmarks/bench_prediction_accuracy.py --predict-only out.json   # re-predict saved runs
    python benchmarks/bench_prediction_accuracy.py --overhead                # per-op CPU dispatch cost

``--predict-only`` needs no torch: it re-runs only the estimator on the saved cases
(with the saved CPU spec), which is how a changed model is compared on the same
measurements — e.g. an older estimator unpacked with ``git archive <rev> estimator |
tar -x -C /tmp/old`` and put first with ``PYTHONPATH=/tmp/old``. ``--overhead`` times gpt-tiny steps at batch 1 x 1 token, where the
arithmetic is nil, and divides by the estimator's op counts: the source of
``estimator.step_overheads.CPU_OP_OVERHEAD_S``. Threads: torch's default (all cores) unless
OMP_NUM_THREADS is set; the figure is printed.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from dataclasses import fields

from estimator.hardware import HardwareSpec
from estimator.predict import predict
from estimator.presets import get_model
from estimator.setup import TrainSetup
from estimator.units import fmt_bytes

CASES = (  # (model, batch, seq_len): a few thousand tokens per step, seconds per case
    ("gpt-tiny", 32, 128),
    ("gpt-mini", 8, 256),
    ("gpt-small", 4, 256),
)
PRECISIONS = ("fp32", "bf16-mixed")


def _err(predicted: float | None, measured: float | None) -> float | None:
    return None if not predicted or not measured else (predicted - measured) / measured


def _spec_dict(spec: HardwareSpec) -> dict:
    return {f.name: getattr(spec, f.name) for f in fields(spec)}


def measure(name: str, batch: int, seq_len: int, precision: str, flash: bool, steps: int, warmup: int) -> dict:
    """One profile run; the summary's figures plus the fastest timed step."""
    import torch

    from profiler.events import RunFailed, RunFinished, StepSample
    from profiler.run import run_profile
    from profiler.run_config import RunConfig

    config = RunConfig(model=get_model(name), device="cpu", batch_size=batch, seq_len=seq_len, steps=steps,
                       warmup=warmup, precision=precision, flash_attention=flash)
    load = os.getloadavg()[0]
    timed, summary = [], None
    for event in run_profile(config, max_extra_steps=steps):
        if isinstance(event, StepSample) and not event.warmup:
            timed.append(event.step_time_s)
        elif isinstance(event, RunFinished):
            summary = event.summary
        elif isinstance(event, RunFailed):
            raise RuntimeError(f"{name} {precision}: {event.message}")
    measured, prediction = summary["measured"], summary["prediction"]
    return {
        "model": name, "batch_size": batch, "seq_len": seq_len, "precision": precision, "flash_attention": flash,
        "threads": torch.get_num_threads(), "load_before": load,
        "measured_step_s": measured["step_time_s"], "measured_min_step_s": min(timed),
        "measured_spread": measured["step_time_relative_spread"], "timed_steps": len(timed),
        "measured_peak_bytes": measured["peak_memory_bytes"],
        "predicted_step_s": prediction["step"]["time_s"], "predicted_peak_bytes": prediction["memory"]["total"],
        "predicted_peak_phase": prediction["memory"].get("peak_phase"),
        "spec": _spec_dict(_detected_spec(precision)),
    }


@functools.lru_cache(maxsize=None)
def _detected_spec(precision: str) -> HardwareSpec:
    """The CPU spec a run sees (detection caches the measured matmul peak), saved for --predict-only."""
    from profiler.detect import detect_device

    return detect_device("cpu", precision, None).spec


def repredict(case: dict) -> dict:
    """The estimator's figures for a saved case (no torch)."""
    spec = HardwareSpec(**{k: (dict(v) if k == "peak_flops" else v) for k, v in case["spec"].items()})
    cfg = get_model(case["model"])
    setup = TrainSetup(batch_size=case["batch_size"], seq_len=case["seq_len"], precision=case["precision"],
                       flash_attention=case["flash_attention"])
    r = predict(cfg, spec, setup)
    return dict(case, predicted_step_s=r["step"]["time_s"], predicted_peak_bytes=r["memory"]["total"],
                predicted_peak_phase=r["memory"].get("peak_phase"))


def print_table(rows: list[dict]) -> None:
    print(f"{'model':9} {'B x T':>8} {'precision':>10} {'attn':>8} {'load':>4} | {'pred':>8} {'median':>8} "
          f"{'err':>6} {'min':>8} {'err':>6} | {'pred mem':>10} {'meas mem':>10} {'err':>6}")
    for r in rows:
        med, low = _err(r["predicted_step_s"], r["measured_step_s"]), _err(r["predicted_step_s"],
                                                                          r["measured_min_step_s"])
        mem = _err(r["predicted_peak_bytes"], r["measured_peak_bytes"])
        print(f"{r['model']:9} {r['batch_size']:>3}x{r['seq_len']:<4} {r['precision']:>10} "
              f"{'sdpa' if r['flash_attention'] else 'explicit':>8} {r['load_before']:>4.1f} | "
              f"{r['predicted_step_s'] * 1e3:>6.1f}ms {r['measured_step_s'] * 1e3:>6.1f}ms {med:>+6.0%} "
              f"{r['measured_min_step_s'] * 1e3:>6.1f}ms {low:>+6.0%} | {fmt_bytes(r['predicted_peak_bytes']):>10} "
              f"{fmt_bytes(r['measured_peak_bytes']):>10} {mem:>+6.1%}")
    for key, label in (("measured_step_s", "median"), ("measured_min_step_s", "min")):
        errs = [abs(_err(r["predicted_step_s"], r[key])) for r in rows]
        print(f"step time |error| vs {label}: mean {sum(errs) / len(errs):.0%}, max {max(errs):.0%}")
    errs = [abs(_err(r["predicted_peak_bytes"], r["measured_peak_bytes"])) for r in rows]
    print(f"peak memory |error|: mean {sum(errs) / len(errs):.1%}, max {max(errs):.1%}")
    print(f"threads: {rows[0].get('threads')}; measured = mfutop profile (median of timed steps; min = fastest "
          "step); memory = live tensor bytes of the tracked step")


def overhead(repeats: int = 30) -> None:
    """Per-op CPU overhead: gpt-tiny steps at 1 x 1 token divided by the op graph's dispatched ops."""
    import torch

    from estimator.op_graph import step_graph
    from estimator.step_overheads import CPU_OP_OVERHEAD_S
    from profiler.step import StepOptions, TrainingStep

    cfg = get_model("gpt-tiny")
    print(f"threads {torch.get_num_threads()}; default CPU_OP_OVERHEAD_S = {CPU_OP_OVERHEAD_S * 1e6:.1f} µs")
    for precision in PRECISIONS:
        for flash in (True, False):
            trainer = TrainingStep(cfg, "cpu", StepOptions(precision=precision, flash_attention=flash))
            x, y = trainer.make_batch(1, 1)
            setup = TrainSetup(batch_size=1, seq_len=1, precision=precision, flash_attention=flash)
            graph = step_graph(cfg, setup)
            ops = {"micro_batch": sum(n * (1 + op.host_ops) for op, n in graph.counted()
                                      if op.category not in ("communication", "host")),
                   "optimizer": sum(n for op, n in graph.counted(per_step=True) if op.category == "optimizer")}

            def forward_backward():
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision != "fp32"):
                    loss = trainer.model(x, y)
                loss.backward()
                trainer.optimizer.zero_grad(set_to_none=True)

            times = {"fwd+bwd": [], "step": []}
            for _ in range(5):
                trainer.step(x, y)
            for _ in range(repeats):
                start = time.perf_counter()
                forward_backward()
                times["fwd+bwd"].append(time.perf_counter() - start)
                start = time.perf_counter()
                trainer.step(x, y)
                times["step"].append(time.perf_counter() - start)
            fb, st = sorted(times["fwd+bwd"]), sorted(times["step"])
            n_fb, n_st = ops["micro_batch"], ops["micro_batch"] + ops["optimizer"]
            print(f"  {precision:10} {'sdpa' if flash else 'explicit':8} fwd+bwd {n_fb:.0f} ops: "
                  f"min {fb[0] / n_fb * 1e6:5.1f} µs/op, median {fb[len(fb) // 2] / n_fb * 1e6:5.1f} | "
                  f"step {n_st:.0f} ops: min {st[0] / n_st * 1e6:5.1f}, median {st[len(st) // 2] / n_st * 1e6:5.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per case")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="SDPA only (no --no-flash cases)")
    parser.add_argument("--json", help="also write the cases to this file")
    parser.add_argument("--predict-only", metavar="FILE", help="re-predict the cases saved in FILE (no torch)")
    parser.add_argument("--overhead", action="store_true", help="measure the per-op CPU overhead")
    args = parser.parse_args()
    if args.overhead:
        overhead()
        return
    if args.predict_only:
        with open(args.predict_only) as fh:
            rows = [repredict(case) for case in json.load(fh)]
    else:
        rows = []
        for flash in (True,) if args.quick else (True, False):
            for precision in PRECISIONS:
                for name, batch, seq_len in CASES:
                    rows.append(measure(name, batch, seq_len, precision, flash, args.steps, args.warmup))
                    print(f"measured {name} {precision} {'sdpa' if flash else 'explicit'}", file=sys.stderr)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    print_table(rows)


if __name__ == "__main__":
    main()
