"""Event sources: replaying, following a growing file, and saving what the app holds."""

from __future__ import annotations

import json
import threading
import time

import pytest

from estimator.errors import ConfigError
from profiler.events import JsonlWriter, RunFinished
from tui.recording import save_events
from tui.event_sources import events_source, follow_source, read_run_file, replay_source

from fixtures.fake_run import fake_run_events


def write_run(path, events):
    with open(path, "w", encoding="utf-8") as stream:
        writer = JsonlWriter(stream)
        for event in events:
            writer.write(event)


def test_replay_yields_the_recorded_events(tmp_path):
    events = list(fake_run_events())
    path = tmp_path / "run.jsonl"
    write_run(path, events)
    assert list(replay_source(path)(threading.Event())) == events
    assert replay_source(path).label == "replay · run.jsonl"


def test_replay_stops_when_cancelled(tmp_path):
    path = tmp_path / "run.jsonl"
    write_run(path, fake_run_events())
    cancel = threading.Event()
    seen = []
    for event in replay_source(path)(cancel):
        seen.append(event)
        if len(seen) == 5:
            cancel.set()
    assert len(seen) == 5


def test_read_run_file_refuses_missing_and_empty_files(tmp_path):
    with pytest.raises(ConfigError, match="no such run file"):
        read_run_file(tmp_path / "missing.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("a shell banner\n\n")
    with pytest.raises(ConfigError, match="holds no mfutop events"):
        read_run_file(empty)


def test_follow_reads_a_growing_file_until_the_run_finishes(tmp_path):
    events = list(fake_run_events(steps=4))
    lines = [json.dumps(e.to_dict()) + "\n" for e in events]
    path = tmp_path / "live.jsonl"
    path.write_text("")

    def writer():
        with open(path, "a", encoding="utf-8") as stream:
            for line in lines:
                half = len(line) // 2  # a line written in two parts must be read once, whole
                stream.write(line[:half])
                stream.flush()
                time.sleep(0.002)
                stream.write(line[half:])
                stream.flush()

    thread = threading.Thread(target=writer)
    thread.start()
    got = list(follow_source(path, poll_s=0.01)(threading.Event()))
    thread.join()
    assert got == events
    assert isinstance(got[-1], RunFinished)


def test_follow_stops_on_cancel_while_waiting(tmp_path):
    path = tmp_path / "stalled.jsonl"
    write_run(path, list(fake_run_events())[:3])  # a writer that never finishes
    cancel = threading.Event()
    got = []

    def follow():
        got.extend(follow_source(path, poll_s=0.01)(cancel))

    thread = threading.Thread(target=follow)
    thread.start()
    time.sleep(0.1)
    cancel.set()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert len(got) == 3


def test_saved_events_replay_identically(tmp_path):
    events = list(fake_run_events())
    path = tmp_path / "saved.jsonl"
    save_events(events, path)
    assert read_run_file(path) == events
    assert list(events_source(events)(threading.Event())) == events


def test_a_child_started_now_is_the_first_run_and_a_rerun_starts_a_fresh_one(tmp_path):
    """`mfutop` starts its run's child before the app loads: the first call reads that process, the next
    one spawns anew (each child appends its pid to a file, so the count of processes is visible)."""
    import sys

    from tui.event_sources import child_source, started_now

    pids = tmp_path / "pids"
    script = (f"import os, json; open({str(pids)!r}, 'a').write(str(os.getpid()) + '\\n'); "
              "print(json.dumps({'event': 'run_finished', 'summary': {}}))")
    source = child_source([])
    source.command = [sys.executable, "-c", script]
    early = started_now(source)
    deadline = time.monotonic() + 30
    while not (pids.exists() and pids.read_text()) and time.monotonic() < deadline:
        time.sleep(0.01)  # the child runs before anyone asks for its events
    assert len(pids.read_text().split()) == 1
    first = list(early(threading.Event()))
    assert [type(e) for e in first] == [RunFinished] and len(pids.read_text().split()) == 1
    again = list(early(threading.Event()))
    assert [type(e) for e in again] == [RunFinished] and len(pids.read_text().split()) == 2
