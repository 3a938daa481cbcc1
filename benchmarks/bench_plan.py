"""`mfutop plan`: search speed, and the planner against published large-scale training setups.

Speed goals (median of ``--runs`` in-process searches, plus one end-to-end CLI run in a fresh process):
  - llama-2-70b on 1024 x h100-sxm, global batch 4M tokens: <= 2 s
  - a 405B dense model (Llama 3.1 405B's published shape) on 16,384 x h100-sxm: <= 5 s

Published setups (each: is its TP/PP/DP layout among the planner's top 10 rows, and is the planner's best
predicted at least as fast as the published setup itself?):
  - Megatron-LM, Narayanan et al. 2021, "Efficient Large-Scale Language Model Training on GPU Clusters
    Using Megatron-LM" (SC21, arXiv:2104.04473), Table 1: GPT models 1.7B-1T on A100 80GB (Selene),
    vocab 51,200, seq 2,048; TP, PP, GPUs and global batch per row. The table's FLOP figures use the
    paper's eq. (3), 96·B·s·L·h²(...), which counts activation recomputation: the runs recompute fully.
    Not in the table, assumed here: micro-batch 1, no ZeRO, no flash attention (2021), fp16 with fp32
    master weights (= our bf16-master: the A100's fp16 and bf16 peaks are equal).
  - Llama 3, Dubey et al. 2024, "The Llama 3 Herd of Models" (arXiv:2407.21783), Table 4: 405B on
    8,192 GPUs TP8/CP1/PP16/DP64 and on 16,384 GPUs TP8/CP1/PP16/DP128 at seq 8,192, and on 16,384 GPUs
    TP8/CP16/PP16/DP8 at seq 131,072; 16M tokens per batch. 126 layers on PP16 is uneven (searched with
    uneven_pp). Assumed: bf16-master, ZeRO-2 (FSDP without resharding after forward, §3.3.2), flash
    attention, micro-batch 1, the lightest recompute that fits; the CP16 row with context parallelism.

    python benchmarks/bench_plan.py [--runs 3] [--skip-published]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from estimator.errors import ConfigError
from estimator.hardware import get_gpu
from estimator.model_config import ModelConfig
from estimator.planner import PlanRequest, plan, ranked_layouts
from estimator.predict import predict
from estimator.presets import get_model
from estimator.setup import TrainSetup

GOALS_S = {"llama-2-70b x 1024": 2.0, "405B x 16384": 5.0}
LLAMA_405B_SHAPE = dict(vocab_size=128256, context_length=131072, d_model=16384, n_layers=126, n_heads=128,
                        n_kv_heads=8, d_ff=53248, mlp="swiglu", norm="rmsnorm", norm_bias=False, qkv_bias=False,
                        proj_bias=False, mlp_bias=False, tied_embeddings=False, position="rope")
LLAMA_405B_FLAGS = ("--model", "llama-3-70b", "--layers", "126", "--d-model", "16384", "--heads", "128",
                    "--kv-heads", "8", "--d-ff", "53248", "--context", "131072")
# Narayanan et al. 2021 Table 1: (name, heads, hidden, layers, TP, PP, GPUs, global batch)
MEGATRON_TABLE_1 = (
    ("1.7B", 24, 2304, 24, 1, 1, 32, 512),
    ("3.6B", 32, 3072, 30, 2, 1, 64, 512),
    ("7.5B", 32, 4096, 36, 4, 1, 128, 512),
    ("18.4B", 48, 6144, 40, 8, 1, 256, 1024),
    ("39.1B", 64, 8192, 48, 8, 2, 512, 1536),
    ("76.1B", 80, 10240, 60, 8, 4, 1024, 1792),
    ("145.6B", 96, 12288, 80, 8, 8, 1536, 2304),
    ("310.1B", 128, 16384, 96, 8, 16, 1920, 2160),
    ("529.6B", 128, 20480, 105, 8, 35, 2520, 2520),
    ("1008.0B", 160, 25600, 128, 8, 64, 3072, 3072),
)
# Dubey et al. 2024 Table 4: (GPUs, TP, CP, PP, DP, seq, tokens per batch)
LLAMA3_TABLE_4 = ((8192, 8, 1, 16, 64, 8192, 2**24), (16384, 8, 1, 16, 128, 8192, 2**24),
                  (16384, 8, 16, 16, 8, 131072, 2**24))


def llama_405b() -> ModelConfig:
    return ModelConfig(name="llama-3.1-405b", **LLAMA_405B_SHAPE)


def megatron_gpt(name: str, heads: int, hidden: int, layers: int) -> ModelConfig:
    """Megatron's GPT: GELU MLP of 4h, LayerNorm and biases, learned positions, tied head."""
    return ModelConfig(name=f"megatron-{name}", vocab_size=51200, context_length=2048, d_model=hidden,
                       n_layers=layers, n_heads=heads)


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


# ----------------------------------------------------------------- speed

def speed_cases() -> dict[str, PlanRequest]:
    h100 = get_gpu("h100-sxm")
    return {
        "llama-2-70b x 1024": PlanRequest(get_model("llama-2-70b"), h100, 1024, global_batch_tokens=4_000_000),
        "405B x 16384": PlanRequest(llama_405b(), h100, 16384, seq_len=8192, global_batch_tokens=2**24,
                                    uneven_pp=True, model_flags=LLAMA_405B_FLAGS),
    }


def cli_seconds() -> float:
    """One `mfutop plan` for the 70B case in a fresh process (the command module on a bare Typer app,
    so this runs before `plan` is registered in tui/cli.py)."""
    code = ("import typer; from tui import cmd_plan; app = typer.Typer(); cmd_plan.register(app); app(["
            "'--model', 'llama-2-70b', '--gpu', 'h100-sxm', '--gpus', '1024', '--global-batch-tokens', '4M', "
            "'--json'])")
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          cwd=Path(__file__).resolve().parents[1])
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"mfutop plan failed: {done.stderr.strip()}")
    return elapsed


def bench_speed(runs: int) -> None:
    print(f"Search speed ({load()})")
    print(f"{'case':<20} {'median s':>9} {'goal s':>7} {'ok':>3} {'enumerated':>11} {'memory chk':>11} "
          f"{'timed':>7} {'predicted':>10}")
    for name, req in speed_cases().items():
        times, result = [], None
        for _ in range(runs):
            start = time.perf_counter()
            result = plan(req)
            times.append(time.perf_counter() - start)
        med, c = statistics.median(times), result.counts
        print(f"{name:<20} {med:>9.3f} {GOALS_S[name]:>7.1f} {'yes' if med <= GOALS_S[name] else 'NO':>3} "
              f"{c['enumerated']:>11,} {c['memory_checked']:>11,} {c['timed']:>7,} {c['predicted']:>10,}")
        print(f"  best: {result.rows[0]['label']}, {result.rows[0]['step_time_s']:.3f} s/step, "
              f"MFU {result.rows[0]['mfu']:.1%}")
    print(f"`mfutop plan --model llama-2-70b --gpu h100-sxm --gpus 1024 --global-batch-tokens 4M --json` "
          f"end to end (fresh process): {cli_seconds():.2f} s ({load()})")


# ----------------------------------------------------------------- published setups

def _first_rank(rows: list[dict], tp: int, pp: int, dp: int, cp: int = 1) -> int | None:
    return next((r["rank"] for r in rows if (r["setup"]["tp"], r["setup"]["pp"], r["setup"]["dp"], r["setup"]["cp"])
                 == (tp, pp, dp, cp)), None)


def _published_time(model, gpu, setup_kw: dict, recomputes: tuple[str, ...]) -> tuple[float | None, str]:
    """Predicted step time of the published setup (the first recompute in ``recomputes`` that fits)."""
    for rec in recomputes:
        s = TrainSetup(recompute=rec, **setup_kw)
        p = predict(model, gpu, s, check_fit=False)
        if p["memory"]["fits"]:
            return p["step"]["time_s"], rec
    return None, "does not fit"


def _compare(label: str, req: PlanRequest, tp: int, pp: int, dp: int, setup_kw: dict,
             recomputes: tuple[str, ...], paper_toolset: str | None = None) -> None:
    try:
        result = plan(replace_top(req, 10))
        paper = plan(replace_top(replace(req, toolset=paper_toolset), 10)) if paper_toolset else None
    except ConfigError as exc:
        print(f"{label:<25} planner error: {exc}")
        return
    cp = setup_kw.get("cp", 1)
    rank = _first_rank(result.rows, tp, pp, dp, cp)
    paper_rank = "n/a" if paper is None else str(_first_rank(paper.rows, tp, pp, dp, cp) or "-")
    layouts = ranked_layouts(req)
    lay_rank = next((i for i, (key, _, _) in enumerate(layouts, 1) if key[:3] == (tp, pp, dp) and key[4] == cp),
                    None)
    lay_best = layouts[lay_rank - 1][1] if lay_rank else None
    published, rec = _published_time(req.model, req.hardware, setup_kw, recomputes)
    best = result.rows[0]
    faster = "n/a" if published is None else ("yes" if best["step_time_s"] <= published * (1 + 1e-12) else "NO")
    pub = "does not fit" if published is None else f"{published:.2f} ({rec})"
    lay = "-" if lay_rank is None else f"{lay_rank}/{len(layouts)} {lay_best:.2f}"
    name = f"TP{tp}/" + (f"CP{cp}/" if cp > 1 else "") + f"PP{pp}/DP{dp}"
    print(f"{label:<25} {name:<15} {str(rank or '-'):>4} {paper_rank:>5} {lay:>14} {pub:>17} "
          f"{best['step_time_s']:>7.2f} {faster:>4}  {best['label']}")


def replace_top(req: PlanRequest, top: int) -> PlanRequest:
    return replace(req, top=top)


def bench_published() -> None:
    print(f"\nPublished setups vs the planner ({load()})")
    print("rank: the published layout's row in the planner's top 10 (one row per layout, each at its best knobs;\n"
          "'-': not there); paper: the same"
          " with only the paper's tools (--toolset megatron-2021: no ZeRO, full recompute, no flash, plain 1F1B);\n"
          "layout: its place among all fitting (TP, PP, DP) layouts, each at its best knobs, and that best s/step;\n"
          "published: the literal setup's s/step (recompute used); best: the planner's #1 s/step (all knobs);\n"
          "best<=: #1 at least as fast")
    print(f"{'setup':<25} {'layout':<15} {'rank':>4} {'paper':>5} {'layout rank s':>14} {'published s':>17} "
          f"{'best s':>7} {'<=':>4}  planner's best")
    a100 = get_gpu("a100-sxm-80gb")
    for name, heads, hidden, layers, tp, pp, gpus, batch in MEGATRON_TABLE_1:
        model = megatron_gpt(name, heads, hidden, layers)
        dp = gpus // (tp * pp)
        flags = ("--model", "gpt2", "--layers", str(layers), "--d-model", str(hidden), "--heads", str(heads),
                 "--vocab", "51200", "--context", "2048")
        req = PlanRequest(model, a100, gpus, global_batch=batch, model_flags=flags)
        kw = dict(batch_size=1, seq_len=2048, precision="bf16-master", flash_attention=False,
                  grad_accum=batch // dp, dp=dp, tp=tp, pp=pp, zero=0)
        _compare(f"Megatron {name} x{gpus}", req, tp, pp, dp, kw, ("full",), paper_toolset="megatron-2021")
    h100 = get_gpu("h100-sxm")
    for gpus, tp, cp, pp, dp, seq, tokens in LLAMA3_TABLE_4:
        label = f"Llama 3 405B x{gpus} s{seq // 1024}k"
        req = PlanRequest(llama_405b(), h100, gpus, seq_len=seq, global_batch_tokens=tokens, uneven_pp=True,
                          model_flags=LLAMA_405B_FLAGS)
        batch = tokens // seq
        kw = dict(batch_size=1, seq_len=seq, precision="bf16-master", grad_accum=batch // dp, dp=dp, tp=tp, pp=pp,
                  zero=2, sp=True, cp=cp)
        _compare(label, req, tp, pp, dp, kw, ("none", "selective", "full"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip-published", action="store_true")
    args = parser.parse_args()
    bench_speed(args.runs)
    if not args.skip_published:
        bench_published()


if __name__ == "__main__":
    main()
