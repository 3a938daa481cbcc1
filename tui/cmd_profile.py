"""`mfutop profile`, `mfutop search`, `mfutop flops`: the measurement side, headless.

``profile`` runs ``profiler.run.run_profile`` (detect, predict, count, search
when ``--batch-size auto``, measure) and prints a short table of predicted vs
measured, the summary as ``--json``, or the event stream as ``--jsonl`` (one
flushed line per event); ``--out`` also records the stream to a file for
``mfutop replay``. ``search`` stops after the batch search and lists its
probes. ``flops`` prints the analytic, FlopCounterMode and thop counts with
the gaps explained. Ctrl-C stops a run between steps: what was measured is
printed and the exit code is 130; a second Ctrl-C aborts at once.
torch is imported inside the commands only.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Optional

import typer

from estimator.errors import ConfigError
from tui import run_options as opt
from tui.cli_support import emit_json, user_errors
from tui.headless import check_out_path, run_headless


def _print_progress(event) -> None:
    from estimator.units import fmt_bytes, fmt_rate, fmt_seconds
    from profiler.events import DeviceDetected, LogMessage, ProbeResult, StepSample

    if isinstance(event, DeviceDetected):
        peak = fmt_rate(event.peak_flops) if event.peak_flops else "unknown peak"
        typer.echo(f"device  {event.name} ({event.device}), {event.peak_dtype} peak {peak}")
    elif isinstance(event, LogMessage):
        typer.echo(f"{event.level:7} {event.text}")
    elif isinstance(event, ProbeResult):
        mem = fmt_bytes(event.peak_memory_bytes) if event.peak_memory_bytes else "-"
        typer.echo(f"probe   batch {event.batch_size:>6}  {'fits' if event.fits else 'no  '}  {event.outcome:6} "
                   f"peak {mem:>11}  {fmt_seconds(event.seconds):>9}  bracket [{event.low}, {event.high or '?'}]")
    elif isinstance(event, StepSample) and not event.warmup:
        typer.echo(f"step    {event.step:>4}  {fmt_seconds(event.step_time_s):>9}  "
                   f"{event.tokens_per_s:,.0f} tok/s  loss {event.loss:.3f}")


def print_profile_table(summary: dict, cancelled: bool) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from estimator.units import fmt_pct, fmt_seconds
    from tui.app.comparison import format_value

    m = summary["measured"]
    cfg = summary["config"]
    title = (f"{cfg['model']} on {cfg['torch_device']}, batch {m['batch_size']} x {m['seq_len']}, "
             f"{cfg['precision_effective']}" + (" (cancelled)" if cancelled else ""))
    table = Table(title=Text(title))
    for col in ("", "predicted", "measured", "error"):
        table.add_column(col, justify="right" if col else "left")
    for row in summary["compare"]:
        if row["kind"] == "convention":  # a counting convention, not a prediction: no error to grade
            error = "(convention)"
        else:
            error = "n/a" if row["error"] is None else fmt_pct(row["error"])
        table.add_row(Text(row["label"]), format_value(row["predicted"], row["unit"]),
                      format_value(row["measured"], row["unit"]), error)
    console = Console()
    console.print(table)
    spread = m.get("step_time_relative_spread")
    console.print(f"{m['steps']} timed steps (+{m['warmup_steps']} warm-up), step-time spread (IQR/median) "
                  f"{fmt_pct(spread) if spread is not None else 'n/a'}; MFU divides the analytic "
                  f"{m['flops_analytic'] or 0:,} FLOPs/step (full TxT attention) by the {m['peak_dtype']} peak; "
                  f"with causal-halved attention (llm.c/Megatron) it is {fmt_pct(m.get('mfu_causal'))}.",
                  markup=False, highlight=False)
    console.print(f"memory: {m['memory_method']}", markup=False, highlight=False)
    step = (summary.get("prediction") or {}).get("step") or {}
    if step.get("spec"):
        console.print(f"step time predicted from this device's measured kernels ({step.get('source')}); the "
                      f"datasheet predicts {fmt_seconds(step['spec']['time_s'])}", markup=False, highlight=False)
    for category, row in ((summary.get("calibration") or {}).get("category_errors") or {}).items():
        error = "n/a" if row["error"] is None else f"{row['error'] * 100:+.0f} %"
        console.print(f"  {category:<12} predicted {fmt_seconds(row['predicted_s'])}, measured "
                      f"{fmt_seconds(row['measured_s'])} ({row['share']:.0%} of the step): {error}",
                      markup=False, highlight=False)
    from profiler.ddp_summary import describe_distributed

    for line in describe_distributed(summary):
        console.print(line, markup=False, highlight=False)


def print_search_table(summary: dict, cancelled: bool) -> None:
    from rich.console import Console

    from estimator.units import fmt_bytes

    s = summary.get("search") or {}
    console = Console()
    limited = {"memory": "memory", "token_cap": "the CPU token cap (give --memory-limit)"}.get(
        s.get("limited_by"), s.get("limited_by"))
    console.print(f"max batch {s.get('max_batch_size')} (predicted {s.get('predicted_max_batch_size')}), "
                  f"{len(s.get('probes', []))} probes, limited by {limited}, limit "
                  f"{fmt_bytes(s.get('memory_limit_bytes'))} ({s.get('memory_limit_source')})"
                  + (" (cancelled)" if cancelled else ""), markup=False)


# ----------------------------------------------------------------- commands

def register(app: typer.Typer) -> None:
    """Adds `mfutop profile`, `mfutop search` and `mfutop flops`."""

    @app.command("profile")
    @opt.run_options(*opt.MODEL_PARAMS, *opt.RUN_PARAMS, *opt.TORCHRUN_PARAMS)
    def profile(
        opts: dict,
        nproc: int = opt.NPROC,
        fsdp: bool = typer.Option(False, "--fsdp", help="With --nproc: FSDP2 fully_shard (ZeRO-3) instead of DDP."),
        baseline_tps: Optional[float] = typer.Option(None, "--baseline-tokens-per-s", min=0.0,
                                                     help="With --nproc: one process's tokens/s (not measured then)."),
        json_: bool = opt.JSON, jsonl: bool = opt.JSONL, out: Optional[Path] = opt.OUT,
    ) -> None:
        """Measure a real training step: detect, predict, search the batch, time steady-state steps."""
        with user_errors():
            opt.exclusive_json(json_, jsonl)
            passthrough = opt.torchrun_passthrough(opts)
            config = opt.run_config(**opts)
            out = check_out_path(out)
        cancel = threading.Event()
        if nproc > 1 or passthrough or fsdp:
            from profiler.ddp import run_distributed

            with user_errors():
                events = run_distributed(config, nproc, passthrough, cancel,
                                         strategy="fsdp" if fsdp else "ddp", baseline_tokens_per_s=baseline_tps)
        else:
            from profiler.run import run_profile

            events = run_profile(config, cancel)
        human = not (json_ or jsonl)
        run_headless(events, cancel=cancel, what="profile", json_=json_, jsonl=jsonl, out=out,
                     on_event=_print_progress if human else None, table=print_profile_table)

    @app.command("search")
    @opt.run_options(*opt.MODEL_PARAMS, "device", "seq_len", "precision", "compile_", "flash", "fused_adamw",
                     "vocab_pad", "memory_limit", "seed")
    def search(opts: dict, json_: bool = opt.JSON, jsonl: bool = opt.JSONL, out: Optional[Path] = opt.OUT) -> None:
        """The largest batch whose full training step fits, seeded by the prediction; lists every probe."""
        with user_errors():
            opt.exclusive_json(json_, jsonl)
            config = opt.run_config(**opts, batch_size="auto", steps=1)
            out = check_out_path(out)
        from profiler.run import run_profile

        cancel = threading.Event()
        human = not (json_ or jsonl)
        run_headless(run_profile(config, cancel, measure=False), cancel=cancel, what="search", json_=json_,
                     jsonl=jsonl, out=out, on_event=_print_progress if human else None, table=print_search_table)

    @app.command("flops")
    def flops(
        model: Optional[str] = typer.Option(None, "--model", "-m", help="Preset (default gpt2)."),
        batch_size: int = typer.Option(1, "--batch-size", "-b", help="Sequences per step."),
        seq_len: Optional[int] = typer.Option(None, "--seq-len", "-T", help="Tokens per sequence (default: context)."),
        vocab_pad: int = typer.Option(1, "--vocab-pad", help="Pad the vocabulary to a multiple."),
        json_: bool = typer.Option(False, "--json", help="Print the counts as JSON."),
    ) -> None:
        """FLOPs of one training step: analytic vs FlopCounterMode vs thop, and why they differ."""
        with user_errors():
            from estimator.presets import DEFAULT_GPU_MODEL, get_model

            cfg = get_model(model or DEFAULT_GPU_MODEL)
            if batch_size < 1:
                raise ConfigError(f"batch-size must be a positive integer, got {batch_size}")
            if vocab_pad < 1:
                raise ConfigError(f"vocab-pad must be a positive integer, got {vocab_pad}")
            seq = seq_len or cfg.context_length
            if seq < 1 or seq > cfg.context_length:
                raise ConfigError(f"seq-len {seq} must be between 1 and {cfg.name}'s context ({cfg.context_length})")
            from profiler.flop_count import count_flops
            from profiler.model import check_buildable

            padded = cfg.with_vocab_padded(vocab_pad)
            check_buildable(padded)
            if json_:
                counts = count_flops(padded, batch_size, seq)
            else:  # seconds for a large model (torch's import, two passes on the meta device): say so
                from rich.console import Console

                with Console(stderr=True).status(f"counting the FLOPs of one {padded.name} step three ways…"):
                    counts = count_flops(padded, batch_size, seq)
        result = {"model": padded.name, "vocab_size": padded.vocab_size, **counts.to_dict()}
        if json_:
            emit_json(result)
            return
        _print_flops(result)


def _print_flops(r: dict) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(f"{r['model']}: FLOPs of one training step, batch {r['batch_size']} x {r['seq_len']}"))
    for col in ("count", "forward+backward", "vs analytic"):
        table.add_column(col, justify="left" if col == "count" else "right")
    a = r["analytic"]
    for label, value in (("analytic (nanoGPT convention)", a), ("FlopCounterMode (meta, explicit attn)", r["counter"]),
                         ("thop x 3 (2 x MACs x 3)", r["thop"]),
                         ("analytic, causal-halved (llm.c/Megatron)", r["analytic_causal"])):
        ratio = "n/a" if value is None else f"{value / a:.4f}"
        table.add_row(label, "n/a" if value is None else f"{value:,}", ratio)
    console = Console()
    console.print(table)
    console.print(f"attention core (q@kT + att@v), forward: {r['attention_core_forward']:,}; "
                  f"thop's LayerNorm additions, forward: {r['layernorm_thop_forward']:,}")
    console.print(f"FlopCounterMode by op: {r['counter_by_op']}", markup=False)
    console.print(r["note"], markup=False)
