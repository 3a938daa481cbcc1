"""`mfutop compare a.jsonl b.jsonl`: setup differences, then each figure of both runs with the change."""

from __future__ import annotations

import json
from dataclasses import replace

from typer.testing import CliRunner

from profiler.events import RunFinished, StepSample
from tui.recording import save_events
from tui.cli import app

from fixtures.fake_run import fake_run_events

runner = CliRunner()


def _slower(event, factor):
    if isinstance(event, StepSample):
        return replace(event, step_time_s=event.step_time_s * factor, tokens_per_s=event.tokens_per_s / factor)
    if isinstance(event, RunFinished):
        m = event.summary["measured"]
        measured = dict(m, step_time_s=m["step_time_s"] * factor, tokens_per_s=m["tokens_per_s"] / factor)
        return replace(event, summary=dict(event.summary, measured=measured))
    return event


def _recorded(tmp_path, name, slower=1.0):
    events = [_slower(e, slower) for e in fake_run_events()]
    path = tmp_path / name
    save_events(events, path)
    return path


def test_compare_json_gives_both_runs_and_the_change(tmp_path):
    a, b = _recorded(tmp_path, "a.jsonl"), _recorded(tmp_path, "b.jsonl", slower=2.0)
    result = runner.invoke(app, ["compare", str(a), str(b), "--json"])
    assert result.exit_code == 0, result.output
    diff = json.loads(result.stdout)
    rows = {row["key"]: row for row in diff["rows"]}
    assert rows["params"]["measured"][0] == rows["params"]["measured"][1] and rows["params"]["measured_change"] == 0
    step_a, step_b = rows["step_time"]["measured"]
    assert step_b == 2 * step_a and rows["step_time"]["measured_change"] == 1.0
    assert rows["step_time"]["predicted_change"] == 0.0  # same setup, same prediction
    assert diff["setup_differences"] == {}
    assert diff["a"]["status"] == diff["b"]["status"] == "finished"


def test_compare_prints_a_table_and_names_a_missing_file(tmp_path):
    a = _recorded(tmp_path, "a.jsonl")
    result = runner.invoke(app, ["compare", str(a), str(a)])
    assert result.exit_code == 0 and "Same setup." in result.stdout and "Step time" in result.stdout
    missing = runner.invoke(app, ["compare", str(a), str(tmp_path / "nope.jsonl")])
    assert missing.exit_code == 2 and "no such run file" in missing.stderr


def test_a_searched_batch_compares_as_the_batch_the_run_found(tmp_path):
    """A run with batch "auto" records batch_size None in its config: the compare shows the batch it measured."""
    from tui.run_diff import fold, run_side

    def auto(event):
        if isinstance(event, RunFinished):
            return replace(event, summary=dict(event.summary, config={"model": "gpt-tiny", "batch_size": None}))
        return event

    events = [auto(e) for e in fake_run_events()]
    side = run_side(tmp_path / "a.jsonl", fold(events))
    measured = fold(events).measured()["batch_size"]
    assert measured and side["config"]["batch_size"] == measured
