"""CPU description and the cached matmul peak benchmark."""

from __future__ import annotations

import json
import platform

import pytest
import torch

from estimator.errors import ConfigError
from profiler import cpu_probe
from profiler.cpu_probe import RELEVANT_FLAGS, compute_cores, cpu_info, default_cache_path, measured_peak

TINY = dict(max_size=64, repeats=1, warmup_seconds=0.0)  # one timing: always "stable", so cached


@pytest.fixture(autouse=True)
def _quiet_machine(monkeypatch):
    """Other processes on a shared test machine must not decide whether a figure is cached."""
    from profiler import load_check

    monkeypatch.setattr(load_check, "contention_since", lambda start: load_check.Contention(False, 0.0, 0.0))


def test_cpu_info_is_sane():
    info = cpu_info()
    assert info["model_name"].strip()
    assert 1 <= info["physical_cores"] <= info["logical_cores"]
    assert 1 <= info["usable_cores"] <= info["logical_cores"]
    assert info["torch_threads"] == torch.get_num_threads()
    assert 0 < info["memory_available_bytes"] <= info["memory_total_bytes"]
    assert set(info["isa_flags"]) <= set(RELEVANT_FLAGS)
    if platform.machine() in ("x86_64", "AMD64"):
        assert "sse2" in info["isa_flags"]
    clocks = [c for c in (info["clock_max_hz"], info["clock_current_hz"]) if c is not None]
    assert clocks and all(1e8 < c < 1e10 for c in clocks)  # 100 MHz .. 10 GHz
    json.dumps(info)


def test_compute_cores_counts_physical_cores_torch_uses():
    base = dict(physical_cores=8, logical_cores=16, usable_cores=16)
    assert compute_cores({**base, "torch_threads": 16}) == 8  # SMT threads add no FMA units
    assert compute_cores({**base, "torch_threads": 4}) == 4
    assert compute_cores({**base, "usable_cores": 2, "torch_threads": 8}) == 2


def test_default_cache_path_honours_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_path() == tmp_path / "mfutop" / "cpu_peak.json"


def test_measured_peak_round_trips_through_the_cache(tmp_path):
    path = tmp_path / "sub" / "cpu_peak.json"
    first = measured_peak("fp32", path, **TINY)
    assert first["cached"] is False
    assert first["dtype"] == "fp32" and first["size"] == 64 and first["usable"]
    assert first["flops"] == pytest.approx(2 * 64**3 / first["seconds"])
    assert first["flops"] >= first["median_flops"] > 0
    second = measured_peak("fp32", path, **TINY)
    assert second["cached"] is True
    assert second["flops"] == first["flops"] and second["size"] == first["size"]
    stored = json.loads(path.read_text())
    assert len(stored) == 1
    (key,) = stored
    assert key.startswith(cpu_probe.CACHE_VERSION + "|")
    assert f"threads={torch.get_num_threads()}" in key and torch.__version__ in key and key.endswith("fp32|max_n=64")


def test_refresh_and_no_cache(tmp_path, monkeypatch):
    path = tmp_path / "cpu_peak.json"
    measured_peak("fp32", path, **TINY)
    calls = []
    real = cpu_probe._time_matmul
    monkeypatch.setattr(cpu_probe, "_time_matmul", lambda *a, **k: calls.append(a) or real(*a, **k))
    assert measured_peak("fp32", path, **TINY)["cached"] is True and not calls
    assert measured_peak("fp32", path, refresh=True, **TINY)["cached"] is False and calls
    other = tmp_path / "never.json"
    assert measured_peak("fp32", other, use_cache=False, **TINY)["cached"] is False
    assert not other.exists()


def test_corrupt_or_unwritable_cache_does_not_fail(tmp_path):
    bad = tmp_path / "cpu_peak.json"
    bad.write_text("{not json")
    assert measured_peak("fp32", bad, **TINY)["cached"] is False
    assert measured_peak("fp32", bad, **TINY)["cached"] is True  # rewritten as valid JSON
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = measured_peak("fp32", blocker / "cpu_peak.json", **TINY)  # parent is a file
    assert result["flops"] > 0 and result["cached"] is False


def test_size_grows_to_max_size_unless_the_next_matmul_is_slow(tmp_path, monkeypatch):
    sizes = []

    def fake_time(n, dtype, repeats, warmup_seconds=0.0):
        sizes.append(n)
        return [n**3 / 1e11] * repeats  # 2n^3 FLOPs at 200 GFLOP/s: n=1024 0.011 s, 2048 0.086 s

    monkeypatch.setattr(cpu_probe, "_time_matmul", fake_time)
    result = measured_peak("fp32", tmp_path / "c.json", max_size=2048)
    assert result["size"] == 2048 and result["flops"] == pytest.approx(2e11)
    assert sizes == [256, 512, 1024, 2048, 2048]  # one probe per size, then the timed run
    sizes.clear()
    capped = measured_peak("fp32", tmp_path / "c.json", max_size=4096, use_cache=False)
    assert capped["size"] == 2048  # 4096 would take 8 x 0.086 s > 0.5 s
    assert sizes == [256, 512, 1024, 2048, 2048]


def test_repetitions_fit_the_time_budget(tmp_path, monkeypatch):
    calls = []

    def slow(n, dtype, repeats, warmup_seconds=0.0):
        calls.append((repeats, warmup_seconds))
        return [0.4] * repeats  # a very slow CPU: 0.4 s per n=256 matmul

    monkeypatch.setattr(cpu_probe, "_time_matmul", slow)
    result = measured_peak("fp32", tmp_path / "c.json", budget_seconds=1.0)
    assert result["size"] == 256  # 8 x 0.4 s is far over 0.5 s: no growth
    assert calls[-1][0] == result["repeats"] <= 2  # ~1 s of budget / 0.4 s
    assert calls[-1][1] == 0.0  # no time left for extra warm-up


def test_busy_machine_figure_is_returned_but_not_cached(tmp_path, monkeypatch):
    from profiler import load_check

    monkeypatch.setattr(load_check, "contention_since", lambda start: load_check.Contention(True, 0.6, 3.0))
    path = tmp_path / "c.json"
    result = measured_peak("fp32", path, **TINY)
    assert result["busy"] is True and result["flops"] > 0 and result["others_cpu_share"] == 0.6
    assert "machine busy (other processes used 60%" in result["note"] and "not cached" in result["note"]
    assert not path.exists()


def test_unsteady_timings_are_returned_but_not_cached(tmp_path, monkeypatch):
    monkeypatch.setattr(cpu_probe, "_time_matmul", lambda n, d, repeats, warmup_seconds=0.0:
                        [0.01, 0.03, 0.03, 0.03, 0.02][:repeats])
    path = tmp_path / "c.json"
    result = measured_peak("fp32", path, max_size=256)
    assert result["stable"] is False and "not cached" in result["note"]
    assert result["flops"] == pytest.approx(2 * 256**3 / 0.01)
    assert not path.exists()
    monkeypatch.setattr(cpu_probe, "_time_matmul", lambda n, d, repeats, warmup_seconds=0.0: [0.01] * repeats)
    measured_peak("fp32", path, max_size=256)
    assert len(json.loads(path.read_text())) == 1
    monkeypatch.setattr(cpu_probe, "_time_matmul", lambda n, d, repeats, warmup_seconds=0.0:
                        [0.01, 0.03, 0.03, 0.03, 0.02][:repeats])
    measured_peak("fp32", path, max_size=256, refresh=True)  # unsteady refresh: the old figure goes too
    assert json.loads(path.read_text()) == {}


def test_low_precision_without_a_fast_path_is_not_benchmarked_at_size(tmp_path, monkeypatch):
    sizes = []

    def fake_time(n, dtype, repeats, warmup_seconds=0.0):
        sizes.append((n, dtype))
        per = 1e-3 if dtype == torch.float32 else 0.1  # fp16 100x slower than fp32
        return [per] * repeats

    monkeypatch.setattr(cpu_probe, "_time_matmul", fake_time)
    result = measured_peak("fp16", tmp_path / "c.json")
    assert result["flops"] is None and result["usable"] is False
    assert "no fast fp16 path" in result["note"]
    assert {n for n, _ in sizes} == {256}  # only the small comparison ran
    assert measured_peak("fp16", tmp_path / "c.json")["cached"] is True  # the verdict is cached too


def test_bf16_fast_path_is_measured(tmp_path, monkeypatch):
    def fake_time(n, dtype, repeats, warmup_seconds=0.0):
        return [(2 * n**3) / (1e11 if dtype == torch.float32 else 3e11)] * repeats

    monkeypatch.setattr(cpu_probe, "_time_matmul", fake_time)
    result = measured_peak("bf16", tmp_path / "c.json", max_size=512)
    assert result["usable"] and result["flops"] == pytest.approx(3e11)
    assert "3x fp32" in result["note"]


@pytest.mark.parametrize("kwargs", [dict(dtype="int8"), dict(dtype="fp32", max_size=0)])
def test_bad_benchmark_arguments(kwargs, tmp_path):
    with pytest.raises(ConfigError):
        measured_peak(cache_path=tmp_path / "c.json", **kwargs)
