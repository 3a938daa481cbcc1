"""Snapshots of the app, wide (120x40) and compact (80x24), from a recorded real run.

The run is ``tests/fixtures/gpt_tiny_cpu_run.jsonl`` (``record_run.py``), replayed,
so the screens are deterministic: the main screen, then over it the ladder screen
(the seed's published A100 ladder as its rows) and the compare screen (that run
beside ``fixtures/compare_fp32_b16_run.jsonl``). Update with ``pytest
tests/test_snapshots.py --snapshot-update`` and look at the SVGs in
``tests/__snapshots__/``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from profiler.ladder import RUNGS, add_speedups, rung_row
from tui.app import MfutopApp
from tui.app.compare_screen import CompareScreen
from tui.app.ladder_screen import LadderScreen
from tui.event_sources import replay_source

from fixtures.app_helpers import wait_until

RECORDED = Path(__file__).parent / "fixtures" / "gpt_tiny_cpu_run.jsonl"
COMPARED = Path(__file__).parent / "fixtures" / "compare_fp32_b16_run.jsonl"
SIZES = {"wide": (120, 40), "compact": (80, 24)}


def replay_app() -> MfutopApp:
    return MfutopApp(source=replay_source(RECORDED), title="mfutop replay gpt_tiny_cpu_run.jsonl")


async def until_finished(pilot) -> None:
    await wait_until(pilot, lambda: pilot.app.state.done and not pilot.app.running)
    pilot.app.redraw()


def test_main_screen_wide(snap_compare):
    assert snap_compare(replay_app(), terminal_size=(120, 40), run_before=until_finished)


def test_main_screen_compact(snap_compare):
    assert snap_compare(replay_app(), terminal_size=(80, 24), run_before=until_finished)


def test_search_tab_compact(snap_compare):
    async def open_search_tab(pilot) -> None:
        await until_finished(pilot)
        pilot.app.query_one("#tabs").active = "tab-search"

    assert snap_compare(replay_app(), terminal_size=(80, 24), run_before=open_search_tab)


def seed_ladder_rows() -> list[dict]:
    """Every rung, measured at the seed's published A100 tokens/s, its precision as the rungs switch it."""
    rows, precision = [], "fp32"
    for rung in RUNGS:
        precision = rung.changes.get("precision", precision)
        summary = {"measured": {"tokens_per_s": float(rung.seed_a100_tokens_per_s)},
                   "config": {"precision_effective": precision}}
        rows.append(rung_row(rung, None, applies=True, status="measured", reason="", summary=summary))
    return add_speedups(rows)


@pytest.mark.parametrize("size", SIZES)
def test_ladder_screen(snap_compare, size):
    async def open_ladder(pilot) -> None:
        await until_finished(pilot)
        await pilot.app.push_screen(LadderScreen(rows=seed_ladder_rows(), title="Training-speed ladder (seed, A100)"))
        await pilot.pause()

    assert snap_compare(replay_app(), terminal_size=SIZES[size], run_before=open_ladder)


@pytest.mark.parametrize("size", SIZES)
def test_compare_screen(snap_compare, tmp_path, size):
    runs = tmp_path / "runs"  # the picker lists this directory: only these two files, under a fixed name
    runs.mkdir()
    for path in (RECORDED, COMPARED):
        shutil.copy(path, runs / path.name)

    async def open_compare(pilot) -> None:
        await until_finished(pilot)
        screen = CompareScreen(runs / RECORDED.name, runs / COMPARED.name, directory=runs)
        await pilot.app.push_screen(screen)
        await wait_until(pilot, lambda: screen.diff is not None and len(screen.file_names) == 2)

    assert snap_compare(replay_app(), terminal_size=SIZES[size], run_before=open_compare)
