"""`mfutop remote user@host`: profile another machine over ssh and watch it here.

Runs ``mfutop profile --jsonl ...`` on the host through the local ``ssh`` (the
user's config, keys, ProxyJump all apply) and renders the stream in the app, or
prints the final summary with ``--json``. The ssh plumbing and the guarantee
that the remote run ends with the connection live in ``tui/remote.py``.
Imports no torch: the local side only reads events.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Iterable, List, Optional

import typer

from tui.cli_support import emit_json, fail, parse_batch, parse_memory, user_errors
from tui.run_options import check_out_path

# Remote verdicts that are the user's to fix (wrong host, key, program, argument): exit 2 like local bad input.
USER_ERROR_TYPES = ("ConfigError", "RemoteMfutopNotFound", "SshFailed")
RUN_FAILED_EXIT = 1


def profile_args(
    model: Optional[str],
    device: Optional[str],
    batch_size: Optional[str],
    seq_len: Optional[int],
    steps: Optional[int],
    warmup: Optional[int],
    precision: Optional[str],
    compile_: Optional[bool],
    flash: Optional[bool],
    memory_limit: Optional[str],
    peak_tflops: Optional[float],
    vocab_pad: Optional[int],
    seed: Optional[int],
    fused_adamw: Optional[bool] = None,
    nproc: Optional[int] = None,
    extra: Iterable[str] = (),
) -> list[str]:
    """The remote ``mfutop profile`` arguments, as literal strings; only what the user gave.

    Checked here only for syntax (a batch is 'auto' or a positive integer, a
    memory size parses); whether the host has that model, precision or memory
    is the remote's call.
    """
    out: list[str] = []
    if batch_size is not None:
        parse_batch(batch_size)
    if memory_limit is not None:
        parse_memory(memory_limit)
    for flag, value in (
        ("--model", model),
        ("--device", device),
        ("--batch-size", batch_size),
        ("--seq-len", seq_len),
        ("--steps", steps),
        ("--warmup", warmup),
        ("--precision", precision),
        ("--memory-limit", memory_limit),
        ("--peak-tflops", peak_tflops),
        ("--vocab-pad", vocab_pad),
        ("--seed", seed),
        ("--nproc", nproc),
    ):
        if value is not None:
            out += [flag, str(value)]
    for positive, negative, value in (
        ("--compile", "--no-compile", compile_),
        ("--flash", "--no-flash", flash),
        ("--fused-adamw", "--no-fused-adamw", fused_adamw),
    ):
        if value is not None:
            out.append(positive if value else negative)
    return out + list(extra)


def register(app: typer.Typer) -> None:
    """Adds ``mfutop remote``."""

    @app.command(
        "remote",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
        epilog="Options not listed here are passed on to the remote `mfutop profile` unchanged.",
    )
    def remote(
        ctx: typer.Context,
        destination: str = typer.Argument(..., help="user@host or a ~/.ssh/config alias, as you would give it to ssh."),
        model: Optional[str] = typer.Option(None, "--model", "-m", help="Model preset, checked by the remote."),
        device: Optional[str] = typer.Option(None, help="auto | cuda | cpu on the remote."),
        batch_size: Optional[str] = typer.Option(None, "--batch-size", "-b", help="'auto' (search) or a number."),
        seq_len: Optional[int] = typer.Option(None, "--seq-len", "-T", min=1),
        steps: Optional[int] = typer.Option(None, min=1, help="Timed steps."),
        warmup: Optional[int] = typer.Option(None, min=0),
        precision: Optional[str] = typer.Option(None, help="fp32 | tf32 | bf16-mixed | bf16."),
        compile_: Optional[bool] = typer.Option(None, "--compile/--no-compile", help="torch.compile on the remote."),
        flash: Optional[bool] = typer.Option(None, "--flash/--no-flash", help="scaled_dot_product_attention."),
        memory_limit: Optional[str] = typer.Option(None, "--memory-limit", help="Cap usable memory, e.g. 40GiB."),
        peak_tflops: Optional[float] = typer.Option(None, "--peak-tflops", min=0.0, help="Override the peak MFU divides by."),
        vocab_pad: Optional[int] = typer.Option(None, "--vocab-pad", min=1),
        seed: Optional[int] = typer.Option(None),
        fused_adamw: Optional[bool] = typer.Option(None, "--fused-adamw/--no-fused-adamw"),
        nproc: Optional[int] = typer.Option(None, "--nproc", min=1, help="Processes on the remote (DDP under torchrun)."),
        out: Optional[Path] = typer.Option(None, "--out", help="Save the received stream here (mfutop replay reads it)."),
        json_: bool = typer.Option(False, "--json", help="No app: print the remote run's summary as JSON."),
        port: Optional[int] = typer.Option(None, "--port", "-p", min=1, max=65535, help="ssh -p"),
        identity: Optional[str] = typer.Option(None, "--identity", "-i", help="ssh -i (identity file)"),
        jump: Optional[str] = typer.Option(None, "--jump", "-J", help="ssh -J (ProxyJump)"),
        ssh_config: Optional[str] = typer.Option(None, "--ssh-config", "-F", help="ssh -F (config file)"),
        ssh_option: List[str] = typer.Option([], "--ssh-option", "-o", help="ssh -o Key=Value (repeatable)"),
        batch_mode: bool = typer.Option(
            True, "--batch-mode/--no-batch-mode", help="BatchMode=yes fails fast on a missing key; --no-batch-mode may prompt."
        ),
        ssh_binary: str = typer.Option("ssh", "--ssh", help="The ssh client to run."),
        remote_mfutop: str = typer.Option(
            "mfutop", "--remote-mfutop", help="Remote command prefix: a path, or e.g. 'python3 -m tui'."
        ),
    ) -> None:
        """Profile a remote machine over SSH and watch it live here."""
        from tui.remote import RemoteRun, SshOptions, remote_profile_argv

        with user_errors():
            ssh = SshOptions(
                port=port,
                identity=identity,
                jump=jump,
                config=ssh_config,
                options=tuple(ssh_option),
                batch_mode=batch_mode,
                ssh_binary=ssh_binary,
            )
            args = profile_args(
                model, device, batch_size, seq_len, steps, warmup, precision,
                compile_, flash, memory_limit, peak_tflops, vocab_pad, seed, fused_adamw, nproc, ctx.args,
            )
            argv = remote_profile_argv(remote_mfutop, args)
            check_out_path(out)
            if json_:
                _print_summary(RemoteRun(destination, argv, ssh, record_path=out))
            else:  # the app records to --out itself, as for a local run
                _open_app(lambda: RemoteRun(destination, argv, ssh), out)


def _print_summary(run) -> None:
    """Headless, like ``mfutop profile --json``: the summary (plus ``cancelled``), or one line and 1 / 2.

    The first Ctrl-C stops the remote run gracefully (its summary of what was
    measured still arrives, exit 130); a second one drops the connection.
    """
    from profiler.events import RunFailed, RunFinished
    from tui.cmd_profile import INTERRUPTED_EXIT, ctrl_c_cancels

    cancel = threading.Event()
    events = run.events(cancel)
    last = None
    try:
        with ctrl_c_cancels(cancel):
            for event in events:
                if isinstance(event, (RunFinished, RunFailed)):
                    last = event
    except KeyboardInterrupt:  # the second Ctrl-C: do not wait for the remote's last words
        cancel.set()
        run.stop(grace_s=0)
        events.close()
        raise typer.Exit(INTERRUPTED_EXIT)
    if isinstance(last, RunFinished):
        emit_json({**last.summary, "cancelled": last.cancelled})
        if last.cancelled or cancel.is_set():
            raise typer.Exit(INTERRUPTED_EXIT)
        return
    if isinstance(last, RunFailed):
        _exit_failed(last.message, 2 if last.error_type in USER_ERROR_TYPES else RUN_FAILED_EXIT)
    if cancel.is_set():
        _exit_failed(f"the run on {run.host} was stopped before it sent a summary", INTERRUPTED_EXIT)
    _exit_failed(f"the run on {run.host} ended without a result", RUN_FAILED_EXIT)


def _exit_failed(message: str, code: int) -> None:
    if code == 2:
        fail(message)
    typer.echo(f"mfutop: error: {message}", err=True)
    raise typer.Exit(code)


def _open_app(make_run, out: Path | None) -> None:
    """Connect before the app takes the terminal: a password prompt still works, early failures print one line."""
    from profiler.events import RunFailed
    from tui.event_sources import events_source

    first = make_run()
    typer.echo(f"mfutop: connecting to {first.host} …", err=True)
    first.start()
    try:
        first.wait_started()
    except KeyboardInterrupt:
        first.stop(grace_s=0)
        raise typer.Exit(130)
    if not first.running:  # ssh already ended: its whole output is queued
        events = list(first.events())
        failure = next((e for e in reversed(events) if isinstance(e, RunFailed)), None)
        if failure is not None and first.remote_events == 0:  # nothing came from mfutop itself
            _exit_failed(failure.message, 2 if failure.error_type in USER_ERROR_TYPES else RUN_FAILED_EXIT)
        _run_app(events_source(events), first.host, out)
        return
    pending = [first]

    def source(cancel: threading.Event):
        run = pending.pop() if pending else make_run()  # a re-run in the app connects again
        return run.events(cancel)

    _run_app(source, first.host, out)


def _run_app(source, host: str, out: Path | None) -> None:
    from tui.app import MfutopApp

    source.label = f"remote · {host}"  # the app's subtitle
    MfutopApp(run_config=None, source=source, out_path=out, autostart=True, title=f"mfutop remote {host}").run()
