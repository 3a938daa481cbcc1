"""``Tracker`` around a tiny random Hugging Face LLaMA: the events, the figures, the FLOPs, and bad input."""

from __future__ import annotations

import json
import math
import threading
import warnings

import pytest
import torch

from estimator.errors import ConfigError
from estimator.flops import step_flops
from estimator.model_config import from_hf_config
from estimator.presets import get_model
from profiler import Tracker
from profiler.events import (
    DeviceDetected, FlopsCounted, LogMessage, PredictionReady, RunFailed, RunFinished, StepSample, read_events,
)
from profiler.model import build_model

from fixtures.tracker_helpers import B, PEAK, T, batches, fake_cpu, hf_train_step, tiny_llama

pytest.importorskip("transformers")

pytestmark = pytest.mark.slow  # trains tiny models
STEPS = 5


def track(model, optimizer, out, steps=STEPS, **kw):
    with Tracker(model, tokens_per_step=B * T, out=out, detect=fake_cpu, optimizer=optimizer, **kw) as t:
        for x in batches(steps):
            t.step(loss=hf_train_step(model, optimizer, x))
    return t


@pytest.fixture
def llama(tmp_path):
    model, config = tiny_llama(tmp_path / "tiny-llama")
    return model, torch.optim.AdamW(model.parameters(), lr=1e-3), config


def test_a_tracked_hf_llama_writes_the_profile_events_with_the_estimators_flops(tmp_path, llama):
    model, opt, config = llama
    out = tmp_path / "run.jsonl"
    threads = threading.active_count()
    t = track(model, opt, out, config=config)
    assert threading.active_count() == threads  # no thread outlives the with
    events = list(read_events(out.read_text().splitlines()))
    assert events == t.events  # every event reached the file, and it round-trips
    kinds = [type(e) for e in events]
    assert kinds[0] is DeviceDetected and kinds[-1] is RunFinished and not events[-1].cancelled
    assert kinds.index(PredictionReady) < kinds.index(FlopsCounted) < kinds.index(StepSample)
    steps = [e for e in events if isinstance(e, StepSample)]
    assert [s.step for s in steps] == list(range(1, STEPS + 1))
    assert [s.warmup for s in steps] == [True] + [False] * (STEPS - 1)
    expected = step_flops(from_hf_config(config), B, T).total
    flops = next(e for e in events if isinstance(e, FlopsCounted))
    assert flops.analytic == expected and (flops.batch_size, flops.seq_len) == (B, T)
    for s in steps:
        assert s.batch_size == B and math.isfinite(s.loss)
        assert s.tokens_per_s == pytest.approx(B * T / s.step_time_s)
        assert s.mfu == pytest.approx(expected / s.step_time_s / PEAK)
    summary = events[-1].summary
    assert {"config", "device", "prediction", "measured", "errors", "compare"} <= set(summary)
    m = summary["measured"]
    assert m["flops_per_step"] == m["flops_analytic"] == expected and m["flops_source"] == "estimator"
    assert m["params"] == sum(p.numel() for p in model.parameters())
    assert m["steps"] == STEPS - 1 and m["warmup_steps"] == 1
    assert math.isfinite(m["tokens_per_s"]) and m["tokens_per_s"] > 0 and 0 < m["mfu"] < 1
    state_bytes = 4 * 3 * m["params"]  # fp32 weights + grads + two AdamW moments, minus grads freed
    assert m["memory_allocated_bytes"] >= state_bytes and m["peak_memory_bytes"] > m["memory_allocated_bytes"]
    rows = {row["key"]: row for row in summary["compare"]}
    assert rows["params"]["predicted"] == rows["params"]["measured"]  # estimator count == HF model's
    assert rows["tokens_per_s"]["predicted"] > 0 and rows["tokens_per_s"]["error"] is not None
    assert summary["prediction"]["setup"]["batch_size"] == B


def test_without_a_config_flop_counter_mode_counts_step_one_and_agrees_with_the_estimator(tmp_path, llama):
    model, opt, config = llama
    t = track(model, opt, tmp_path / "run.jsonl")
    m = t.summary["measured"]
    assert m["flops_source"].startswith("FlopCounterMode")
    assert m["flops_counter"] == m["flops_per_step"] == step_flops(from_hf_config(config), B, T).total
    assert m["flops_analytic"] is None and t.summary["prediction"] is None
    assert not any(isinstance(e, PredictionReady) for e in t.events)


def test_sdpa_on_the_cpu_is_counted_not_zero_and_a_loop_without_losses_replays(tmp_path):
    cfg = get_model("gpt-tiny")
    model = build_model(cfg, "cpu", attention="sdpa")
    opt = torch.optim.AdamW(model.parameters())
    out = tmp_path / "run.jsonl"
    with Tracker(model, tokens_per_step=B * T, out=out, detect=fake_cpu) as t:
        for x in batches(2):
            model(x, x).backward()
            opt.step()
            opt.zero_grad()
            t.step()
    assert t.state.flops_counter == step_flops(cfg, B, T).total
    events = list(read_events(out.read_text().splitlines()))  # the validating reader keeps every line
    assert len(events) == len(t.events) and isinstance(events[-1], RunFinished)
    assert all(math.isnan(e.loss) for e in events if isinstance(e, StepSample))
    assert events[-1].summary["measured"]["loss_last"] is None


def test_tokens_per_step_is_inferred_from_the_first_forward(tmp_path, llama):
    model, opt, _ = llama
    with Tracker(model, out=tmp_path / "run.jsonl", detect=fake_cpu, grad_accum=1) as t:
        for x in batches(3):
            t.step(loss=hf_train_step(model, opt, x))
    assert t.state.tokens_per_step == B * T and t.summary["measured"]["seq_len"] == T


@pytest.mark.parametrize("tokens", [0, -8, 1.5, True, "32"])
def test_tokens_per_step_must_be_a_positive_integer(tmp_path, llama, tokens):
    out = tmp_path / "run.jsonl"
    with pytest.raises(ConfigError, match="tokens_per_step must be an integer >= 1"):
        Tracker(llama[0], tokens_per_step=tokens, out=out, detect=fake_cpu)
    assert not out.exists()


def test_a_config_of_a_family_the_profiler_cannot_build_is_one_clear_error(tmp_path, llama):
    bert = tmp_path / "bert.json"
    bert.write_text(json.dumps({"model_type": "bert", "vocab_size": 30522, "hidden_size": 768,
                                "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072}))
    with pytest.raises(ConfigError, match="bert is not a family the profiler builds") as info:
        Tracker(llama[0], tokens_per_step=B * T, config=bert, out=tmp_path / "run.jsonl")
    assert "\n" not in str(info.value) and not (tmp_path / "run.jsonl").exists()


def test_a_tracker_whose_step_is_never_called_says_so_and_keeps_what_it_has(tmp_path, llama):
    out = tmp_path / "run.jsonl"
    with pytest.raises(ConfigError, match=r"step\(\) was never called"):
        with Tracker(llama[0], tokens_per_step=B * T, out=out, detect=fake_cpu):
            pass
    events = list(read_events(out.read_text().splitlines()))
    assert isinstance(events[0], DeviceDetected)
    assert isinstance(events[-1], RunFailed) and "never called" in events[-1].message


def test_an_exception_in_the_loop_keeps_the_steps_measured_and_propagates(tmp_path, llama):
    model, opt, config = llama
    out = tmp_path / "run.jsonl"
    with pytest.raises(RuntimeError, match="data loader died"):
        with Tracker(model, tokens_per_step=B * T, out=out, config=config, detect=fake_cpu) as t:
            for i, x in enumerate(batches(4)):
                t.step(loss=hf_train_step(model, opt, x))
                if i == 2:
                    raise RuntimeError("data loader died")
    last = list(read_events(out.read_text().splitlines()))[-1]
    assert isinstance(last, RunFinished) and last.cancelled
    assert last.summary["measured"]["steps"] == 2 and last.summary["measured"]["tokens_per_s"] > 0


def test_a_write_error_warns_once_and_loses_no_measurement(llama):
    model, opt, config = llama
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t = track(model, opt, "/dev/full", config=config)  # every flush fails with ENOSPC
    assert sum("cannot write /dev/full" in str(w.message) for w in caught) == 1
    assert isinstance(t.events[-1], RunFinished) and t.summary["measured"]["steps"] == STEPS - 1
    assert any("cannot write" in text for text in t.summary["warnings"])


def test_precision_is_inferred_from_the_parameters_and_an_unknown_one_is_refused(llama):
    model = llama[0]
    assert Tracker(model, tokens_per_step=8).state.precision == "fp32"
    assert Tracker(model.to(torch.bfloat16), tokens_per_step=8).state.precision == "bf16"
    assert Tracker(model, tokens_per_step=8, precision="bf16-mixed").state.peak_dtype == "bf16"
    with pytest.raises(ConfigError, match="unknown precision"):
        Tracker(model, tokens_per_step=8, precision="fp7")


def test_the_real_detected_peak_gives_a_finite_mfu(tmp_path, llama):
    model, opt, config = llama
    with Tracker(model, tokens_per_step=B * T, config=config, optimizer=opt) as t:
        for x in batches(3):
            t.step(loss=hf_train_step(model, opt, x))
    m = t.summary["measured"]
    assert m["peak_flops"] and math.isfinite(m["mfu"]) and m["mfu"] > 0
    assert any(isinstance(e, LogMessage) and "inferred from fp32 parameters" in e.text for e in t.events)


@pytest.mark.gpu
def test_on_cuda_steps_are_timed_with_events_and_memory_comes_from_the_allocator(tmp_path):
    model, config = tiny_llama(tmp_path / "tiny")
    model = model.cuda()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    out = tmp_path / "run.jsonl"
    with Tracker(model, tokens_per_step=B * T, out=out, config=config, precision="bf16-mixed") as t:
        for x in batches(STEPS):
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = model(input_ids=x.cuda(), labels=x.cuda()).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            t.step(loss=loss)
    steps = [e for e in read_events(out.read_text().splitlines()) if isinstance(e, StepSample)]
    assert [s.step for s in steps] == list(range(1, STEPS + 1))  # the last one flushed at exit
    assert all(s.step_time_s > 0 and math.isfinite(s.loss) and s.memory_peak_bytes > 0 for s in steps)
    m = t.summary["measured"]
    assert m["peak_dtype"] == "bf16" and 0 < m["mfu"] < 1 and "CUDA events" in m["step_time_method"]


def test_a_bad_peak_override_fails_at_enter_and_the_file_says_why(tmp_path, llama):
    out = tmp_path / "run.jsonl"
    with pytest.raises(ConfigError, match="peak-tflops must be a positive number"):
        with Tracker(llama[0], tokens_per_step=B * T, out=out, peak_tflops=-1.0):
            pass
    events = list(read_events(out.read_text().splitlines()))
    assert isinstance(events[-1], RunFailed) and "peak-tflops" in events[-1].message
