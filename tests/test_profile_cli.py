"""`mfutop profile / search / flops`: JSON, JSONL, --out, exit codes, Ctrl-C, lazy torch import."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from estimator.flops import step_flops
from estimator.presets import get_model
from profiler.events import RunFinished, read_events
from tui.cli import app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()
QUICK = ["--device", "cpu", "--model", "gpt-tiny", "--seq-len", "32", "--precision", "fp32"]


def invoke(*args):
    return runner.invoke(app, list(args))


def test_profile_json_summary_matches_the_prediction():
    result = invoke("profile", *QUICK, "--batch-size", "2", "--steps", "2", "--warmup", "1", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["measured"]["params"] == summary["prediction"]["params"]["total"] == 141056
    assert summary["measured"]["flops_analytic"] == step_flops(get_model("gpt-tiny"), 2, 32).total
    assert summary["measured"]["steps"] >= 2 and summary["cancelled"] is False
    assert set(summary) >= {"device", "prediction", "measured", "search", "errors", "config"}


def test_profile_jsonl_streams_events_and_out_records_them(tmp_path):
    out = tmp_path / "run.jsonl"
    result = invoke("profile", *QUICK, "--batch-size", "1", "--steps", "1", "--warmup", "0", "--jsonl",
                    "--out", str(out))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert all(json.loads(line)["event"] for line in lines)
    assert json.loads(lines[0])["event"] == "device_detected"
    assert json.loads(lines[-1])["event"] == "run_finished"
    assert out.read_text().splitlines() == lines
    assert isinstance(list(read_events(lines))[-1], RunFinished)


def test_profile_human_output_is_a_table():
    result = invoke("profile", *QUICK, "--batch-size", "1", "--steps", "1", "--warmup", "0")
    assert result.exit_code == 0, result.output
    assert "predicted" in result.stdout and "Parameters" in result.stdout and "141,056" in result.stdout


def test_search_lists_probes_under_a_small_memory_limit():
    result = invoke("search", *QUICK, "--memory-limit", "4MiB", "--json")
    assert result.exit_code == 0, result.output
    search = json.loads(result.stdout)["search"]
    found = search["max_batch_size"]
    assert found >= 1 and search["limited_by"] == "memory" and search["memory_limit_bytes"] == 4 * 2**20
    fits = {p["batch_size"]: p["fits"] for p in search["probes"]}
    assert fits.get(found) is True and fits.get(found + 1) is False
    human = invoke("search", *QUICK, "--memory-limit", "4MiB")
    assert human.exit_code == 0 and "probe" in human.stdout and f"max batch {found}" in human.stdout


def test_flops_json_shows_the_three_counts():
    result = invoke("flops", "--model", "gpt-tiny", "--batch-size", "2", "--seq-len", "128", "--json")
    assert result.exit_code == 0, result.output
    r = json.loads(result.stdout)
    assert r["analytic"] == r["counter"] == 251_658_240
    assert r["thop_gap"] == 3 * (r["attention_core_forward"] - r["layernorm_thop_forward"])
    human = invoke("flops", "--model", "gpt-tiny")
    assert human.exit_code == 0 and "FlopCounterMode" in human.stdout and "thop" in human.stdout


@pytest.mark.parametrize("args,message", [
    (["profile", "--device", "cuda", "--json"], "CUDA is not available"),
    (["profile", "--device", "cpu", "--model", "gpt-tinny", "--json"], "unknown model"),
    (["profile", *QUICK[:2], "--seq-len", "4096", "--json"], "context"),
    (["profile", *QUICK, "--memory-limit", "1MiB", "--json"], "does not fit at batch 1"),
    (["profile", *QUICK, "--batch-size", "0"], "batch-size"),
    (["search", *QUICK, "--memory-limit", "lots"], "cannot read"),
    (["profile", *QUICK, "--precision", "fp16-mixed"], "estimate-only"),
    (["flops", "--model", "gpt-tiny", "--seq-len", "999"], "context"),
    (["profile", *QUICK, "--json", "--jsonl"], "not both"),
])
def test_bad_input_is_one_line_and_exit_2(args, message):
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("mfutop: error:") and message in lines[0]
    assert "Traceback" not in result.output


def test_the_command_module_imports_no_torch():
    code = "import sys, tui.cmd_profile; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_ctrl_c_stops_cleanly_and_prints_what_was_measured():
    cmd = [sys.executable, "-m", "tui", "profile", *QUICK, "--batch-size", "1", "--steps", "100000",
           "--warmup", "0", "--jsonl"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            event = json.loads(line)
            if event["event"] == "step_sample" and not event["warmup"]:
                proc.send_signal(signal.SIGINT)
                break
        rest, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    lines += rest.splitlines()
    last = json.loads(lines[-1])
    assert proc.returncode == 130, err
    assert last["event"] == "run_finished" and last["cancelled"] is True
    assert last["summary"]["measured"]["steps"] >= 1
    assert "stopping after the current step" in err
