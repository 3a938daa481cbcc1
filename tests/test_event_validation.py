"""The event boundary: every line from outside is a valid event, noise, or a counted, named skip."""

from __future__ import annotations

import io
import json
import math

import pytest

from estimator.safe_text import clean_text, strip_controls
from profiler.event_validation import (
    MAX_DEPTH,
    LineBuffer,
    MAX_LINE_CHARS,
    MAX_STRING_CHARS,
    SkipCounter,
    Skipped,
    bounded_lines,
    parse_event_line,
    validated_events,
)
from profiler.events import LogMessage, RunFinished, StepSample

from fixtures.fake_run import fake_run_events

HOSTILE = "\x1b]52;c;cHduZWQ=\x07[@click=app.screenshot('pwned.svg','/tmp')]CLICK ME[/]\x1b[2J\x9b31m"


def step(**overrides) -> dict:
    data = {"event": "step_sample", "step": 3, "batch_size": 4, "step_time_s": 0.5, "tokens_per_s": 2048.0,
            "loss": 3.25, "memory_allocated_bytes": 10, "memory_reserved_bytes": 20, "memory_peak_bytes": 30,
            "nvml_used_bytes": None, "mfu": 0.4}
    data.update(overrides)
    return data


def line(data: dict) -> str:
    return json.dumps(data)


# ---------------------------------------------------------------- strings

def test_strip_controls_removes_escape_sequences_whole_and_keeps_newline_and_tab():
    assert strip_controls("a\x1b[2Jb\x1b]52;c;aGk=\x07c\x1b]8;;http://x\x1b\\d") == "abcd"
    assert strip_controls("tab\there\nnext\r\x00\x7f\x85") == "tab\there\nnext"
    assert strip_controls("a\x9b31mb\x9d52;c;x\x9cc\x9b") == "abc"  # one-byte C1 CSI / OSC forms
    assert strip_controls("\u202eevil\u2066") == "evil"  # bidi overrides reorder what is read
    assert strip_controls("plain [bold]text[/]") == "plain [bold]text[/]"  # markup is data here, kept


def test_clean_text_truncates_visibly_and_bounds_the_work_on_huge_strings():
    assert clean_text("x" * 10, 4) == "xxx…"
    assert clean_text("x" * 50_000_000, 8) == "xxxxxxx…"


# ---------------------------------------------------------------- events

def test_every_event_of_a_real_run_round_trips_unchanged():
    events = list(fake_run_events())
    assert [parse_event_line(line(e.to_dict())) for e in events] == events


def test_noise_is_none_and_not_counted():
    counter = SkipCounter()
    events = list(validated_events(["", "   ", "Welcome to host", "[progress 50%]", '{"summary": 1}'], counter))
    assert events == [] and counter.count == 0 and counter.report() == ""


def test_missing_fields_are_named_with_the_line_number():
    result = parse_event_line('{"event":"step_sample"}', 7)
    assert isinstance(result, Skipped)
    assert result.reason == "line 7: not an event: missing 'step', 'batch_size', 'step_time_s' and 7 more"
    one_missing = {k: v for k, v in step().items() if k != "step_time_s"}
    assert parse_event_line(line(one_missing), 2).reason == "line 2: not an event: missing 'step_time_s'"


@pytest.mark.parametrize("bad, why", [
    ({"step": "3"}, "'step' must be a number, got a string"),
    ({"step": True}, "'step' must be a number, got a boolean"),
    ({"step": 2.5}, "'step' must be an integer, got 2.5"),
    ({"step": -1}, "'step' must not be negative, got -1"),
    ({"batch_size": 2**70}, "'batch_size' is out of range"),
    ({"tokens_per_s": None}, "'tokens_per_s' is null"),
    ({"warmup": "yes"}, "'warmup' must be true or false, got a string"),
])
def test_wrong_types_and_ranges_are_skipped_with_the_field_named(bad, why):
    result = parse_event_line(line(step(**bad)))
    assert isinstance(result, Skipped) and why in result.reason


def test_non_finite_numbers_become_none_where_allowed_and_skip_where_not():
    nan_mfu = parse_event_line(line(step(mfu=math.inf)))
    assert isinstance(nan_mfu, StepSample) and nan_mfu.mfu is None
    diverged = parse_event_line(line(step(loss=math.nan)))  # a NaN loss is a measurement
    assert isinstance(diverged, StepSample) and math.isnan(diverged.loss)
    bad = parse_event_line(line(step(step_time_s=math.nan)))
    assert isinstance(bad, Skipped) and "'step_time_s' is not a finite number" in bad.reason


def test_hostile_strings_are_stripped_everywhere_markup_kept_as_text():
    summary = {"config": {"model": HOSTILE, "nested": [{"deep": HOSTILE}]}, HOSTILE: 1}
    event = parse_event_line(line({"event": "run_finished", "summary": summary}))
    assert isinstance(event, RunFinished)
    safe = "[@click=app.screenshot('pwned.svg','/tmp')]CLICK ME[/]"
    assert event.summary["config"]["model"] == safe
    assert event.summary["config"]["nested"][0]["deep"] == safe
    assert safe in event.summary  # keys are cleaned too
    assert "\x1b" not in json.dumps(event.to_dict(), ensure_ascii=False)


def test_long_strings_are_capped_and_huge_nested_numbers_dropped():
    event = parse_event_line(line({"event": "log", "level": "loud", "text": "y" * (MAX_STRING_CHARS * 3)}))
    assert isinstance(event, LogMessage)
    assert len(event.text) == MAX_STRING_CHARS and event.text.endswith("…")
    assert event.level == "info"  # an unknown level still shows, as info
    finished = parse_event_line('{"event":"run_finished","summary":{"n":' + "9" * 400 + ',"x":NaN}}')
    assert finished.summary == {"n": None, "x": None}


def test_deep_nesting_huge_ints_and_bad_json_are_skipped_not_raised():
    deep = '{"event":"run_finished","summary":' + '{"a":' * (MAX_DEPTH + 5) + "1" + "}" * (MAX_DEPTH + 6)
    assert "nested deeper than 32 levels" in parse_event_line(deep).reason
    very_deep = '{"event":"run_finished","summary":' + "[" * 200_000 + "]" * 200_000 + "}"
    assert isinstance(parse_event_line(very_deep), Skipped)
    huge = '{"event":"log","level":"info","text":"x","n":' + "1" * 5000 + "}"
    assert "4300 digits" in parse_event_line(huge).reason
    assert parse_event_line('{"event": "log", "text": ').reason.startswith("not JSON")
    assert "unknown event type 'nope'" in parse_event_line('{"event":"nope"}').reason
    assert "not a JSON object" not in (parse_event_line("[1,2]") or Skipped(None, "")).reason  # noise


@pytest.mark.parametrize("summary, why", [
    ({"search": [1, 2]}, "'summary.search' must be an object, got a list"),
    ({"config": "gpt2"}, "'summary.config' must be an object, got a string"),
    ({"rungs": [{"status": "measured"}]}, "'summary.rungs[0]' must be an object with a string 'name'"),
])
def test_nested_keys_the_app_reads_must_have_their_type(summary, why):
    result = parse_event_line(line({"event": "run_finished", "summary": summary}))
    assert isinstance(result, Skipped) and why in result.reason


def test_an_over_long_line_is_refused_before_parsing():
    result = parse_event_line('{"event":"log","level":"info","text":"' + "z" * MAX_LINE_CHARS + '"}', 4)
    assert isinstance(result, Skipped)
    assert result.reason.startswith(f"line 4: longer than {MAX_LINE_CHARS:,} characters")


def test_bounded_lines_cut_a_50_mb_line_without_holding_it():
    stream = io.StringIO("a\n" + "b" * 50_000_000 + "\nc\n")
    lines = list(bounded_lines(stream, max_chars=100))
    assert [len(x) for x in lines] == [2, 101, 2]
    assert lines[0] == "a\n" and lines[2] == "c\n"


def test_a_stream_with_bad_lines_keeps_every_good_event_and_reports_the_bad():
    events = list(fake_run_events(steps=3))
    lines = [line(e.to_dict()) for e in events]
    lines.insert(2, '{"event":"step_sample"}')
    lines.insert(5, '{"event":"log","level":"info","text":' + "7" * 5000 + "}")
    lines.insert(7, "not json at all")
    lines.insert(8, '{"event":"probe_result","batch_size":"x"}')
    counter = SkipCounter(keep=2)
    assert list(validated_events(lines, counter)) == events
    assert counter.count == 3
    report = counter.report()
    assert report.startswith("3 lines skipped: line 3: not an event: missing 'step'")
    assert "; line 6: not JSON: Exceeds the limit (4300 digits)" in report and report.endswith("; …")


def test_a_run_cut_short_yields_all_its_steps():
    events = list(fake_run_events(steps=4))
    cut = [line(e.to_dict()) for e in events if not isinstance(e, RunFinished)]
    cut[-1] = cut[-1][: len(cut[-1]) // 2]  # kill -9 mid-line
    got = list(validated_events(cut))
    assert got == [e for e in events if not isinstance(e, RunFinished)][:-1]


def test_line_buffer_joins_chunks_and_drops_an_over_long_line_as_it_grows():
    buffer = LineBuffer(max_chars=10)
    assert buffer.feed("ab") == [] and buffer.pending == "ab"
    assert buffer.feed("c\nde") == ["abc"]
    assert buffer.feed("f" * 20) == ["de" + "f" * 9]  # cut at 11 characters: refused unread
    assert buffer.feed("g" * 1000) == [] and buffer.pending == ""  # its rest is dropped as it comes
    assert buffer.feed("gg\nok\n\nnext") == ["ok", ""]
    assert buffer.pending == "next"
    buffer.reset()
    assert buffer.feed("x\n") == ["x"]
    assert LineBuffer(max_chars=4).feed("0123456789\nz\n") == ["01234", "z"]
