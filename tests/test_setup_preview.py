"""The setup form's preview: the run's prediction before `r` (fits, memory, step time, duration),
a refusal for a setup that cannot fit, and a question before a long run.

The CPU's caches are a temporary directory (``XDG_CACHE_HOME``) holding a known matmul peak and
no device profile, and its available RAM is fixed, so the figures do not depend on this machine;
runs are fake sources.
"""

from __future__ import annotations

import json
import threading

import pytest
from textual.widgets import Select

from estimator.presets import get_model
from profiler.run_config import RunConfig
from tui.app import MfutopApp
from tui.app.confirm_run import ConfirmRun
from tui.app.setup_preview import (
    LONG_RUN_S,
    SetupPreview,
    cached_cpu_peak,
    preview_details,
    preview_lines,
    preview_run,
    run_steps,
)

from fixtures.app_helpers import run, wait_until
from fixtures.fake_run import fake_run_events

pytestmark = pytest.mark.app

PEAK = 1e11  # FLOP/s: the cached matmul peak of the test "CPU"
RAM = 64 * 2**30  # available RAM of the test "CPU": the run's default cap is half of it


@pytest.fixture(autouse=True)
def fixed_ram(monkeypatch):
    monkeypatch.setattr("profiler.run.available_ram", lambda: RAM)


@pytest.fixture
def peak_cache(tmp_path, monkeypatch):
    """A CPU peak cache with fp32 and bf16 figures, and no device profile."""
    from profiler import cpu_probe

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = cpu_probe.default_cache_path()
    path.parent.mkdir(parents=True)
    entries = {cpu_probe._cache_key(d, cpu_probe.DEFAULT_MAX_SIZE): {
        "dtype": d, "flops": PEAK, "size": 2048, "usable": True, "note": "test", "measured_at": "2024-01-01T00:00:00"}
        for d in ("fp32", "bf16")}
    path.write_text(json.dumps(entries))
    return path


@pytest.fixture
def fake_live(monkeypatch):
    """`live_source` replaced by the deterministic fake run; returns the configs it was asked to run."""
    started: list[RunConfig] = []

    def fake_source(config):
        started.append(config)
        return lambda cancel: fake_run_events(cancel)

    monkeypatch.setattr("tui.app.app.live_source", fake_source)
    return started


def cpu(model: str | None = None, **changes) -> RunConfig:
    return RunConfig(device="cpu", model=get_model(model) if model else None, **changes)


def preview_text(app) -> str:
    return str(app.query_one(SetupPreview).render())


async def set_model(pilot, app, name: str) -> None:
    app.query_one("#setup-model", Select).value = name
    await wait_until(pilot, lambda: app.preview is not None and app.preview.model == name and not app.preview_status)


# ---------------------------------------------------------------- the prediction, without the app

def test_the_cached_peak_is_read_never_measured(peak_cache, tmp_path, monkeypatch):
    assert cached_cpu_peak("fp32")["flops"] == PEAK
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty"))
    missing = cached_cpu_peak("fp32")
    assert missing["flops"] is None and "not measured yet" in missing["note"]


def test_gpt2_on_the_cpu_is_a_long_run_of_its_steps_and_search(peak_cache):
    preview = preview_run(cpu("gpt2"))
    assert preview.fits and preview.device_kind == "cpu" and preview.step_source == "this CPU's cached peak"
    assert preview.auto_batch and preview.batch == 4  # the CPU search stops at 4,096 tokens per step
    assert preview.limit_bytes == RAM // 2 and preview.limit_source == "50% of available RAM"
    assert preview.run_steps == run_steps(cpu("gpt2"), cpu=True, searched=True) == 2 + 20 + 3  # the probe at batch 4 is the 1st warm-up, the 3rd is tracked; record + 2 replays
    assert preview.search_probes >= 1 and preview.search_s > 0
    assert preview.duration_s == pytest.approx(preview.run_steps * preview.step_s + preview.search_s)
    assert preview.duration_s > LONG_RUN_S and preview.long
    assert preview.question().startswith("≈ ") and preview.question().endswith(" on this CPU — run anyway?")
    lines = preview_lines(preview)
    assert lines[0].startswith("fits: yes · ") and lines[1].startswith("batch auto → 4 · step ≈ ")
    assert lines[2].startswith("run ≈ ") and lines[2].endswith(": 25 steps + search")
    assert "(this CPU's cached peak)" in preview_details(preview)[-2]


def test_without_a_cached_peak_the_step_time_is_unknown(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    preview = preview_run(cpu("gpt2"))
    assert preview.fits and preview.step_s is None and preview.duration_s is None and not preview.long
    assert preview_lines(preview)[-1] == "batch auto → 4 · step time unknown until the run measures this CPU's peak"


def test_a_model_that_cannot_fit_gets_the_verdict_and_the_cheapest_change(peak_cache):
    preview = preview_run(cpu("llama-2-13b", memory_limit_bytes=4 * 2**30))
    assert not preview.fits and preview.limit_bytes == 4 * 2**30 and preview.memory_bytes > 100 * 2**30
    lines = preview_lines(preview)
    assert lines[0].startswith("fits: no · ") and lines[0].endswith(" GiB > 4.00 GiB")
    assert lines[-1] == "cheapest change: none on this CPU; a smaller model or a higher mem limit"
    assert "memory limit 4.00 GiB (--memory-limit)" in preview_details(preview)
    assert preview.refusal() == "not started: does not fit in memory"
    assert preview.refusal(figures=True).startswith("Not started: llama-2-13b does not fit (")


def test_a_fixed_batch_over_the_limit_names_the_largest_that_fits(peak_cache):
    preview = preview_run(cpu("gpt-tiny", batch_size=4096, memory_limit_bytes=64 * 2**20))
    assert not preview.fits and 0 < preview.max_batch < 4096
    lines = preview_lines(preview)
    assert lines[0].startswith("fits: no · ") and lines[0].endswith(" at batch 4096 > 64.00 MiB")
    assert lines[1] == f"largest batch that fits: {preview.max_batch}"
    assert lines[2].startswith("cheapest change: --")


# ---------------------------------------------------------------- in the app

def test_the_preview_follows_the_model_field(peak_cache):
    async def go():
        app = MfutopApp(run_config=cpu("gpt-tiny"), autostart=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_until(pilot, lambda: app.preview is not None and not app.preview_status)
            tiny = preview_text(app)
            await set_model(pilot, app, "gpt2")
            return tiny, preview_text(app), str(app.query_one(SetupPreview).tooltip), app

    tiny, gpt2, tooltip, app = run(go())
    assert tiny.startswith("fits: yes · ") and "step ≈ " in tiny and "run ≈ " in tiny
    assert gpt2.startswith("fits: yes · ") and gpt2 != tiny
    assert tooltip.startswith("gpt2 on ")
    assert app.state.status == "idle" and not app.running  # previewing starts nothing


def test_a_setup_that_cannot_fit_is_refused_and_the_results_stay(peak_cache, fake_live):
    async def go():
        app = MfutopApp(run_config=cpu("gpt-tiny", batch_size=4, memory_limit_bytes=4 * 2**30))
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_until(pilot, lambda: app.state.done and not app.running)  # autostart: a short run
            finished = app.state
            await set_model(pilot, app, "llama-2-13b")
            await pilot.press("r")
            await pilot.pause(0.2)
            errors = str(app.query_one("#setup-errors").render())
            return app, finished, errors, preview_text(app)

    app, finished, errors, preview = run(go())
    assert len(fake_live) == 1 and fake_live[0].model.name == "gpt-tiny"  # llama-2-13b never started
    assert app.state is finished and app.state.status == "finished" and len(app.state.timed_samples) == 20
    assert errors == "not started: does not fit in memory"
    assert "fits: no" in preview and "cheapest change: " in preview


def test_an_autostarted_run_gets_no_preview_until_it_ends(peak_cache, monkeypatch):
    """The form's fields announce their first values as they mount; a preview then would import torch
    in the app while the run's child starts (a second of CPU: the first numbers came 0.8 s later)."""
    release = threading.Event()
    asked: list[bool] = []  # for each preview: was the run still going?

    def held_run(config):
        def events(cancel):
            release.wait(10)
            yield from fake_run_events(cancel)
        return events

    def counted_preview(config):
        asked.append(app.running)
        return preview_run(config)

    monkeypatch.setattr("tui.app.app.live_source", held_run)
    monkeypatch.setattr("tui.app.setup_previewing.preview_run", counted_preview)

    async def go():
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause(0.5)
            during = list(asked)
            release.set()
            await wait_until(pilot, lambda: app.state.done and not app.running and app.preview is not None)
            return during

    app = MfutopApp(run_config=cpu("gpt-tiny"))
    during = run(go())
    assert during == [] and asked == [False]  # none while the run started, one once it ended


def test_a_long_run_asks_first_and_n_starts_nothing(peak_cache, fake_live):
    async def go():
        app = MfutopApp(run_config=cpu("gpt2"), autostart=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_until(pilot, lambda: app.preview is not None and not app.preview_status)
            await pilot.press("r")
            await wait_until(pilot, lambda: isinstance(app.screen, ConfirmRun))
            question = str(app.screen.query_one("#confirm-question").render())
            await pilot.press("n")
            await wait_until(pilot, lambda: not isinstance(app.screen, ConfirmRun))
            after_n = (app.state.status, app.running, len(fake_live))
            await pilot.press("r")
            await wait_until(pilot, lambda: isinstance(app.screen, ConfirmRun))
            await pilot.press("escape")
            await wait_until(pilot, lambda: not isinstance(app.screen, ConfirmRun))
            after_escape = (app.state.status, app.running, len(fake_live))
            await pilot.press("r")
            await wait_until(pilot, lambda: isinstance(app.screen, ConfirmRun))
            await pilot.press("y")
            await wait_until(pilot, lambda: app.state.done and not app.running)
            return question, after_n, after_escape, app

    question, after_n, after_escape, app = run(go())
    assert question == app.preview.question() and question.endswith(" on this CPU — run anyway?")
    assert after_n == after_escape == ("idle", False, 0)
    assert len(fake_live) == 1 and fake_live[0].model.name == "gpt2" and app.state.status == "finished"


def test_r_before_the_preview_arrives_waits_for_it(peak_cache, fake_live, monkeypatch):
    """A press during the debounce is answered once the preview is in: here it fits and is short."""
    release = threading.Event()
    real = preview_run

    def slow_preview(config, detect=None):
        release.wait(30)
        return real(config, detect)

    monkeypatch.setattr("tui.app.setup_previewing.preview_run", slow_preview)

    async def go():
        app = MfutopApp(run_config=cpu("gpt-tiny"), autostart=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("r")
            await pilot.pause(0.1)
            waiting = (app.state.status, len(fake_live), preview_text(app))
            release.set()
            await wait_until(pilot, lambda: app.state.done and not app.running)
            return waiting, app

    (status, started, text), app = run(go())
    assert status == "idle" and started == 0 and text.startswith("checking the setup before the run")
    assert len(fake_live) == 1 and app.state.status == "finished"
