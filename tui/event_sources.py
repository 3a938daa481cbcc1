"""Where the app's events come from: a live run, a recorded file, or a file still growing.

A source is a factory ``source(cancel) -> Iterable[Event]``: the app calls it in
its worker thread with a fresh ``threading.Event`` per run, so re-running is
calling the factory again. ``mfutop remote`` builds its own ssh-backed factory
with the same shape. Nothing here imports torch at import time.
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator

from estimator.errors import ConfigError
from profiler.event_pump import EventPump
from profiler.event_validation import LineBuffer, SkipCounter, Skipped, bounded_lines, parse_event_line
from profiler.events import Event, LogMessage, RunFailed, RunFinished, read_events

EventSource = Callable[[threading.Event], Iterable[Event]]

FOLLOW_POLL_S = 0.2  # how long a follower sleeps when the file has nothing new
FOLLOW_STALE_S = 600.0  # a followed file silent this long: its writer is gone (a step can take minutes)


CHILD_GRACE_S = 15.0  # after a cancel, how long the child may take to send its final event
_PR_SET_PDEATHSIG = 1


def live_source(config) -> EventSource:
    """A real profiling run of ``config`` (a ``RunConfig``): ``mfutop profile --jsonl`` in a child process.

    Why a process: a small model's step is hundreds of short torch ops, each
    re-taking the GIL; in the app's own process the UI's redraws would compete
    for it and the step measured would be the app's. The child is the CLI
    itself, so the app shows exactly what ``mfutop profile`` measures.
    """
    source = child_source(["profile", "--jsonl", *config.to_argv()])
    source.label = f"live · {config.model.name if config.model else 'default model'} · {config.device}"
    return source


def ladder_source(config, *, rungs=(), skip=(), nproc: int | None = None) -> EventSource:
    """A live ``mfutop ladder --jsonl`` of ``config`` in a child process, so the UI cannot slow the rungs."""
    argv = ["ladder", "--jsonl", *config.to_argv(explicit=("steps",))]
    if rungs:
        argv += ["--rungs", ",".join(rungs)]
    for name in skip:
        argv += ["--skip", name]
    if nproc:
        argv += ["--nproc", str(nproc)]
    source = child_source(argv)
    source.label = "ladder"
    return source


def child_source(mfutop_argv: list[str]) -> EventSource:
    """``mfutop <argv>`` in a child process, its JSONL stdout read as events.

    Cancel is the child's own Ctrl-C (SIGINT): it stops between steps and still
    sends its summary. The child also gets SIGINT if this process dies, and is
    killed if it has not ended ``CHILD_GRACE_S`` after being told to stop.
    """
    command = [sys.executable, "-m", "tui", *mfutop_argv]

    def start(cancel: threading.Event) -> Iterator[Event]:
        return _child_events(command, cancel)

    start.command = command  # type: ignore[attr-defined]
    return start


def started_now(source: EventSource) -> EventSource:
    """``source`` (a child source) with its first process started at once, not when the app asks.

    The app's own start (importing Textual, the first draw) then overlaps the child's (torch's import,
    the model, the first steps): separate processes, so on two cores they truly run side by side. A
    later call (run again) starts a fresh child as usual. A child nobody reads is stopped at exit."""
    command = getattr(source, "command", None)
    if command is None:
        return source
    first = [_spawn(command)]
    atexit.register(lambda: first and _stop_child(first.pop()))

    def start(cancel: threading.Event) -> Iterator[Event]:
        return _child_events(command, cancel, first.pop() if first else None)

    start.command = command  # type: ignore[attr-defined]
    start.label = getattr(source, "label", "")  # type: ignore[attr-defined]
    return start


def _spawn(command: list[str]) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, encoding="utf-8", errors="replace", env=env,
                            preexec_fn=_interrupt_when_parent_dies if sys.platform.startswith("linux") else None)


def _interrupt_when_parent_dies() -> None:  # runs in the child, before exec
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGINT, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _child_events(command: list[str], cancel: threading.Event,
                  proc: subprocess.Popen | None = None) -> Iterator[Event]:
    """The events of ``command``'s child (``proc`` when it was started already)."""
    proc = proc or _spawn(command)
    pump = EventPump(proc)
    ended, interrupted = False, False
    try:
        while True:
            if cancel.is_set() and not interrupted and proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                interrupted = True
            item = pump.get(timeout=0.1)
            if item is None:
                continue
            kind, payload = item
            if kind == "end":
                break
            if kind == "event":
                ended = ended or isinstance(payload, (RunFinished, RunFailed))
                yield payload
        if not ended:
            detail = pump.last_error_line() or f"exit code {pump.returncode}"
            yield RunFailed(message=f"the profiling process ended without a result: {detail}",
                            error_type="ProcessDied")
    finally:
        _stop_child(proc)


def _stop_child(proc: subprocess.Popen) -> None:
    """No child outlives its source: ask (SIGINT), then insist."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(CHILD_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def check_run_file(path: Path) -> Path:
    """ConfigError unless ``path`` is a readable file (checked before the app opens)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"no such run file: {path}")
    if not path.is_file():
        raise ConfigError(f"not a file: {path}")
    return path


def read_run_file(path: Path, skipped: SkipCounter | None = None) -> list[Event]:
    """All valid events of a recorded run (bad lines skipped and counted in ``skipped``);
    ConfigError if the file holds none."""
    skipped = skipped if skipped is not None else SkipCounter()
    with open(check_run_file(path), encoding="utf-8", errors="replace") as stream:
        events = list(read_events(bounded_lines(stream), skipped))
    if not events:
        raise ConfigError(f"{path} holds no mfutop events (write one with --out run.jsonl)"
                          + (f"; {skipped.report()}" if skipped else ""))
    return events


def skipped_note(skipped: SkipCounter) -> LogMessage:
    return LogMessage("warning", skipped.report())


def replay_source(path: Path) -> EventSource:
    """A recorded run, read as it goes; cancel stops it between events. A bad line is skipped, never the
    end of the replay: the count and the first reasons arrive as a last warning."""

    def start(cancel: threading.Event) -> Iterator[Event]:
        skipped = SkipCounter()
        with open(path, encoding="utf-8", errors="replace") as stream:
            for event in read_events(bounded_lines(stream), skipped):
                if cancel.is_set():
                    return
                yield event
        if skipped:
            yield skipped_note(skipped)

    start.label = f"replay · {Path(path).name}"  # type: ignore[attr-defined]
    return start


def follow_source(path: Path, poll_s: float = FOLLOW_POLL_S, stale_s: float = FOLLOW_STALE_S) -> EventSource:
    """Tail a run file another process is still writing (``--out``, or ``tee`` of ``--jsonl``).

    Reads what is there, then polls for new complete lines; stops after
    RunFinished / RunFailed or when cancelled. A file truncated under it (the
    writer started a new run) is read again from the top; a file deleted, or
    silent for ``stale_s`` seconds, is said so and the follow ends.
    """

    def start(cancel: threading.Event) -> Iterator[Event]:
        skipped = SkipCounter()
        for number, line in enumerate(follow_lines(Path(path), cancel, poll_s, stale_s), 1):
            if isinstance(line, LogMessage):  # the follower's own word: deleted / stale
                yield line
                return
            event = parse_event_line(line, number)
            if isinstance(event, Skipped):
                skipped.add(event)
                if skipped.count == 1 or skipped.count % 100 == 0:
                    yield skipped_note(skipped)
                continue
            if event is None:
                continue
            yield event
            if isinstance(event, (RunFinished, RunFailed)):
                return

    start.label = f"follow · {Path(path).name}"  # type: ignore[attr-defined]
    return start


def follow_lines(path: Path, cancel: threading.Event, poll_s: float = FOLLOW_POLL_S,
                 stale_s: float = FOLLOW_STALE_S) -> Iterator[str | LogMessage]:
    """Complete lines of a growing file until ``cancel`` is set; a partial last line waits (in bounded memory).

    Ends with a ``LogMessage`` when the file is deleted or nothing new arrives for ``stale_s`` seconds.
    """
    buffer = LineBuffer()
    position = 0
    last_growth = time.monotonic()
    while not cancel.is_set():
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            yield LogMessage("warning", f"{path} was deleted while being followed; the follow ends")
            return
        if size < position:  # rewritten from the start
            position = 0
            buffer.reset()
        if size > position:
            with open(path, encoding="utf-8", errors="replace") as stream:
                stream.seek(position)
                chunk = stream.read(1 << 20)
                position = stream.tell()
            last_growth = time.monotonic()
            for line in buffer.feed(chunk):
                yield line
                if cancel.is_set():
                    return
            continue
        if stale_s and time.monotonic() - last_growth > stale_s:
            yield LogMessage("warning", f"{path} has not grown for {stale_s:.0f} s (its writer stopped?); "
                                        "the follow ends")
            return
        cancel.wait(poll_s)
    return


def events_source(events: Iterable[Event]) -> EventSource:
    """A fixed list of events as a source."""
    frozen = list(events)

    def start(cancel: threading.Event) -> Iterator[Event]:
        for event in frozen:
            if cancel.is_set():
                return
            yield event

    return start

