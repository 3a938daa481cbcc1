"""Recording a run's events to a JSONL file without ever costing the run its measurement.

Used by the headless commands (``--out``) and by the app: a failed open or write
(read-only directory, ``/dev/full``, a full disk) is reported once through
``on_fail`` and recording stops; the run goes on and its summary still arrives.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Iterable, Optional


class Recording:
    """The ``--out`` file: every event as one flushed JSONL line; a failed write warns once and stops
    recording, never the run."""

    def __init__(self, path: Optional[Path], on_fail: Callable[[str], None]):
        from profiler.events import JsonlWriter

        self.path = path
        self.on_fail = on_fail
        self.failed: str | None = None
        self._stream = None
        self._writer = None
        if path is not None:
            try:
                self._stream = open(path, "w", encoding="utf-8")
                self._writer = JsonlWriter(self._stream)
            except OSError as exc:
                self._fail(exc)

    def write(self, event) -> None:
        if self._writer is None:
            return
        try:
            self._writer.write(event)
        except OSError as exc:
            self._fail(exc)

    def _fail(self, exc: OSError) -> None:
        self.failed = f"recording to {self.path} stopped: {exc.strerror or exc}; the run goes on"
        self.on_fail(self.failed)
        self._writer = None

    def close(self) -> None:
        if self._stream is not None:
            try:
                self._stream.close()
            except OSError as exc:
                if self.failed is None:
                    self._fail(exc)
            self._stream = None


def save_events(events: Iterable, path: Path) -> None:
    """Write ``events`` to ``path`` as JSONL (``mfutop replay`` opens it); an OSError is the caller's to
    report: the events stay where they are."""
    from profiler.events import JsonlWriter

    with open(path, "w", encoding="utf-8") as stream:
        writer = JsonlWriter(stream)
        for event in events:
            writer.write(event)


def default_save_path(directory: Path | None = None) -> Path:
    """``mfutop-run-YYYYmmdd-HHMMSS.jsonl`` in ``directory`` (the working directory by default)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return (directory or Path.cwd()) / f"mfutop-run-{stamp}.jsonl"
