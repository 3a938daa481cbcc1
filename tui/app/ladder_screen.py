"""`LadderScreen`: the training-speed ladder as a table and a bar chart of tokens/s per rung.

The screen shows rows it is given (a finished ladder's ``rungs``) and/or runs
a source ``source(cancel) -> events`` in a thread worker, folding each
``LadderRung`` into its table as it arrives — the same shape of source the
app uses for runs, so a recorded ladder (JSONL) replays here too. ``c``
cancels between steps, ``escape`` closes (and cancels). The rows' text comes
from ``tui.ladder_table``, as ``mfutop ladder``'s does.

Every rung must fit on an 80x24 terminal: the table takes the height its rows
need (the rung names stay put when it scrolls sideways), the note, which is
prose, is shown in full for the selected rung below it instead of as a cut-off
column, and the bar chart gets what is left (and scrolls).
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Iterable

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from profiler.events import Event, LogMessage, RunFailed, RunFinished
from tui.ladder_table import COLUMNS, NOTE_KEY, bar_chart, fold, rung_cells, rung_name, rung_note
from tui.plain_text import join, plain, plain_str

EventSource = Callable[[threading.Event], Iterable[Event]]
STATUS_STYLE = {"measured": "green", "n/a": "dim", "skipped": "yellow", "failed": "bold red",
                "timeout": "yellow", "cancelled": "dim", "running": "cyan"}


# ----------------------------------------------------------------- the screen

class LadderEvent(Message):
    def __init__(self, event: Event, run_id: int) -> None:
        super().__init__()
        self.event = event
        self.run_id = run_id


class LadderScreen(Screen):
    """``LadderScreen(rows=(), source=None)``: rows to show now, and/or a source to run and fold in."""

    DEFAULT_CSS = """
    LadderScreen { layout: vertical; }
    LadderScreen #ladder-status { height: 1; padding: 0 1; background: $boost; }
    LadderScreen #ladder-table { height: auto; border: round $primary 40%; }
    LadderScreen #ladder-note { height: auto; max-height: 4; padding: 0 1; }
    LadderScreen #ladder-bars-box { height: 1fr; border: round $primary 40%; }
    LadderScreen #ladder-bars { height: auto; padding: 0 1; }
    """
    BINDINGS = [
        Binding("escape", "close", "Back"),
        Binding("c", "cancel", "Cancel ladder"),
        Binding("r", "rerun", "Run again"),
    ]

    def __init__(self, rows: Iterable[dict[str, Any]] = (), source: EventSource | None = None,
                 title: str = "Training-speed ladder", **kwargs) -> None:
        super().__init__(**kwargs)
        self.rows: list[dict[str, Any]] = list(rows)
        self.source = source
        self.ladder_title = title
        self.status_text = "" if source else f"{len(self.rows)} rungs"
        self.done = source is None
        self._cancel = threading.Event()
        self._run_id = 0
        self._ready = False  # widgets composed and columns added

    def compose(self) -> ComposeResult:
        yield Static(self.status_text, id="ladder-status")
        table = DataTable(id="ladder-table", cursor_type="row", zebra_stripes=True, fixed_columns=1)
        table.border_title = plain(self.ladder_title)
        yield table
        yield Static("", id="ladder-note")
        with VerticalScroll(id="ladder-bars-box") as box:
            box.border_title = "tokens/s per rung"
            yield Static("", id="ladder-bars")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#ladder-table", DataTable)
        for key, label in COLUMNS:
            if key != NOTE_KEY:
                table.add_column(label, key=key)
        self._ready = True
        self.refresh_view()
        if self.source is not None:
            self.start()

    # ---- running ------------------------------------------------------------------------------

    def start(self) -> None:
        self._run_id += 1
        self._cancel = threading.Event()
        self.rows, self.done = [], False
        self.set_status("ladder running…")
        self.refresh_view()
        self._run(self.source, self._run_id, self._cancel)

    @work(thread=True, exclusive=True, exit_on_error=False, group="ladder")
    def _run(self, source: EventSource, run_id: int, cancel: threading.Event) -> None:
        try:
            for event in source(cancel):
                self.post_message(LadderEvent(event, run_id))
        except Exception as exc:  # a failed ladder is shown, not a crash of the app
            self.post_message(LadderEvent(RunFailed(str(exc) or type(exc).__name__, type(exc).__name__), run_id))

    def on_ladder_event(self, message: LadderEvent) -> None:
        if message.run_id == self._run_id:
            self.apply(message.event)

    def apply(self, event: Event) -> None:
        """Fold one event into the view (also callable directly with recorded events)."""
        self.rows = fold(self.rows, event)
        if isinstance(event, LogMessage):
            self.set_status(event.text)
        elif event.kind == "ladder_rung":
            self.set_status(f"rung {event.index}/{event.total}: {rung_name(event.rung)} {event.rung.get('status', '')}")
        elif isinstance(event, RunFinished):
            self.done = True
            self.set_status("ladder cancelled" if event.cancelled else f"ladder finished: {len(self.rows)} rungs")
        elif isinstance(event, RunFailed):
            self.done = True
            self.set_status(f"ladder failed: {event.message}")
        self.refresh_view()

    def action_cancel(self) -> None:
        if self.done:
            self.notify("No ladder in progress.")
            return
        self._cancel.set()
        self.set_status("cancelling: the ladder stops after the current step")

    def action_rerun(self) -> None:
        if self.source is None:
            self.notify("These are recorded results; nothing to run.")
        elif not self.done:
            self.notify("The ladder is still running; c cancels it.", severity="warning")
        else:
            self.start()

    def action_close(self) -> None:
        self._cancel.set()
        self.app.pop_screen()

    def on_unmount(self) -> None:
        self._cancel.set()

    # ---- drawing ------------------------------------------------------------------------------

    def set_status(self, text: str) -> None:
        self.status_text = text
        if self._ready:
            self.query_one("#ladder-status", Static).update(plain(text))  # log text: never markup

    def refresh_view(self) -> None:
        if not self._ready:
            return
        table = self.query_one("#ladder-table", DataTable)
        selected = table.cursor_row
        table.clear()  # (moves the cursor to the top: put back below, so a live ladder keeps the selection)
        keys: set[str] = set()
        for row in self.rows:
            cells = [cell for (column, _), cell in zip(COLUMNS, rung_cells(row)) if column != NOTE_KEY]
            key = rung_name(row) if rung_name(row) not in keys else None  # a repeated name must not end the screen
            keys.add(rung_name(row))
            table.add_row(*(plain(c, style=_status_style(row)) if i == 1 else
                            plain(c, justify="right") if 2 <= i <= 8 else plain(c) for i, c in enumerate(cells)),
                          key=key)
        if self.rows:
            table.move_cursor(row=min(selected, len(self.rows) - 1), animate=False)
        self.show_note()
        self.query_one("#ladder-bars", Static).update(plain(bar_chart(self.rows), max_chars=20_000))
        self.query_one("#ladder-bars-box").styles.max_height = len(self.rows) + 2  # 1fr, but no empty box

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self.show_note()

    def show_note(self) -> None:
        """The selected rung's note in full: a torch error or an n/a reason is often a sentence."""
        index = self.query_one("#ladder-table", DataTable).cursor_row
        text = ""
        if 0 <= index < len(self.rows):
            row = self.rows[index]
            text = join(plain(rung_name(row), style="bold"), " ",
                        plain(row.get("status", ""), style=_status_style(row)), ": ",
                        plain(rung_note(row), max_chars=2000))
        self.query_one("#ladder-note", Static).update(text)

    def cell_text(self, rung: str, column: str) -> str:
        """Plain text of one cell (tests read the table through this)."""
        return str(self.query_one("#ladder-table", DataTable).get_cell(rung, column))

    def note_text(self) -> str:
        """Plain text of the selected rung's note line."""
        return plain_str(self.query_one("#ladder-note", Static).render(), max_chars=4000)


def _status_style(row: dict[str, Any]) -> str:
    status = row.get("status", "")
    return STATUS_STYLE.get(status, "") if isinstance(status, str) else ""
