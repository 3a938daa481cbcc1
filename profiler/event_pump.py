"""Read a child process's JSONL event stream: the one pump behind every process mfutop watches.

The app's live run (``mfutop profile --jsonl`` in a child), ``torchrun``'s rank 0
and a remote host's ``ssh`` all write events on stdout and diagnostics on
stderr. ``EventPump`` reads both on daemon threads into one queue, so the
consumer can wait for "the next thing" with a timeout and still notice a
cancel, a dead child or a silent one:

- ``("event", Event)`` for each valid event line (``read_events`` validates it
  at this boundary: non-event noise such as a shell banner passes silently, a
  bad event line is skipped and counted in ``skipped``; an over-long line is
  never held whole);
- ``("stderr", line)`` for each non-empty stderr line, control characters and
  escape sequences stripped (the last ones are kept in ``stderr_tail`` for a
  failure message);
- ``("end", returncode)`` once the process has exited and both streams are
  drained (a grandchild that still holds a pipe is waited for at most
  ``drain_s``).
"""

from __future__ import annotations

import collections
import queue
import subprocess
import threading
from typing import IO, Any, Iterator

from estimator.safe_text import strip_controls
from profiler.event_validation import SkipCounter, bounded_lines
from profiler.events import read_events

DRAIN_S = 5.0


class EventPump:
    def __init__(self, proc: subprocess.Popen, *, stderr_keep: int = 20, drain_s: float = DRAIN_S):
        self.proc = proc
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=stderr_keep)
        self.first_output = threading.Event()  # set at the first stdout line, or at the end
        self.returncode: int | None = None
        self.skipped = SkipCounter()
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._drain_s = drain_s
        readers = [threading.Thread(target=self._read_stdout, args=(proc.stdout,), name="pump-stdout", daemon=True),
                   threading.Thread(target=self._read_stderr, args=(proc.stderr,), name="pump-stderr", daemon=True)]
        for reader in readers:
            reader.start()
        threading.Thread(target=self._reap, args=readers, name="pump-reap", daemon=True).start()

    def _lines(self, stream: IO[str]) -> Iterator[str]:
        for line in bounded_lines(stream):
            self.first_output.set()
            yield line

    def _read_stdout(self, stream: IO[str]) -> None:
        try:
            for event in read_events(self._lines(stream), self.skipped):
                self._queue.put(("event", event))
        except (OSError, ValueError):  # the pipe was closed under us: the process is being stopped
            pass

    def _read_stderr(self, stream: IO[str]) -> None:
        try:
            for line in bounded_lines(stream):
                line = strip_controls(line).rstrip()  # it may end up in a message printed to a terminal
                if line:
                    self.stderr_tail.append(line)
                    self._queue.put(("stderr", line))
        except (OSError, ValueError):
            pass

    def _reap(self, *readers: threading.Thread) -> None:
        self.returncode = self.proc.wait()
        for reader in readers:
            reader.join(self._drain_s)
        self.first_output.set()
        self._queue.put(("end", self.returncode))

    def get(self, timeout: float | None = None) -> tuple[str, Any] | None:
        """The next item, or None when nothing came within ``timeout`` seconds."""
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def last_error_line(self) -> str:
        return next((line for line in reversed(self.stderr_tail) if line), "")
