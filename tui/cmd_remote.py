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
from typing import List, Optional

import typer

from tui import run_options as opt
from tui.cli_support import fail, user_errors
from tui.headless import check_out_path, run_headless

# Remote verdicts that are the user's to fix (wrong host, key, program, argument): exit 2 like local bad input.
USER_ERROR_TYPES = ("ConfigError", "RemoteMfutopNotFound", "SshFailed")
RUN_FAILED_EXIT = 1


def register(app: typer.Typer) -> None:
    """Adds ``mfutop remote``."""

    @app.command(
        "remote",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
        epilog="Options not listed here are passed on to the remote `mfutop profile` unchanged.",
    )
    @opt.run_options(*(name for name in opt.MODEL_PARAMS if name != "model_json"), *opt.RUN_PARAMS)
    def remote(
        ctx: typer.Context,
        opts: dict,
        destination: str = typer.Argument(..., help="user@host or a ~/.ssh/config alias, as you would give it to ssh."),
        nproc: int = opt.NPROC,
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
            # Checked here, before ssh is called; the remote then decides what its device does with it.
            config = opt.run_config(**opts)
            args = [*config.to_argv(), *(["--nproc", str(nproc)] if nproc > 1 else []), *ctx.args]
            argv = remote_profile_argv(remote_mfutop, args)
            out = check_out_path(out)
            if json_:
                _print_summary(RemoteRun(destination, argv, ssh), out)
            else:  # the app records to --out itself, as for a local run
                _open_app(lambda: RemoteRun(destination, argv, ssh), out)


def _print_summary(run, out: Optional[Path]) -> None:
    """Headless, like ``mfutop profile --json``: the summary (plus ``cancelled``), or one line and 1 / 2.

    The first Ctrl-C stops the remote run gracefully (its summary of what was
    measured still arrives, exit 130); a second one drops the connection.
    """
    cancel = threading.Event()
    events = run.events(cancel)
    run_headless(events, cancel=cancel, what=f"the run on {run.host}", json_=True, out=out,
                 on_event=lambda event: None,  # the remote's stderr arrives as warnings: the verdict says enough
                 user_error_types=USER_ERROR_TYPES, on_abort=lambda: run.stop(grace_s=0))


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
    from tui.cmd_app import run_app

    run_app(MfutopApp(run_config=None, source=source, out_path=out, autostart=True, title=f"mfutop remote {host}"))
