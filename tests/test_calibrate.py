"""The device-profile calibration: real (tiny) grids, and the cache's rules (torch, threads, busy, corrupt)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

torch = pytest.importorskip("torch")

from estimator.device_profile import dumps, from_dict, load  # noqa: E402
from profiler import calibrate, kernel_timer, profile_cache, speed_canary  # noqa: E402
from tests.fixtures.device_profiles import scaled_profile, synthetic_profile  # noqa: E402

pytestmark = pytest.mark.slow


def _here(**changes):
    """A synthetic profile that claims to come from this process's device, torch and threads."""
    fields = dict(device_name=calibrate.device_name("cpu"), torch_version=torch.__version__,
                  threads=torch.get_num_threads())
    fields.update(changes)
    return synthetic_profile(**fields)


@pytest.fixture
def measured(monkeypatch):
    """Count the measurements and return a fresh 'measured' profile without timing anything."""
    calls = []

    def fake(device="cpu", dtypes=("fp32", "bf16"), optimizer_impl=None, point_seconds=None):
        calls.append(device)
        return _here(measured_at=f"fresh-{len(calls)}")

    monkeypatch.setattr(calibrate, "measure_profile", fake)
    return calls


def test_a_fresh_profile_is_cached_and_then_reused(tmp_path, measured):
    first, info = profile_cache.device_profile("cpu", cache_dir=tmp_path)
    assert not info["cached"] and len(measured) == 1
    again, info = profile_cache.device_profile("cpu", cache_dir=tmp_path)
    assert info["cached"] and again == first and len(measured) == 1
    assert load(info["path"]) == first


@pytest.mark.parametrize("changes, why", [
    (dict(torch_version="1.0.0"), "torch 1.0.0"),
    (dict(threads=999), "999 threads"),
    (dict(busy=True), "busy"),
])
def test_a_profile_from_another_torch_thread_count_or_a_busy_machine_is_not_used(tmp_path, measured, changes,
                                                                                 why):
    path = profile_cache.cache_path("cpu", tmp_path)
    profile_cache.write_atomic(path, dumps(_here(**changes)))
    profile, info = profile_cache.device_profile("cpu", cache_dir=tmp_path)
    assert not info["cached"] and why in info["reason"] and len(measured) == 1
    assert profile.torch_version == torch.__version__ and not profile.busy


@pytest.mark.parametrize("corrupt", [
    lambda d: d["gemm"]["fp32"]["seconds"].__setitem__(0, float("nan")),
    lambda d: d["dispatch"].__setitem__("bare_s", -1),
    lambda d: d.pop("elementwise"),
])
def test_a_corrupt_or_non_finite_cache_entry_is_remeasured(tmp_path, measured, corrupt):
    path = profile_cache.cache_path("cpu", tmp_path)
    data = json.loads(dumps(_here()))
    corrupt(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    profile, info = profile_cache.device_profile("cpu", cache_dir=tmp_path)
    assert not info["cached"] and str(path) in info["reason"] and len(measured) == 1
    assert load(path) == profile  # the re-measured profile replaced the corrupt file


def test_a_busy_measurement_is_returned_but_not_cached(tmp_path, monkeypatch):
    monkeypatch.setattr(calibrate, "measure_profile", lambda *a, **k: _here(busy=True))
    profile, info = profile_cache.device_profile("cpu", cache_dir=tmp_path)
    assert profile.busy and not profile_cache.cache_path("cpu", tmp_path).exists()


def test_a_remeasurement_folds_into_the_cached_profile_and_a_reset_replaces_it(tmp_path, monkeypatch):
    """--remeasure: each time the geometric mean with the cached one; --reset: the new measurement alone."""
    base = _here()
    monkeypatch.setattr(calibrate, "measure_profile", lambda *a, **k: scaled_profile(base, 4.0, measured_at="new"))
    path = profile_cache.cache_path("cpu", tmp_path)
    profile_cache.write_atomic(path, dumps(base))
    folded, info = profile_cache.device_profile("cpu", cache_dir=tmp_path, remeasure=True)
    assert not info["cached"] and info["calibrations"] == folded.calibrations == 2
    assert folded.gemm["fp32"].values[7] == pytest.approx(2 * base.gemm["fp32"].values[7])
    assert load(path) == folded
    again, info = profile_cache.device_profile("cpu", cache_dir=tmp_path)
    assert info["cached"] and info["calibrations"] == 2 and again == folded
    reset, info = profile_cache.device_profile("cpu", cache_dir=tmp_path, reset=True)
    assert reset.calibrations == 1 and reset.gemm["fp32"].values[7] == pytest.approx(4 * base.gemm["fp32"].values[7])
    assert load(path) == reset


def test_a_remeasurement_folds_neither_into_a_foreign_profile_nor_a_busy_one(tmp_path, monkeypatch):
    base = _here()
    fresh = scaled_profile(base, 4.0)
    monkeypatch.setattr(calibrate, "measure_profile", lambda *a, **k: fresh)
    path = profile_cache.cache_path("cpu", tmp_path)
    profile_cache.write_atomic(path, dumps(_here(torch_version="1.0.0")))
    profile, _ = profile_cache.device_profile("cpu", cache_dir=tmp_path, remeasure=True)
    assert profile == fresh and profile.calibrations == 1  # another torch's times are not averaged in
    monkeypatch.setattr(calibrate, "measure_profile", lambda *a, **k: replace(fresh, busy=True))
    busy, _ = profile_cache.device_profile("cpu", cache_dir=tmp_path, remeasure=True)
    assert busy.busy and busy.calibrations == 1 and load(path) == fresh  # a busy one neither folds nor caches


def test_cache_files_are_per_torch_version_and_threads(tmp_path, monkeypatch):
    a = profile_cache.cache_path("cpu", tmp_path)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 97)
    assert profile_cache.cache_path("cpu", tmp_path) != a and "t97" in profile_cache.cache_path("cpu", tmp_path).name


def test_unmeasured_points_scale_the_nearest_measured_one():
    axes = ((1, 10), (1, 10))
    values = calibrate._fill({(1, 1): 1.0, (1, 10): 5.0, (10, 1): 3.0}, axes)
    assert values == [1.0, 5.0, 3.0, pytest.approx(50.0)]  # (10, 10) from (1, 10) x 10 along the first axis
    disturbed = calibrate._fill({(1, 1): 9.0, (1, 10): 5.0, (10, 1): 3.0, (10, 10): 20.0}, axes)
    assert disturbed == [3.0, 5.0, 3.0, 20.0]  # a point slower than a larger one takes the larger one's time


def test_a_real_small_grid_is_valid_and_monotone():
    timer = kernel_timer.KernelTimer("cpu")
    with torch.no_grad():
        grid = calibrate.measure_gemm("fp32", torch.device("cpu"), timer, flop_cap=2 * 256**3, sizes=(16, 256),
                                      ms=(16, 256))
    small, _ = grid.lookup((16, 16, 16))
    large, _ = grid.lookup((256, 256, 256))
    assert 0 < small < large
    attention = calibrate.measure_attention("sdpa", "fp32", torch.device("cpu"), timer, bh_axis=(2,),
                                            seq_axis=(16, 64), dim_axis=(16,))
    assert set(attention) == {"forward_s", "backward_s"}
    dispatch = calibrate.measure_dispatch(torch.device("cpu"), timer)
    assert all(v > 0 for v in dispatch.values())


def test_a_full_measurement_round_trips_through_its_schema():
    profile = calibrate.measure_profile("cpu", dtypes=("fp32",), point_seconds=0.0)
    again = from_dict(json.loads(dumps(profile)), "memory")
    assert again == replace(profile)
    assert profile.threads == torch.get_num_threads() and profile.torch_version == torch.__version__
    assert {"sdpa", "explicit"} <= set(profile.attention) and "fp32" in profile.gemm


def test_every_grid_point_reads_its_inputs_cold():
    """Inputs of every size cycle through copies (as an op's inputs in a step were written several ops ago),
    up to COLD_COPIES of them; only an input as large as COLD_BYTES is read from one copy."""
    assert calibrate._cold_copies(8 << 10) == calibrate.COLD_COPIES  # 8 KiB: cycled, capped
    assert calibrate._cold_copies(calibrate.COLD_BYTES // 16) == 16
    assert calibrate._cold_copies(calibrate.COLD_BYTES) == 1 == calibrate._cold_copies(4 * calibrate.COLD_BYTES)


def test_a_grid_point_keeps_its_outputs_alive_as_a_step_keeps_activations():
    """Each call writes a block not freed by the previous call: the last ``copies`` outputs stay alive."""
    import weakref

    made: list = []

    def call():
        made.append(torch.ones(8))
        return made[-1]

    kept = calibrate._kept_outputs(call, copies=3)
    refs = []
    for _ in range(6):
        kept()
        refs.append(weakref.ref(made.pop()))
    assert [r() is not None for r in refs] == [False, False, False, True, True, True]


def test_gemm_layouts_include_the_bias_cost_per_output_element():
    timer = kernel_timer.KernelTimer("cpu")
    with torch.no_grad():
        layouts = calibrate.measure_gemm_layouts("fp32", "cpu", timer)
    assert set(layouts) == {"backward_input", "backward_weight", calibrate.BIAS_KEY}
    assert 0 < layouts[calibrate.BIAS_KEY] < 1e-8  # seconds per output element: a small positive figure


def test_the_engine_backward_matches_autograd_and_imports_no_sympy():
    """kernel_timer.run_backward is torch.autograd.grad without the gradient-shape check that imports sympy."""
    import subprocess
    import sys

    x = torch.randn(3, 4, requires_grad=True)
    g = torch.randn(3, 4)
    y = torch.nn.functional.gelu(x)
    ours = kernel_timer.run_backward(y, (x,), g, retain_graph=True)
    assert torch.equal(ours[0], torch.autograd.grad(y, (x,), g)[0])
    code = ("import sys, torch; from profiler import kernel_timer; x = torch.randn(4, requires_grad=True); "
            "kernel_timer.run_backward(x.exp(), (x,), torch.ones(4)); print('sympy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


class _ScriptedTimer:
    """Canary readings in a given order: each reading's CANARY_CALLS calls all take that long."""

    def __init__(self, readings):
        self.calls = [r for r in readings for _ in range(speed_canary.CANARY_CALLS)]

    def __call__(self, fn):
        fn()
        return self.calls.pop(0)


def test_a_grid_timed_in_a_slow_spell_is_timed_again_and_the_faster_timing_kept():
    # after A: 100 µs (the best); after B: 200 (a spell: 2x); after C: 135 (1.35x); B again: 110, C again: 140
    canary = speed_canary.SpeedCanary("cpu", _ScriptedTimer([100e-6, 200e-6, 135e-6, 110e-6, 140e-6]))
    stored, runs = {}, {"A": 0, "B": 0, "C": 0}

    def grid(name):
        def measure():
            runs[name] += 1
            return f"{name}{runs[name]}"
        return measure

    for name in "ABC":
        canary.timed(name, grid(name), lambda value, name=name: stored.__setitem__(name, value))
    canary.retime_slow()
    assert runs == {"A": 1, "B": 2, "C": 2}  # B (slowest first) and C (1.35x > 1.3x) timed again
    assert stored == {"A": "A1", "B": "B2", "C": "C1"}  # C's second reading (140) was no faster: kept
    assert canary.retimed == ["B"] and "100-200 µs over 5 readings; timed again after a slow spell: B" in canary.note()
