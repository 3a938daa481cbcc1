"""`LadderScreen`: table cells, the bar chart, live folding of rung events, cancel (Pilot, no torch)."""

from __future__ import annotations

import threading
from typing import Iterator

from textual.app import App
from textual.widgets import Static

from profiler.events import Event, LogMessage, RunFinished
from profiler.ladder import LadderRung
from tui.app.ladder_screen import LadderScreen
from tui.ladder_table import BAR_WIDTH, bar_chart, fold, rung_cells

from fixtures.app_helpers import run, wait_until


def _row(name, status="measured", tps=None, **extra):
    row = {"name": name, "title": name, "status": status, "applies": status == "measured", "reason": "",
           "tokens_per_s": tps, "peak_memory_bytes": 3 * 2**20 if tps else None, "mfu": 0.0123 if tps else None,
           "speedup_prev": None, "speedup_base": None, "predicted_tokens_per_s": 2 * tps if tps else None,
           "batch_size": 4, "precision": "fp32"}
    row.update(extra)
    return row


ROWS = [
    _row("baseline", tps=1000.0, speedup_base=1.0),
    _row("tf32", "n/a", reason="n/a on cpu: TF32 is a GPU tensor-core format"),
    _row("bf16", tps=4000.0, speedup_prev=4.0, speedup_base=4.0, precision="bf16-mixed"),
]


def test_cells_show_figures_and_dashes_where_nothing_was_measured():
    assert rung_cells(ROWS[0]) == ("baseline", "measured", "1,000", "-", "1.00x", "3.00 MiB", "1.2 %", "2,000",
                                   "4", "fp32", "baseline")
    cells = rung_cells(ROWS[1])
    assert cells[2:10] == ("-",) * 8 and cells[10] == "n/a on cpu: TF32 is a GPU tensor-core format"
    assert rung_cells(ROWS[2])[3:5] == ("4.00x", "4.00x")


def test_bars_scale_to_the_fastest_rung():
    lines = bar_chart(ROWS, width=BAR_WIDTH).splitlines()
    assert len(lines) == 3
    assert lines[2].count("█") == BAR_WIDTH and lines[2].endswith("4,000 tok/s")
    assert lines[0].count("█") == BAR_WIDTH // 4 and lines[0].endswith("1,000 tok/s")
    assert "█" not in lines[1] and lines[1].endswith("n/a")
    assert bar_chart([]) == ""


def test_fold_replaces_a_rung_by_name_and_takes_the_final_rows():
    rows = fold([], LadderRung(index=1, total=2, rung=ROWS[0]))
    rows = fold(rows, LadderRung(index=2, total=2, rung=ROWS[1]))
    updated = dict(ROWS[0], tokens_per_s=1100.0)
    rows = fold(rows, LadderRung(index=1, total=2, rung=updated))
    assert [r["name"] for r in rows] == ["baseline", "tf32"] and rows[0]["tokens_per_s"] == 1100.0
    assert fold(rows, LogMessage("info", "x")) is rows
    assert fold(rows, RunFinished(summary={"rungs": ROWS})) == ROWS


class Host(App):
    def __init__(self, screen: LadderScreen):
        super().__init__()
        self.ladder = screen

    def on_mount(self) -> None:
        self.push_screen(self.ladder)


def _events(cancel: threading.Event, block: bool = False) -> Iterator[Event]:
    yield LogMessage("info", "ladder: gpt-tiny on CPU")
    for i, row in enumerate(ROWS, 1):
        yield LadderRung(index=i, total=len(ROWS), rung=row)
    while block and not cancel.is_set():
        cancel.wait(0.02)
    yield RunFinished(summary={"rungs": ROWS}, cancelled=cancel.is_set())


def test_the_screen_folds_a_live_ladder_into_table_and_bars():
    screen = LadderScreen(source=lambda cancel: _events(cancel))
    app = Host(screen)

    async def go():
        async with app.run_test(size=(140, 40)) as pilot:
            await wait_until(pilot, lambda: screen.done)
            bars = str(screen.query_one("#ladder-bars", Static).render())
            status = str(screen.query_one("#ladder-status", Static).render())
            return ({r: screen.cell_text(r, "tokens") for r in ("baseline", "tf32", "bf16")},
                    screen.cell_text("bf16", "base"), bars, status)

    tokens, base, bars, status = run(go())
    assert tokens == {"baseline": "1,000", "tf32": "-", "bf16": "4,000"}
    assert base == "4.00x"
    assert "4,000 tok/s" in bars and "█" * BAR_WIDTH in bars
    assert status == "ladder finished: 3 rungs"


def test_recorded_rows_show_without_a_source_and_c_cancels_a_live_one():
    shown = LadderScreen(rows=ROWS)
    app = Host(shown)

    async def recorded():
        async with app.run_test(size=(140, 40)) as pilot:
            await pilot.pause(0.1)
            return shown.cell_text("tf32", "note"), shown.done

    note, done = run(recorded())
    assert note == "n/a on cpu: TF32 is a GPU tensor-core format" and done

    live = LadderScreen(source=lambda cancel: _events(cancel, block=True))
    app = Host(live)

    async def cancel():
        async with app.run_test(size=(140, 40)) as pilot:
            await wait_until(pilot, lambda: len(live.rows) == 3)
            await pilot.press("c")
            await wait_until(pilot, lambda: live.done)
            return str(live.query_one("#ladder-status", Static).render())

    assert run(cancel()) == "ladder cancelled"
