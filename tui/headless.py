"""The one headless driver: consume an event stream, record it, stop on Ctrl-C or SIGTERM, exit right.

``profile``, ``search``, ``ladder``, ``tui --json``, ``replay --json`` and
``remote --json`` all run their stream through ``drive`` and end with
``finish``, so they share the contract: ``--jsonl`` streams every event,
``--out`` records it (a write error becomes a warning: the run goes on and its
summary is still printed, nothing measured is lost), the first Ctrl-C or a
SIGTERM cancels between steps and the partial summary is still printed (exit
130), a second Ctrl-C aborts, a user error is one line and exit 2, a failed run
exit 1.
"""

from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional

import typer

from estimator.errors import ConfigError
from tui.cli_support import emit_json, fail, warn
from tui.recording import Recording

INTERRUPTED_EXIT = 130
RUN_FAILED_EXIT = 1


@contextmanager
def cancel_on_signals(cancel: threading.Event) -> Iterator[None]:
    """The first Ctrl-C or a SIGTERM sets ``cancel`` (the run stops between steps); a second Ctrl-C interrupts."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum, frame):
        if cancel.is_set() and signum == signal.SIGINT:
            signal.signal(signal.SIGINT, previous[signal.SIGINT])
            raise KeyboardInterrupt
        if not cancel.is_set():
            what = "Ctrl-C again to abort" if signum == signal.SIGINT else "SIGTERM"
            typer.echo(f"mfutop: stopping after the current step ({what})", err=True)
        cancel.set()

    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def check_out_path(out: Optional[Path]) -> Optional[Path]:
    """``--out FILE``: a writable file path in an existing directory, checked before the run; else ConfigError."""
    if out is None:
        return None
    out = Path(out)
    if out.is_dir():
        raise ConfigError(f"--out {out} is a directory; give a file name such as run.jsonl")
    parent = out.absolute().parent
    if not parent.is_dir():
        raise ConfigError(f"--out {out}: directory {parent} does not exist")
    try:
        with open(out, "a", encoding="utf-8"):
            pass
    except OSError as exc:
        raise ConfigError(f"--out {out} cannot be written: {exc.strerror or exc}") from None
    return out


def drive(events: Iterable, *, cancel: threading.Event, jsonl: bool = False, out: Optional[Path] = None,
          on_event: Callable[[object], None] | None = None, warnings_to_stderr: bool = True,
          on_abort: Callable[[], None] | None = None):
    """Consume ``events``; stream (``jsonl``), record (``out``), show (``on_event``); return the last verdict.

    The verdict is the last ``RunFinished`` / ``RunFailed``; None if the stream ended without one.
    ``on_abort`` runs at the second Ctrl-C, before the stream is closed (e.g. drop a connection at once).
    """
    from profiler.events import JsonlWriter, LogMessage, RunFailed, RunFinished

    stdout = JsonlWriter(sys.stdout) if jsonl else None
    recording = Recording(out, on_fail=warn)
    last = None
    try:
        with cancel_on_signals(cancel):
            for event in events:
                if stdout is not None:
                    stdout.write(event)
                recording.write(event)
                if on_event is not None:
                    on_event(event)
                elif (warnings_to_stderr and not jsonl and isinstance(event, LogMessage)
                      and event.level == "warning"):
                    warn(event.text)
                if isinstance(event, (RunFinished, RunFailed)):
                    last = event
    except KeyboardInterrupt:  # the second Ctrl-C: abort without a traceback
        if on_abort is not None:
            on_abort()
        close = getattr(events, "close", None)
        if close is not None:
            close()
        typer.echo("mfutop: aborted", err=True)
        raise typer.Exit(INTERRUPTED_EXIT) from None
    finally:
        recording.close()
    return last


def finish(last, *, cancel: threading.Event, what: str, json_: bool = False, jsonl: bool = False,
           table: Callable[[dict, bool], None] | None = None,
           user_error_types: tuple[str, ...] = ("ConfigError",),
           incomplete: Callable[[], dict] | None = None) -> None:
    """Print the result; exit 2 for user errors, 1 for a failed run, 130 after a cancel.

    ``incomplete`` answers for a stream that ended without a verdict (a recording cut by a
    ``kill -9``): its figures are printed with ``"incomplete": true`` instead of an error.
    """
    from profiler.events import RunFailed, RunFinished

    if last is None and incomplete is not None and json_:
        emit_json({"incomplete": True, "cancelled": False, **incomplete()})
        return

    if isinstance(last, RunFailed):
        if last.error_type in user_error_types:
            fail(last.message)
        typer.echo(f"mfutop: error: {what} failed: {last.message}", err=True)
        raise typer.Exit(RUN_FAILED_EXIT)
    if not isinstance(last, RunFinished):
        if cancel.is_set():
            typer.echo(f"mfutop: error: {what} was stopped before it sent a summary", err=True)
            raise typer.Exit(INTERRUPTED_EXIT)
        typer.echo(f"mfutop: error: {what} ended without a result", err=True)
        raise typer.Exit(RUN_FAILED_EXIT)
    if json_:
        emit_json({**last.summary, "cancelled": last.cancelled})
    elif not jsonl and table is not None:
        table(last.summary, last.cancelled)
    if last.cancelled or cancel.is_set():
        raise typer.Exit(INTERRUPTED_EXIT)


def run_headless(events: Iterable, *, cancel: threading.Event, what: str, json_: bool = False, jsonl: bool = False,
                 out: Optional[Path] = None, on_event: Callable[[object], None] | None = None,
                 table: Callable[[dict, bool], None] | None = None,
                 user_error_types: tuple[str, ...] = ("ConfigError",),
                 on_abort: Callable[[], None] | None = None,
                 incomplete: Callable[[], dict] | None = None) -> None:
    """``drive`` then ``finish``: the whole headless command."""
    last = drive(events, cancel=cancel, jsonl=jsonl, out=out, on_event=on_event, on_abort=on_abort)
    finish(last, cancel=cancel, what=what, json_=json_, jsonl=jsonl, table=table, user_error_types=user_error_types,
           incomplete=incomplete)
