"""profiler.op_timer: a CPU step's ops timed at the dispatcher, per category, host the rest of the step."""

from __future__ import annotations

import time

import pytest

from estimator.ops import CATEGORIES
from estimator.presets import get_model
from profiler.op_timer import OpTimer, time_step_ops
from profiler.step import StepOptions, TrainingStep


@pytest.mark.parametrize("flash", [True, False])
def test_a_real_step_is_split_into_every_category_it_runs(flash):
    trainer = TrainingStep(get_model("gpt-tiny"), "cpu", StepOptions(precision="fp32", flash_attention=flash))
    x, y = trainer.make_batch(2, 32)
    trainer.step(x, y)
    out = time_step_ops(trainer, x, y, reference_s=None)
    cats = out["categories"]
    assert set(cats) == set(CATEGORIES)
    for category in ("matmul", "attention", "elementwise", "optimizer", "host"):
        assert cats[category] > 0, category
    assert cats["communication"] == 0
    assert sum(cats.values()) <= out["profiled_step_s"]  # host: the step less its ops and the timer's cost
    assert out["events"] > 50 and "dispatcher" in out["method"]
    assert trainer.optimizer.step.__func__ is type(trainer.optimizer).step  # the marking is undone
    trainer.close()


def test_the_split_is_scaled_to_the_reference_step_and_the_timers_own_cost_is_not_host():
    trainer = TrainingStep(get_model("gpt-tiny"), "cpu", StepOptions(precision="fp32"))
    x, y = trainer.make_batch(2, 32)
    trainer.step(x, y)
    own = time_step_ops(trainer, x, y)
    raw = own["categories"]
    assert own["timer_cost_per_op_s"] > 0
    kernels = sum(v for c, v in raw.items() if c != "host")
    assert raw["host"] == pytest.approx(max(0.0, own["profiled_step_s"] - kernels
                                            - own["events"] * own["timer_cost_per_op_s"]))
    scaled = time_step_ops(trainer, x, y, reference_s=10.0)["categories"]
    assert sum(scaled.values()) == pytest.approx(10.0)
    shares = {c: v / 10.0 for c, v in scaled.items()}
    assert shares["matmul"] > 0.05 and shares["host"] < 0.9  # the split kept, not all of it host
    trainer.close()


def test_an_op_is_timed_around_its_own_run_only():
    """Time spent between ops (Python) is not charged to them: a sleep between two adds adds nothing."""
    import torch

    a = torch.ones(8)
    timer = OpTimer()
    with timer:
        a + a
        time.sleep(0.05)
        a + a
    assert timer.ops == 2
    assert timer.seconds["elementwise"] < 0.01
