"""run_profile: the event stream, the summary, JSONL, cancellation from another thread, bad input."""

import io
import threading

import pytest

from estimator.errors import ConfigError
from estimator.flops import step_flops
from estimator.device_specs import cpu_spec, with_peak_override
from estimator.ops import CATEGORIES
from estimator.presets import customise, get_model
from profiler.detect import DetectedDevice
from profiler.events import (
    DeviceDetected,
    FlopsCounted,
    JsonlWriter,
    LogMessage,
    PredictionReady,
    ProbeResult,
    RunFailed,
    RunFinished,
    StepBreakdown,
    StepSample,
    read_events,
)
from profiler.run import run_profile
from profiler.run_config import RunConfig

PEAK = 50e9  # the fake CPU's "measured" fp32/bf16 peak
TINY = get_model("gpt-tiny")


def fake_cpu(requested="auto", precision="bf16-mixed", peak_tflops=None):
    """detect_device for a hermetic CPU: no benchmark, a fixed measured peak."""
    if requested == "cuda":
        raise ConfigError("--device cuda requested but CUDA is not available: test machine")
    spec = cpu_spec("Test CPU", 2, 2e9, ["avx2", "fma"], 16 * 2**30)
    for dtype in ("fp32", "tf32", "bf16"):
        spec = with_peak_override(spec, dtype, PEAK, label="test")
    event = DeviceDetected(device="cpu", name="Test CPU", spec_key="cpu", memory_total_bytes=16 * 2**30,
                           peak_flops=PEAK, peak_dtype="bf16", peak_source="test", reason="test")
    return DetectedDevice("cpu", "cpu", spec, event, ["a detection warning"])


def run(config, **kw):
    return list(run_profile(config, detect=fake_cpu, max_extra_steps=0, **kw))


def test_fixed_batch_run_yields_the_documented_stream():
    config = RunConfig(model=TINY, device="cpu", batch_size=2, seq_len=32, steps=3, warmup=2, precision="fp32")
    events = run(config)
    kinds = [type(e) for e in events]
    assert kinds[:5] == [DeviceDetected, LogMessage, LogMessage, PredictionReady, FlopsCounted]
    assert "step time predicted from" in events[2].text  # the device profile, or why the datasheet
    assert kinds[-3] is FlopsCounted and events[-3].counter == step_flops(TINY, 2, 32).total
    breakdown = events[-2]
    assert isinstance(breakdown, StepBreakdown) and set(breakdown.measured_s) == set(CATEGORIES)
    assert 0 < sum(breakdown.measured_s.values()) <= breakdown.step_time_s * 1.05
    assert kinds[-1] is RunFinished and not events[-1].cancelled
    steps = [e for e in events if isinstance(e, StepSample)]
    assert [s.warmup for s in steps] == [True, True, False, False, False]  # 2 warm-up (the 2nd tracked) + 3
    assert [s.step for s in steps] == [1, 2, 3, 4, 5]
    assert all(s.batch_size == 2 and s.tokens_per_s == pytest.approx(64 / s.step_time_s) for s in steps)
    assert all(s.mfu == pytest.approx(step_flops(TINY, 2, 32).total / s.step_time_s / PEAK) for s in steps)
    assert not any(isinstance(e, ProbeResult) for e in events)

    summary = events[-1].summary
    m = summary["measured"]
    assert m["params"] == summary["prediction"]["params"]["total"] == 141056
    assert summary["errors"]["params.total"] == 0.0
    assert m["flops_analytic"] == m["flops_counter"] == step_flops(TINY, 2, 32).total
    assert m["steps"] == 3 and m["warmup_steps"] == 2 and m["batch_size"] == 2
    assert m["peak_memory_bytes"] > m["memory_allocated_bytes"] > 0  # tracker: activations on top of the state
    assert m["mfu"] == pytest.approx(m["flops_analytic"] / m["step_time_s"] / PEAK)
    assert m["mfu_causal"] == pytest.approx(step_flops(TINY, 2, 32).causal_total / m["step_time_s"] / PEAK)
    assert m["mfu_causal"] < m["mfu"]
    err = summary["errors"]["memory.total"]
    assert err == pytest.approx((summary["prediction"]["memory"]["total"] - m["peak_memory_bytes"])
                                / m["peak_memory_bytes"])
    assert {row["predicted_key"] for row in summary["compare"] if row["kind"] == "prediction"} == set(summary["errors"])
    assert all(row["batch_size"] == 2 for row in summary["compare"])
    flops_row = next(row for row in summary["compare"] if row["key"] == "flops_analytic")
    assert flops_row["predicted"] == flops_row["measured"] and flops_row["error"] == 0.0
    assert summary["config"]["precision_effective"] == "fp32"
    assert summary["measured"]["breakdown"] == events[-2].measured_s
    graded = summary["calibration"]["category_errors"]
    assert graded and all(row["share"] >= 0.10 for row in graded.values())


def test_auto_batch_searches_under_the_memory_limit_and_measures_the_found_batch():
    config = RunConfig(model=TINY, device="cpu", seq_len=32, steps=2, warmup=1, precision="fp32",
                       memory_limit_bytes=4 * 2**20)
    events = run(config)
    probes = [e for e in events if isinstance(e, ProbeResult)]
    finished = events[-1]
    assert isinstance(finished, RunFinished), events[-1]
    search = finished.summary["search"]
    found = search["max_batch_size"]
    assert probes and len(search["probes"]) == len(probes)
    assert all(p.low <= found and (p.high is None or p.high > found) for p in probes)
    assert any(p.batch_size == found and p.fits for p in probes)
    assert any(p.batch_size == found + 1 and not p.fits for p in probes)
    assert finished.summary["measured"]["batch_size"] == found
    assert finished.summary["measured"]["peak_memory_bytes"] <= 4 * 2**20
    predictions = [e for e in events if isinstance(e, PredictionReady)]
    assert predictions[-1].prediction["setup"]["batch_size"] == found
    counted = [e for e in events if isinstance(e, FlopsCounted)]
    assert [e.batch_size for e in counted] == [found, found]  # at the batch that runs (never the seed):
    assert counted[0].thop is None and counted[-1].thop is not None  # analytic first, conventions after the steps
    assert events.index(counted[0]) > events.index(probes[-1])
    assert finished.summary["errors"]["max_batch_size"] == pytest.approx(
        (predictions[0].prediction["max_batch_size"] - found) / found)
    steps = [e for e in events if isinstance(e, StepSample)]
    assert [s.warmup for s in steps] == [True, False, False]  # --warmup 1: the probe at the batch, the tracked step


def test_the_searchs_probe_at_the_batch_counts_as_a_warm_up():
    from profiler.timed_steps import warmup_steps

    assert warmup_steps(3, cpu=True, stepped_before=True, probed_at_batch=True) == 2  # the last one tracked
    assert warmup_steps(3, cpu=False, stepped_before=True, probed_at_batch=True) == 2
    assert warmup_steps(3, cpu=True, stepped_before=True) == 3  # probes at other batches only
    assert warmup_steps(0, cpu=True, stepped_before=False) == 2  # AdamW's state, then the tracked step
    assert warmup_steps(0, cpu=True, stepped_before=True, probed_at_batch=True) == 1  # the tracked step


def test_injected_oom_in_the_search_is_recovered():
    config = RunConfig(model=TINY, device="cpu", seq_len=32, steps=1, warmup=0, precision="fp32",
                       memory_limit_bytes=8 * 2**20)
    events = run(config, inject_oom_above=3, measure=False)
    finished = events[-1]
    assert isinstance(finished, RunFinished)
    assert finished.summary["search"]["max_batch_size"] == 3
    assert not any(isinstance(e, StepSample) for e in events)
    assert not any(isinstance(e, LogMessage) and "left" in e.text for e in events)  # memory back at baseline


def test_events_round_trip_through_jsonl():
    config = RunConfig(model=TINY, device="cpu", batch_size=1, seq_len=16, steps=1, warmup=0, precision="fp32")
    events = run(config)
    stream = io.StringIO()
    writer = JsonlWriter(stream)
    for e in events:
        writer.write(e)
    lines = stream.getvalue().splitlines()
    assert len(lines) == len(events)
    assert list(read_events(lines)) == events


def test_cancel_from_another_thread_finishes_with_what_was_measured():
    config = RunConfig(model=TINY, device="cpu", batch_size=1, seq_len=16, steps=10_000, warmup=0,
                       precision="fp32")
    cancel = threading.Event()
    seen: list = []

    def consume():
        for event in run_profile(config, cancel, detect=fake_cpu, max_extra_steps=0):
            seen.append(event)

    worker = threading.Thread(target=consume)
    worker.start()
    while sum(isinstance(e, StepSample) and not e.warmup for e in list(seen)) < 2:
        assert worker.is_alive(), f"run ended before it was cancelled: {seen[-1] if seen else None}"
        worker.join(0.01)
    cancel.set()
    worker.join(60)
    assert not worker.is_alive()
    finished = seen[-1]
    assert isinstance(finished, RunFinished) and finished.cancelled
    timed = [e for e in seen if isinstance(e, StepSample) and not e.warmup]
    assert 2 <= len(timed) < 10_000
    assert finished.summary["measured"]["steps"] == len(timed)
    assert finished.summary["measured"]["step_time_s"] is not None


def test_cancel_during_the_search_stops_before_any_step():
    config = RunConfig(model=TINY, device="cpu", seq_len=16, steps=5, precision="fp32",
                       memory_limit_bytes=64 * 2**20)
    cancel = threading.Event()
    events = []
    for event in run_profile(config, cancel, detect=fake_cpu):
        events.append(event)
        if isinstance(event, ProbeResult):
            cancel.set()
    assert isinstance(events[-1], RunFinished) and events[-1].cancelled
    assert sum(isinstance(e, ProbeResult) for e in events) == 1
    assert not any(isinstance(e, StepSample) for e in events)
    assert events[-1].summary["search"]["cancelled"]


@pytest.mark.parametrize("config,match", [
    (RunConfig(device="cpu", seq_len=4096), "longer than gpt-tiny's context"),
    (RunConfig(model=get_model("mixtral-8x7b"), device="cpu"), "does not fit at batch 1: needs"),
    (RunConfig(model=TINY, device="cpu", memory_limit_bytes=2**20), "does not fit at batch 1"),
    (RunConfig(model=TINY, device="cpu", batch_size=100_000, memory_limit_bytes=64 * 2**20), "predicted to need"),
    (RunConfig(model=TINY, device="cuda"), "CUDA is not available"),
])
def test_bad_input_ends_in_a_config_error_event(config, match):
    events = run(config)
    assert isinstance(events[-1], RunFailed)
    assert events[-1].error_type == "ConfigError"
    assert match in events[-1].message


def test_tf32_on_the_cpu_runs_fp32_and_says_so():
    config = RunConfig(model=TINY, device="cpu", batch_size=1, seq_len=16, steps=1, warmup=0, precision="tf32")
    events = run(config)
    assert any(isinstance(e, LogMessage) and "tf32" in e.text for e in events)
    summary = events[-1].summary
    assert summary["config"]["precision_effective"] == "fp32"
    assert summary["prediction"]["setup"]["precision"] == "fp32"


def test_vocab_padding_is_measured_and_predicted_alike():
    odd = customise(TINY, vocab_size=500)
    config = RunConfig(model=odd, device="cpu", batch_size=1, seq_len=16, steps=1, warmup=0, precision="fp32",
                       vocab_pad_multiple=64)
    summary = run(config)[-1].summary
    assert summary["config"]["vocab_size_padded"] == 512
    assert summary["measured"]["params"] == summary["prediction"]["params"]["total"]
    assert summary["prediction"]["model"]["vocab_size"] == 512
