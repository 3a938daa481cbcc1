"""The app's keys for its other screens: `p` plans the run's model across GPU counts, `m` compares two runs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tui.app import MfutopApp
from tui.app.compare_screen import CompareScreen, list_run_files
from tui.app.plan_screen import PlanScreen
from tui.event_sources import replay_source

from fixtures.app_helpers import run, wait_until

pytestmark = pytest.mark.app

FIXTURES = Path(__file__).parent / "fixtures"
RECORDED = FIXTURES / "gpt_tiny_cpu_run.jsonl"


async def _finished(pilot) -> None:
    await wait_until(pilot, lambda: pilot.app.state.done and not pilot.app.running)


def test_p_plans_the_recorded_runs_model_for_the_default_gpu():
    run(_plan())


async def _plan() -> None:
    app = MfutopApp(source=replay_source(RECORDED))
    async with app.run_test(size=(120, 40)) as pilot:
        await _finished(pilot)
        await pilot.press("p")
        await wait_until(pilot, lambda: isinstance(app.screen, PlanScreen))
        screen = app.screen
        assert screen.model.name == "gpt-tiny"  # the run's model, not the form's default
        assert screen.hardware.key == "h100-sxm"  # a CPU run: `mfutop plan`'s default GPU, with a notice
        await pilot.press("escape")
        await wait_until(pilot, lambda: not isinstance(app.screen, PlanScreen))


def test_m_lists_the_run_files_beside_the_apps_recording(tmp_path):
    run(_compare(tmp_path))


async def _compare(tmp_path: Path) -> None:
    shutil.copy(RECORDED, tmp_path / "a.jsonl")
    shutil.copy(FIXTURES / "compare_fp32_b16_run.jsonl", tmp_path / "b.jsonl")
    app = MfutopApp(source=replay_source(RECORDED), out_path=tmp_path / "replay-copy.jsonl")
    async with app.run_test(size=(120, 40)) as pilot:
        await _finished(pilot)
        await pilot.press("m")
        await wait_until(pilot, lambda: isinstance(app.screen, CompareScreen))
        assert app.screen.directory == tmp_path
        assert {"a.jsonl", "b.jsonl"} <= set(list_run_files(app.screen.directory))
        await pilot.press("escape")
        await wait_until(pilot, lambda: not isinstance(app.screen, CompareScreen))
