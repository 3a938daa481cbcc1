"""profiler.profile_merge: a re-calibration folds into the cached profile as a weighted geometric mean."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest

from estimator.device_profile import Grid, dumps, from_dict
from estimator.errors import ConfigError
from profiler.profile_merge import HISTORY, merge
from tests.fixtures.device_profiles import scaled_profile, synthetic_profile


def test_a_second_calibration_is_the_geometric_mean_of_both():
    base = synthetic_profile()
    slow = scaled_profile(base, 4.0, measured_at="2026-12-02T10:00:00Z", load_average=0.4)
    merged = merge(base, slow)
    g0, g1 = base.gemm["fp32"].values, merged.gemm["fp32"].values
    assert all(b == pytest.approx(2 * a) for a, b in zip(g0, g1))  # sqrt(1 x 4)
    assert merged.attention["sdpa"]["bf16"]["backward_s"].values[5] == pytest.approx(
        2 * base.attention["sdpa"]["bf16"]["backward_s"].values[5])
    assert merged.framework["gpt.sdpa.plain"]["per_layer_s"] == pytest.approx(2 * base.framework["gpt.sdpa.plain"]["per_layer_s"])
    assert merged.dispatch["bare_s"] == pytest.approx(2 * base.dispatch["bare_s"])
    assert merged.calibrations == 2 and merged.measured_at == "2026-12-02T10:00:00Z" and merged.load_average == 0.4
    assert any("geometric mean over 2 calibrations" in n and base.measured_at in n for n in merged.notes)


def test_the_newest_weighs_at_least_one_over_history():
    old = synthetic_profile(calibrations=50)
    fresh = scaled_profile(old, math.e ** HISTORY, calibrations=1)  # log-time HISTORY above the old one
    merged = merge(old, fresh)
    ratio = merged.gemm["bf16"].values[0] / old.gemm["bf16"].values[0]
    assert math.log(ratio) == pytest.approx(1.0)  # (HISTORY - 1) x 0 + 1 x HISTORY, over HISTORY
    assert merged.calibrations == 51


def test_what_only_the_fresh_measurement_has_is_kept_and_a_changed_grid_is_not_mixed():
    old = synthetic_profile()
    other_axes = Grid(("m", "n", "k"), ((16,), (16,), (16,)), (1.0,))
    fresh = replace(scaled_profile(old, 9.0), gemm={"fp32": other_axes, "fp16": old.gemm["bf16"]},
                    optimizer={"adamw.fused": {"step_s": 1.0, "per_tensor_s": 1.0, "per_element_s": 1.0,
                                               "per_element_dram_s": 1.0}})
    merged = merge(old, fresh)
    assert set(merged.gemm) == {"fp32", "fp16"}  # the cached bf16 grid is not carried over
    assert merged.gemm["fp32"] is other_axes and merged.gemm["fp16"] == old.gemm["bf16"]
    assert merged.optimizer == fresh.optimizer  # another AdamW: nothing to average it with


def test_the_count_round_trips_and_a_bad_one_is_refused():
    profile = synthetic_profile(calibrations=3)
    assert from_dict(json.loads(dumps(profile))).calibrations == 3
    data = json.loads(dumps(profile))
    del data["calibrations"]
    assert from_dict(data).calibrations == 1  # a file from before the count: one measurement
    for bad in (0, True, 1.5, "3", 10**6):
        data["calibrations"] = bad
        with pytest.raises(ConfigError, match="calibrations"):
            from_dict(data)
