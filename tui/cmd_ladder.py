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
from pathlib import Path
from typing import List, Optional

import typer

from estimator.errors import ConfigError
from tui import run_options as opt
from tui.cli_support import user_errors
from tui.headless import run_headless


def _names(values: Optional[List[str]]) -> list[str]:
    """Repeated and/or comma-separated options -> one list."""
    out: list[str] = []
    for value in values or ():
        out += [v.strip() for v in value.split(",") if v.strip()]
    return out


def _print_rung(event) -> None:
    row = event.rung
    tps = f"{row['tokens_per_s']:,.0f} tok/s" if row.get("tokens_per_s") else row["status"]
    extra = f"  x{row['speedup_prev']:.2f} vs previous" if row.get("speedup_prev") else ""
    why = f"  ({row['reason']})" if row["status"] != "measured" and row.get("reason") else ""
    typer.echo(f"rung {event.index}/{event.total}  {row['name']:<16} {tps:>16}{extra}{why}")


def print_ladder(summary: dict, cancelled: bool) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from tui.ladder_table import COLUMNS, bar_chart, rung_cells

    device = summary.get("device") or {}
    title = (f"Training-speed ladder: {summary['model']['name']} on {device.get('name', '?')} "
             f"({device.get('device', '?')}), seq-len {summary.get('seq_len')}" + (" (cancelled)" if cancelled else ""))
    table = Table(title=Text(title))  # the model's name may come from a config.json
    shown = COLUMNS[:-1]  # the note goes below the table: it is prose
    for i, (_, label) in enumerate(shown):
        table.add_column(label, justify="right" if 2 <= i <= 8 else "left", no_wrap=True)
    for row in summary["rungs"]:
        table.add_row(*rung_cells(row)[:len(shown)])
    console = Console()
    console.print(table)
    for row in summary["rungs"]:
        if row.get("reason"):
            console.print(f"  {row['name']}: {row['reason']}", markup=False, highlight=False)  # torch's words
    console.print(bar_chart(summary["rungs"]), markup=False)
    console.print("MFU divides by the dense peak of each rung's matmul dtype; x prev / x base: tokens/s over the "
                  "previous measured rung / the baseline. " + summary.get("seed_reference", ""))


def register(app: typer.Typer) -> None:
    """Adds `mfutop ladder`."""

    @app.command("ladder")
    @opt.run_options(
        *opt.MODEL_PARAMS, "device", "batch_size", "seq_len", "steps", "warmup", "peak_tflops", "seed",
        *opt.TORCHRUN_PARAMS,
        batch_size=(Optional[int], typer.Option(None, "--batch-size", "-b", min=1, max=1 << 20,
                                                help="Sequences per step before the max-batch rung (default 8 GPU, 4 CPU).")),
        steps=(int, typer.Option(10, "--steps", min=1, max=100_000,
                                 help="Timed steps per rung (more are added while the spread is > 10 %).")),
    )
    def ladder(
        opts: dict,
        rungs: Optional[str] = typer.Option(None, "--rungs", help="Only these rungs, comma-separated (others: skipped)."),
        skip: Optional[List[str]] = typer.Option(None, "--skip", metavar="RUNG",
                                                 help="Leave rungs out, e.g. --skip compile (repeatable)."),
        rung_timeout: Optional[float] = typer.Option(None, "--rung-timeout", min=0.001,
                                                     help="Seconds per rung; checked between steps (compilation itself is not cut)."),
        nproc: int = typer.Option(1, "--nproc", min=1, max=1024,
                                  help="Add a DDP rung on N processes (torchrun; gloo on CPU, NCCL on GPU)."),
        json_: bool = typer.Option(False, "--json", help="Print {rungs, device, model} as JSON only."),
        jsonl: bool = opt.JSONL, out: Optional[Path] = opt.OUT,
    ) -> None:
        """The training-speed ladder: each optimisation measured on top of the previous ones."""
        with user_errors():
            opt.exclusive_json(json_, jsonl)
            from profiler.ladder import parse_rungs, run_ladder
            from tui.headless import check_out_path

            passthrough = opt.torchrun_passthrough(opts)
            config = opt.run_config(**opts, search=False)
            selected, skipped = parse_rungs(rungs), parse_rungs(_names(skip))
            if passthrough and nproc == 1:
                raise ConfigError("--nnodes / --rdzv-* only apply with --nproc N (the DDP rung)")
            out = check_out_path(out)
            cancel = threading.Event()
            events = run_ladder(config, cancel, rungs=selected, skip=skipped, rung_timeout_s=rung_timeout,
                                nproc=nproc if nproc > 1 else None, torchrun_args=passthrough)
        human = not (json_ or jsonl)
        run_headless(events, cancel=cancel, what="ladder", json_=json_, jsonl=jsonl, out=out,
                     on_event=_show if human else (_warnings if json_ else None),
                     table=print_ladder)


def _show(event) -> None:
    from profiler.events import LogMessage

    if event.kind == "ladder_rung":
        _print_rung(event)
    elif isinstance(event, LogMessage):
        typer.echo(f"{event.level:7} {event.text}")


def _warnings(event) -> None:
    from profiler.events import LogMessage

    if isinstance(event, LogMessage) and event.level != "info":
        typer.echo(f"{event.level:7} {event.text}", err=True)
