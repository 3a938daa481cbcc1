"""profiler.op_timer: a CPU step's ops recorded and replayed one by one, per category, host the rest of the step."""

from __future__ import annotations

import time

import pytest

from estimator.ops import CATEGORIES
from estimator.presets import get_model
from profiler.op_timer import LIVE_METHOD, METHOD, OpRecorder, OpTimer, replay_seconds, time_step_ops
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
    assert out["replayed_s"] > 0 and out["replay_rounds"] >= 3 and out["method"] == METHOD
    assert out["events"] > 50 and out["recorded_bytes"] > 0
    assert trainer.optimizer.step.__func__ is type(trainer.optimizer).step  # the marking is undone
    trainer.close()


def test_host_is_the_reference_step_less_the_replayed_ops():
    trainer = TrainingStep(get_model("gpt-tiny"), "cpu", StepOptions(precision="fp32"))
    x, y = trainer.make_batch(2, 32)
    trainer.step(x, y)
    slow = time_step_ops(trainer, x, y, reference_s=10.0)  # far slower than its ops: the rest is host
    cats = slow["categories"]
    assert sum(cats.values()) == pytest.approx(10.0)
    kernels = sum(v for c, v in cats.items() if c != "host")
    assert 0 < kernels <= slow["replayed_s"]  # the replayed ops, less their views (category host)
    assert cats["host"] >= 10.0 - slow["replayed_s"]
    fast = time_step_ops(trainer, x, y, reference_s=1e-4)  # faster than its ops replay: the split is scaled
    shares = {c: v / 1e-4 for c, v in fast["categories"].items()}
    assert sum(shares.values()) == pytest.approx(1.0)
    assert shares["matmul"] > 0.05 and shares["host"] < 0.5  # the split kept, not all of it host
    trainer.close()


def test_a_step_too_large_to_record_is_timed_live():
    trainer = TrainingStep(get_model("gpt-tiny"), "cpu", StepOptions(precision="fp32"))
    x, y = trainer.make_batch(2, 32)
    trainer.step(x, y)
    out = time_step_ops(trainer, x, y, reference_s=None, limit_bytes=1)
    assert out["method"] == LIVE_METHOD and out["timer_cost_per_op_s"] > 0
    kernels = sum(v for c, v in out["categories"].items() if c != "host")
    assert out["categories"]["host"] == pytest.approx(max(0.0, out["profiled_step_s"] - kernels
                                                          - out["events"] * out["timer_cost_per_op_s"]))
    trainer.close()


def test_a_step_whose_ops_cannot_replay_is_timed_live(monkeypatch):
    def refuses(ops, rounds):
        raise RuntimeError("an op that runs once")

    monkeypatch.setattr("profiler.op_timer.replay_seconds", refuses)
    trainer = TrainingStep(get_model("gpt-tiny"), "cpu", StepOptions(precision="fp32"))
    x, y = trainer.make_batch(2, 32)
    trainer.step(x, y)
    out = time_step_ops(trainer, x, y, reference_s=0.01)
    assert out["method"] == LIVE_METHOD and sum(out["categories"].values()) == pytest.approx(0.01)
    trainer.close()


def test_the_replay_runs_every_recorded_op_in_order_once_untimed_then_once_per_round():
    import torch

    a = torch.zeros(3)
    recorder = OpRecorder(limit_bytes=2**20)
    with recorder:
        a.add_(1.0)
        b = a * 2.0
    assert [category for *_, category in recorder.ops] == ["elementwise", "elementwise"]
    seconds = replay_seconds(recorder.ops, rounds=3)
    assert len(seconds) == 2 and all(t > 0 for t in seconds)
    assert a.tolist() == [5.0, 5.0, 5.0]  # the in-place add ran again: the untimed replay, then three rounds
    assert b.tolist() == [2.0, 2.0, 2.0]  # the recorded output itself is not rewritten


def test_replayed_outputs_stay_alive_for_the_bytes_written_after_them(monkeypatch):
    """As in a step, an op does not write into the block the previous op's output just freed: outputs are
    kept until ``KEPT_OUTPUT_BYTES`` of newer ones (here 3 outputs' worth) have been written."""
    import weakref

    import torch

    from profiler import op_timer

    monkeypatch.setattr(op_timer, "KEPT_OUTPUT_BYTES", 3 * 4096)
    refs: list = []
    alive_at_call: list[int] = []

    def op():
        alive_at_call.append(sum(r() is not None for r in refs))
        out = torch.ones(1024)  # 4,096 bytes
        refs.append(weakref.ref(out))
        return out

    op_timer.replay_seconds([(op, (), {}, "elementwise")], rounds=8)
    assert alive_at_call == [0, 1, 2, 3, 3, 3, 3, 3, 3]  # the untimed replay, then 8 rounds: 3 outputs' worth
    assert all(r() is None for r in refs)  # all released once the replay ends


def test_recording_stops_holding_tensors_past_its_limit():
    import torch

    recorder = OpRecorder(limit_bytes=1000)
    big = torch.ones(1000)  # 4,000 bytes
    with recorder:
        big + big
    assert recorder.overflowed and recorder.ops == []


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



@pytest.mark.parametrize("model", ["gpt-tiny", "llama-tiny"])
def test_explicit_attentions_own_operand_copies_count_as_attention(model):
    """The copies the attention grid times inside explicit attention (its matmuls' operands, the causal
    mask) are attention; the head merge's and the grads' copies, and GQA's 5-D repeat, stay elementwise."""
    from dataclasses import replace

    from profiler.op_timer import op_signature
    from profiler.step_breakdown import attention_layout_copies

    cfg = replace(get_model(model), n_layers=1)
    trainer = TrainingStep(cfg, "cpu", StepOptions(precision="fp32", flash_attention=False))
    x, y = trainer.make_batch(2, 64)  # T unlike head_dim: a (b, h, T, d) tensor is not taken for scores
    trainer.step(x, y)
    recorder = OpRecorder(2**30)
    with recorder:
        trainer.step(x, y)
    trainer.close()
    signatures = [op_signature(func, args) for func, args, *_ in recorder.ops]
    before = [op[3] for op in recorder.ops]
    after = attention_layout_copies(signatures, before)
    moved = sorted(str(tuple(recorder.ops[i][1][0].shape)) if signatures[i][1] else signatures[i][0]
                   for i in range(len(before)) if before[i] != after[i])
    heads, dh = cfg.n_heads, cfg.d_model // cfg.n_heads
    q_or_v, k_t = str((2, heads, 64, dh)), str((2, heads, dh, 64))
    # per-head views of the fused projection: q, kᵀ and v materialised for the bmm; after GQA's repeat
    # (contiguous k and v) only q
    expected = ([q_or_v, k_t, q_or_v] if model == "gpt-tiny" else [q_or_v]) + ["aten::ones"]
    assert moved == sorted(expected)
    assert all(before[i] == "elementwise" and after[i] == "attention"
               for i in range(len(before)) if before[i] != after[i])
    kept = [s for s, c in zip(signatures, after) if s[0] == "aten::clone" and c == "elementwise"]
    assert ("aten::clone", 4) in kept  # the head merge and the head-split grads
    if model == "llama-tiny":
        assert ("aten::clone", 5) in kept  # GQA's repeat of k and v
