"""Cost of the event stream on tokens/s: the same steps with and without StepSample + JSONL.

"bare": timer, step, ``loss.item()`` — the minimum a timed loop does.
"events": the same plus what ``run_profile`` adds per step — a memory sample
(torch.cuda stats or process RSS), a ``StepSample`` event, and one flushed
JSONL line (``JsonlWriter``) to a file. Steps alternate bare/events (order
flipped every pair) so that the drift of a shared machine hits both alike;
the figure is the difference of median tokens/s. The per-event cost is also timed alone, without steps (many
repetitions), and divided by the median step time: that is the overhead
fraction with the machine's noise taken out. Goal: ≤ 1 %.

    python benchmarks/bench_event_overhead.py [--model gpt-tiny] [--batch-size 8] [--pairs 100]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch

from estimator.presets import get_model
from profiler.events import JsonlWriter, StepSample
from profiler.memory_meter import MemoryMeter
from profiler.step import StepOptions, TrainingStep
from profiler.step_timer import StepTimer

GOAL = 0.01


def emit(writer: JsonlWriter, meter: MemoryMeter, step: int, batch: int, seconds: float, tokens: int,
         loss: float) -> None:
    mem = meter.sample()
    writer.write(StepSample(
        step=step, batch_size=batch, step_time_s=seconds, tokens_per_s=tokens / seconds, loss=loss,
        memory_allocated_bytes=mem.allocated, memory_reserved_bytes=mem.reserved, memory_peak_bytes=mem.peak,
        nvml_used_bytes=None, mfu=0.1, warmup=False,
    ))


def run_round(trainer, data, timer, steps: int, tokens: int, writer=None, meter=None) -> list[float]:
    rates = []
    for i in range(steps):
        x, y = next(data)
        if meter is not None:
            meter.reset_peak()
        timer.start()
        loss = trainer.step(x, y)
        seconds = timer.stop()
        value = float(loss.item())
        if writer is not None:
            emit(writer, meter, i, x.shape[0], seconds, tokens, value)
        rates.append(tokens / seconds)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gpt-tiny")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--pairs", type=int, default=100)
    args = parser.parse_args()

    device = "cuda" if torch.cuda.is_available() else "cpu"
    trainer = TrainingStep(get_model(args.model), device, StepOptions(precision="fp32"))
    data = trainer.batches(args.batch_size, args.seq_len)
    timer, meter = StepTimer(trainer.device), MemoryMeter(trainer.device)
    tokens = args.batch_size * args.seq_len
    run_round(trainer, data, timer, 3, tokens)  # warm-up

    bare, events = [], []
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as handle:
        writer = JsonlWriter(handle)
        for i in range(args.pairs):  # step-by-step alternation, order flipped each pair
            if i % 2:
                events += run_round(trainer, data, timer, 1, tokens, writer, meter)
                bare += run_round(trainer, data, timer, 1, tokens)
            else:
                bare += run_round(trainer, data, timer, 1, tokens)
                events += run_round(trainer, data, timer, 1, tokens, writer, meter)
        n = 2000
        start = time.perf_counter()
        for i in range(n):
            emit(writer, meter, i, args.batch_size, 0.01, tokens, 1.0)
        per_event = (time.perf_counter() - start) / n
    os.unlink(handle.name)

    bare_median, events_median = statistics.median(bare), statistics.median(events)
    step_time = tokens / bare_median
    print(f"device {device}, {args.model}, batch {args.batch_size} x {args.seq_len}, "
          f"{args.pairs} alternating pairs of steps")
    print(f"median tokens/s  bare {bare_median:,.0f}   with events+JSONL {events_median:,.0f}   "
          f"difference {(bare_median - events_median) / bare_median:+.2%} (noise of a shared machine included)")
    print(f"one StepSample + memory sample + flushed JSONL line: {per_event * 1e6:.1f} µs = "
          f"{per_event / step_time:.3%} of the median step ({step_time * 1e3:.1f} ms); goal ≤ {GOAL:.0%}")


if __name__ == "__main__":
    main()
