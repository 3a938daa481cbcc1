"""The app driven by Pilot on deterministic event streams (no torch): layout, keys, cancel, replay, save."""

from __future__ import annotations

import threading

from textual.widgets import TabbedContent

from profiler.events import StepSample
from profiler.run_config import RunConfig
from tui.app import MfutopApp
from tui.recording import save_events
from tui.app.comparison_table import ComparisonTable
from tui.app.setup_form import SetupForm
from tui.event_sources import events_source, replay_source

from fixtures.app_helpers import Gate, is_number, run, table_cells, wait_until
from fixtures.fake_run import fake_run_events


def finished_cells(size=(120, 40), source=None) -> tuple[dict, MfutopApp]:
    app = MfutopApp(source=source or (lambda cancel: fake_run_events(cancel)))

    async def go():
        async with app.run_test(size=size) as pilot:
            await wait_until(pilot, lambda: app.state.done)
            return table_cells(app)

    return run(go()), app


def test_a_finished_run_fills_the_comparison_table():
    cells, app = finished_cells()
    assert app.state.status == "finished"
    predicted, measured, error = cells["params"]
    assert predicted == measured == "141,056" and error == "+0.0 %"
    for row in ("tokens_per_s", "mfu", "step_time", "peak_memory", "max_batch", "flops_thop"):
        assert is_number(cells[row][1]), (row, cells[row])
    assert cells["flops_thop"][2] == "+14.9 % conv."  # a counting convention: information, no grade
    from tui.app.comparison import comparison_rows

    graded = {r.spec.key: r.grade for r in comparison_rows(app.state)}
    assert any(g in ("fair", "poor") for g in graded.values())
    for key, grade in graded.items():  # the error's size is marked in text, not only in colour
        assert cells[key][2].endswith({"fair": " !", "poor": " !!"}.get(grade, cells[key][2][-1:] or "")), key


def test_wide_layout_at_120x40_shows_every_panel():
    async def go():
        app = MfutopApp(source=lambda cancel: fake_run_events(cancel))
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_until(pilot, lambda: app.state.done)
            assert app.query_one("#body").mode == "wide"
            assert not app.query(TabbedContent)
            for panel in ("#hardware", "#setup", "#comparison", "#live", "#search", "#log"):
                widget = app.query_one(panel)
                assert widget.region.area > 0, panel
                assert app.screen.region.contains_region(widget.region), panel
            table = app.query_one(ComparisonTable)
            assert table.region.height >= table.row_count + 3  # header, borders, every row: nothing cut

    run(go())


def test_compact_layout_at_80x24_keeps_the_table_whole_and_tabs_reach_the_rest():
    async def go():
        app = MfutopApp(source=lambda cancel: fake_run_events(cancel))
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_until(pilot, lambda: app.state.done)
            assert app.query_one("#body").mode == "compact"
            table = app.query_one(ComparisonTable)
            assert app.screen.region.contains_region(table.region)
            assert table.region.height >= table.row_count + 3
            assert table.virtual_size.width <= table.scrollable_content_region.width  # no column cut off
            tabs = app.query_one(TabbedContent)
            tabs.active = "tab-search"
            await pilot.pause()
            search = app.query_one("#search")
            assert search.region.area > 0 and search.row_count == len(app.state.probes)

    run(go())


def test_resizing_switches_layout_and_keeps_the_figures():
    async def go():
        app = MfutopApp(source=lambda cancel: fake_run_events(cancel))
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_until(pilot, lambda: app.state.done)
            before = table_cells(app)
            await pilot.resize_terminal(80, 24)
            await wait_until(pilot, lambda: app.query_one("#body").mode == "compact")
            assert table_cells(app) == before
            await pilot.resize_terminal(120, 40)
            await wait_until(pilot, lambda: app.query_one("#body").mode == "wide")
            assert table_cells(app) == before

    run(go())


def test_cancel_mid_run_keeps_the_measured_steps():
    gate = Gate(fake_run_events, delay_s=0.04)

    async def go():
        app = MfutopApp(source=gate)
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_until(pilot, lambda: len(app.state.timed_samples) >= 4)
            await pilot.press("c")
            await wait_until(pilot, lambda: app.state.done)
            return app, table_cells(app)

    app, cells = run(go())
    assert app.state.status == "cancelled"
    assert app.state.summary is not None  # RunFinished(cancelled=True) arrived and was applied
    assert 4 <= len(app.state.timed_samples) < 20
    assert is_number(cells["tokens_per_s"][1]) and is_number(cells["mfu"][1])
    said = [text for _, text in app.state.logs if text.startswith("cancel asked")]
    assert said and "stopping after this step (≈ " in said[0] and " ms)" in said[0]  # the last step's time


def test_keys_work_during_a_run_and_save_writes_a_replayable_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    gate = Gate(fake_run_events, delay_s=0.04)

    async def go():
        app = MfutopApp(source=gate)
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_until(pilot, lambda: len(app.state.samples) >= 2)
            assert app.running
            await pilot.press("s")
            saved = sorted(tmp_path.glob("mfutop-run-*.jsonl"))
            assert len(saved) == 1
            await wait_until(pilot, lambda: app.state.done)
            return saved[0], len(app.state.events)

    path, total = run(go())
    replayed = list(replay_source(path)(threading.Event()))
    assert 2 < len(replayed) < total  # what had arrived when s was pressed


def test_quitting_mid_run_cancels_and_leaves_no_thread():
    gate = Gate(fake_run_events, delay_s=0.05)

    async def go():
        app = MfutopApp(source=gate)
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_until(pilot, lambda: len(app.state.samples) >= 1)
            await pilot.press("q")
            await pilot.pause(0.5)
        return app

    app = run(go())
    assert gate.threads and not any(t.is_alive() and t.name != "MainThread" and _runs_gate(t) for t in gate.threads)
    assert not app.running
    assert app.state.status in ("cancelling", "cancelled")


def _runs_gate(thread: threading.Thread) -> bool:
    """Executor threads are reused: alive is fine, still inside the source is not."""
    import sys

    frame = sys._current_frames().get(thread.ident)
    while frame is not None:
        if frame.f_code.co_name == "__call__" and "app_helpers" in frame.f_code.co_filename:
            return True
        frame = frame.f_back
    return False


def test_replay_of_a_saved_run_shows_the_same_table(tmp_path):
    live_cells, app = finished_cells()
    path = tmp_path / "run.jsonl"
    save_events(app.state.events, path)
    replay_cells, _ = finished_cells(source=replay_source(path))
    assert replay_cells == live_cells


def test_recording_with_out_path_writes_every_event(tmp_path):
    out = tmp_path / "rec.jsonl"

    async def go():
        app = MfutopApp(source=lambda cancel: fake_run_events(cancel), out_path=out)
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_until(pilot, lambda: app.state.done and not app.running)
            return app.state.events

    events = run(go())
    assert list(replay_source(out)(threading.Event())) == events


def test_a_failing_source_is_shown_not_raised():
    def broken(cancel):
        yield from list(fake_run_events())[:2]
        raise RuntimeError("ssh connection lost")

    async def go():
        app = MfutopApp(source=broken)
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_until(pilot, lambda: app.state.done)
            return app

    app = run(go())
    assert app.state.status == "failed"
    assert any("ssh connection lost" in text for _, text in app.state.logs)


def test_rerun_starts_a_fresh_run():
    calls = []

    def source(cancel):
        calls.append(1)
        return fake_run_events(cancel)

    async def go():
        app = MfutopApp(source=source)
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_until(pilot, lambda: app.state.done)
            first = app.state
            await pilot.press("r")
            await wait_until(pilot, lambda: app.state is not first and app.state.done)
            return app

    app = run(go())
    assert len(calls) == 2 and app.state.status == "finished" and len(app.state.probes) == 8


def test_setup_form_flags_bad_values_and_refuses_to_start():
    async def go():
        app = MfutopApp(run_config=RunConfig(device="cpu"), autostart=False)
        async with app.run_test(size=(120, 40)) as pilot:
            form = app.query_one(SetupForm)
            batch = form.query_one("#setup-batch")
            batch.focus()
            batch.value = ""
            await pilot.press(*"abc")
            await pilot.pause()
            assert batch.has_class("-bad")
            assert "batch-size must be a positive integer" in str(form.query_one("#setup-errors").render())
            await pilot.press("escape", "r")  # escape leaves the field, r tries to start
            await pilot.pause()
            assert app.state.status == "idle" and not app.running
            batch.focus()
            batch.value = ""
            await pilot.press("8")
            await pilot.pause()
            assert not batch.has_class("-bad") and app.setup_errors == {}

    run(go())


def test_command_palette_offers_the_run_controls():
    async def go():
        app = MfutopApp(source=events_source([]), autostart=False)
        async with app.run_test(size=(80, 24)):
            return [c.title for c in app.get_system_commands(app.screen)]

    titles = run(go())
    assert {"Start run", "Re-run", "Cancel run", "Save run"} <= set(titles)


def test_no_color_is_respected(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    app = MfutopApp(source=events_source([]), autostart=False)
    assert app.no_color


def test_a_source_that_ends_early_is_marked_ended():
    events = [e for e in fake_run_events() if not isinstance(e, StepSample) or e.step < 5][:-1]  # no RunFinished

    async def go():
        app = MfutopApp(source=events_source(events))
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_until(pilot, lambda: app.state.done)
            return app

    app = run(go())
    assert app.state.status == "ended"


def test_the_command_palette_runs_save(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    async def go():
        app = MfutopApp(source=lambda cancel: fake_run_events(cancel))
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_until(pilot, lambda: app.state.done)
            await pilot.press("ctrl+p")
            await pilot.pause(0.2)
            await pilot.press(*"Save run")
            await pilot.pause(0.5)
            await pilot.press("enter")
            await wait_until(pilot, lambda: any(tmp_path.glob("mfutop-run-*.jsonl")))
            return app

    app = run(go())
    saved = next(tmp_path.glob("mfutop-run-*.jsonl"))
    assert list(replay_source(saved)(threading.Event())) == app.state.events


def test_escape_closes_the_keys_panel():
    from textual.widgets import HelpPanel

    async def go():
        app = MfutopApp(source=lambda cancel: fake_run_events(cancel))
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_until(pilot, lambda: app.state.done)
            app.action_show_help_panel()
            await pilot.pause(0.1)
            shown = bool(app.screen.query(HelpPanel))
            await pilot.press("escape")
            await pilot.pause(0.1)
            return shown, bool(app.screen.query(HelpPanel))

    shown, still = run(go())
    assert shown and not still


def test_a_redraw_of_an_unchanged_state_updates_no_panel(monkeypatch):
    """The app redraws every panel a few times a second while a run streams; a panel whose content did not
    change must not be updated (Static.update lays the whole screen out again; a table's clear() too)."""
    from textual.widgets import DataTable, Static

    calls = {"update": 0, "clear": 0}
    real_update, real_clear = Static.update, DataTable.clear

    def counting_update(self, *args, **kwargs):
        calls["update"] += 1
        return real_update(self, *args, **kwargs)

    def counting_clear(self, *args, **kwargs):
        calls["clear"] += 1
        return real_clear(self, *args, **kwargs)

    async def go():
        app = MfutopApp(source=events_source(fake_run_events()))
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_until(pilot, lambda: app.state.done)
            app.redraw()
            await pilot.pause()
            monkeypatch.setattr(Static, "update", counting_update)
            monkeypatch.setattr(DataTable, "clear", counting_clear)
            app.redraw()
            unchanged = dict(calls)
            app.state.logs.append(("info", "one more line"))  # the log changes, nothing else
            app.state.samples.append(app.state.samples[-1])  # and a step: the live panel's line changes
            app.redraw()
            return unchanged, dict(calls)

    unchanged, changed = run(go())
    assert unchanged == {"update": 0, "clear": 0}
    assert changed["update"] >= 1


def test_the_first_timed_step_of_each_run_is_drawn_at_once():
    """While a live CPU run is measured the app redraws once a second; the run's first timed step (and the
    device, and the end) are drawn as they arrive, once per run."""
    app = MfutopApp(source=events_source([]))
    fields = dict(batch_size=4, step_time_s=0.1, tokens_per_s=1.0, loss=1.0, memory_allocated_bytes=1,
                  memory_reserved_bytes=1, memory_peak_bytes=1, nvml_used_bytes=None, mfu=None)
    warm = StepSample(step=0, warmup=True, **fields)
    timed = StepSample(step=1, **fields)
    assert not app._first_measurement(warm, run_id=1)
    assert app._first_measurement(timed, run_id=1)
    assert not app._first_measurement(timed, run_id=1)  # later steps wait for the redraw tick
    assert app._first_measurement(timed, run_id=2)  # a new run: its first step again


def test_a_save_that_cannot_write_keeps_the_run_and_says_why(tmp_path, monkeypatch):
    """A read-only or vanished directory: `s` reports the error in the run log; the app and its events stay."""
    missing = tmp_path / "gone"
    monkeypatch.setattr("tui.app.app.default_save_path", lambda: missing / "run.jsonl")

    async def go():
        app = MfutopApp(source=lambda cancel: fake_run_events(cancel))
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_until(pilot, lambda: app.state.done)
            before = list(app.state.events)
            await pilot.press("s")
            await pilot.pause(0.2)
            assert app.is_running and app.state.events == before
            return app

    app = run(go())
    assert not missing.exists()
    assert any("could not save the run" in text and "gone" in text for _, text in app.state.logs)
