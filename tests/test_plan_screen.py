"""`PlanScreen`: plans across GPU counts in a worker thread, rows equal the planner's (Pilot, no torch)."""

from __future__ import annotations

import pytest
from textual.app import App

from estimator.hardware import get_gpu
from estimator.planner import PlanRequest, plan
from estimator.presets import get_model
from tui.app.plan_screen import PlanResult, PlanScreen
from tui.plan_view import row_cells

from fixtures.app_helpers import run, wait_until

pytestmark = pytest.mark.app


class _Host(App):
    def __init__(self, screen: PlanScreen):
        super().__init__()
        self.plan_screen = screen

    def on_mount(self) -> None:
        self.push_screen(self.plan_screen)


def test_plan_screen_rows_match_the_planner_and_name_what_does_not_fit():
    model, gpu = get_model("llama-2-7b"), get_gpu("h100-sxm")
    screen = PlanScreen(model, gpu, gpu_counts=(1, 8), top=2)

    async def go():
        app = _Host(screen)
        async with app.run_test(size=(200, 40)) as pilot:
            await wait_until(pilot, lambda: len(screen.results) == 2)
            table = screen.query_one("#plan-table")
            assert screen.query_one("#plan-status").styles.height.value == 1  # plan_screen.tcss is loaded
            keys = [k.value for k in table.rows]
            assert keys == ["1-none", "8-1", "8-2"]
            # 7B in bf16 with AdamW (16 B/param) does not fit one 80 GB GPU: the row says so
            assert "smallest GPU count that fits is 2" in table.get_row("1-none")[2].plain
            expected = plan(PlanRequest(model, gpu, 8, global_batch_tokens=2**22, top=2)).to_dict()["rows"]
            for row in expected:
                shown = tuple(c.plain for c in table.get_row(f"8-{row['rank']}"))
                assert shown == ("8", *row_cells(row))
            reasons = screen.query_one("#plan-reasons").render()
            assert "8 GPUs:" in str(reasons)
            await pilot.press("escape")
            await pilot.pause()
            assert not isinstance(app.screen, PlanScreen)

    run(go())


def test_plan_screen_worker_runs_off_the_ui_thread():
    import threading

    seen = []
    screen = PlanScreen(get_model("gpt2"), get_gpu("h100-sxm"), gpu_counts=(1,), top=1)
    original = screen.post_message

    def spy(message):
        if isinstance(message, PlanResult):
            seen.append(threading.current_thread() is threading.main_thread())
        return original(message)

    screen.post_message = spy

    async def go():
        async with _Host(screen).run_test() as pilot:
            await wait_until(pilot, lambda: len(screen.results) == 1)
            assert isinstance(screen.results[1], dict) and screen.results[1]["rows"][0]["fits"]

    run(go())
    assert seen and not any(seen)  # every PlanResult was posted from the worker thread
