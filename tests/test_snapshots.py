"""Snapshots of the main screen, wide (120x40) and compact (80x24), from a recorded real run.

The run is ``tests/fixtures/gpt_tiny_cpu_run.jsonl`` (``record_run.py``), replayed,
so the screens are deterministic. Update with ``pytest tests/test_snapshots.py
--snapshot-update`` and look at the SVGs in ``tests/__snapshots__/``.
"""

from __future__ import annotations

from pathlib import Path

from tui.app import MfutopApp
from tui.event_sources import replay_source

from fixtures.app_helpers import wait_until

RECORDED = Path(__file__).parent / "fixtures" / "gpt_tiny_cpu_run.jsonl"


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
