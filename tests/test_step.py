"""The training step and its switches, the CPU memory tracker, and step timing statistics."""

import gc

import pytest
import torch

from estimator.errors import ConfigError
from estimator.presets import customise, get_model
from profiler.memory_meter import (
    LiveStorageTracker, MemoryLimitExceeded, MemoryMeter, training_state_tensors, unique_storage_bytes,
)
from profiler.step import (
    StepOptions, TrainingStep, cpu_autocast_bf16_works, effective_precision, float32_matmul_mode,
)
from profiler.adamw import fused_by_default
from profiler.compare import steady_state
from profiler.step_timer import StepTimer

TINY = get_model("gpt-tiny")


def test_a_full_step_learns_a_fixed_batch_and_frees_gradients():
    trainer = TrainingStep(TINY, "cpu", StepOptions(precision="fp32", lr=1e-2))
    x, y = trainer.make_batch(4, 32)
    losses = [trainer.step(x, y).item() for _ in range(6)]
    assert losses[-1] < losses[0] - 0.5  # AdamW really updates the weights
    assert all(p.grad is None for p in trainer.raw_model.parameters())  # zero_grad(set_to_none=True)
    state = trainer.optimizer.state
    assert len(state) == len(list(trainer.raw_model.parameters()))  # AdamW state allocated by the step
    assert all(s["exp_avg"].dtype == torch.float32 for s in state.values())


def test_synthetic_batches_are_next_token_pairs_from_the_real_vocabulary():
    odd = customise(TINY, vocab_size=500)
    trainer = TrainingStep(odd, "cpu", StepOptions(precision="fp32", vocab_pad_multiple=64))
    assert trainer.cfg.vocab_size == 512 and trainer.raw_model.lm_head.out_features == 512
    x, y = trainer.make_batch(3, 16)
    assert x.shape == y.shape == (3, 16)
    assert torch.equal(x[:, 1:], y[:, :-1])
    assert int(x.max()) < 500 and int(y.max()) < 500
    data = trainer.batches(3, 16, pool=2)  # a pre-generated pool, cycled
    batches = [next(data) for _ in range(3)]
    assert torch.equal(batches[0][0], batches[2][0]) and not torch.equal(batches[0][0], batches[1][0])
    assert torch.equal(batches[1][0][:, 1:], batches[1][1][:, :-1])


def test_optimizer_switch_fused_foreach_or_for_loop():
    default = TrainingStep(TINY, "cpu", StepOptions(precision="fp32"))
    assert default.optimizer.defaults["fused"] is fused_by_default("cpu") is True  # torch 2.13 has the CPU kernel
    foreach = TrainingStep(TINY, "cpu", StepOptions(precision="fp32", fused_adamw=False))
    assert foreach.optimizer.defaults["foreach"] is True and not foreach.optimizer.defaults["fused"]
    fused = TrainingStep(TINY, "cpu", StepOptions(precision="fp32", fused_adamw=True))
    assert fused.optimizer.defaults["fused"] is True
    x, y = fused.make_batch(2, 16)
    assert torch.isfinite(fused.step(x, y))
    loop = TrainingStep(TINY, "cpu", StepOptions(precision="fp32", fused_adamw=False, adamw_foreach=False))
    assert loop.optimizer.defaults["foreach"] is False and not loop.optimizer.defaults["fused"]
    decay = [g["weight_decay"] for g in fused.optimizer.param_groups]
    assert decay == [0.1, 0.0]  # matrices decay, biases and norms do not (nanoGPT)


def test_pure_bf16_keeps_weights_and_adamw_state_in_bf16():
    trainer = TrainingStep(TINY, "cpu", StepOptions(precision="bf16"))
    x, y = trainer.make_batch(2, 16)
    assert torch.isfinite(trainer.step(x, y))
    assert all(p.dtype == torch.bfloat16 for p in trainer.raw_model.parameters())
    assert all(s["exp_avg_sq"].dtype == torch.bfloat16 for s in trainer.optimizer.state.values())


def test_bf16_mixed_runs_matmuls_in_bf16_with_fp32_weights():
    ok, why = cpu_autocast_bf16_works()
    if not ok:
        pytest.skip(f"autocast(cpu, bf16) unavailable: {why}")
    trainer = TrainingStep(TINY, "cpu", StepOptions(precision="bf16-mixed"))
    seen = []
    trainer.raw_model.blocks[0].attn.c_attn.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    x, y = trainer.make_batch(2, 16)
    assert torch.isfinite(trainer.step(x, y))
    assert seen == [torch.bfloat16]
    assert all(p.dtype == torch.float32 for p in trainer.raw_model.parameters())


def test_attention_switch():
    assert TrainingStep(TINY, "cpu", StepOptions(flash_attention=False)).raw_model.attention == "explicit"
    assert TrainingStep(TINY, "cpu", StepOptions(flash_attention=True)).raw_model.attention == "sdpa"


def test_precision_mapping_on_the_cpu():
    assert effective_precision("tf32", "cpu")[0] == "fp32"
    assert "CUDA tensor-core" in effective_precision("tf32", "cpu")[1]
    assert effective_precision("fp32", "cpu") == ("fp32", None)
    assert effective_precision("tf32", "cuda") == ("tf32", None)
    with pytest.raises(ConfigError, match="estimate-only"):
        StepOptions(precision="fp16-mixed")


def test_tf32_flags_are_set_for_the_step_and_restored():
    before = (torch.get_float32_matmul_precision(), torch.backends.cuda.matmul.allow_tf32)
    with float32_matmul_mode("tf32", "cuda"):
        assert torch.get_float32_matmul_precision() == "high"
        assert torch.backends.cuda.matmul.allow_tf32 is True
    assert (torch.get_float32_matmul_precision(), torch.backends.cuda.matmul.allow_tf32) == before
    with float32_matmul_mode("fp32", "cuda"):
        assert torch.backends.cuda.matmul.allow_tf32 is False
    assert (torch.get_float32_matmul_precision(), torch.backends.cuda.matmul.allow_tf32) == before


def test_seq_len_over_the_context_is_a_config_error():
    trainer = TrainingStep(TINY, "cpu", StepOptions(precision="fp32"))
    with pytest.raises(ConfigError, match="context"):
        trainer.make_batch(1, TINY.context_length + 1)


# ----------------------------------------------------------------- CPU memory tracker

def _warm_trainer() -> TrainingStep:
    trainer = TrainingStep(TINY, "cpu", StepOptions(precision="fp32"))
    trainer.step(*trainer.make_batch(2, 32))  # allocate AdamW state
    return trainer


def test_tracker_counts_state_and_activations_and_returns_to_baseline():
    trainer = _warm_trainer()
    state_bytes = unique_storage_bytes(training_state_tensors(trainer.raw_model, trainer.optimizer))
    n = sum(p.numel() for p in trainer.raw_model.parameters())
    # fp32 weights + two fp32 AdamW moments + one fp32 `step` scalar per parameter tensor
    assert state_bytes == 12 * n + 4 * len(trainer.optimizer.state)
    tracker = LiveStorageTracker("cpu")
    tracker.track(training_state_tensors(trainer.raw_model, trainer.optimizer))
    assert tracker.live_bytes == state_bytes
    x, y = trainer.make_batch(8, 64)
    with tracker:
        trainer.step(x, y)
    gc.collect()
    assert tracker.live_bytes == state_bytes  # activations and gradients freed
    logits = 8 * 64 * TINY.vocab_size * 4
    assert tracker.peak_bytes > state_bytes + 4 * n + logits  # grads + at least the fp32 logits were live
    assert tracker.allocations > 50


def test_tracker_limit_raises_a_memory_error_and_nothing_leaks():
    trainer = _warm_trainer()
    tracker = LiveStorageTracker("cpu", limit_bytes=4 * 2**20)
    tracker.track(training_state_tensors(trainer.raw_model, trainer.optimizer))
    baseline = tracker.live_bytes
    x, y = trainer.make_batch(16, 128)
    failed = False
    try:
        with tracker:
            trainer.step(x, y)
    except MemoryLimitExceeded:
        failed = True
    assert failed
    trainer.optimizer.zero_grad(set_to_none=True)
    gc.collect()
    assert tracker.live_bytes == baseline


def test_memory_meter_on_cpu_reports_rss_as_reserved():
    meter = MemoryMeter("cpu")
    meter.set_cpu_figures(allocated=100, peak=200)
    sample = meter.sample()
    assert (sample.allocated, sample.peak) == (100, 200)
    assert sample.reserved > 10 * 2**20  # a Python process with torch loaded


# ----------------------------------------------------------------- timing

def test_steady_state_median_and_quartiles():
    ss = steady_state([5.0, 1.0, 2.0, 3.0, 4.0])
    assert (ss.median, ss.q1, ss.q3, ss.iqr) == (3.0, 2.0, 4.0, 2.0)
    assert ss.relative_spread == pytest.approx(2 / 3)
    assert not ss.is_steady(0.1)
    assert steady_state([1.0, 1.01, 0.99, 1.0]).is_steady(0.1)
    assert steady_state([0.5]).n == 1
    with pytest.raises(ValueError):
        steady_state([])


def test_cpu_step_timer_measures_elapsed_time():
    timer = StepTimer("cpu")
    timer.start()
    torch.randn(64, 64) @ torch.randn(64, 64)
    seconds = timer.stop()
    assert 0 < seconds < 10
