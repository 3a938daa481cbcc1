"""`Body`: the panels, laid out wide (a dashboard) or compact (tabs), by terminal size.

The layout is rebuilt when the terminal crosses the threshold; the panels are
views of the app's `RunState` and draft, so nothing is lost by the rebuild.
"""

from __future__ import annotations

from textual import events
from textual.app import ComposeResult
from textual.containers import Container, Horizontal, Vertical
from textual.geometry import Size
from textual.widgets import TabbedContent, TabPane

from tui.app.comparison_table import ComparisonTable
from tui.app.hardware_panel import HardwarePanel
from tui.app.live_charts import LiveCharts
from tui.app.run_log import RunLog
from tui.app.search_table import SearchTable
from tui.app.setup_form import SetupForm
from tui.app.time_breakdown import TimeBreakdown

WIDE_MIN_WIDTH = 110  # the sidebar (40) plus a comparison table that never truncates
WIDE_MIN_HEIGHT = 34  # table, charts, search and log stacked without squeezing


def layout_for(size: Size) -> str:
    """'wide' or 'compact' for a terminal of ``size``."""
    return "wide" if size.width >= WIDE_MIN_WIDTH and size.height >= WIDE_MIN_HEIGHT else "compact"


class Body(Container):
    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.mode = ""

    def compose(self) -> ComposeResult:
        app = self.app
        self.mode = layout_for(app.size)
        self.set_class(self.mode == "wide", "-wide")
        self.set_class(self.mode == "compact", "-compact")
        form = SetupForm(app.setup_draft, editable=app.setup_editable, note=app.setup_note, id="setup")  # type: ignore[attr-defined]
        if self.mode == "wide":
            with Horizontal(id="wide"):
                with Vertical(id="sidebar"):
                    yield HardwarePanel(id="hardware")
                    yield form
                    yield TimeBreakdown(id="breakdown")
                with Vertical(id="main"):
                    yield ComparisonTable(id="comparison")
                    yield LiveCharts(id="live")
                    yield SearchTable(id="search")
                    yield RunLog(id="log")
        else:
            with TabbedContent(id="tabs"):
                with TabPane("Compare", id="tab-compare"):
                    yield ComparisonTable(id="comparison")
                    yield LiveCharts(id="live")
                with TabPane("Search", id="tab-search"):
                    yield SearchTable(id="search")
                with TabPane("Time", id="tab-time"):
                    yield TimeBreakdown(id="breakdown")
                with TabPane("Hardware", id="tab-hardware"):
                    yield HardwarePanel(id="hardware")
                with TabPane("Setup", id="tab-setup"):
                    yield form
                with TabPane("Log", id="tab-log"):
                    yield RunLog(id="log")

    async def on_resize(self, event: events.Resize) -> None:
        if self.mode and layout_for(self.app.size) != self.mode:
            await self.recompose()
            self.app.after_layout_change()  # type: ignore[attr-defined]
