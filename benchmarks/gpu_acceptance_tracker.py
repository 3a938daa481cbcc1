"""The acceptance run's own-loop step: ``Tracker`` around a tiny random Hugging Face LLaMA.

Trains ``LlamaForCausalLM`` (random weights from a ``LlamaConfig``, no hub
access) for a few steps inside ``with Tracker(model, tokens_per_step=B*T,
out=FILE) as t: ... t.step(loss=loss)`` and prints one JSON object: the
Tracker's tokens/s and MFU (read back from the events it wrote), and a
tokens/s timed here around the whole loop as a cross-check.

Exit 77 (skipped) with a reason on stderr when ``profiler.tracker`` or
``transformers`` is not there yet; exit 1 with one line when the Tracker's API
does not take what issue 12 describes.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path

SKIP = 77
BATCH, SEQ = 8, 128
TINY_LLAMA = dict(vocab_size=512, hidden_size=64, intermediate_size=256, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=SEQ)


def skip(reason: str) -> int:
    print(reason, file=sys.stderr)
    return SKIP


def read_events(path: Path) -> list[dict]:
    events = []
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return events
    for line in lines:
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            events.append(value)
    return events


def median_of(events: list[dict], key: str) -> float | None:
    values = [e[key] for e in events if isinstance(e.get(key), (int, float))]
    return statistics.median(values) if values else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", type=Path, required=True, help="the Tracker's event file (JSONL)")
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args(argv)
    if importlib.util.find_spec("profiler.tracker") is None:
        return skip("profiler.tracker does not exist yet (issue 12 adds the own-loop Tracker)")
    if importlib.util.find_spec("transformers") is None:
        return skip("transformers is not installed")
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from profiler.tracker import Tracker

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"--device {args.device} requested but CUDA is not available", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**TINY_LLAMA)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    tokens = torch.randint(0, TINY_LLAMA["vocab_size"], (BATCH, SEQ), device=device)
    autocast = device.type == "cuda"
    args.out.unlink(missing_ok=True)
    try:
        tracker = Tracker(model, tokens_per_step=BATCH * SEQ, out=str(args.out))
    except TypeError as exc:
        print(f"Tracker(model, tokens_per_step=..., out=...) is not its API: {exc}", file=sys.stderr)
        return 1
    started = time.perf_counter()
    with tracker as t:
        for _ in range(args.steps):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                loss = model(input_ids=tokens, labels=tokens).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            t.step(loss=loss)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    wall = time.perf_counter() - started
    events = read_events(args.out)
    samples = [e for e in events if e.get("event") == "step_sample" and not e.get("warmup")]
    finished = next((e for e in reversed(events) if e.get("event") == "run_finished"), None)
    kinds: dict[str, int] = {}
    for e in events:
        kinds[str(e.get("event"))] = kinds.get(str(e.get("event")), 0) + 1
    flops = next((e for e in events if e.get("event") == "flops_counted"), {})
    print(json.dumps({
        "device": str(device), "model": "LlamaForCausalLM (random, LlamaConfig)", "config": TINY_LLAMA,
        "params": sum(p.numel() for p in model.parameters()), "batch_size": BATCH, "seq_len": SEQ,
        "tokens_per_step": BATCH * SEQ, "steps": args.steps, "events": kinds,
        "tokens_per_s": median_of(samples, "tokens_per_s"), "mfu": median_of(samples, "mfu"),
        "step_time_s": median_of(samples, "step_time_s"), "flops_per_step": flops.get("analytic"),
        "loop_tokens_per_s": BATCH * SEQ * args.steps / wall if wall > 0 else None,
        "summary_measured": (finished or {}).get("summary", {}).get("measured"),
    }))
    if not samples:
        print(f"the Tracker wrote no timed step_sample event to {args.out} ({kinds or 'no events'})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
