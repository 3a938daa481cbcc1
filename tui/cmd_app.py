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
from tui import run_options as opt
from tui.cli_support import user_errors
from tui.headless import check_out_path, run_headless



def check_cuda_request(device: str) -> None:
    """``--device cuda`` on a machine without CUDA: ConfigError now, not a failed run in the app."""
    if not device.startswith("cuda"):
        return
    from profiler.detect import TorchCuda

    count, reason = TorchCuda().count_and_reason()
    if count == 0:
        raise ConfigError(f"--device cuda requested but CUDA is not available: {reason or 'no device'}")


APP_FAILED_EXIT = 1


def run_app(app) -> None:
    """Run the app; its exit leaves no worker thread behind (the app joins it when quitting).

    An app that stopped on an unexpected error never exits 0: one line says so, and where the
    run's events are (the ``--out`` recording, or nowhere when none was asked for).
    """
    app.run()
    if app.return_code:
        where = f"the run's events are in {app.out_path}" if getattr(app, "out_path", None) else \
            "no recording was asked for (--out FILE keeps the events)"
        typer.echo(f"mfutop: error: the app stopped on an unexpected error (exit {app.return_code}); {where}",
                   err=True)
        raise typer.Exit(APP_FAILED_EXIT)


def open_default_app(opts: dict) -> None:
    """`mfutop [run options]`: the app on the detected device, the device's default model, a quick run."""
    with user_errors():
        config = opt.run_config(**opts)
        check_cuda_request(config.device)
    run_app(app_with_run_started(config))


def app_with_run_started(config, out_path: Path | None = None):
    """The app for an autostarted live run whose child starts before the app is even imported: the
    first numbers arrive while Textual loads (the first-numbers benchmark: benchmarks/bench_app_startup)."""
    from tui.event_sources import live_source, started_now

    first = started_now(live_source(config))
    from tui.app import MfutopApp

    return MfutopApp(run_config=config, out_path=out_path, autostart=True, first_run=first)


def incomplete_summary(state) -> dict:
    """What a recording without its final event still says (a run killed mid-way): every step it holds."""
    return {
        "device": state.device.to_dict() if state.device else None,
        "prediction": state.prediction,
        "measured": {**state.measured(), "steps": len(state.timed_samples),
                     "warmup_steps": len(state.samples) - len(state.timed_samples)},
        "events": len(state.events),
        "warnings": [text for level, text in state.logs if level == "warning"],
    }


def register(app: typer.Typer) -> None:
    """Adds `mfutop tui` and `mfutop replay`."""

    @app.command("tui")
    @opt.run_options(*opt.MODEL_PARAMS, *opt.RUN_PARAMS)
    def tui(
        opts: dict,
        out: Optional[Path] = opt.OUT,
        json_: bool = typer.Option(False, "--json", help="No app: run headless and print the summary as JSON."),
    ) -> None:
        """Open the app and profile a model live: hardware, prediction and measurement side by side."""
        with user_errors():
            config = opt.run_config(**opts)
            out = check_out_path(out)
            check_cuda_request(config.device)
        if json_:
            from tui.event_sources import live_source

            cancel = threading.Event()
            run_headless(live_source(config)(cancel), cancel=cancel, what="the run", json_=True, out=out)
            return
        run_app(app_with_run_started(config, out))

    @app.command("replay")
    def replay(
        path: Path = typer.Argument(..., help="A run recorded with --out (or `mfutop profile --jsonl > run.jsonl`)."),
        follow: bool = typer.Option(False, "--follow", "-f", help="Keep reading as the file grows, until the run ends."),
        json_: bool = typer.Option(False, "--json", help="No app: print the recorded run's final summary as JSON."),
    ) -> None:
        """Open the app on a recorded run (or one still being written, with --follow)."""
        from tui.event_sources import check_run_file, events_source, follow_source, read_run_file, replay_source

        with user_errors():
            check_run_file(path)
            if json_ and not follow:
                from profiler.event_validation import SkipCounter
                from tui.cli_support import warn

                skipped = SkipCounter()
                source = events_source(read_run_file(path, skipped))  # a file with no events at all: exit 2
                if skipped:
                    warn(skipped.report())
            else:
                source = follow_source(path) if follow else replay_source(path)
        if json_:
            from tui.app.run_state import RunState

            cancel, seen = threading.Event(), RunState()

            def folded(events):
                for event in events:
                    seen.apply(event)
                    yield event

            run_headless(folded(source(cancel)), cancel=cancel, what=str(path), json_=True,
                         incomplete=lambda: incomplete_summary(seen))
            return
        from tui.app import MfutopApp

        run_app(MfutopApp(source=source, autostart=True, title=f"mfutop replay {path.name}"))
