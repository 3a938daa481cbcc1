"""benchmarks/gpu_acceptance.sh: the dry run end to end (slow), and its report and
step verdicts on made-up folders (fast), so the GPU run cannot rot between leases."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fakes.fake_pynvml import FakeCuda, FakeNvml, h100_sxm, torch_props

from profiler.detect import describe_devices

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_acceptance.sh"
STEPS = ("01-install", "02-env", "03-version", "04-gpus", "05-pytest-gpu", "06-calibrate", "07-tracker", "08-tui",
         "09-profile", "10-profile-memory-limit", "11-ladder")
MIB = 2**20


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


report = load("gpu_acceptance_report")
step = load("gpu_acceptance_step")


def run_script(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


# ----------------------------------------------------------------- the dry run

@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("acceptance") / "run"
    done = run_script("--dry-run", "--out", str(folder))
    summary = json.loads((folder / "summary.json").read_text())
    return done, folder, summary, (folder / "report.md").read_text()


def expected_status(name: str) -> str:
    """What a dry run on this machine must say for the steps that depend on what exists here."""
    if name == "calibrate":
        helped = subprocess.run([sys.executable, "-m", "tui", "calibrate", "--help"], cwd=ROOT,
                                capture_output=True, timeout=60)
        return "passed" if helped.returncode == 0 else "skipped"
    if name == "tracker":
        ready = importlib.util.find_spec("profiler.tracker") and importlib.util.find_spec("transformers")
        return "passed" if ready else "skipped"
    if name == "tui":
        return "passed" if shutil.which("tmux") else "skipped"
    return {"install": "skipped", "pytest-gpu": "skipped"}.get(name, "passed")


@pytest.mark.slow
def test_the_dry_run_runs_every_step_and_reports_real_figures(dry_run):
    done, folder, summary, text = dry_run
    assert done.returncode == 0, done.stderr[-3000:]
    assert summary["run"]["mode"] == "dry-run" and "**Dry run**" in text
    steps = {s["id"]: s for s in summary["steps"]}
    assert tuple(steps) == STEPS
    for step_id, record in steps.items():
        name = step_id.split("-", 1)[1]
        assert record["status"] == expected_status(name), (step_id, record)
        assert f"| {step_id} | {record['title']} | {report.STATUS_MARK[record['status']]} |" in text
        if record["status"] != "passed":
            assert record["reason"], step_id  # every skip says why
    assert "no CUDA" in steps["05-pytest-gpu"]["reason"] or "gpu marker" in steps["05-pytest-gpu"]["reason"]

    figures = summary["figures"]
    assert figures["version"]["version"].startswith("mfutop ")
    assert figures["gpus"]["device"] == "cpu" and figures["gpus"]["cpu"]["peak_flops"]
    for name in ("profile", "profile-memory-limit"):
        fig = figures[name]
        assert fig["partial"] is False and fig["model"] == "gpt-tiny"
        for key in ("tokens_per_s", "step_time_s", "peak_flops", "peak_memory_bytes"):
            assert finite(fig[key]) and fig[key] > 0, (name, key, fig[key])
        assert 0 < fig["mfu"] <= 1
        assert fig["batch_size"] == fig["search"]["max_batch_size"] >= 1
        rows = {r["key"]: r for r in fig["compare"]}
        assert rows["params"]["predicted"] == rows["params"]["measured"] > 0  # exact count
        assert report.fmt_tokens(fig["tokens_per_s"]) in text and report.fmt_pct(fig["mfu"]) in text
    limited = figures["profile-memory-limit"]
    assert limited["memory_limit_bytes"] == 32 * MIB
    assert limited["oom_probes"] >= 1 and limited["memory_back"] is True  # the cap was hit and recovered
    assert all(p["peak_memory_bytes"] <= 1.25 * 32 * MIB for p in limited["search"]["probes"] if p["fits"])
    measured = [r for r in figures["ladder"]["rungs"] if r["status"] == "measured"]
    assert {"baseline", "max-batch"} <= {r["name"] for r in measured}
    assert all(finite(r["tokens_per_s"]) and r["tokens_per_s"] > 0 for r in measured)
    if steps["08-tui"]["status"] == "passed":
        assert figures["tui"]["run_finished"] and figures["tui"]["comparison_table"]
        assert "```text" in text and "Predicted vs measured" in text
    if steps["07-tracker"]["status"] == "passed":
        assert finite(figures["tracker"]["tokens_per_s"]) and figures["tracker"]["tokens_per_s"] > 0


# ----------------------------------------------------------------- arguments and the budget (no torch)

@pytest.mark.parametrize("args, message", [
    (("--budget", "soon"), "--budget must be a whole number"),
    (("--only", "profile,bogus"), "unknown step 'bogus'"),
    (("--frobnicate",), "unknown argument '--frobnicate'"),
])
def test_bad_arguments_are_one_line_and_exit_2(tmp_path, args, message):
    done = run_script("--out", str(tmp_path / "x"), *args, timeout=30)
    assert done.returncode == 2 and message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_spent_budget_skips_steps_with_a_reason_and_still_reports(tmp_path):
    done = run_script("--dry-run", "--budget", "20", "--only", "version,profile", "--out", str(tmp_path), timeout=60)
    assert done.returncode == 0, done.stderr
    steps = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("*.step.json"))]
    assert [(s["id"], s["status"]) for s in steps] == [("03-version", "skipped"), ("09-profile", "skipped")]
    assert all("time budget spent (20 s in all)" == s["reason"] for s in steps)
    assert "0 passed, 0 failed, 2 skipped" in (tmp_path / "report.md").read_text()


# ----------------------------------------------------------------- step verdicts

@pytest.mark.parametrize("kind, rc, out, err, status, reason", [
    ("json", 0, '{"a": 1}', "", "passed", ""),
    ("json", 0, '{"a": ', "", "failed", "stdout is not JSON"),
    ("json", 0, "[1]", "", "failed", "not an object"),
    ("json", 2, "", "warn\nmfutop: error: unknown model 'x'\n", "failed", "exit 2: mfutop: error: unknown model 'x'"),
    ("json", 124, "", "", "failed", "timed out after 30 s (its time limit)"),
    ("json", 77, "", "profiler.tracker does not exist yet\n", "skipped", "profiler.tracker does not exist yet"),
    ("jsonl", 0, '{"event": "log"}\n{"event": "run_finished", "summary": {}}\n', "", "passed", ""),
    ("jsonl", 0, '{"event": "log"}\n', "", "failed", "no run_finished event among 1 lines"),
    ("version", 0, "mfutop 0.1.0\n", "", "passed", ""),
    ("screen", 0, "a screen without the table", "", "failed", "no comparison table"),
])
def test_a_step_verdict_follows_its_exit_code_and_output(tmp_path, kind, rc, out, err, status, reason):
    (tmp_path / "07-x.out").write_text(out)
    (tmp_path / "07-x.log").write_text(err)
    assert step.main([str(tmp_path), "07-x", "title", kind, str(rc), "1.5", "30", "step", "--", "cmd"]) == 0
    record = json.loads((tmp_path / "07-x.step.json").read_text())
    assert record["status"] == status and reason in record["reason"]
    assert (record["rc"], record["seconds"], record["limit_s"], record["command"]) == (rc, 1.5, 30, ["cmd"])


def test_a_budget_cut_timeout_says_so(tmp_path):
    step.main([str(tmp_path), "09-l", "t", "jsonl", "137", "12", "12", "budget", "--", "c"])
    assert json.loads((tmp_path / "09-l.step.json").read_text())["reason"] == "timed out after 12 s (the time budget left)"


def test_pytest_verdicts_come_from_the_junit_counts(tmp_path):
    xml = '<testsuites><testsuite tests="{t}" failures="{f}" errors="0" skipped="{s}"></testsuite></testsuites>'
    cases = [((7, 0, 7), 0, "skipped", "all 7 tests skipped (no CUDA GPU)"), ((7, 0, 0), 0, "passed", ""),
             ((7, 2, 0), 1, "failed", "2 failed, 0 errors of 7 gpu tests")]
    for (t, f, s), rc, status, reason in cases:
        (tmp_path / "05-p.xml").write_text(xml.format(t=t, f=f, s=s))
        step.main([str(tmp_path), "05-p", "t", "junit", str(rc), "1", "9", "step", "--", "c"])
        record = json.loads((tmp_path / "05-p.step.json").read_text())
        assert (record["status"], record["reason"]) == (status, reason)


# ----------------------------------------------------------------- the report on partial folders

def write_step(folder: Path, step_id: str, status: str, reason: str = "") -> None:
    (folder / f"{step_id}.step.json").write_text(json.dumps(
        {"id": step_id, "name": step_id.split("-", 1)[1], "title": step_id, "status": status, "reason": reason,
         "seconds": 1.0, "limit_s": 10}))


def test_the_report_of_an_empty_folder_says_nothing_ran(tmp_path):
    assert report.main([str(tmp_path)]) == 0
    text = (tmp_path / "report.md").read_text()
    assert "0 passed, 0 failed, 0 skipped" in text
    assert json.loads((tmp_path / "summary.json").read_text())["steps"] == []


def test_a_profile_killed_at_its_limit_is_reported_from_its_recorded_events(tmp_path):
    write_step(tmp_path, "07-profile", "failed", "timed out after 150 s (its time limit)")
    (tmp_path / "07-profile.out").write_text("")  # killed before --json printed
    events = [
        {"event": "probe_result", "batch_size": 64, "fits": True, "peak_memory_bytes": 3 * 2**30, "seconds": 2.0,
         "outcome": "ok", "low": 64, "high": None},
        {"event": "probe_result", "batch_size": 96, "fits": False, "peak_memory_bytes": None, "seconds": 1.0,
         "outcome": "oom", "low": 64, "high": 96},
        {"event": "step_sample", "step": 1, "tokens_per_s": 1000.0, "warmup": False},
        {"event": "step_sample", "step": 2, "tokens_per_s": 3000.0, "warmup": False},
    ]
    (tmp_path / "07-profile.events.jsonl").write_text(
        "\n".join(json.dumps(e) for e in events) + '\n{"event": "step_sam')  # cut mid-line
    report.main([str(tmp_path)])
    fig = json.loads((tmp_path / "summary.json").read_text())["figures"]["profile"]
    assert fig["partial"] is True and fig["timed_steps"] == 2 and fig["tokens_per_s_median"] == 2000.0
    assert (fig["oom_probes"], fig["memory_back"]) == (1, True)
    text = (tmp_path / "report.md").read_text()
    assert "| 07-profile | 07-profile | FAIL |" in text and "No summary (the step did not finish)" in text
    assert "| 96 | oom |" in text and "3.00 GiB" in text


def test_a_leak_warning_and_non_finite_figures_are_reported_not_hidden(tmp_path):
    write_step(tmp_path, "08-profile-memory-limit", "passed")
    summary = {
        "config": {"model": "gpt2", "compile": True, "memory_limit_bytes": 40 * 2**30},
        "device": {"name": "NVIDIA H200", "peak_source": "datasheet"},
        "measured": {"tokens_per_s": float("nan"), "mfu": 0.4, "batch_size": 8, "peak_flops": 1e15,
                     "peak_dtype": "bf16"},
        "search": {"max_batch_size": 8, "probes": [{"batch_size": 9, "fits": False, "outcome": "oom"}]},
        "compare": [{"key": "step_time", "label": "Step time", "unit": "seconds", "predicted": 0.5,
                     "measured": 0.25, "error": 1.0}],
        "warnings": ["probe at batch 9 left 1.00 MiB allocated after recovery"],
    }
    (tmp_path / "08-profile-memory-limit.out").write_text(json.dumps(summary))  # json.dumps writes NaN
    report.main([str(tmp_path)])
    fig = json.loads((tmp_path / "summary.json").read_text())["figures"]["profile-memory-limit"]  # strict JSON
    assert fig["tokens_per_s"] is None and fig["mfu"] == 0.4
    assert fig["memory_back"] is False and "left 1.00 MiB" in fig["how"]
    text = (tmp_path / "report.md").read_text()
    assert "memory back to its pre-probe figure after each: **no**" in text
    assert "| Step time | 500.00 ms | 250.00 ms | +100.0 % |" in text
    assert "MFU **40.0 %** of the dense bf16 peak 1.00 PFLOP/s" in text


def test_a_gpu_device_is_reported_with_its_nvml_fields_spec_and_dense_bf16_peak(tmp_path):
    gpu = h100_sxm()
    devices = describe_devices(FakeNvml([gpu]), cuda=FakeCuda([torch_props(gpu, 132)]))
    write_step(tmp_path, "04-gpus", "passed")
    (tmp_path / "04-gpus.out").write_text(json.dumps(devices))
    report.main([str(tmp_path)])
    fig = json.loads((tmp_path / "summary.json").read_text())["figures"]["gpus"]
    (entry,) = fig["gpus"]
    assert (entry["spec_key"], entry["peak_bf16_flops"], entry["sm_count"]) == ("h100-sxm", 989.4e12, 132)
    text = (tmp_path / "report.md").read_text()
    assert f"- **{gpu.name}** (cuda:0): spec `h100-sxm`, dense bf16 peak 989.40 TFLOP/s" in text
    assert f"compute_capability = {devices['gpus'][0]['nvml']['compute_capability']}" in text
    assert "sm_clock_max_hz = 1.98 GHz" in text and "power_limit_w = 700 W" in text and "SMs = 132" in text
