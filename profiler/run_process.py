"""A profiling run (or a ladder) in a child process, streamed back as JSONL events.

Why a process: a training step of a small model is hundreds of short torch ops,
each re-taking the GIL; run in the app's own process, the UI thread's redraws
compete for it and the step measured would be the app's, not the model's. A
child has its own interpreter (and a crash there cannot take the app down), so
what the app shows is what `mfutop profile` measures.

Child: ``python -m profiler.run_process --job profile|ladder --config JSON
[--options JSON]`` writes one event per line to stdout. Its stdin is the
cancel line: when it closes (the parent cancels, or dies), the run stops
between steps and still ends with ``RunFinished(cancelled=True)``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
from collections import deque
from typing import Any, Callable, Iterable, Iterator

from profiler.events import Event, JsonlWriter, RunFailed, RunFinished, read_events
from profiler.run_config import RunConfig, config_from_json, config_to_json

EventSource = Callable[[threading.Event], Iterable[Event]]
JOBS = ("profile", "ladder")
EXIT_GRACE_S = 15.0  # after a cancel, how long the child may take to send its final event


def process_source(config: RunConfig, job: str = "profile", **options: Any) -> EventSource:
    """An app event source that runs ``job`` for ``config`` in a child process."""
    if job not in JOBS:
        raise ValueError(f"job must be one of {JOBS}, got {job!r}")

    def start(cancel: threading.Event) -> Iterator[Event]:
        return _stream(_child_command(config, job, options), cancel)

    start.label = f"live · {config.model.name if config.model else 'default model'} · {config.device}"
    return start


def _child_command(config: RunConfig, job: str, options: dict[str, Any]) -> list[str]:
    return [sys.executable, "-m", "profiler.run_process", "--job", job,
            "--config", json.dumps(config_to_json(config)), "--options", json.dumps(options)]


def _stream(command: list[str], cancel: threading.Event) -> Iterator[Event]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, encoding="utf-8", errors="replace", env=env)
    stderr_tail: deque[str] = deque(maxlen=20)
    threading.Thread(target=lambda: stderr_tail.extend(line.rstrip() for line in proc.stderr),
                     name="run-process-stderr", daemon=True).start()
    threading.Thread(target=_close_on_cancel, args=(proc, cancel), name="run-process-cancel", daemon=True).start()
    ended = False
    try:
        for event in read_events(proc.stdout):
            ended = ended or isinstance(event, (RunFinished, RunFailed))
            yield event
        code = proc.wait()
        if not ended:
            detail = next((line for line in reversed(stderr_tail) if line), "") or f"exit code {code}"
            yield RunFailed(message=f"the profiling process ended without a result: {detail}",
                            error_type="ProcessDied")
    finally:
        _stop(proc)


def _close_on_cancel(proc: subprocess.Popen, cancel: threading.Event) -> None:
    while proc.poll() is None:
        if cancel.wait(0.1):
            _close_stdin(proc)
            return


def _close_stdin(proc: subprocess.Popen) -> None:
    try:
        proc.stdin.close()
    except OSError:
        pass


def _stop(proc: subprocess.Popen) -> None:
    """Ask the child to stop (stdin closed), then insist: no child outlives its source."""
    _close_stdin(proc)
    try:
        proc.wait(EXIT_GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# ----------------------------------------------------------------- the child side

def _cancel_when_stdin_closes(cancel: threading.Event) -> None:
    try:
        for _ in sys.stdin:
            pass
    finally:
        cancel.set()


def _events(job: str, config: RunConfig, options: dict[str, Any], cancel: threading.Event) -> Iterable[Event]:
    if job == "ladder":
        from profiler.ladder import run_ladder

        return run_ladder(config, cancel, **options)
    from profiler.run import run_profile

    return run_profile(config, cancel, **options)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m profiler.run_process", description=__doc__.split("\n")[0])
    parser.add_argument("--job", choices=JOBS, default="profile")
    parser.add_argument("--config", required=True, help="RunConfig as JSON (profiler.run_config.config_to_json)")
    parser.add_argument("--options", default="{}", help="keyword options of run_profile / run_ladder, as JSON")
    args = parser.parse_args(argv)
    cancel = threading.Event()
    threading.Thread(target=_cancel_when_stdin_closes, args=(cancel,), name="stdin-cancel", daemon=True).start()
    writer = JsonlWriter(sys.stdout)
    options = json.loads(args.options)
    if "skip" in options:
        options["skip"] = tuple(options["skip"])
    try:
        config = config_from_json(json.loads(args.config))
        for event in _events(args.job, config, options, cancel):
            writer.write(event)
    except BrokenPipeError:  # the parent is gone: nobody to report to
        return 1
    except Exception as exc:  # noqa: BLE001 - reported as an event, not a traceback
        writer.write(RunFailed(message=f"{type(exc).__name__}: {exc}", error_type=type(exc).__name__))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
