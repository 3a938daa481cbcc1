"""`mfutop tui` / `mfutop replay` command lines: bad input stops before the app, --json is headless."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from profiler.events import RunFailed
from tui.recording import save_events
from tui.cli import app

from fixtures.fake_run import fake_run_events

RECORDED = Path(__file__).parent / "fixtures" / "gpt_tiny_cpu_run.jsonl"
runner = CliRunner()


@pytest.mark.parametrize("args, message", [
    (["tui", "--model", "gpt-tinyy"], "unknown model 'gpt-tinyy'; did you mean: gpt-tiny"),
    (["tui", "--memory-limit", "4 bananas"], "cannot read '4 bananas' as a size"),
    (["tui", "--model", "gpt-tiny", "--seq-len", "999"], "seq-len 999 is longer than gpt-tiny's context (128)"),
    (["tui", "--batch-size", "zero"], "batch-size must be a positive integer or 'auto'"),
    (["tui", "--precision", "fp16-mixed"], "'fp16-mixed' is estimate-only"),
    (["tui", "--out", "/no/such/dir/run.jsonl"], "directory /no/such/dir does not exist"),
    (["replay", "missing.jsonl"], "no such run file: missing.jsonl"),
])
def test_bad_input_is_one_line_and_exit_2(args, message):
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mfutop: error: ") and message in lines[0]


def test_replay_json_prints_the_recorded_summary():
    result = runner.invoke(app, ["replay", str(RECORDED), "--json"])
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    last = json.loads(RECORDED.read_text().strip().splitlines()[-1])
    assert summary.pop("cancelled") is False  # the same keys as `mfutop profile --json`
    assert summary.pop("schema_version") == 1
    assert summary == last["summary"]
    assert summary["measured"]["params"] == summary["prediction"]["params"]["total"]


def test_replay_follow_json_reads_a_finished_file(tmp_path):
    path = tmp_path / "run.jsonl"
    save_events(list(fake_run_events()), path)
    result = runner.invoke(app, ["replay", str(path), "--follow", "--json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["search"]["max_batch_size"] == 63


def test_replay_json_of_a_failed_run_exits_1(tmp_path):
    path = tmp_path / "failed.jsonl"
    save_events(list(fake_run_events())[:2] + [RunFailed("step exploded", "RuntimeError")], path)
    result = runner.invoke(app, ["replay", str(path), "--json"])
    assert result.exit_code == 1
    assert "step exploded" in result.stderr and result.stdout == ""


def test_replay_of_a_file_without_events_exits_2(tmp_path):
    path = tmp_path / "noise.txt"
    path.write_text("Welcome to the remote host\n")
    result = runner.invoke(app, ["replay", str(path), "--json"])
    assert result.exit_code == 2 and "holds no mfutop events" in result.stderr


def test_tui_json_runs_headless_and_records(tmp_path):
    out = tmp_path / "rec.jsonl"
    result = runner.invoke(app, ["tui", "--json", "--device", "cpu", "--model", "gpt-tiny", "--batch-size", "2",
                                 "--seq-len", "32", "--steps", "2", "--precision", "fp32", "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["measured"]["params"] == summary["prediction"]["params"]["total"]
    assert summary["measured"]["batch_size"] == 2
    assert json.loads(out.read_text().strip().splitlines()[-1])["event"] == "run_finished"


def test_replay_json_of_a_run_cut_short_reports_what_it_holds(tmp_path):
    """A recording whose writer was killed (no final event) is data, not an error: every step it holds."""
    lines = RECORDED.read_text().strip().splitlines()
    kept = [line for line in lines if json.loads(line)["event"] != "run_finished"]
    path = tmp_path / "killed.jsonl"
    path.write_text("\n".join(kept) + "\n")
    result = runner.invoke(app, ["replay", str(path), "--json"])
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    steps = [json.loads(line) for line in kept if json.loads(line)["event"] == "step_sample"]
    assert summary["incomplete"] is True and summary["events"] == len(kept)
    assert summary["measured"]["steps"] == sum(1 for s in steps if not s["warmup"])


def test_an_app_that_dies_on_an_error_never_exits_0(tmp_path, capsys):
    import pytest
    import typer
    from textual.app import App

    from tui.cmd_app import run_app

    class Dies(App):
        out_path = tmp_path / "run.jsonl"

        def on_mount(self) -> None:
            raise RuntimeError("a widget broke")

        def run(self, **kwargs):
            return super().run(headless=True, **kwargs)

    with pytest.raises(typer.Exit) as stopped:
        run_app(Dies())
    assert stopped.value.exit_code == 1
    assert f"the run's events are in {tmp_path / 'run.jsonl'}" in capsys.readouterr().err
