"""RunState, the comparison rows and the setup draft: the app's logic without Textual."""

from __future__ import annotations

import threading

import pytest
from fixtures.fake_run import fake_run_events

from estimator.params import count_params
from estimator.presets import get_model
from profiler.compare import ROWS, lookup, relative_error
from profiler.events import DeviceDetected, ProbeResult, RunFinished, StepSample
from profiler.run_config import RunConfig
from tui.app.comparison import comparison_rows, error_grade
from tui.app.run_state import RunState, steps_of
from tui.app.setup_draft import (
    DEVICE_DEFAULT,
    SetupDraft,
    check_draft,
    draft_from_config,
)

TINY_PARAMS = count_params(get_model("gpt-tiny")).total


def folded(events) -> RunState:
    state = RunState(status="running")
    for event in events:
        state.apply(event)
    return state


def test_lookup_reads_nested_then_flat_dotted_keys():
    assert lookup({"step": {"mfu": 0.4}}, "step.mfu") == 0.4
    assert lookup({"step.mfu": 0.3}, "step.mfu") == 0.3
    assert lookup({"step": {}}, "step.mfu") is None
    assert lookup(None, "params.total") is None


def test_a_finished_run_folds_into_final_figures():
    state = folded(fake_run_events())
    assert state.status == "finished"
    assert state.device is not None and state.device.device == "cpu"
    assert len(state.probes) == 8
    assert len(state.timed_samples) == 20 and len(state.samples) == 23
    measured = state.measured()
    assert measured["params"] == TINY_PARAMS
    assert measured["max_batch_size"] == 63
    assert measured["batch_size"] == 63
    assert state.bracket == (63, 64) and state.search_done
    assert any("bf16" in text for _, text in state.logs)  # the runner's LogMessage reached the log


def test_measured_figures_before_the_summary_are_medians_of_timed_steps():
    events = [e for e in fake_run_events() if not isinstance(e, RunFinished)]
    state = folded(events)
    assert state.status == "running"
    timed = sorted(s.step_time_s for s in state.timed_samples)
    measured = state.measured()
    assert measured["params"] is None  # only the summary has the module's parameter count
    assert measured["step_time_s"] == pytest.approx((timed[9] + timed[10]) / 2)
    assert measured["peak_memory_bytes"] == max(s.memory_peak_bytes for s in state.timed_samples)
    assert measured["max_batch_size"] == 63  # steps started: the search is over


def test_search_in_progress_has_no_measured_max_batch():
    state = RunState(status="running")
    state.apply(ProbeResult(batch_size=8, fits=True, peak_memory_bytes=1, seconds=0.1, outcome="ok", low=8, high=None))
    assert state.bracket == (8, None)
    assert not state.search_done
    assert state.measured()["max_batch_size"] is None
    state.apply(ProbeResult(batch_size=9, fits=False, peak_memory_bytes=None, seconds=0.1, outcome="oom", low=8, high=9))
    assert state.search_done and state.measured()["max_batch_size"] == 8


def test_comparison_rows_pair_prediction_and_measurement():
    rows = {r.spec.key: r for r in comparison_rows(folded(fake_run_events()))}
    assert [r.key for r in ROWS] == list(rows)
    params = rows["params"]
    assert params.predicted == params.measured == TINY_PARAMS
    assert params.error == 0 and params.grade == "good"
    assert params.predicted_text == params.measured_text == f"{TINY_PARAMS:,}"
    thop = rows["flops_thop"]  # the fake's thop counts 87 % of the analytic FLOPs
    assert thop.error == pytest.approx(1 / 0.87 - 1, rel=1e-6)
    assert thop.grade == "" and thop.error_text == "+14.9 % conv."  # information, not a miss
    assert rows["mfu"].measured_text.endswith("%")
    assert rows["tokens_per_s"].measured_text.endswith("tok/s")


def test_unknown_values_read_as_ellipsis_or_na_never_zero():
    state = RunState()
    state.prediction = {"step": {"mfu": "MFU n/a (unknown peak; --peak-tflops)"}}
    rows = {r.spec.key: r for r in comparison_rows(state)}
    assert rows["mfu"].predicted_text == "n/a"
    assert rows["mfu"].measured_text == "…"
    assert rows["mfu"].error is None and rows["mfu"].error_text == ""


@pytest.mark.parametrize("predicted, measured, grade", [(105, 100, "good"), (80, 100, "fair"), (50, 100, "poor"),
                                                        (100, 0, ""), (None, 100, "")])
def test_error_grades(predicted, measured, grade):
    assert error_grade(relative_error(predicted, measured)) == grade


def test_a_cancelled_run_keeps_its_measured_steps():
    cancel = threading.Event()
    events = []
    for event in fake_run_events(cancel):
        events.append(event)
        if isinstance(event, StepSample) and event.step == 8:
            cancel.set()
    state = folded(events)
    assert state.status == "cancelled"
    assert len(state.timed_samples) == 6  # steps 3..8 after three warm-up steps
    assert state.measured()["tokens_per_s"] > 0


def test_steps_of_marks_extra_steps():
    assert steps_of(3, 20) == "/20"
    assert steps_of(22, 20) == " (20 + 2 while the timings settled)"
    assert steps_of(3, None) == ""


def test_draft_round_trips_a_config():
    config = RunConfig(model=get_model("gpt-mini"), seq_len=64, batch_size=4, steps=5, precision="fp32",
                       compile=True, flash_attention=False, memory_limit_bytes=2 * 2**30)
    draft = draft_from_config(config)
    assert draft == SetupDraft("gpt-mini", "64", "4", "5", "fp32", True, False, "2GiB")
    checked, errors = check_draft(draft, RunConfig())
    assert errors == {} and checked == config


def test_draft_errors_name_their_fields():
    _, errors = check_draft(SetupDraft(model="gpt-tinyy", batch="x", steps="0", memory_limit="4 bananas"), RunConfig())
    assert set(errors) == {"model", "batch", "steps", "memory_limit"}
    assert "did you mean: gpt-tiny" in errors["model"]
    _, errors = check_draft(SetupDraft(model="gpt-tiny", seq_len="500"), RunConfig())
    assert errors == {"seq_len": "seq-len 500 is longer than gpt-tiny's context (128)"}


def test_draft_default_model_is_left_to_the_device():
    config, errors = check_draft(SetupDraft(model=DEVICE_DEFAULT), RunConfig(device="cpu"))
    assert errors == {} and config.model is None and config.device == "cpu"


def test_a_capped_search_is_a_lower_bound_without_an_error():
    events = list(fake_run_events())
    final = events[-1]
    summary = dict(final.summary, search=dict(final.summary["search"], max_batch_size=32, limited_by="token_cap"))
    state = folded(events[:-1] + [RunFinished(summary=summary)])
    measured = state.measured()
    assert measured["max_batch_size"] is None
    assert measured["max_batch_floor"] == 32 and measured["max_batch_limited_by"] == "token cap"
    row = {r.spec.key: r for r in comparison_rows(state)}["max_batch"]
    assert row.measured_text == "≥ 32" and row.error is None and row.error_text == ""


def test_flops_notes_that_differ_only_in_figures_are_logged_once():
    from profiler.events import FlopsCounted

    state = RunState()
    state.apply(FlopsCounted(batch_size=49, seq_len=128, analytic=1, thop=1, counter=1, note="misses 1,132 FLOPs"))
    state.apply(FlopsCounted(batch_size=45, seq_len=128, analytic=1, thop=1, counter=1, note="misses 1,040 FLOPs"))
    assert [text for _, text in state.logs] == ["FLOPs: misses 1,132 FLOPs"]
    assert state.flops.batch_size == 45


def test_figures_a_finished_run_never_measured_say_so():
    from dataclasses import replace

    def unknown_peak(e):  # an unknown peak: no MFU anywhere
        if isinstance(e, StepSample):
            return replace(e, mfu=None)
        return replace(e, peak_flops=None) if isinstance(e, DeviceDetected) else e

    events = [unknown_peak(e) for e in fake_run_events() if not isinstance(e, ProbeResult)]  # fixed batch: no search
    final = events[-1]
    events[-1] = RunFinished(summary=dict(final.summary, search=None, measured=dict(final.summary["measured"], mfu=None)))
    state = folded(events)
    rows = {r.spec.key: r for r in comparison_rows(state)}
    assert rows["max_batch"].measured_text == "not searched"
    assert rows["mfu"].measured_text == "—" and rows["mfu"].error is None


def test_a_large_miss_reads_as_one_ratio_both_ways():
    from profiler.compare import ROW_BY_KEY
    from tui.app.comparison import ComparisonRow

    step = ComparisonRow(ROW_BY_KEY["step_time"], 0.05, 0.22, relative_error(0.05, 0.22))
    tokens = ComparisonRow(ROW_BY_KEY["tokens_per_s"], 4400.0, 1000.0, relative_error(4400.0, 1000.0))
    assert step.error_text == "0.23×" and tokens.error_text == "4.40×"  # not "-77.3 %" beside "+340.0 %"
    assert step.grade == tokens.grade == "poor"
    small = ComparisonRow(ROW_BY_KEY["step_time"], 0.105, 0.1, relative_error(0.105, 0.1))
    assert small.error_text == "+5.0 %" and small.grade == "good"
