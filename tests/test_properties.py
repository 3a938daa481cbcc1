"""Property tests: generated option sets for `estimate`, `flops` and `gpus`, generated and corrupted
event lines for the event boundary. Whatever comes in, nothing escapes: exit code 0 or 2 (never a
traceback), JSON output is valid JSON without NaN/Infinity, no escape byte is echoed, and every line
is an event, a counted skip or noise.

Sized for CI (well under 60 s on 2 cores): ``derandomize`` keeps the generated cases the same on
every run, so a failure here is a regression, not luck. ``PROPERTY_EXAMPLES`` scales them up for a
local hunt, e.g. ``PROPERTY_EXAMPLES=10 pytest tests/test_properties.py``.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from estimator.hardware import list_gpus
from estimator.presets import PRESETS
from profiler import cpu_probe
from profiler.event_validation import LineBuffer, SkipCounter, Skipped, parse_event_line, validated_events
from profiler.events import Event
from tui.cli import app

from fixtures.fake_run import fake_run_events

SCALE = int(os.environ.get("PROPERTY_EXAMPLES", "1"))
runner = CliRunner()


def profile(examples: int):
    return settings(max_examples=examples * SCALE, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


# ---------------------------------------------------------------- values a user (or a fuzzer) types

NASTY_NUMBERS = ["0", "-1", "1", "2", "64", "1e400", "1e308", "5e-324", "1e-300", "nan", "inf", "-inf", "9" * 400,
                 "99999999", "1.5", "0.5", "1e30", "2:1", "abc", "", " ", "40", "40GiB", "1e400GiB", "300B", "1.5T"]
NASTY_TEXT = ["[/]", "[@click=app.quit]x[/]", "\x1b[2J", "\x1b]52;c;aGk=\x07", "gpt2", "h100-sxm", "auto", "''",
              "-x", "--json"]

number_text = st.one_of(
    st.sampled_from(NASTY_NUMBERS),
    st.integers(min_value=-3, max_value=2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)
free_text = st.one_of(st.sampled_from(NASTY_TEXT), st.text(max_size=12).filter(lambda t: "\x00" not in t))

ESTIMATE_OPTIONS = {
    "--model": st.one_of(st.sampled_from(list(PRESETS)), free_text),
    "--gpu": st.one_of(st.sampled_from([g.key for g in list_gpus()]), free_text),
    "--batch-size": st.one_of(st.just("auto"), number_text),
    "--precision": st.sampled_from(["fp32", "tf32", "bf16-mixed", "fp16-mixed", "bf16", "bf16-master", "fp8", "x"]),
    "--mode": st.sampled_from(["train", "infer", "x"]),
    "--optimizer": st.sampled_from(["adamw", "sgd", "x"]),
    "--recompute": st.sampled_from(["none", "selective", "full", "0", "1", "2", "9"]),
    **{name: number_text for name in (
        "--seq-len", "--tokens", "--gpu-hour-cost", "--memory-limit", "--dp", "--tp", "--pp", "--ep", "--zero",
        "--grad-accum", "--flops-efficiency", "--hbm-efficiency", "--interconnect-efficiency", "--layers",
        "--d-model", "--heads", "--kv-heads", "--d-ff", "--head-dim", "--vocab", "--context", "--weight-bits",
        "--prompt-len", "--gen-len", "--peak-tflops")},
}
ESTIMATE_FLAGS = ["--sp", "--no-overlap-dp", "--no-flash-attention"]


def argv(options: dict[str, str], flags: list[str], as_json: bool) -> list[str]:
    out = [part for name, value in options.items() for part in (name, value)]
    return out + flags + (["--json"] if as_json else [])


def _no_constants(name: str):
    raise AssertionError(f"JSON output holds {name}")


def check_outcome(args: list[str], as_json: bool):
    result = runner.invoke(app, args)
    output = (result.stdout or "") + (result.stderr or "")
    assert result.exit_code in (0, 2), (args, result.exit_code, output[-2000:], result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), (args, result.exception)
    assert "Traceback" not in output, (args, output[-2000:])
    assert "\x1b" not in output, (args, output[-500:])
    if result.exit_code == 0 and as_json:
        json.loads(result.stdout, parse_constant=_no_constants)
    return result


@profile(examples=150)
@given(options=st.dictionaries(st.sampled_from(sorted(ESTIMATE_OPTIONS)), st.just(""), max_size=6)
       .flatmap(lambda keys: st.fixed_dictionaries({k: ESTIMATE_OPTIONS[k] for k in keys})),
       flags=st.lists(st.sampled_from(ESTIMATE_FLAGS), unique=True, max_size=2), as_json=st.booleans())
def test_estimate_never_escapes(options, flags, as_json):
    check_outcome(["estimate", *argv(options, flags, as_json)], as_json)


SWEEP_VALUES = ["1e400", "1e308", "5e-324", "nan", "-inf", "-1", "0", "9" * 400]


@pytest.mark.parametrize("option", sorted(name for name, strategy in ESTIMATE_OPTIONS.items()
                                          if strategy is number_text))
def test_estimate_sweeps_each_numeric_option_through_the_worst_values(option):
    """The generated sets above mix options; this walks every numeric option through each extreme."""
    for value in SWEEP_VALUES:
        check_outcome(["estimate", option, value, "--json"], True)


GPT2_CONFIG = {"model_type": "gpt2", "vocab_size": 50257, "n_positions": 1024, "n_embd": 768, "n_layer": 12,
               "n_head": 12, "_name_or_path": "gpt2"}
json_value = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**80, max_value=2**80),
              st.floats(allow_nan=True, allow_infinity=True), free_text),
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(free_text, children, max_size=3)),
    max_leaves=8)


@profile(examples=60)
@given(changes=st.dictionaries(st.sampled_from(sorted(GPT2_CONFIG) + ["n_inner", "n_ctx", "tie_word_embeddings"]),
                               json_value, max_size=3),
       cut=st.one_of(st.none(), st.integers(min_value=0, max_value=200)), as_json=st.booleans())
def test_estimate_with_a_generated_hf_config_never_escapes(changes, cut, as_json):
    text = json.dumps({**GPT2_CONFIG, **changes})
    if cut is not None:
        text = text[:cut]  # a truncated download
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.json"
        path.write_text(text, encoding="utf-8")
        check_outcome(["estimate", "--hf-config", str(path), *(["--json"] if as_json else [])], as_json)


FLOPS_OPTIONS = {
    "--model": st.one_of(st.sampled_from(["gpt-tiny", "gpt-mini"]), free_text),
    "--batch-size": st.one_of(st.sampled_from(["1", "2", "0", "-1", "99999999", "1e3", "x"]), number_text),
    "--seq-len": st.one_of(st.sampled_from(["1", "16", "128", "0", "99999999"]), number_text),
    "--vocab-pad": st.one_of(st.sampled_from(["1", "64", "0", "99999999"]), number_text),
}


@profile(examples=20)
@given(options=st.fixed_dictionaries({}, optional=FLOPS_OPTIONS), as_json=st.booleans())
def test_flops_never_escapes(options, as_json):
    options.setdefault("--model", "gpt-tiny")  # a preset sized to count in milliseconds
    batch = options.get("--batch-size", "1")
    if batch.isdigit() and int(batch) > 64:
        options["--seq-len"] = "16"  # a huge batch is part of the test; its cost need not be
    check_outcome(["flops", *argv(options, [], as_json)], as_json)


cache_entry = st.one_of(
    json_value,
    st.fixed_dictionaries({"dtype": st.sampled_from(["fp32", "bf16", "x"]),
                           "flops": st.one_of(json_value, st.sampled_from([math.nan, math.inf, -1.0, 1e-300, True]))},
                          optional={"usable": st.booleans(), "note": free_text,
                                    "size": st.one_of(st.integers(min_value=-1, max_value=4096), json_value)}),
)


@profile(examples=12)
@given(entry=cache_entry, garbage=st.one_of(st.none(), st.binary(max_size=40)), listing=st.booleans(),
       as_json=st.booleans())
def test_gpus_with_a_corrupt_cache_never_escapes(entry, garbage, listing, as_json):
    """Whatever the cache holds, `gpus` re-measures (faked here: 1 ms per matmul) and exits 0."""
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", tmp)
        patch.setattr(cpu_probe, "_time_matmul", lambda n, dtype, repeats, warmup=0.0: [1e-3] * repeats)
        patch.setattr(cpu_probe, "_usability", lambda dtype, torch_dtype, n: (True, ""))
        path = cpu_probe.default_cache_path()
        path.parent.mkdir(parents=True)
        if garbage is not None:
            path.write_bytes(garbage)
        else:
            path.write_text(json.dumps({cpu_probe._cache_key(d, cpu_probe.DEFAULT_MAX_SIZE): entry
                                        for d in ("fp32", "bf16", "fp16")}))
        result = check_outcome(["gpus", *(["--list"] if listing else []), *(["--json"] if as_json else [])],
                               as_json)
        assert result.exit_code == 0, result.stderr


# ---------------------------------------------------------------- event lines

SEED_EVENTS = [e.to_dict() for e in fake_run_events(steps=3)]
CONTROL = {chr(c) for c in range(0x20) if chr(c) not in "\n\t"} | {"\x7f"} | {chr(c) for c in range(0x80, 0xA0)}


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)


def _numbers(value):
    if isinstance(value, float):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _numbers(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _numbers(item)


@st.composite
def event_lines(draw):
    """A real event with some fields replaced, dropped or added, then maybe cut or spliced."""
    data = dict(draw(st.sampled_from(SEED_EVENTS)))
    for key in draw(st.lists(st.sampled_from(sorted(data)), max_size=3, unique=True)):
        if draw(st.booleans()):
            data[key] = draw(json_value)
        else:
            del data[key]
    line = json.dumps(data)
    edit = draw(st.sampled_from(["none", "cut", "splice", "wrap"]))
    if edit == "cut":
        line = line[: draw(st.integers(min_value=0, max_value=len(line)))]
    elif edit == "splice":
        at = draw(st.integers(min_value=0, max_value=len(line)))
        line = line[:at] + draw(st.text(max_size=6)) + line[at:]
    elif edit == "wrap":
        line = draw(st.sampled_from(['{"a":', "[", '{"event":"log","level":"info","text":'])) * 60 + line
    return line


@profile(examples=400)
@given(line=event_lines())
def test_every_line_is_an_event_a_skip_or_noise(line):
    result = parse_event_line(line, 1)
    assert result is None or isinstance(result, (Event, Skipped))
    if isinstance(result, Skipped):
        assert result.reason.startswith("line 1: ") and "\n" not in result.reason
    if isinstance(result, Event):
        data = result.to_dict()
        for text in _strings(data):
            assert not CONTROL & set(text), repr(text)
        for name, number in ((k, v) for k, v in data.items() if isinstance(v, float)):
            assert math.isfinite(number) or (data["event"], name) == ("step_sample", "loss")
        nested = {k: v for k, v in data.items() if isinstance(v, (dict, list))}
        assert all(math.isfinite(x) for x in _numbers(nested))
        assert parse_event_line(json.dumps(data)) == result  # what passed once passes again, unchanged


@profile(examples=60)
@given(lines=st.lists(event_lines(), max_size=12))
def test_a_stream_keeps_every_valid_event_and_counts_the_rest(lines):
    outcomes = [parse_event_line(line) for line in lines]
    counter = SkipCounter()
    events = list(validated_events(lines, counter))
    assert events == [o for o in outcomes if isinstance(o, Event)]
    assert counter.count == sum(isinstance(o, Skipped) for o in outcomes)
    assert (counter.report() == "") == (counter.count == 0)


@profile(examples=100)
@given(lines=st.lists(st.text(alphabet="ab{}\"", max_size=30), max_size=8), cuts=st.lists(st.integers(0, 300)),
       cap=st.integers(min_value=1, max_value=40))
def test_line_buffer_yields_the_same_lines_however_the_stream_is_chunked(lines, cuts, cap):
    text = "".join(line + "\n" for line in lines)
    buffer = LineBuffer(max_chars=cap)
    got, start = [], 0
    for cut in sorted(set(cuts)) + [len(text)]:
        got += buffer.feed(text[start:max(start, cut)])
        start = max(start, cut)
    assert buffer.pending == ""
    short = [line for line in lines if len(line) <= cap]
    assert [line for line in got if len(line) <= cap] == short  # every line within the cap, whole, in order
    assert all(len(line) == cap + 1 for line in got if len(line) > cap)  # the others cut, to be refused
    assert len(got) == len(lines)
