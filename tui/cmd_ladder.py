"""`mfutop ladder`: the training-speed optimisation ladder, one rung at a time, headless.

Runs ``profiler.ladder.run_ladder``: fp32 baseline -> TF32 -> fused AdamW ->
pinned memory -> bf16 -> flash attention -> torch.compile -> padded
vocabulary -> searched max batch (-> DDP with ``--nproc N``). Prints each rung
as it finishes, then the table and a bar chart; ``--json`` prints
``{rungs, device, model, ...}``, ``--jsonl`` streams the events. Rungs that do
not apply on the device say "n/a" and why. torch is imported inside the
command only, so ``mfutop --help`` stays light.
"""

from __future__ import annotations

import threading
from typing import List, Optional

import typer

from estimator.errors import ConfigError
from tui.cli_support import emit_json, fail, user_errors

RUN_FAILED_EXIT = 1
INTERRUPTED_EXIT = 130


def _names(values: Optional[List[str]]) -> list[str]:
    """Repeated and/or comma-separated options -> one list."""
    out: list[str] = []
    for value in values or ():
        out += [v.strip() for v in value.split(",") if v.strip()]
    return out


def build_ladder_config(model: Optional[str], device: str, batch_size: Optional[int], seq_len: Optional[int],
                        steps: int, warmup: Optional[int], peak_tflops: Optional[float], seed: int):
    from estimator.presets import get_model
    from profiler.run_config import RunConfig

    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"batch-size must be a positive integer, got {batch_size}")
    return RunConfig(model=get_model(model) if model else None, device=device.strip().lower(), batch_size=batch_size,
                     seq_len=seq_len, steps=steps, warmup=warmup, peak_tflops=peak_tflops, seed=seed, search=False)


def _print_rung(event) -> None:
    row = event.rung
    tps = f"{row['tokens_per_s']:,.0f} tok/s" if row.get("tokens_per_s") else row["status"]
    extra = f"  x{row['speedup_prev']:.2f} vs previous" if row.get("speedup_prev") else ""
    why = f"  ({row['reason']})" if row["status"] != "measured" and row.get("reason") else ""
    typer.echo(f"rung {event.index}/{event.total}  {row['name']:<16} {tps:>16}{extra}{why}")


def print_ladder(summary: dict, cancelled: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    from tui.app.ladder_screen import COLUMNS, bar_chart, rung_cells

    device = summary.get("device") or {}
    title = (f"Training-speed ladder: {summary['model']['name']} on {device.get('name', '?')} "
             f"({device.get('device', '?')}), seq-len {summary.get('seq_len')}" + (" (cancelled)" if cancelled else ""))
    table = Table(title=title)
    shown = COLUMNS[:-1]  # the note goes below the table: it is prose
    for i, (_, label) in enumerate(shown):
        table.add_column(label, justify="right" if 2 <= i <= 8 else "left", no_wrap=True)
    for row in summary["rungs"]:
        table.add_row(*rung_cells(row)[:len(shown)])
    console = Console()
    console.print(table)
    for row in summary["rungs"]:
        if row.get("reason"):
            console.print(f"  {row['name']}: {row['reason']}", highlight=False)
    console.print(bar_chart(summary["rungs"]))
    console.print("MFU divides by the dense peak of each rung's matmul dtype; x prev / x base: tokens/s over the "
                  "previous measured rung / the baseline. " + summary.get("seed_reference", ""))


def register(app: typer.Typer) -> None:
    """Adds `mfutop ladder`."""

    @app.command("ladder")
    def ladder(
        model: Optional[str] = typer.Option(None, "--model", "-m", help="Preset (default: gpt2 on a GPU, gpt-tiny on a CPU)."),
        device: str = typer.Option("auto", "--device", help="auto | cuda | cpu."),
        batch_size: Optional[int] = typer.Option(None, "--batch-size", "-b",
                                                 help="Sequences per step before the max-batch rung (default 8 GPU, 4 CPU)."),
        seq_len: Optional[int] = typer.Option(None, "--seq-len", "-T", help="Tokens per sequence (default: context)."),
        steps: int = typer.Option(10, "--steps", help="Timed steps per rung (more are added while the spread is > 10 %)."),
        warmup: Optional[int] = typer.Option(None, "--warmup", help="Warm-up steps per rung (default 3, 10 with compile)."),
        rungs: Optional[str] = typer.Option(None, "--rungs", help="Only these rungs, comma-separated (others: skipped)."),
        skip: Optional[List[str]] = typer.Option(None, "--skip", help="Leave rungs out, e.g. --skip compile (repeatable)."),
        rung_timeout: Optional[float] = typer.Option(None, "--rung-timeout",
                                                     help="Seconds per rung; checked between steps (compilation itself is not cut)."),
        nproc: int = typer.Option(1, "--nproc", help="Add a DDP rung on N processes (torchrun; gloo on CPU, NCCL on GPU)."),
        nnodes: Optional[str] = typer.Option(None, "--nnodes", help="torchrun: nodes (N or MIN:MAX)."),
        node_rank: Optional[int] = typer.Option(None, "--node-rank", help="torchrun: this node's rank."),
        rdzv_endpoint: Optional[str] = typer.Option(None, "--rdzv-endpoint", help="torchrun: HOST:PORT of the rendezvous."),
        rdzv_backend: Optional[str] = typer.Option(None, "--rdzv-backend", help="torchrun: rendezvous backend (c10d)."),
        rdzv_id: Optional[str] = typer.Option(None, "--rdzv-id", help="torchrun: job id shared by the nodes."),
        peak_tflops: Optional[float] = typer.Option(None, "--peak-tflops", help="Override the peak MFU divides by."),
        seed: int = typer.Option(0, "--seed", help="Seed for weights and synthetic tokens."),
        json_: bool = typer.Option(False, "--json", help="Print {rungs, device, model} as JSON only."),
        jsonl: bool = typer.Option(False, "--jsonl", help="Stream every event as one JSON line (flushed)."),
    ) -> None:
        """The training-speed ladder: each optimisation measured on top of the previous ones."""
        with user_errors():
            if json_ and jsonl:
                raise ConfigError("give --json or --jsonl, not both")
            if nproc < 1:
                raise ConfigError(f"nproc must be a positive integer, got {nproc}")
            from profiler.ddp import torchrun_args
            from profiler.ladder import parse_rungs, run_ladder

            config = build_ladder_config(model, device, batch_size, seq_len, steps, warmup, peak_tflops, seed)
            selected, skipped = parse_rungs(rungs), parse_rungs(_names(skip))
            passthrough = torchrun_args(nnodes, node_rank, rdzv_endpoint, rdzv_backend, rdzv_id)
            if passthrough and nproc == 1:
                raise ConfigError("--nnodes / --rdzv-* only apply with --nproc N (the DDP rung)")
            cancel = threading.Event()
            events = run_ladder(config, cancel, rungs=selected, skip=skipped, rung_timeout_s=rung_timeout,
                                nproc=nproc if nproc > 1 else None, torchrun_args=passthrough)
            last = _drive(events, json_=json_, jsonl=jsonl, cancel=cancel)
        _finish(last, json_, jsonl, cancel)


def _drive(events, *, json_: bool, jsonl: bool, cancel: threading.Event):
    import sys

    from profiler.events import JsonlWriter, LogMessage, RunFailed, RunFinished
    from tui.cmd_profile import ctrl_c_cancels

    writer = JsonlWriter(sys.stdout) if jsonl else None
    human = not (json_ or jsonl)
    last = None
    with ctrl_c_cancels(cancel):
        for event in events:
            if writer is not None:
                writer.write(event)
            if event.kind == "ladder_rung" and human:
                _print_rung(event)
            elif isinstance(event, LogMessage) and not jsonl and (human or event.level != "info"):
                typer.echo(f"{event.level:7} {event.text}", err=not human)
            if isinstance(event, (RunFinished, RunFailed)):
                last = event
    return last


def _finish(last, json_: bool, jsonl: bool, cancel: threading.Event) -> None:
    from profiler.events import RunFailed, RunFinished

    if isinstance(last, RunFailed):
        if last.error_type == "ConfigError":
            fail(last.message)
        typer.echo(f"mfutop: error: ladder failed: {last.message}", err=True)
        raise typer.Exit(RUN_FAILED_EXIT)
    if not isinstance(last, RunFinished):
        typer.echo("mfutop: error: ladder ended without a result", err=True)
        raise typer.Exit(RUN_FAILED_EXIT)
    if json_:
        emit_json({**last.summary, "cancelled": last.cancelled})
    elif not jsonl:
        print_ladder(last.summary, last.cancelled)
    if last.cancelled or cancel.is_set():
        raise typer.Exit(INTERRUPTED_EXIT)
