"""The device profile file: a round trip, and strict rejection of anything corrupt or non-finite."""

from __future__ import annotations

import json
import math

import pytest

from estimator.device_profile import Grid, dumps, from_dict, load
from estimator.errors import ConfigError
from tests.fixtures.device_profiles import gemm_seconds, synthetic_profile


def test_round_trip_through_json_keeps_every_figure(tmp_path):
    profile = synthetic_profile()
    path = tmp_path / "p.json"
    path.write_text(dumps(profile))
    again = load(path)
    assert again == profile
    assert again.summary()["gemm_best_flops"]["fp32"] == pytest.approx(
        2 * 4096**3 / gemm_seconds(4096, 4096, 4096))


def _corrupt(tmp_path, mutate):
    data = json.loads(dumps(synthetic_profile()))
    mutate(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("mutate, where", [
    (lambda d: d["gemm"]["fp32"]["seconds"].__setitem__(3, float("nan")), "gemm.fp32.seconds[3]"),
    (lambda d: d["gemm"]["fp32"]["seconds"].__setitem__(0, float("inf")), "gemm.fp32.seconds[0]"),
    (lambda d: d["gemm"]["fp32"]["seconds"].__setitem__(5, -1.0), "gemm.fp32.seconds[5]"),
    (lambda d: d["gemm"]["fp32"]["seconds"].__setitem__(5, "1e-3"), "gemm.fp32.seconds[5]"),
    (lambda d: d["gemm"]["bf16"]["seconds"].pop(), "gemm.bf16.seconds"),
    (lambda d: d["gemm"]["fp32"]["axes"]["m"].reverse(), "gemm.fp32.axes.m"),
    (lambda d: d["dispatch"].__setitem__("bare_s", 0), "dispatch.bare_s"),
    (lambda d: d["framework"]["gpt.sdpa.plain"].__setitem__("per_layer_s", float("nan")), "framework.gpt.sdpa.plain.per_layer_s"),
    (lambda d: d.__setitem__("threads", True), "threads"),
    (lambda d: d.__setitem__("busy", "no"), "busy"),
    (lambda d: d.__setitem__("others_cpu_share", 1.5), "others_cpu_share"),
    (lambda d: d.__setitem__("others_cpu_share", float("inf")), "others_cpu_share"),
    (lambda d: d.__setitem__("schema", "other/2"), "schema"),
    (lambda d: d["attention"]["sdpa"]["fp32"].pop("backward_s"), "attention.sdpa.fp32"),
    (lambda d: d["optimizer"]["adamw.foreach"].__setitem__("per_tensor_s", None), "optimizer.adamw.foreach"),
])
def test_a_corrupt_entry_is_rejected_naming_the_file_and_the_entry(tmp_path, mutate, where):
    path = _corrupt(tmp_path, mutate)
    with pytest.raises(ConfigError) as err:
        load(path)
    assert str(path) in str(err.value) and where in str(err.value)


def test_unreadable_files_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="no device profile"):
        load(tmp_path / "missing.json")
    bad = tmp_path / "trunc.json"
    bad.write_text('{"schema": ')
    with pytest.raises(ConfigError, match="trunc.json"):
        load(bad)
    with pytest.raises(ConfigError, match="expected an object"):
        from_dict([1, 2], "list.json")


def test_a_non_finite_figure_never_reaches_a_file():
    grid = Grid(("elements",), ((1, 2),), (1e-6, float("nan")))
    with pytest.raises(ValueError):
        dumps(synthetic_profile(gemm={"fp32": Grid(("m", "n", "k"), ((1,), (1,), (1,)), (math.inf,))}))
    assert math.isnan(grid.values[1])


def test_grid_interpolates_in_log_space_and_flags_extrapolation():
    grid = Grid(("n",), ((10, 1000),), (1e-5, 1e-3))  # time ∝ n between the points
    t, ext = grid.lookup((100,))
    assert t == pytest.approx(1e-4) and not ext
    t, ext = grid.lookup((4000,))
    assert t == pytest.approx(4e-3) and ext  # above the grid: throughput held
    t, ext = grid.lookup((2,))
    assert t == pytest.approx(1e-5) and ext  # below: the fixed per-call cost
    t, ext = grid.lookup((1000,))
    assert t == pytest.approx(1e-3) and not ext


def test_attention_grid_is_linear_in_batch_heads_and_head_dim_and_log_in_seq():
    """An affine cost (a fixed part plus one in proportion to the size) along bh and head_dim: the midpoint
    is the two ends' mean there; along seq (T² score work) a power law: the geometric mean."""
    from estimator.device_profile import ATTENTION_AXES

    # values in row-major order of (bh, seq, head_dim): t = 1 ms + bh · head_dim · seq² / 2^24 s
    axes = ((4, 36), (128, 512), (16, 64))
    values = tuple(1e-3 + bh * d * t * t / 2**24 for bh in axes[0] for t in axes[1] for d in axes[2])
    grid = Grid(ATTENTION_AXES, axes, values)
    for bh, d in ((20, 16), (4, 40), (20, 40), (12, 64)):
        t, ext = grid.lookup((bh, 128, d))
        assert t == pytest.approx(1e-3 + bh * d * 128 ** 2 / 2**24) and not ext  # exact for an affine cost
    low, high = grid.lookup((4, 128, 16))[0], grid.lookup((4, 512, 16))[0]
    assert grid.lookup((4, 256, 16))[0] == pytest.approx(math.sqrt(low * high))
    gemm = Grid(("m", "n", "k"), ((16, 64), (16,), (16,)), (1e-6, 4e-6))
    assert gemm.lookup((32, 16, 16))[0] == pytest.approx(2e-6)  # GEMM axes stay log-log
