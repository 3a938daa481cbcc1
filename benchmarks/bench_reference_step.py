"""Is mfutop's profiled step as fast as a good reference? mfutop's GPT vs nanoGPT's, same shape, one process.

The reference is nanoGPT's ``model.py`` (karpathy/nanoGPT), fetched for the
measurement and passed by path — never committed here. Both models get the
same config (mfutop's preset: layers, width, heads, vocabulary, context; bias
on, dropout 0, tied head), the same batch, the same precision (autocast to
bf16 for bf16-mixed) and the same step (forward with the loss, backward,
AdamW, zero_grad). Each uses its own optimizer setup, as each project ships
it: nanoGPT's ``configure_optimizers`` (fused only on CUDA, else torch's
default implementation), mfutop's ``make_adamw`` (fused, on the CPU too, from torch 2.4). The two
run interleaved, in rounds, in one process, so a slow spell of a shared
machine lands on both; the process allocator setting mfutop's profiled steps
use (``profiler.host_allocator``) is applied to both.

    python benchmarks/bench_reference_step.py --nanogpt /path/to/nanoGPT/model.py \
        [--model gpt-small] [--batch-size 8] [--seq-len 256] [--rounds 3] [--steps 4]

Target (issue 17): mfutop >= 1.0x nanoGPT's tokens/s in fp32 and in bf16-mixed.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time


def load_nanogpt(path: str):
    spec = importlib.util.spec_from_file_location("nanogpt_model", path)
    if spec is None or spec.loader is None:
        sys.exit(f"cannot import nanoGPT's model.py from {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class NanoGPTStep:
    """nanoGPT's GPT and its AdamW, stepped like its train.py (no grad accumulation, no clipping)."""

    def __init__(self, module, cfg, precision: str):
        import torch

        torch.manual_seed(0)
        conf = module.GPTConfig(block_size=cfg.context_length, vocab_size=cfg.vocab_size, n_layer=cfg.n_layers,
                                n_head=cfg.n_heads, n_embd=cfg.d_model, dropout=0.0, bias=True)
        self.model = module.GPT(conf)
        self.model.train()
        self.optimizer = self.model.configure_optimizers(0.1, 6e-4, (0.9, 0.95), "cpu")
        self.autocast = precision == "bf16-mixed"

    def step(self, x, y):
        import torch

        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.autocast):
            _, loss = self.model(x, y)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.detach()


def time_steps(stepper, x, y, steps: int) -> list[float]:
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        stepper.step(x, y)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nanogpt", required=True, help="path to nanoGPT's model.py")
    parser.add_argument("--model", default="gpt-small")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per model per round")
    parser.add_argument("--precisions", default="fp32,bf16-mixed")
    args = parser.parse_args()

    import torch

    from estimator.presets import get_model
    from profiler.host_allocator import retain_freed_memory
    from profiler.step import StepOptions, TrainingStep

    retain_freed_memory()
    module = load_nanogpt(args.nanogpt)
    cfg = get_model(args.model)
    b, t = args.batch_size, args.seq_len
    print(f"{args.model}: {cfg.n_layers} layers, d {cfg.d_model}, {cfg.n_heads} heads, vocab {cfg.vocab_size}; "
          f"batch {b} x {t}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"load average {os.getloadavg()}")
    print(f"{'precision':>10} | {'mfutop ms':>9} {'nanoGPT ms':>10} | {'mfutop tok/s':>12} {'nanoGPT tok/s':>13} | ratio")
    for precision in args.precisions.split(","):
        ours = TrainingStep(cfg, "cpu", StepOptions(precision=precision, flash_attention=True))
        ref = NanoGPTStep(module, cfg, precision)
        x, y = (v.contiguous() for v in ours.make_batch(b, t))  # nanoGPT views its targets
        for stepper in (ours, ref):  # warm-up: allocator, optimizer state, kernels' first calls
            time_steps(stepper, x, y, 2)
        times = {"mfutop": [], "nanoGPT": []}
        for _ in range(args.rounds):
            times["mfutop"] += time_steps(ours, x, y, args.steps)
            times["nanoGPT"] += time_steps(ref, x, y, args.steps)
        med = {k: statistics.median(v) for k, v in times.items()}
        ratio = med["nanoGPT"] / med["mfutop"]
        print(f"{precision:>10} | {med['mfutop'] * 1e3:>9.1f} {med['nanoGPT'] * 1e3:>10.1f} | "
              f"{b * t / med['mfutop']:>12,.0f} {b * t / med['nanoGPT']:>13,.0f} | {ratio:.3f}x")
        ours.close()
        del ref
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
