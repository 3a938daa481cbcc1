"""The one headless driver: --out write errors keep the measurement, SIGTERM keeps the partial summary."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

QUICK = ["--device", "cpu", "--model", "gpt-tiny", "--batch-size", "2", "--seq-len", "32", "--precision", "fp32"]
ROOT = Path(__file__).resolve().parents[1]


def mfutop(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tui", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=300, **kw)


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_disk_under_out_warns_and_still_prints_the_summary():
    result = mfutop("profile", *QUICK, "--steps", "3", "--warmup", "0", "--out", "/dev/full", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["measured"]["steps"] >= 3 and summary["measured"]["tokens_per_s"] > 0
    assert "recording to /dev/full stopped" in result.stderr


def test_an_unwritable_out_is_refused_before_the_run(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):  # root ignores the mode bits: nothing to test
            pytest.skip("running as a user that can write anywhere")
        result = mfutop("profile", *QUICK, "--out", str(locked / "run.jsonl"), "--json")
    finally:
        locked.chmod(0o700)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "cannot be written" in result.stderr
    assert "cannot be written" in json.loads(result.stdout)["error"]  # under --json the error is JSON too


def test_under_json_a_user_error_is_a_json_object_on_stdout_too():
    result = mfutop("estimate", "--model", "no-such-model", "--json")
    assert result.returncode == 2 and result.stderr.startswith("mfutop: error: unknown model")
    error = json.loads(result.stdout)
    assert error["schema_version"] == 1 and error["exit_code"] == 2 and "unknown model" in error["error"]
    usage = mfutop("estimate", "--seq-len", "abc", "--json")
    assert usage.returncode == 2 and "error" in json.loads(usage.stdout)


@pytest.mark.slow
def test_sigterm_cancels_between_steps_and_keeps_the_partial_summary(tmp_path):
    out = tmp_path / "run.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "tui", "profile", *QUICK, "--steps", "100000", "--warmup", "0",
                             "--out", str(out), "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait for timed steps to be on record
        if out.exists() and out.read_text().count('"step_sample"') >= 4:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    summary = json.loads(stdout)
    assert summary["cancelled"] is True and summary["measured"]["steps"] >= 1
    assert summary["measured"]["step_time_s"] > 0
    last = json.loads(out.read_text().strip().splitlines()[-1])
    assert last["event"] == "run_finished" and last["cancelled"] is True
