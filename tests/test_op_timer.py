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
    assert sum(cats.values()) == pytest.approx(out["profiled_step_s"])  # host: the step less its ops
    assert out["events"] > 50 and "dispatcher" in out["method"]
    assert trainer.optimizer.step.__func__ is type(trainer.optimizer).step  # the marking is undone
    trainer.close()


def test_host_is_the_reference_step_less_the_ops_and_a_short_reference_keeps_the_split():
    trainer = TrainingStep(get_model("gpt-tiny"), "cpu", StepOptions(precision="fp32"))
    x, y = trainer.make_batch(2, 32)
    trainer.step(x, y)
    long = time_step_ops(trainer, x, y, reference_s=10.0)["categories"]
    assert sum(long.values()) == pytest.approx(10.0) and long["host"] > 9.0
    short = time_step_ops(trainer, x, y, reference_s=1e-6)["categories"]
    assert sum(short.values()) == pytest.approx(1e-6) and short["host"] == 0.0
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
