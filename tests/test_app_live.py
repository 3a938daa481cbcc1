"""The app on a REAL run: gpt-tiny on the CPU through profiler.run.run_profile (torch), driven by Pilot.

Small on purpose (a fixed batch, a handful of steps): a full live run takes seconds.
"""

from __future__ import annotations

from estimator.params import count_params
from estimator.presets import get_model
from profiler.run_config import RunConfig
from tui.app import MfutopApp
from tui.recording import save_events
from tui.event_sources import replay_source

from fixtures.app_helpers import is_number, run, table_cells, wait_until

TINY = get_model("gpt-tiny")


def live_config(**changes) -> RunConfig:
    base = dict(model=TINY, device="cpu", batch_size=4, seq_len=64, steps=4, warmup=1, precision="fp32")
    base.update(changes)
    return RunConfig(**base)


def test_a_real_run_fills_the_table_and_replays_identically(tmp_path):
    async def live():
        app = MfutopApp(run_config=live_config())
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_until(pilot, lambda: app.state.done and not app.running)
            return app, table_cells(app)

    app, cells = run(live())
    assert app.state.status == "finished", app.state.logs
    predicted, measured, error = cells["params"]
    assert predicted == measured == f"{count_params(TINY).total:,}"
    assert error == "+0.0 %"
    assert is_number(cells["tokens_per_s"][1]) and cells["tokens_per_s"][1].endswith("tok/s")
    assert is_number(cells["mfu"][1]) and cells["mfu"][1].endswith("%")
    assert is_number(cells["step_time"][1])
    assert cells["flops_analytic"][0] == cells["flops_analytic"][1]  # same batch: the same analytic count
    assert app.state.device.device == "cpu"
    assert len(app.state.timed_samples) >= 4
    assert app.sub_title == "live · gpt-tiny · cpu"

    path = tmp_path / "live.jsonl"
    save_events(app.state.events, path)

    async def replay():
        app = MfutopApp(source=replay_source(path))
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_until(pilot, lambda: app.state.done)
            return table_cells(app)

    assert run(replay()) == cells


def test_cancelling_a_real_run_keeps_what_it_measured():
    async def go():
        app = MfutopApp(run_config=live_config(steps=400))
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_until(pilot, lambda: len(app.state.timed_samples) >= 2)
            await pilot.press("c")
            await wait_until(pilot, lambda: app.state.done and not app.running)
            return app, table_cells(app)

    app, cells = run(go())
    assert app.state.status == "cancelled"
    assert app.state.summary is not None  # the runner's RunFinished(cancelled=True)
    assert 2 <= len(app.state.timed_samples) < 400
    assert app.state.summary["measured"]["steps"] == len(app.state.timed_samples)
    assert is_number(cells["tokens_per_s"][1]) and is_number(cells["mfu"][1])
    assert cells["params"][0] == cells["params"][1]


def test_a_real_run_with_the_batch_search_shows_its_probes():
    async def go():
        app = MfutopApp(run_config=live_config(batch_size=None, memory_limit_bytes=24 * 2**20, steps=2))
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_until(pilot, lambda: app.state.done and not app.running)
            return app, app.query_one("#search").row_count

    app, search_rows = run(go())
    assert app.state.status == "finished", app.state.logs
    assert search_rows == len(app.state.probes) >= 2
    measured = app.state.measured()
    assert measured["max_batch_size"] == app.state.summary["search"]["max_batch_size"]
    assert any(not p.fits for p in app.state.probes)  # the limit was found, not assumed


def test_quitting_during_a_real_run_stops_it():
    async def go():
        app = MfutopApp(run_config=live_config(steps=400))
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_until(pilot, lambda: len(app.state.timed_samples) >= 1)
            await pilot.press("q")
            await pilot.pause(0.2)
        return app

    app = run(go())
    assert not app.running
    assert len(app.state.timed_samples) < 400


def test_mid_run_the_flops_rows_are_counted_at_the_runs_batch():
    """After the search, before any timed step: the FLOPs rows compare counts at the batch that runs.

    A real run (search included) in this process, held just before its first step sample.
    """
    import threading

    from estimator.flops import step_flops
    from profiler.events import StepSample
    from tui.app.comparison import format_value
    from profiler.run import run_profile

    reached, release = threading.Event(), threading.Event()

    def held(cancel):
        config = live_config(batch_size=None, memory_limit_bytes=8 * 2**20, steps=2)
        for event in run_profile(config, cancel, max_extra_steps=0):
            if isinstance(event, StepSample) and not reached.is_set():
                reached.set()
                release.wait(60)
            yield event

    async def mid_run():
        app = MfutopApp(run_config=live_config(), source=held)
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_until(pilot, reached.is_set)
            await pilot.pause(0.3)
            app.redraw()
            cells = table_cells(app)
            state = app.state
            release.set()
            await wait_until(pilot, lambda: app.state.done and not app.running)
            return cells, state

    cells, state = run(mid_run())
    batch = state.probes[-1].low if state.probes else None
    assert batch and state.flops.batch_size == batch  # the search ran, and FLOPs were counted at its answer
    assert state.predicted_batch == batch
    predicted, measured, error = cells["flops_analytic"]
    assert predicted == measured == format_value(step_flops(TINY, batch, 64).total, "flops")
    assert error == "+0.0 %"
    counted = [e for e in state.events if type(e).__name__ == "FlopsCounted"]
    assert counted and all(e.batch_size == batch for e in counted)  # never the search's seed batch


def test_a_real_run_shows_where_the_time_goes():
    from estimator.ops import CATEGORIES
    from tui.app.time_breakdown import breakdown_rows

    async def live():
        app = MfutopApp(run_config=live_config())
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_until(pilot, lambda: app.state.done and not app.running)
            app.redraw()
            table = app.query_one("#breakdown")
            return app, [[str(table.get_cell_at((r, c))) for c in range(4)] for r in range(table.row_count)]

    app, cells = run(live())
    assert app.state.status == "finished" and app.state.breakdown is not None
    assert cells and cells == [list(row) for row in breakdown_rows(app.state)]
    assert {row[0] for row in cells} <= set(CATEGORIES) and "matmul" in {row[0] for row in cells}
    shares = [int(row[3].rstrip("%")) for row in cells]
    assert 95 <= sum(shares) <= 105  # the measured split adds up to the profiled step
