"""Batch search: agreement with plain bisection, probe counts, OOM recovery, the CPU cap and gate."""

import math
import statistics

import pytest

from estimator.presets import get_model
from profiler.bracket_search import (
    ProbeOutcome,
    binary_search_max_batch,
    find_max_batch,
)
from profiler.search import InjectedOOM, StepProbe, is_oom
from profiler.step import StepOptions, TrainingStep


def _probes(n: int, seed: int) -> int:
    result = find_max_batch(lambda b: b <= n, seed)
    assert result.max_batch_size == n == binary_search_max_batch(lambda b: b <= n, 4 * n + 8)
    return len(result.probes)


def _seeds_within(n: int, fraction: float, count: int = 9) -> list[int]:
    lo, hi = max(1, math.ceil(n * (1 - fraction))), max(1, math.floor(n * (1 + fraction)))
    return sorted({round(lo + (hi - lo) * i / (count - 1)) for i in range(count)})


def test_seeded_search_agrees_with_bisection_and_stays_within_log2_n_plus_2():
    worst_excess = -99
    for n in range(1, 2001):
        bound = math.ceil(math.log2(n)) + 2 if n > 1 else 2
        for seed in _seeds_within(n, 0.20):
            worst_excess = max(worst_excess, _probes(n, seed) - bound)
    assert worst_excess <= 0


def test_probe_counts_by_seed_error():
    """A probe answers one bit: with the seed off by 20 % of N ~ 0.4 N candidates remain, so
    '≤ 4 probes' holds where the bracket is small (small N or a seed within a few percent)."""
    def median(ns, fraction):
        return statistics.median(_probes(n, s) for n in ns for s in _seeds_within(n, fraction, 5))

    assert median(range(1, 129), 0.05) <= 4  # typical GPU micro-batches, estimate within 5 %
    assert median(range(1, 33), 0.10) <= 4
    assert max(_probes(n, n) for n in range(1, 2001)) <= 2 + math.ceil(math.log2(math.ceil(2000 / 16)))
    seeded = median(range(1, 2001, 7), 0.20)
    blind = statistics.median(_probes(n, 1) for n in range(1, 2001, 7))
    assert seeded <= 10 and blind >= 2 * seeded  # doubling from 1 costs ~2·log2 N


def test_failing_seed_shrinks_and_nothing_fitting_gives_zero():
    result = find_max_batch(lambda b: b <= 10, 1000)
    assert result.max_batch_size == 10 and not result.probes[0].fits
    nothing = find_max_batch(lambda b: False, 64)
    assert nothing.max_batch_size == 0 and nothing.probes[-1].batch_size == 1


def test_search_stops_at_max_batch_and_on_request():
    assert find_max_batch(lambda b: True, 10, max_batch=37).max_batch_size == 37
    calls = []
    stopped = find_max_batch(lambda b: calls.append(b) or b <= 500, 100, should_stop=lambda: len(calls) >= 3)
    assert stopped.cancelled and len(stopped.probes) == 3
    assert stopped.max_batch_size == max(b for b in calls if b <= 500)


def test_on_probe_sees_the_bracket_after_each_probe():
    seen = []
    find_max_batch(lambda b: b <= 20, 16, on_probe=lambda out, lo, hi: seen.append((out.batch_size, lo, hi)))
    assert seen[0] == (16, 16, None)
    assert seen[-1][1] == 20 and seen[-1][2] == 21


def test_is_oom_recognises_allocation_failures_only():
    assert is_oom(InjectedOOM("x")) and is_oom(MemoryError())
    assert is_oom(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes"))
    assert is_oom(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert not is_oom(RuntimeError("shape mismatch"))


# ----------------------------------------------------------------- the real probe (gpt-tiny, CPU)

@pytest.fixture(scope="module")
def trainer():
    t = TrainingStep(get_model("gpt-tiny"), "cpu", StepOptions(precision="fp32"))
    t.step(*t.make_batch(1, 32))  # priming: AdamW state exists before any probe
    return t


def test_injected_oom_is_recovered_and_memory_returns_to_baseline(trainer):
    probe = StepProbe(trainer, 32, inject_oom_above=3)
    ok = probe(3)
    assert ok.fits and ok.outcome == "ok" and ok.after_bytes == ok.baseline_bytes
    failed = probe(6)
    assert not failed.fits and failed.outcome == "oom" and "InjectedOOM" in failed.detail
    assert failed.peak_memory_bytes > failed.baseline_bytes  # the forward pass had allocated activations
    assert failed.after_bytes == failed.baseline_bytes  # ... and all of it came back
    assert all(p.grad is None for p in trainer.raw_model.parameters())
    result = find_max_batch(probe, 8)
    assert result.max_batch_size == 3
    assert all(p.after_bytes == p.baseline_bytes for p in result.probes)


def test_cpu_memory_limit_counts_as_oom_and_gate_skips_predicted_misfits(trainer):
    limit = 4 * 2**20  # gpt-tiny at T=32: ~2.8 MiB at batch 1, ~9 MiB at batch 16
    probe = StepProbe(trainer, 32, limit_bytes=limit)
    small, big = probe(1), probe(16)
    assert small.fits and small.peak_memory_bytes <= limit
    assert not big.fits and big.outcome == "oom" and "MemoryLimitExceeded" in big.detail
    assert big.after_bytes == big.baseline_bytes
    gated = StepProbe(trainer, 32, limit_bytes=limit, predicted_bytes=lambda b: b * 2**20)
    out = gated(6)  # predicted 6 MiB > 1.25 x 4 MiB: not run
    assert out.outcome == "gated" and not out.fits and out.seconds == 0.0 and out.peak_memory_bytes is None
    assert gated(5).outcome != "gated"
    result = find_max_batch(probe, 6)
    assert 1 <= result.max_batch_size < 16
    assert all(p.peak_memory_bytes <= limit for p in result.probes if p.fits)
    assert all(p.peak_memory_bytes > limit for p in result.probes if not p.fits)


def test_a_non_oom_error_is_not_swallowed(trainer):
    def broken():
        raise RuntimeError("shape mismatch")

    probe = StepProbe(trainer, 32)
    probe.inject_oom_above = 0
    import profiler.search as search

    original = search._raise_injected
    search._raise_injected = broken
    try:
        with pytest.raises(RuntimeError, match="shape mismatch"):
            probe(1)
    finally:
        search._raise_injected = original
        trainer.optimizer.zero_grad(set_to_none=True)


def test_probe_outcome_from_bool():
    result = find_max_batch(lambda b: ProbeOutcome(b, b <= 5, "ok" if b <= 5 else "oom"), 5)
    assert result.max_batch_size == 5 and result.probes[0].outcome == "ok"
