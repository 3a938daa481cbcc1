"""`CompareScreen`: two recorded runs side by side; each figure's Δ is B - A of the two files (Pilot, no torch).

Run A is ``fixtures/gpt_tiny_cpu_run.jsonl`` (bf16-mixed, batch searched under a 64 MiB limit); run B is
``fixtures/compare_fp32_b16_run.jsonl``, a real recording of the same model in fp32 at batch 16:

    mfutop profile --model gpt-tiny --device cpu --batch-size 16 --precision fp32 --steps 10 --warmup 2 \\
        --out tests/fixtures/compare_fp32_b16_run.jsonl

The expected figures are read straight from the files' JSON here, not through ``tui.run_diff``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from textual.app import App

from estimator.units import fmt_seconds
from profiler.compare import ROWS, lookup
from tui.app.compare_screen import CompareScreen
from tui.app.comparison import format_value
from tui.run_diff import delta_text, difference

from fixtures.app_helpers import run, wait_until

pytestmark = pytest.mark.app

FIXTURES = Path(__file__).parent / "fixtures"
RUN_A = FIXTURES / "gpt_tiny_cpu_run.jsonl"
RUN_B = FIXTURES / "compare_fp32_b16_run.jsonl"


class Host(App):
    def __init__(self, screen: CompareScreen):
        super().__init__()
        self.compare = screen

    def on_mount(self) -> None:
        self.push_screen(self.compare)


def _summary(path: Path) -> dict:
    """The recorded run's final summary, from the file's last line."""
    last = json.loads(path.read_text(encoding="utf-8").splitlines()[-1])
    assert last["event"] == "run_finished"
    return last["summary"]


def _prediction(path: Path) -> dict:
    """The last prediction the run emitted (the one its figures are compared with)."""
    events = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return [e for e in events if e["event"] == "prediction_ready"][-1]["prediction"]


def _status(screen: CompareScreen) -> str:
    return str(screen.query_one("#compare-status").render())


def test_a_difference_needs_two_numbers_and_reads_in_the_figures_unit():
    assert difference(2.0, 0.5) == -1.5 and difference(None, 1.0) is None
    assert difference("MFU n/a (unknown peak)", 0.3) is None and difference(True, 1) is None
    assert delta_text(-0.5, "seconds") == "-500.00 ms" and delta_text(2**20, "bytes") == "+1.00 MiB"
    assert delta_text(0.294, "fraction") == "+29.4 pp" and delta_text(0, "count") == "0"
    assert delta_text(None, "seconds") == ""


def test_each_delta_is_b_minus_a_of_the_two_files():
    measured_a, measured_b = _summary(RUN_A)["measured"], _summary(RUN_B)["measured"]
    predicted_a, predicted_b = _prediction(RUN_A), _prediction(RUN_B)
    screen = CompareScreen(RUN_A, RUN_B, directory=FIXTURES)

    async def go():
        async with Host(screen).run_test(size=(120, 40)) as pilot:
            await wait_until(pilot, lambda: screen.diff is not None)
            def cell(row: str, column: str) -> str:
                return screen.cell_text("figures", row, column)

            for row in ROWS:
                a, b = measured_a.get(row.measured_key), measured_b.get(row.measured_key)
                assert cell(row.key, "meas_a") == format_value(a, row.unit)
                assert cell(row.key, "meas_b") == format_value(b, row.unit)
                if a is not None and b is not None:
                    assert cell(row.key, "meas_delta") == delta_text(b - a, row.unit), row.key
                pa, pb = lookup(predicted_a, row.predicted_key), lookup(predicted_b, row.predicted_key)
                assert cell(row.key, "pred_delta") == delta_text(pb - pa, row.unit), row.key
            # the same figures as literal text, so the formatting is checked too
            step_a, step_b = measured_a["step_time_s"], measured_b["step_time_s"]
            assert step_b < step_a and cell("step_time", "meas_delta") == "-" + fmt_seconds(step_a - step_b)
            mfu_pp = (measured_b["mfu"] - measured_a["mfu"]) * 100
            assert cell("mfu", "meas_delta") == f"{mfu_pp:+.1f} pp" and mfu_pp > 0
            assert cell("params", "meas_delta") == "0" and cell("params", "pred_delta") == "0"
            # B searched no batch: no measured max batch, so no difference either
            assert cell("max_batch", "meas_b") == "…" and cell("max_batch", "meas_delta") == ""
            # the setup differences, and the runs named relative to the directory
            assert screen.cell_text("setup", "run", 1) == "gpt_tiny_cpu_run.jsonl"
            assert screen.cell_text("setup", "run", 2) == "compare_fp32_b16_run.jsonl"
            assert screen.cell_text("setup", "precision_effective", 1) == "bf16-mixed"
            assert screen.cell_text("setup", "precision_effective", 2) == "fp32"
            assert screen.cell_text("setup", "batch_size", 2) == "16"
            assert "compared on AMD EPYC" in _status(screen)
            assert screen.query_one("#compare-status").styles.height.value == 1  # compare_screen.tcss loaded
            await pilot.press("escape")
            await pilot.pause()
            assert not isinstance(pilot.app.screen, CompareScreen)

    run(go())


def test_two_files_picked_from_the_list_are_compared(tmp_path):
    shutil.copy(RUN_A, tmp_path / "a.jsonl")
    shutil.copy(RUN_B, tmp_path / "b.jsonl")
    (tmp_path / "notes.txt").write_text("not a run")
    screen = CompareScreen(directory=tmp_path)

    async def go():
        async with Host(screen).run_test(size=(120, 40)) as pilot:
            await wait_until(pilot, lambda: screen.file_names == ["a.jsonl", "b.jsonl"])
            assert "pick run A" in _status(screen)
            files = screen.query_one("#compare-files")
            files.focus()
            files.highlighted = 0
            await pilot.press("enter")
            await pilot.pause()
            assert screen.query_one("#compare-a").value == "a.jsonl" and screen.diff is None
            assert "now pick run B" in _status(screen)
            await pilot.press("down", "enter")
            await wait_until(pilot, lambda: screen.diff is not None)
            assert screen.query_one("#compare-b").value == "b.jsonl"
            assert screen.diff["a"]["path"] == str(tmp_path / "a.jsonl")
            assert screen.diff["b"]["path"] == str(tmp_path / "b.jsonl")
            assert screen.diff["setup_differences"]["precision_effective"] == ["bf16-mixed", "fp32"]

    run(go())


def test_a_bad_path_is_one_line_on_the_status_and_a_good_pair_still_compares(tmp_path):
    (tmp_path / "junk.jsonl").write_text("not json\n{\"event\": \"nope\"}\n")
    shutil.copy(RUN_A, tmp_path / "a.jsonl")
    screen = CompareScreen(directory=tmp_path)

    async def go():
        async with Host(screen).run_test(size=(120, 40)) as pilot:
            field_a, field_b = screen.query_one("#compare-a"), screen.query_one("#compare-b")
            field_a.value = "a.jsonl"
            field_b.value = "missing.jsonl"
            field_b.focus()
            await pilot.press("enter")
            await wait_until(pilot, lambda: "no such run file" in _status(screen))
            assert screen.diff is None and str(tmp_path / "missing.jsonl") in _status(screen)
            field_b.value = "junk.jsonl"
            await pilot.press("enter")
            await wait_until(pilot, lambda: "holds no mfutop events" in _status(screen))
            field_b.value = "a.jsonl"
            await pilot.press("enter")
            await wait_until(pilot, lambda: screen.diff is not None)
            assert screen.cell_text("setup", "same", 0) == "same setup"
            assert screen.cell_text("figures", "step_time", "meas_delta") == "0"

    run(go())


def test_outside_text_from_a_file_is_shown_literally(tmp_path):
    evil = "[@click=app.quit]x[/] [b]"
    lines = RUN_A.read_text(encoding="utf-8").splitlines()
    device = json.loads(lines[0])
    assert device["event"] == "device_detected"
    device["name"] = evil
    name = "[red]b[@click=app.quit].jsonl"
    (tmp_path / name).write_text("\n".join([json.dumps(device), *lines[1:]]) + "\n", encoding="utf-8")
    shutil.copy(RUN_A, tmp_path / "a.jsonl")
    screen = CompareScreen(tmp_path / "a.jsonl", tmp_path / name, directory=tmp_path)

    async def go():
        async with Host(screen).run_test(size=(120, 40)) as pilot:
            await wait_until(pilot, lambda: screen.diff is not None and len(screen.file_names) == 2)
            assert screen.cell_text("setup", "device", 2) == evil
            assert screen.cell_text("setup", "run", 2) == name
            files = screen.query_one("#compare-files")
            assert {files.get_option_at_index(i).prompt.plain for i in range(2)} == {"a.jsonl", name}
            assert pilot.app.is_running

    run(go())


def test_on_a_short_terminal_the_picker_folds_away_and_o_brings_it_back():
    screen = CompareScreen(RUN_A, RUN_B, directory=FIXTURES)

    async def go():
        async with Host(screen).run_test(size=(80, 24)) as pilot:
            await wait_until(pilot, lambda: screen.diff is not None)
            pick = screen.query_one("#compare-pick")
            assert not pick.display and screen.focused is screen.query_one("#compare-figures")
            await pilot.press("o")
            await pilot.pause()
            assert pick.display and screen.focused is screen.query_one("#compare-files")

    run(go())
