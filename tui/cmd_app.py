"""`mfutop` (no arguments), `mfutop tui` and `mfutop replay`: the Textual app's commands.

Every option is checked before the app takes the terminal, so bad input is one
line and exit 2, never a half-drawn screen. Torch is imported only when a live
run starts (inside the app's worker) or for an explicit ``--device cuda`` check.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Optional

import typer

from estimator.errors import ConfigError
from tui.cli_support import emit_json, fail, user_errors
from tui.run_options import build_run_config, check_out_path

DEFAULT_STEPS = 20  # quick: gpt-tiny finishes in seconds on a CPU, gpt2 in well under a minute on a GPU
RUN_FAILED_EXIT = 1


def check_cuda_request(device: str) -> None:
    """``--device cuda`` on a machine without CUDA: ConfigError now, not a failed run in the app."""
    if not device.startswith("cuda"):
        return
    from profiler.detect import TorchCuda

    count, reason = TorchCuda().count_and_reason()
    if count == 0:
        raise ConfigError(f"--device cuda requested but CUDA is not available: {reason or 'no device'}")


def run_app(app) -> None:
    """Run the app; its exit leaves no worker thread behind (the app joins it when quitting)."""
    app.run()


def open_default_app() -> None:
    """`mfutop`: the app on the detected device with the device's default model and a quick run."""
    from profiler.run_config import RunConfig
    from tui.app import MfutopApp

    run_app(MfutopApp(run_config=RunConfig(steps=DEFAULT_STEPS), autostart=True))


def print_summary(events, what: str) -> None:
    """Headless: the final RunFinished summary as JSON, or one line and exit 1 for a failed run."""
    from profiler.events import RunFailed, RunFinished

    last = None
    for event in events:
        if isinstance(event, (RunFinished, RunFailed)):
            last = event
    if isinstance(last, RunFinished):
        emit_json(last.summary)
        return
    if isinstance(last, RunFailed):
        if last.error_type == "ConfigError":
            fail(last.message)
        typer.echo(f"mfutop: error: {what} failed: {last.message}", err=True)
        raise typer.Exit(RUN_FAILED_EXIT)
    fail(f"{what} holds no finished run (no run_finished event)")


def register(app: typer.Typer) -> None:
    """Adds `mfutop tui` and `mfutop replay`."""

    @app.command("tui")
    def tui(
        model: Optional[str] = typer.Option(None, help="Model preset (default: gpt2 on a GPU, gpt-tiny on a CPU)."),
        device: str = typer.Option("auto", help="auto | cuda | cpu."),
        batch_size: Optional[str] = typer.Option(None, "--batch-size", help="'auto' (search the max) or a number."),
        seq_len: Optional[int] = typer.Option(None, "--seq-len", help="Tokens per sequence (default: the model's context)."),
        steps: int = typer.Option(DEFAULT_STEPS, help="Timed steps after warm-up."),
        precision: str = typer.Option("bf16-mixed", help="fp32 | tf32 | bf16-mixed | bf16."),
        compile_: bool = typer.Option(False, "--compile/--no-compile", help="torch.compile the model."),
        flash: bool = typer.Option(True, "--flash/--no-flash", help="scaled_dot_product_attention vs explicit matmuls."),
        memory_limit: Optional[str] = typer.Option(None, "--memory-limit", help="Cap usable memory, e.g. 40GiB."),
        out: Optional[Path] = typer.Option(None, "--out", help="Record the run's events to this JSONL file."),
        json_: bool = typer.Option(False, "--json", help="No app: run headless and print the summary as JSON."),
    ) -> None:
        """Open the app and profile a model live: hardware, prediction and measurement side by side."""
        with user_errors():
            config = build_run_config(model=model, device=device, batch_size=batch_size, seq_len=seq_len,
                                      steps=steps, precision=precision, compile_=compile_, flash=flash,
                                      memory_limit=memory_limit)
            out = check_out_path(out)
            check_cuda_request(config.device)
        if json_:
            _headless(config, out)
            return
        from tui.app import MfutopApp

        run_app(MfutopApp(run_config=config, out_path=out, autostart=True))

    @app.command("replay")
    def replay(
        path: Path = typer.Argument(..., help="A run recorded with --out (or `mfutop profile --jsonl > run.jsonl`)."),
        follow: bool = typer.Option(False, "--follow", "-f", help="Keep reading as the file grows, until the run ends."),
        json_: bool = typer.Option(False, "--json", help="No app: print the recorded run's final summary as JSON."),
    ) -> None:
        """Open the app on a recorded run (or one still being written, with --follow)."""
        from tui.event_sources import check_run_file, follow_source, read_run_file, replay_source

        with user_errors():
            check_run_file(path)
            if json_ and not follow:
                print_summary(read_run_file(path), str(path))
                return
        if json_:
            cancel = threading.Event()
            try:
                print_summary(follow_source(path)(cancel), str(path))
            except KeyboardInterrupt:
                cancel.set()
                raise typer.Exit(130)
            return
        from tui.app import MfutopApp

        source = follow_source(path) if follow else replay_source(path)
        run_app(MfutopApp(source=source, autostart=True, title=f"mfutop replay {path.name}"))


def _headless(config, out: Optional[Path]) -> None:
    """`mfutop tui --json`: the same live run without the app; the summary on stdout."""
    from profiler.events import JsonlWriter
    from tui.event_sources import live_source

    cancel = threading.Event()
    stream = open(out, "w", encoding="utf-8") if out else None
    writer = JsonlWriter(stream) if stream else None

    def recorded():
        for event in live_source(config)(cancel):
            if writer:
                writer.write(event)
            yield event

    try:
        with user_errors():
            print_summary(recorded(), "the run")
    except KeyboardInterrupt:
        cancel.set()
        raise typer.Exit(130)
    finally:
        if stream:
            stream.close()
