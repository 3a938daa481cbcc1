"""`LadderScreen`: table cells, the bar chart, live folding of rung events, cancel (Pilot, no torch)."""

from __future__ import annotations

import threading
from typing import Iterator

from textual.app import App
from textual.widgets import Static

from profiler.events import Event, LogMessage, RunFinished
from profiler.ladder import RUNGS, LadderRung
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
            first = shown.note_text()
            await pilot.press("down")
            return first, shown.note_text(), shown.done

    first, note, done = run(recorded())
    assert first == "baseline measured: baseline"
    assert note == "tf32 n/a: n/a on cpu: TF32 is a GPU tensor-core format" and done

    live = LadderScreen(source=lambda cancel: _events(cancel, block=True))
    app = Host(live)

    async def cancel():
        async with app.run_test(size=(140, 40)) as pilot:
            await wait_until(pilot, lambda: len(live.rows) == 3)
            await pilot.press("c")
            await wait_until(pilot, lambda: live.done)
            return str(live.query_one("#ladder-status", Static).render())

    assert run(cancel()) == "ladder cancelled"


# Every rung of the real ladder, with the longest names and a note too long for any column.
LONG_NOTE = ("n/a on cpu: RuntimeError: Compiler: cl is not found; torch.compile needs a working C++ compiler "
             "on PATH for the inductor backend (install one, or skip the rung with --skip compile)")
FULL = [_row(r.name, "n/a", reason=LONG_NOTE) if r.name == "compile" else
        _row(r.name, tps=12_525.0 * 1.3 ** i, speedup_base=1.3 ** i, precision="bf16-mixed")
        for i, r in enumerate(RUNGS)]


def _screen_lines(app) -> list[str]:
    return [strip.text for strip in app.screen._compositor.render_strips()]


def _shown(size, presses=()):
    screen = LadderScreen(rows=FULL)
    app = Host(screen)

    async def go():
        async with app.run_test(size=size) as pilot:
            await pilot.pause(0.1)
            for key in presses:
                await pilot.press(key)
            await pilot.pause(0.1)
            return _screen_lines(app), screen.note_text()

    return run(go())


def test_every_rung_is_on_screen_at_80x24():
    lines, _ = _shown((80, 24))
    assert len(lines) == 24 and len(RUNGS) == 9
    header = next(i for i, line in enumerate(lines) if line.startswith("│ Rung "))
    # the 9 rungs, in order, on the 9 lines under the table's header: none scrolled away
    assert [(line.split() + ["", ""])[1] for line in lines[header + 1:header + 10]] == [r.name for r in RUNGS]
    assert "tokens/s per rung" in "".join(lines[header + 10:])  # the bar chart still has its place
    assert lines[-1].lstrip().startswith("esc Back")


def test_the_selected_rungs_note_is_shown_whole_at_120x40():
    lines, note = _shown((120, 40), presses=["down"] * 6)  # baseline -> compile
    assert note == f"compile n/a: {LONG_NOTE}"
    text = " ".join(line.strip(" │") for line in lines)
    assert " ".join(note.split()) in " ".join(text.split())  # wrapped, not cut
    assert all(f"│ {r.name} " in "".join(lines) for r in RUNGS)
    assert sum("█" in line for line in lines) == len(RUNGS) - 1  # every measured rung's bar, unscrolled


def test_the_selection_survives_a_live_update():
    screen = LadderScreen(rows=FULL)
    app = Host(screen)

    async def go():
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause(0.1)
            await pilot.press("down", "down")
            screen.apply(LadderRung(index=9, total=9, rung=dict(FULL[-1], tokens_per_s=1.0)))
            await pilot.pause(0.1)
            return screen.note_text(), screen.cell_text("max-batch", "tokens")

    note, tokens = run(go())
    assert note.startswith("fused-adamw measured: ") and tokens == "1"
