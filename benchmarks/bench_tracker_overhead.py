"""Cost of ``Tracker`` on tokens/s: the same training steps with and without ``t.step()``, interleaved.

One Tracker stays open (its instrumented first step runs in the warm-up);
steps then alternate "bare" (the step alone) and "tracked" (the step, then
``t.step(loss=...)``: timing, memory sample, a ``StepSample`` and one flushed
JSONL line), the order flipped every pair so a shared machine's drift hits
both alike. Each step's wall time is taken around it from outside. Reported:
the difference of median tokens/s (machine noise included) and the median
cost of the ``t.step()`` call itself over the median step (the overhead with
the noise taken out). Goal: ≤ 1 %.

    python benchmarks/bench_tracker_overhead.py [--model gpt-tiny] [--batch-size 8] [--seq-len 128] [--pairs 100] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch

from estimator.presets import get_model
from profiler import Tracker
from profiler.step import StepOptions, TrainingStep
from profiler.step_timer import synchronize

GOAL = 0.01


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gpt-tiny")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (1: less noise when shared)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    device = "cuda" if torch.cuda.is_available() else "cpu"
    cfg = get_model(args.model)
    trainer = TrainingStep(cfg, device, StepOptions(precision="fp32"))
    data = trainer.batches(args.batch_size, args.seq_len)
    tokens = args.batch_size * args.seq_len
    fd, path = tempfile.mkstemp(suffix=".jsonl")
    os.close(fd)
    bare, tracked, calls = [], [], []

    def one(t: Tracker | None) -> None:
        x, y = next(data)
        start = time.perf_counter()
        loss = trainer.step(x, y)
        if t is None:
            synchronize(trainer.device)
        else:
            before = time.perf_counter()
            t.step(loss=loss)
            synchronize(trainer.device)
            calls.append(time.perf_counter() - before)
        (bare if t is None else tracked).append(tokens / (time.perf_counter() - start))

    with Tracker(trainer.raw_model, tokens_per_step=tokens, out=path, config=cfg, seq_len=args.seq_len,
                 optimizer=trainer.optimizer) as t:
        for _ in range(3):  # warm-up: the Tracker's instrumented first step, allocator growth
            one(t)
        bare.clear(), tracked.clear(), calls.clear()
        for i in range(args.pairs):
            for which in ((t, None) if i % 2 else (None, t)):
                one(which)
    os.unlink(path)

    bare_median, tracked_median = statistics.median(bare), statistics.median(tracked)
    step_time = tokens / bare_median
    call = statistics.median(calls)
    print(f"device {device} ({torch.get_num_threads()} threads), {args.model}, batch {args.batch_size} x {args.seq_len}, "
          f"{args.pairs} alternating pairs of steps")
    print(f"median tokens/s  bare {bare_median:,.0f}   with Tracker {tracked_median:,.0f}   "
          f"difference {(bare_median - tracked_median) / bare_median:+.2%} (noise of a shared machine included)")
    print(f"t.step() median {call * 1e6:.1f} µs = {call / step_time:.3%} of the median step "
          f"({step_time * 1e3:.1f} ms); goal ≤ {GOAL:.0%}")


if __name__ == "__main__":
    main()
