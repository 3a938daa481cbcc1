"""The published-measurements benchmark's data file and its arithmetic (no CLI runs here:
the benchmark itself runs them)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPEC = importlib.util.spec_from_file_location("bench_published", ROOT / "benchmarks" / "bench_published.py")
bench = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(bench)
DATA = json.loads((ROOT / "benchmarks" / "published_cases.json").read_text())
METRICS = {"hfu_tflops_per_gpu", "model_tflops_per_gpu", "mfu", "step_time_s", "tokens_per_s_per_gpu", "gpu_hours",
           "decode_tokens_per_s", "activation_bytes_per_layer", "params_total"}


def test_cases_are_sourced_and_well_formed():
    cases = DATA["cases"]
    assert len({c["id"] for c in cases}) == len(cases)
    assert set(DATA["tolerance"]) == set(bench.KINDS)
    for c in cases:
        assert c["kind"] in bench.KINDS and c["metric"] in METRICS, c["id"]
        assert len(c["source"]) > 20 and c["note"], c["id"]
        assert c["args"][0].startswith("-") and "--json" not in c["args"], c["id"]
        assert isinstance(c["published"], (int, float)) and c["published"] > 0, c["id"]
        assert "--flops-efficiency" not in c["args"], c["id"]  # the benchmark reports, it does not tune
        if c["kind"] == "count":
            assert isinstance(c["published"], int)


def test_korthikanti_cases_are_the_papers_formulas():
    case = next(c for c in DATA["cases"] if c["id"] == "korthikanti-gpt3-tp8-sp")
    s, b, h, a, t = 2048, 1, 12288, 96, 8
    assert case["published"] == s * b * h * (34 / t + 5 * a * s / (h * t))


ANSWER = {"hardware": {"peak_flops": 312e12},
          "step": {"hfu": 0.5, "mfu": 0.4, "achieved_flops_per_gpu": 124.8e12, "time_s": 2.0,
                   "tokens_per_s_per_gpu": 900.0},
          "train": {"gpu_hours": 1234.0}, "decode": {"tokens_per_s": 101.0},
          "memory": {"breakdown": {"activations/per_layer": 4096}}, "params": {"total": 124439808}}


@pytest.mark.parametrize("metric,value", [
    ("hfu_tflops_per_gpu", 156.0), ("model_tflops_per_gpu", 124.8), ("mfu", 0.4), ("step_time_s", 2.0),
    ("tokens_per_s_per_gpu", 900.0), ("gpu_hours", 1234.0), ("decode_tokens_per_s", 101.0),
    ("activation_bytes_per_layer", 4096), ("params_total", 124439808),
])
def test_metric_reads_the_cli_answer(metric, value):
    assert bench._metric(ANSWER, metric) == pytest.approx(value)


def test_tolerance_per_kind_and_summary():
    tol = DATA["tolerance"]
    rows = [
        {"kind": "time", "published": 100, "predicted": 114, "error": 0.14},
        {"kind": "time", "published": 100, "predicted": 116, "error": 0.16},
        {"kind": "memory", "published": 100, "predicted": 109, "error": 0.09},
        {"kind": "memory", "published": 100, "predicted": 111, "error": 0.11},
        {"kind": "count", "published": 7, "predicted": 7, "error": 0.0},
        {"kind": "count", "published": 7, "predicted": 8, "error": 1 / 7},
        {"kind": "throughput", "published": 7, "predicted": None, "error": None},
    ]
    assert [bench.within(r, tol) for r in rows] == [True, False, True, False, True, False, False]
    stats = bench.summary(rows, tol)
    assert stats["time"]["within"] == 1 and stats["time"]["share"] == 0.5
    assert stats["throughput"] == {"cases": 1, "answered": 0, "within": 0, "share": 0.0, "tolerance": 0.15,
                                   "median_abs_error": None}
