"""The CPU peak cache is a file anyone can edit: a bad entry is named, discarded and measured again;
concurrent writers keep each other's entries and never leave a half-written file."""

from __future__ import annotations

import json
import math
import multiprocessing
import threading

import pytest

from profiler import cpu_probe
from profiler.cpu_probe import _cache_key, _load_cache, _store_cache, entry_problem, measured_peak

N = 64
FAKE_SECONDS = 1e-3  # every fake matmul takes 1 ms: the measured peak is exactly 2 n^3 / 1 ms
EXPECTED_FLOPS = 2.0 * N**3 / FAKE_SECONDS
TINY = {"max_size": N, "repeats": 1, "warmup_seconds": 0.0}


@pytest.fixture(autouse=True)
def _deterministic(monkeypatch):
    """No real matmuls and a quiet machine: the figure and its cacheability are known in advance."""
    from profiler import load_check

    monkeypatch.setattr(load_check, "contention_since", lambda start: load_check.Contention(False, 0.0, 0.0))
    monkeypatch.setattr(cpu_probe, "_time_matmul", lambda n, dtype, repeats, warmup=0.0: [FAKE_SECONDS] * repeats)


def good_entry(flops: float = 3.0e11) -> dict:
    return {"dtype": "fp32", "flops": flops, "usable": True, "stable": True, "note": "best of 5", "size": 2048}


@pytest.mark.parametrize("flops, problem", [
    ("abc", "flops 'abc' is not a number"),
    (-1.0, "outside the plausible"),
    (math.nan, "flops nan is outside"),
    (math.inf, "flops inf is outside"),
    (True, "flops 'True' is not a number"),
    (1e-300, "flops 1e-300 is outside"),
    (None, "flops null but the dtype is not marked unusable"),
    ("drop:size", "size 'None' is not a matmul size"),
    ("size:true", "size 'True' is not a matmul size"),
    ("note:7", "note is not a str"),
])
def test_a_bad_cached_peak_is_named_discarded_and_measured_again(tmp_path, flops, problem):
    path = tmp_path / "cpu_peak.json"
    key = _cache_key("fp32", N)
    entry = {**good_entry(), "flops": flops}
    if flops == "drop:size":
        entry = {k: v for k, v in good_entry().items() if k != "size"}
    elif flops == "size:true":
        entry["flops"], entry["size"] = 3e11, True
    elif flops == "note:7":
        entry["flops"], entry["note"] = 3e11, 7
    path.write_text(json.dumps({key: entry, "other": good_entry(1e12)}))
    result = measured_peak("fp32", path, **TINY)
    assert result["cached"] is False
    assert result["flops"] == EXPECTED_FLOPS
    assert str(path) in result["cache_problem"] and problem in result["cache_problem"]
    assert str(path) in result["note"]
    stored = _load_cache(path)
    assert stored[key]["flops"] == EXPECTED_FLOPS and entry_problem(stored[key], "fp32") is None
    assert stored["other"] == good_entry(1e12)  # the rest of the file is kept
    again = measured_peak("fp32", path, **TINY)  # now a cache hit with the re-measured figure
    assert again["cached"] is True and again["flops"] == EXPECTED_FLOPS


def test_a_good_entry_is_used_without_measuring(tmp_path, monkeypatch):
    path = tmp_path / "cpu_peak.json"
    path.write_text(json.dumps({_cache_key("fp32", N): good_entry()}))
    monkeypatch.setattr(cpu_probe, "_time_matmul", lambda *a, **k: pytest.fail("measured despite a good entry"))
    result = measured_peak("fp32", path, **TINY)
    assert result["cached"] is True and result["flops"] == 3.0e11 and "cache_problem" not in result


def test_an_unusable_dtype_entry_is_valid_and_a_wrong_dtype_is_not():
    assert entry_problem({"dtype": "fp16", "flops": None, "usable": False, "size": 256}, "fp16") is None
    assert entry_problem({"dtype": "bf16", "flops": 1e11}, "fp32") == "dtype 'bf16' under the key of fp32"
    assert entry_problem([1e11], "fp32") == "not an object (list)"


def test_a_corrupt_cache_file_is_replaced_whole(tmp_path):
    path = tmp_path / "cpu_peak.json"
    path.write_text('{"truncated": ')
    result = measured_peak("fp32", path, **TINY)
    assert result["flops"] == EXPECTED_FLOPS
    assert list(_load_cache(path)) == [_cache_key("fp32", N)]


def _store_many(path: str, prefix: str, count: int) -> None:
    for i in range(count):
        _store_cache(cpu_probe.Path(path), f"{prefix}-{i}", good_entry(1e9 + i))


def test_concurrent_writers_lose_no_entries(tmp_path):
    path = tmp_path / "cpu_peak.json"
    writers, per_writer = 4, 25
    threads = [threading.Thread(target=_store_many, args=(str(path), f"t{w}", per_writer)) for w in range(writers)]
    context = multiprocessing.get_context("fork")
    procs = [context.Process(target=_store_many, args=(str(path), f"p{w}", per_writer)) for w in range(writers)]
    for worker in procs + threads:  # processes forked before any writer thread runs
        worker.start()
    for worker in threads + procs:
        worker.join(timeout=120)
    assert all(p.exitcode == 0 for p in procs)
    data = json.loads(path.read_text())  # whole, valid JSON
    assert len(data) == 2 * writers * per_writer
    assert data["p3-24"] == good_entry(1e9 + 24)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no temp file left behind


def test_an_unwritable_cache_directory_does_not_fail_the_measurement(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = measured_peak("fp32", blocker / "sub" / "cpu_peak.json", **TINY)  # parent is a file
    assert result["flops"] == EXPECTED_FLOPS and result["cached"] is False
