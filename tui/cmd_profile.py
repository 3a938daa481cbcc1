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

import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import typer

from estimator.errors import ConfigError
from tui.cli_support import emit_json, fail, user_errors
from tui.run_options import build_run_config, check_out_path

INTERRUPTED_EXIT = 130
RUN_FAILED_EXIT = 1


# ----------------------------------------------------------------- helpers

@contextmanager
def ctrl_c_cancels(cancel: threading.Event) -> Iterator[None]:
    """First Ctrl-C sets ``cancel`` (the run stops between steps); a second one interrupts."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum, frame):
        if cancel.is_set():
            signal.signal(signal.SIGINT, previous)
            raise KeyboardInterrupt
        cancel.set()
        typer.echo("mfutop: stopping after the current step (Ctrl-C again to abort)", err=True)

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def drive(events, *, jsonl: bool, out_path: Optional[Path], human: bool, cancel: threading.Event):
    """Consume the stream: write JSONL where asked (stdout, ``out_path``), print progress; return the last event."""
    from profiler.events import JsonlWriter, LogMessage, RunFailed, RunFinished

    writers = [JsonlWriter(sys.stdout)] if jsonl else []
    out_file = None if out_path is None else open(out_path, "w", encoding="utf-8")
    if out_file is not None:
        writers.append(JsonlWriter(out_file))
    last = None
    try:
        with ctrl_c_cancels(cancel), user_errors():
            for event in events:
                for writer in writers:
                    writer.write(event)
                if human:
                    _print_progress(event)
                if isinstance(event, LogMessage) and not human and not jsonl and event.level == "warning":
                    typer.echo(f"mfutop: warning: {event.text}", err=True)
                if isinstance(event, (RunFinished, RunFailed)):
                    last = event
    except KeyboardInterrupt:  # the second Ctrl-C: abort without a traceback
        typer.echo("mfutop: aborted", err=True)
        raise typer.Exit(INTERRUPTED_EXIT) from None
    finally:
        if out_file is not None:
            out_file.close()
    return last


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


def finish(last, json_: bool, jsonl: bool, cancel: threading.Event, what: str, table) -> None:
    """Print the result; exit 2 for user errors, 1 for a failed run, 130 after Ctrl-C."""
    from profiler.events import RunFailed, RunFinished

    if isinstance(last, RunFailed):
        if last.error_type == "ConfigError":
            fail(last.message)
        typer.echo(f"mfutop: error: {what} failed: {last.message}", err=True)
        raise typer.Exit(RUN_FAILED_EXIT)
    if not isinstance(last, RunFinished):
        typer.echo(f"mfutop: error: {what} ended without a result", err=True)
        raise typer.Exit(RUN_FAILED_EXIT)
    if json_:
        emit_json({**last.summary, "cancelled": last.cancelled})
    elif not jsonl:
        table(last.summary, last.cancelled)
    if last.cancelled or cancel.is_set():
        raise typer.Exit(INTERRUPTED_EXIT)


def _fmt(key: str, value) -> str:
    from estimator.units import fmt_bytes, fmt_pct, fmt_seconds

    if value is None:
        return "n/a"
    if key == "memory.total":
        return fmt_bytes(value)
    if key == "step.time_s":
        return fmt_seconds(value)
    if key == "step.mfu":
        return fmt_pct(value)
    if key == "step.tokens_per_s":
        return f"{value:,.0f}"
    return f"{value:,}"


def print_profile_table(summary: dict, cancelled: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    from estimator.units import fmt_pct

    m = summary["measured"]
    cfg = summary["config"]
    title = (f"{cfg['model']} on {cfg['torch_device']}, batch {m['batch_size']} x {m['seq_len']}, "
             f"{cfg['precision_effective']}" + (" (cancelled)" if cancelled else ""))
    table = Table(title=title)
    for col in ("", "predicted", "measured", "error"):
        table.add_column(col, justify="right" if col else "left")
    for row in summary["compare"]:
        error = "n/a" if row["error"] is None else fmt_pct(row["error"])
        table.add_row(row["label"], _fmt(row["key"], row["predicted"]), _fmt(row["key"], row["measured"]), error)
    console = Console()
    console.print(table)
    spread = m.get("step_time_relative_spread")
    console.print(f"{m['steps']} timed steps (+{m['warmup_steps']} warm-up), step-time spread (IQR/median) "
                  f"{fmt_pct(spread) if spread is not None else 'n/a'}; MFU divides the analytic "
                  f"{m['flops_analytic']:,} FLOPs/step (full TxT attention) by the {m['peak_dtype']} peak; "
                  f"with causal-halved attention (llm.c/Megatron) it is {fmt_pct(m.get('mfu_causal'))}.")
    console.print(f"memory: {m['memory_method']}")
    from profiler.ddp_summary import describe_distributed

    for line in describe_distributed(summary):
        console.print(line, highlight=False)


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
                  + (" (cancelled)" if cancelled else ""))


# ----------------------------------------------------------------- commands

def register(app: typer.Typer) -> None:
    """Adds `mfutop profile`, `mfutop search` and `mfutop flops`."""

    @app.command("profile")
    def profile(
        model: Optional[str] = typer.Option(None, "--model", "-m", help="Preset (default: gpt2 on a GPU, gpt-tiny on a CPU)."),
        device: str = typer.Option("auto", "--device", help="auto | cuda | cpu."),
        batch_size: str = typer.Option("auto", "--batch-size", "-b", help="Sequences per step, or 'auto' to search the max."),
        seq_len: Optional[int] = typer.Option(None, "--seq-len", "-T", help="Tokens per sequence (default: context)."),
        steps: int = typer.Option(20, "--steps", help="Timed steps (more are added while the spread is > 10 %)."),
        warmup: Optional[int] = typer.Option(None, "--warmup", help="Warm-up steps (default 3, 10 with --compile)."),
        precision: str = typer.Option("bf16-mixed", "--precision", help="fp32 | tf32 | bf16-mixed | bf16."),
        compile_: bool = typer.Option(False, "--compile/--no-compile", help="torch.compile the model."),
        flash: bool = typer.Option(True, "--flash/--no-flash", help="scaled_dot_product_attention vs explicit matmuls."),
        fused_adamw: Optional[bool] = typer.Option(None, "--fused-adamw/--no-fused-adamw",
                                                   help="Fused AdamW (default: on CUDA) vs foreach."),
        pin_memory: bool = typer.Option(True, "--pin-memory/--no-pin-memory", help="Pinned host batches (GPU)."),
        vocab_pad: int = typer.Option(1, "--vocab-pad", help="Pad the vocabulary to a multiple (64: 50257 -> 50304)."),
        memory_limit: Optional[str] = typer.Option(None, "--memory-limit", help="Cap usable memory, e.g. 40GiB."),
        peak_tflops: Optional[float] = typer.Option(None, "--peak-tflops", help="Override the peak MFU divides by."),
        seed: int = typer.Option(0, "--seed", help="Seed for weights and synthetic tokens."),
        nproc: int = typer.Option(1, "--nproc", help="Processes (DDP under torchrun; gloo on CPU, NCCL on GPU)."),
        fsdp: bool = typer.Option(False, "--fsdp", help="With --nproc: FSDP2 fully_shard (ZeRO-3) instead of DDP."),
        baseline_tps: Optional[float] = typer.Option(None, "--baseline-tokens-per-s",
                                                     help="With --nproc: one process's tokens/s (not measured then)."),
        nnodes: Optional[str] = typer.Option(None, "--nnodes", help="torchrun: nodes (N or MIN:MAX)."),
        node_rank: Optional[int] = typer.Option(None, "--node-rank", help="torchrun: this node's rank."),
        rdzv_endpoint: Optional[str] = typer.Option(None, "--rdzv-endpoint", help="torchrun: HOST:PORT of the rendezvous."),
        rdzv_backend: Optional[str] = typer.Option(None, "--rdzv-backend", help="torchrun: rendezvous backend (c10d)."),
        rdzv_id: Optional[str] = typer.Option(None, "--rdzv-id", help="torchrun: job id shared by the nodes."),
        json_: bool = typer.Option(False, "--json", help="Print the final summary as JSON only."),
        jsonl: bool = typer.Option(False, "--jsonl", help="Stream every event as one JSON line (flushed)."),
        out: Optional[Path] = typer.Option(None, "--out", help="Also record the event stream to this JSONL file."),
    ) -> None:
        """Measure a real training step: detect, predict, search the batch, time steady-state steps."""
        with user_errors():
            if json_ and jsonl:
                raise ConfigError("give --json or --jsonl, not both")
            config = build_run_config(model, device, batch_size, seq_len, steps, warmup, precision, compile_,
                                      flash, fused_adamw, pin_memory, vocab_pad, memory_limit, peak_tflops, seed)
            from profiler.ddp import torchrun_args

            passthrough = torchrun_args(nnodes, node_rank, rdzv_endpoint, rdzv_backend, rdzv_id)
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
        last = drive(events, jsonl=jsonl, out_path=out, human=not (json_ or jsonl), cancel=cancel)
        finish(last, json_, jsonl, cancel, "profile", print_profile_table)

    @app.command("search")
    def search(
        model: Optional[str] = typer.Option(None, "--model", "-m", help="Preset (default: gpt2 on a GPU, gpt-tiny on a CPU)."),
        device: str = typer.Option("auto", "--device", help="auto | cuda | cpu."),
        seq_len: Optional[int] = typer.Option(None, "--seq-len", "-T", help="Tokens per sequence (default: context)."),
        precision: str = typer.Option("bf16-mixed", "--precision", help="fp32 | tf32 | bf16-mixed | bf16."),
        compile_: bool = typer.Option(False, "--compile/--no-compile", help="torch.compile the model."),
        flash: bool = typer.Option(True, "--flash/--no-flash", help="scaled_dot_product_attention vs explicit matmuls."),
        fused_adamw: Optional[bool] = typer.Option(None, "--fused-adamw/--no-fused-adamw", help="Fused AdamW vs foreach."),
        vocab_pad: int = typer.Option(1, "--vocab-pad", help="Pad the vocabulary to a multiple."),
        memory_limit: Optional[str] = typer.Option(None, "--memory-limit", help="Cap usable memory, e.g. 40GiB."),
        json_: bool = typer.Option(False, "--json", help="Print the summary (with the probes) as JSON only."),
        jsonl: bool = typer.Option(False, "--jsonl", help="Stream every event as one JSON line (flushed)."),
        out: Optional[Path] = typer.Option(None, "--out", help="Also record the event stream to this JSONL file."),
    ) -> None:
        """The largest batch whose full training step fits, seeded by the prediction; lists every probe."""
        with user_errors():
            if json_ and jsonl:
                raise ConfigError("give --json or --jsonl, not both")
            config = build_run_config(model, device, None, seq_len, 1, None, precision, compile_, flash,
                                      fused_adamw, True, vocab_pad, memory_limit, None)
            out = check_out_path(out)
        from profiler.run import run_profile

        cancel = threading.Event()
        last = drive(run_profile(config, cancel, measure=False), jsonl=jsonl, out_path=out,
                     human=not (json_ or jsonl), cancel=cancel)
        finish(last, json_, jsonl, cancel, "search", print_search_table)

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
            counts = count_flops(padded, batch_size, seq)
        result = {"model": padded.name, "vocab_size": padded.vocab_size, **counts.to_dict()}
        if json_:
            emit_json(result)
            return
        _print_flops(result)


def _print_flops(r: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{r['model']}: FLOPs of one training step, batch {r['batch_size']} x {r['seq_len']}")
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
    console.print(f"FlopCounterMode by op: {r['counter_by_op']}")
    console.print(r["note"])
