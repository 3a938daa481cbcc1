"""Where the app's events come from: a live run, a recorded file, or a file still growing.

A source is a factory ``source(cancel) -> Iterable[Event]``: the app calls it in
its worker thread with a fresh ``threading.Event`` per run, so re-running is
calling the factory again. ``mfutop remote`` builds its own ssh-backed factory
with the same shape. Nothing here imports torch at import time.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable, Iterable, Iterator

from estimator.errors import ConfigError
from profiler.events import Event, RunFailed, RunFinished, read_events

EventSource = Callable[[threading.Event], Iterable[Event]]

FOLLOW_POLL_S = 0.2  # how long a follower sleeps when the file has nothing new


def live_source(config) -> EventSource:
    """A real profiling run of ``config`` (a ``RunConfig``) in a child process (see profiler.run_process:
    in the app's own process the UI thread would starve the measured step of the GIL)."""
    from profiler.run_process import process_source

    return process_source(config)


def check_run_file(path: Path) -> Path:
    """ConfigError unless ``path`` is a readable file (checked before the app opens)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"no such run file: {path}")
    if not path.is_file():
        raise ConfigError(f"not a file: {path}")
    return path


def read_run_file(path: Path) -> list[Event]:
    """All events of a recorded run; ConfigError if the file holds none."""
    with open(check_run_file(path), encoding="utf-8", errors="replace") as stream:
        events = list(read_events(stream))
    if not events:
        raise ConfigError(f"{path} holds no mfutop events (write one with --out run.jsonl)")
    return events


def replay_source(path: Path) -> EventSource:
    """A recorded run, read at once; cancel stops it between events."""

    def start(cancel: threading.Event) -> Iterator[Event]:
        with open(path, encoding="utf-8", errors="replace") as stream:
            for event in read_events(stream):
                if cancel.is_set():
                    return
                yield event

    start.label = f"replay · {Path(path).name}"  # type: ignore[attr-defined]
    return start


def follow_source(path: Path, poll_s: float = FOLLOW_POLL_S) -> EventSource:
    """Tail a run file another process is still writing (``--out``, or ``tee`` of ``--jsonl``).

    Reads what is there, then polls for new complete lines; stops after
    RunFinished / RunFailed or when cancelled. A file truncated under it (the
    writer started a new run) is read again from the top.
    """

    def start(cancel: threading.Event) -> Iterator[Event]:
        for line in follow_lines(Path(path), cancel, poll_s):
            for event in read_events([line]):
                yield event
                if isinstance(event, (RunFinished, RunFailed)):
                    return

    start.label = f"follow · {Path(path).name}"  # type: ignore[attr-defined]
    return start


def follow_lines(path: Path, cancel: threading.Event, poll_s: float = FOLLOW_POLL_S) -> Iterator[str]:
    """Complete lines of a growing file until ``cancel`` is set; a partial last line waits."""
    pending = ""
    position = 0
    while not cancel.is_set():
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            size = 0
        if size < position:  # rewritten from the start
            position, pending = 0, ""
        if size > position:
            with open(path, encoding="utf-8", errors="replace") as stream:
                stream.seek(position)
                chunk = stream.read()
                position = stream.tell()
            pending += chunk
            *complete, pending = pending.split("\n")
            for line in complete:
                yield line
                if cancel.is_set():
                    return
            continue
        cancel.wait(poll_s)
    return


def paced(source: EventSource, delay_s: float) -> EventSource:
    """The same events with a pause between them (demos, and tests that cancel mid-run)."""

    def start(cancel: threading.Event) -> Iterator[Event]:
        for event in source(cancel):
            yield event
            if cancel.wait(delay_s):
                return

    return start


def events_source(events: Iterable[Event]) -> EventSource:
    """A fixed list of events as a source."""
    frozen = list(events)

    def start(cancel: threading.Event) -> Iterator[Event]:
        for event in frozen:
            if cancel.is_set():
                return
            yield event

    return start

