"""Predicted vs measured peak training memory on the CPU, for tiny GPTs.

Measured: one full training step (forward, cross-entropy, backward,
``optimizer.step()``, ``zero_grad``) after a warm step, under
``profiler.memory_meter.LiveStorageTracker`` — a TorchDispatchMode that counts
the bytes of every live tensor storage (parameters, gradients, AdamW state,
activations, logits), i.e. the CPU analogue of ``torch.cuda.max_memory_allocated``.
Kernel scratch space and allocator slack are not tensors and are not counted;
the process RSS growth over the step is printed beside it for scale.
Predicted: ``estimator.memory.training_memory(..., device_kind="cpu").total`` (the
phase-aware peak; CPU autocast's bf16 softmax; the AdamW the step runs: fused where
torch has the CPU kernel, ``estimator.step_overheads.adamw_impl``) for the same model (padded vocabulary), batch, sequence length and
precision. The old every-term-at-once figure (``sum_of_terms``) is shown beside it.

    python benchmarks/bench_memory_prediction.py [--precision fp32 bf16-mixed] [--json]
"""

from __future__ import annotations

import argparse
import json

import torch

from estimator.memory import training_memory
from estimator.presets import get_model
from estimator.setup import TrainSetup
from estimator.step_overheads import adamw_impl
from estimator.units import fmt_bytes
from profiler.adamw import fused_by_default
from profiler.memory_meter import LiveStorageTracker, process_rss, training_state_tensors
from profiler.step import StepOptions, TrainingStep, effective_precision

CASES = (  # (model, batch, seq_len)
    ("gpt-tiny", 8, 128),
    ("gpt-mini", 4, 256),
    ("gpt-small", 2, 256),
    ("llama-tiny", 4, 256),
)


def measure(name: str, batch: int, seq_len: int, precision: str, flash: bool) -> dict:
    cfg = get_model(name)
    trainer = TrainingStep(cfg, "cpu", StepOptions(precision=precision, flash_attention=flash))
    trainer.step(*trainer.make_batch(batch, seq_len))  # warm: AdamW state exists, as in steady state
    tracker = LiveStorageTracker("cpu")
    tracker.track(training_state_tensors(trainer.raw_model, trainer.optimizer))
    state_bytes = tracker.live_bytes
    x, y = trainer.make_batch(batch, seq_len)
    rss_before = process_rss()
    with tracker:
        trainer.step(x, y)
    rss_after = process_rss()
    setup = TrainSetup(batch_size=batch, seq_len=seq_len, precision=precision, flash_attention=flash)
    impl = adamw_impl(trainer.options.fused_adamw, trainer.options.adamw_foreach, fused_by_default("cpu"))
    predicted = training_memory(trainer.cfg, setup, device_kind="cpu", optimizer_impl=impl)
    measured = tracker.peak_bytes
    return {
        "model": name, "batch_size": batch, "seq_len": seq_len, "precision": precision, "flash_attention": flash, "optimizer_impl": impl,
        "predicted_bytes": predicted.total, "measured_peak_bytes": measured,
        "relative_error": (predicted.total - measured) / measured,
        "peak_phase": predicted.peak_phase, "sum_of_terms_bytes": predicted.sum_of_terms,
        "sum_of_terms_error": (predicted.sum_of_terms - measured) / measured,
        "measured_state_bytes": state_bytes,
        "predicted_state_bytes": predicted.weights + predicted.optimizer,
        "rss_growth_bytes": rss_after - rss_before,
        "predicted_breakdown": {k: v for k, v in predicted.to_dict().items() if isinstance(v, int)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", nargs="+", default=["fp32", "bf16-mixed"])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    rows = []
    for precision in args.precision:
        if effective_precision(precision, "cpu")[0] != precision:
            print(f"skipping {precision}: not available on this CPU")
            continue
        for flash in (True, False):
            for name, batch, seq_len in CASES:
                rows.append(measure(name, batch, seq_len, precision, flash))
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'model':10} {'B x T':>9} {'precision':>10} {'attention':>9} {'peak phase':>14} {'predicted':>11} "
          f"{'measured':>11} {'error':>7} {'old sum':>11} {'error':>7} {'RSS growth':>11}")
    for r in rows:
        print(f"{r['model']:10} {r['batch_size']:>3} x {r['seq_len']:<3} {r['precision']:>10} "
              f"{'sdpa' if r['flash_attention'] else 'explicit':>9} {r['peak_phase']:>14} "
              f"{fmt_bytes(r['predicted_bytes']):>11} {fmt_bytes(r['measured_peak_bytes']):>11} "
              f"{r['relative_error']:>+7.1%} {fmt_bytes(r['sum_of_terms_bytes']):>11} "
              f"{r['sum_of_terms_error']:>+7.1%} {fmt_bytes(r['rss_growth_bytes']):>11}")
    print("measured = peak live tensor bytes (TorchDispatchMode storage tracker) over one warm full step; "
          "predicted = estimator.memory.training_memory(device_kind='cpu').total (phase-aware peak); "
          "old sum = every term co-resident (sum_of_terms)")


if __name__ == "__main__":
    main()
