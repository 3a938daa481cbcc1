"""A hostile recording rendered in the app: no markup interpreted, no action bound, no escape byte shown.

Every string of a recorded run (model, device, peak source, log text, search
outcome, summary fields...) is prefixed with Rich markup that would bind a
click action, a hyperlink and a closing tag that raises ``MarkupError``, plus
ESC]52 (clipboard write), ESC[2J (clear screen) and a one-byte C1 CSI. The app
must finish the replay, show the brackets literally, and put neither an
action, a link nor an escape character on screen — both for events that went
through the boundary validator and for raw events (the widgets' own defence).
"""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
from rich.text import Text

from profiler.event_validation import parse_event_line
from profiler.events import Event, LadderRung, RunFailed, RunFinished, StepSample
from tui.app import MfutopApp
from tui.app.ladder_screen import LadderScreen
from tui.event_sources import events_source

from fixtures.app_helpers import run, wait_until
from fixtures.fake_run import fake_run_events

pytestmark = pytest.mark.app

CLICK = "[@click=app.screenshot('pwned.svg','/tmp')]CLICK_ME[/]"  # no space: the log may wrap at one
LINK = "[link=https://evil.example]here[/link]"
ESCAPES = "\x1b]52;c;cHduZWQ=\x07\x1b[2J\x9b31m\x1b]8;;https://evil.example\x1b\\"
HOSTILE = f"{CLICK}{LINK}[/]{ESCAPES}"
FORBIDDEN = ("\x1b", "\x07", "\x9b", "\x9d")


def hostile(value):
    """Every string in ``value`` (not dict keys: the app must still find its fields) made hostile."""
    if isinstance(value, str):
        return HOSTILE + value
    if isinstance(value, dict):
        return {k: hostile(v) for k, v in value.items()}
    if isinstance(value, list):
        return [hostile(v) for v in value]
    return value


def hostile_events(final: Event | None = None) -> list[Event]:
    out = []
    for event in fake_run_events():
        if isinstance(event, StepSample) and event.step == 2:  # NaN / Infinity must not break the sparklines
            event = dataclasses.replace(event, tokens_per_s=math.inf, mfu=math.nan)
        fields = {f.name: hostile(getattr(event, f.name)) for f in dataclasses.fields(event)}
        out.append(type(event)(**fields))
    if final is not None:
        out[-1] = final
    return out


def validated(events: list[Event]) -> list[Event]:
    """What the boundary lets through: all but the step whose tokens/s is infinite."""
    parsed = [parse_event_line(json.dumps(e.to_dict())) for e in events]
    kept = [p for p in parsed if isinstance(p, Event)]
    assert len(kept) == len(events) - 1
    return kept


def assert_inert(app) -> str:
    """No escape byte, no click action or link from the data; returns the screen's text, line by line."""
    strips = app.screen._compositor.render_strips()
    segments = [segment for strip in strips for segment in strip]
    text = "\n".join("".join(s.text for s in strip) for strip in strips)
    for char in FORBIDDEN:
        assert char not in text, repr(char)
    for segment in segments:
        style = segment.style
        if style is None:
            continue
        assert "evil.example" not in str(style.link or ""), style
        for value in (style.meta or {}).values():
            assert "screenshot" not in str(value), style.meta
    return text


async def replay_in_app(events: list[Event], size=(200, 60)):
    app = MfutopApp(source=events_source(events))
    async with app.run_test(size=size) as pilot:
        await wait_until(pilot, lambda: app.state.done)
        await pilot.pause(0.3)
        app.redraw()
        await pilot.pause(0.1)
        return app, assert_inert(app)


@pytest.mark.parametrize("through_validator", [True, False], ids=["validated", "raw"])
def test_a_hostile_finished_run_renders_as_literal_text(through_validator):
    events = hostile_events()
    if through_validator:
        events = validated(events)

    async def go():
        return await replay_in_app(events)

    app, text = run(go())
    assert app.state.status == "finished"
    assert CLICK in text  # the log, setup and hardware lines show it literally, not acted on
    assert "[link=https://evil.example" in text
    assert len(app.state.samples) == sum(isinstance(e, StepSample) for e in events)


def test_a_hostile_failure_message_shows_in_the_status_line():
    events = hostile_events(final=RunFailed(message=HOSTILE, error_type=HOSTILE))

    async def go():
        return await replay_in_app(events, size=(120, 40))

    app, text = run(go())
    assert app.state.status == "failed"
    assert "✗ failed  [@click=app.screenshot(" in text


def test_wrong_typed_summary_fields_do_not_kill_the_app():
    summary = {"config": {"model": "[/]", "memory_limit_bytes": "lots", "batch_size": [1]},
               "measured": {"tokens_per_s": "fast", "mfu": "high", "batch_size": "x"},
               "search": {"max_batch_size": "many", "limited_by": CLICK}}
    events = [e for e in fake_run_events() if not isinstance(e, RunFinished)] + [RunFinished(summary=summary)]

    async def go():
        return await replay_in_app(events, size=(120, 40))

    app, text = run(go())
    assert app.state.status == "finished"
    assert "[/]" in text


def test_the_ladder_screen_shows_hostile_rungs_literally():
    rung = {"name": HOSTILE, "status": HOSTILE, "tokens_per_s": "NaN", "mfu": "x", "peak_memory_bytes": "y",
            "reason": HOSTILE, "precision": HOSTILE, "batch_size": HOSTILE}
    rows = [rung, dict(rung), {"name": "ok", "status": "measured", "tokens_per_s": 100.0}]

    async def go():
        app = MfutopApp(source=events_source([]), autostart=False)
        async with app.run_test(size=(200, 50)) as pilot:
            screen = LadderScreen(rows=rows)
            app.push_screen(screen)
            await pilot.pause(0.2)
            screen.apply(LadderRung(index=1, total=2, rung={"name": "ok", "status": HOSTILE}))
            screen.apply(RunFailed(message=HOSTILE))
            await pilot.pause(0.2)
            return assert_inert(app)

    text = run(go())
    assert "ladder failed: [@click=app.screenshot(" in text


def test_the_check_itself_sees_a_bound_action_and_an_escape():
    """The checks above could fail: markup parsed by a widget is caught, and so is an ESC byte."""
    from textual.widgets import Static

    async def go(content):
        app = MfutopApp(source=events_source([]), autostart=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await app.screen.mount(Static(content))
            await pilot.pause(0.1)
            with pytest.raises(AssertionError):
                assert_inert(app)

    run(go(CLICK))
    run(go(Text("\x1b[2Jcleared")))


def test_gpus_prints_hostile_device_strings_literally(monkeypatch):
    """`mfutop gpus` tables: NVML and CPU strings are data too (Rich parses a str cell as markup)."""
    from typer.testing import CliRunner

    from profiler import detect
    from tui.cli import app

    cpu = {"info": {"model_name": HOSTILE, "clock_max_hz": 3e9, "clock_current_hz": None, "physical_cores": 2,
                    "logical_cores": 4, "torch_threads": 2, "isa_flags": [HOSTILE], "memory_total_bytes": 2**34,
                    "memory_available_bytes": 2**33},
           "measured": {"fp32": {"flops": 2e11, "note": HOSTILE, "cached": True, "measured_at": HOSTILE,
                                 "cache_problem": HOSTILE}},
           "theoretical_peak_flops": {"fp32": 4e11}, "warnings": [HOSTILE]}
    gpu = {"name": HOSTILE, "torch_device": HOSTILE, "sm_count": 132, "derived": False, "peak_source": HOSTILE,
           "spec": {"compute_capability": HOSTILE, "key": HOSTILE}, "peak_flops": {"bf16": 9.9e14},
           "nvml": {"driver_version": HOSTILE, "mig_mode": HOSTILE, "processes": []}, "warnings": [HOSTILE]}
    data = {"device": "cpu", "reason": HOSTILE, "nvml": HOSTILE, "gpus": [gpu], "cpu": cpu}
    monkeypatch.setattr(detect, "describe_devices", lambda **kwargs: data)
    result = CliRunner().invoke(app, ["gpus"])
    assert result.exit_code == 0, result.output
    for char in FORBIDDEN:
        assert char not in result.stdout, repr(char)
    assert result.stdout.count("[@click=app.") >= 10  # every field shown (cut to the 80-column tables)
    assert "CLICK_ME[/][link=https://evil.example" in result.stdout  # whole in the warning lines
