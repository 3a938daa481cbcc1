"""`RunLog`: warnings and log lines of the run (unknown-peak notices, CPU fallbacks, saves)."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import RichLog

from tui.app.run_state import RunState
from tui.app.view import StateView
from tui.plain_text import LOG_CHARS, plain

LEVEL_STYLE = {"info": "", "warning": "yellow", "error": "bold red"}
LEVEL_TAG = {"info": "", "warning": "warning: ", "error": "error: "}


class RunLog(RichLog, StateView):
    """Append-only: writes the state's log lines it has not written yet."""

    def __init__(self, **kwargs) -> None:
        super().__init__(wrap=True, markup=False, highlight=False, min_width=20, **kwargs)
        self.border_title = "Log"
        self._written = 0
        self._state: RunState | None = None

    def on_mount(self) -> None:
        self.show(self.app.state)  # type: ignore[attr-defined]

    def show(self, state: RunState) -> None:
        if state is not self._state:  # a new run: a new state
            self.clear()
            self._written = 0
            self._state = state
        for level, text in state.logs[self._written:]:
            tag = LEVEL_TAG.get(level, "") if isinstance(level, str) else ""
            style = LEVEL_STYLE.get(level, "") if isinstance(level, str) else ""
            self.write(Text(tag, style=style) + plain(text, style=style, max_chars=LOG_CHARS))
        self._written = len(state.logs)
