"""`mfutop plan`: the best ways to train a model on N GPUs, ranked; each row reproducible with `mfutop estimate`.

The search is ``estimator.planner.plan``; this module parses flags (with the
estimate command's model and count parsers) and prints. A search that runs
past a second prints a progress line on stderr, and so does a ``--gpu`` alias
that several rows could mean (``gpu_note`` in --json). Imports no torch.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Optional

import typer

from estimator.errors import ConfigError
from estimator.units import parse_count
from profiler.run_config import parse_memory
from tui.cli_support import emit_json, user_errors
from tui.cmd_estimate import DEFAULT_GPU, DEFAULT_MODEL

# Llama 2's global batch, 4M tokens (Touvron et al. 2023, "Llama 2", §2.2), as 2^22 so that it
# divides into whole sequences at every power-of-two sequence length.
DEFAULT_BATCH_TOKENS = 2**22
PROGRESS_AFTER_S = 1.0


class _Progress:
    """Writes 'searched i/n' on stderr once the search has run past a second; ends the line when done."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.start = time.perf_counter()
        self.shown = False

    def __call__(self, done: int, total: int) -> None:
        if not self.shown and time.perf_counter() - self.start < PROGRESS_AFTER_S:
            return
        self.shown = True
        self.stream.write(f"\rmfutop plan: searched {done:,}/{total:,} layout x knob groups")
        self.stream.flush()

    def close(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()


def _precisions(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    from estimator.precision import get_precision

    names = tuple(get_precision(t).name for t in text.split(",") if t.strip())
    if not names:
        raise ConfigError("--precisions needs at least one precision, e.g. bf16-mixed,bf16-master")
    return names


def plan_cmd(
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Preset name."),
    hf_config: Optional[Path] = typer.Option(None, "--hf-config", help="A local Hugging Face config.json."),
    gpu: str = typer.Option(DEFAULT_GPU, "--gpu", help="GPU name."),
    gpus: int = typer.Option(..., "--gpus", help="GPUs to plan for."),
    gpus_per_node: int = typer.Option(8, "--gpus-per-node", help="GPUs per node (TP stays within one)."),
    seq_len: Optional[int] = typer.Option(None, "--seq-len", "-T", help="Tokens per sequence (default: context)."),
    global_batch_size: Optional[int] = typer.Option(None, "--global-batch-size",
                                                    help="Global batch in sequences (exact)."),
    global_batch_tokens: Optional[str] = typer.Option(
        None, "--global-batch-tokens",
        help=f"Global batch in tokens (e.g. 4M), rounded per layout to whole sequences per replica "
             f"(default {DEFAULT_BATCH_TOKENS:,})."),
    tokens: Optional[str] = typer.Option(None, "--tokens", help="Training tokens for time and cost (e.g. 1T)."),
    gpu_hour_cost: Optional[float] = typer.Option(None, "--gpu-hour-cost", help="USD per GPU-hour."),
    memory_limit: Optional[str] = typer.Option(None, "--memory-limit", help="Usable memory per GPU, e.g. 40GiB."),
    top: int = typer.Option(10, "--top", help="Rows to show."),
    objective: str = typer.Option("throughput", "--objective",
                                  help="throughput | time (for --tokens) | cost (GPU-hours; also tries fewer GPUs)."),
    precisions: Optional[str] = typer.Option(None, "--precisions",
                                             help="Comma list to search (default bf16-master, and fp8 on GPUs with an fp8 peak)."),
    toolset: str = typer.Option("all", "--toolset",
                                help="all (every knob mfutop models) | megatron-2021 (no ZeRO, full recompute, "
                                     "no flash attention, fp32 master weights, plain 1F1B)."),
    uneven_pp: bool = typer.Option(False, "--uneven-pp/--no-uneven-pp",
                                   help="Also pipeline sizes that do not divide the layers."),
    all_variants: bool = typer.Option(False, "--all-variants",
                                      help="Rank knob variants of one layout too (default: one row per TP/PP/DP/CP/EP "
                                           "layout, at its best knobs)."),
    as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON."),
) -> None:
    """Rank parallel setups (TP/PP/DP/EP, ZeRO, recompute, micro-batch, precision) for N GPUs."""
    with user_errors():
        from estimator.hardware import get_gpu
        from estimator.planner import PlanRequest, plan
        from tui.gpu_choice import gpu_note, print_gpu_note

        if model is None and hf_config is None:
            raise ConfigError("give --model or --hf-config")
        from estimator.model_choice import choose_model

        cfg = choose_model(model, hf_config, DEFAULT_MODEL, buildable=False)
        if global_batch_size is not None and global_batch_tokens is not None:
            raise ConfigError("give either --global-batch-size or --global-batch-tokens, not both")
        batch_tokens = parse_count(global_batch_tokens, "global batch token count")
        if global_batch_size is None and batch_tokens is None:
            batch_tokens = DEFAULT_BATCH_TOKENS
        flags = ("--hf-config", str(hf_config)) if hf_config is not None else ("--model", cfg.name)
        req = PlanRequest(
            model=cfg, hardware=get_gpu(gpu), gpus=gpus, gpus_per_node=gpus_per_node, seq_len=seq_len,
            global_batch=global_batch_size, global_batch_tokens=batch_tokens,
            tokens=parse_count(tokens, "token count"), gpu_hour_cost=gpu_hour_cost,
            memory_limit_bytes=parse_memory(memory_limit), top=top, objective=objective.lower(),
            uneven_pp=uneven_pp, model_flags=flags, precisions=_precisions(precisions), toolset=toolset,
            distinct_layouts=not all_variants,
        )
        note = gpu_note(gpu)
        if not as_json:
            print_gpu_note(note)  # before the search: a wrong pick is seen at once
        progress = _Progress()
        try:
            result = plan(req, progress).to_dict()
        finally:
            progress.close()
        result["gpu_note"] = note

    if as_json:
        emit_json(result)
        return
    from tui.plan_view import print_plan

    print_plan(result)


def register(app: typer.Typer) -> None:
    """Adds `mfutop plan` to the app."""
    app.command("plan")(plan_cmd)
